"""One sha256 of everything a build's output depends on, so that a rebuild with nothing changed
can leave the site as it is (as make does).

What goes in: this package's own files (code, theme, templates), the resolved config, the build
options that change the output, every file of the report's source folder (narrative, user
analyses), every file of the theme's folders (``--theme`` or report.toml's ``theme``, and the
default theme, which a checkout keeps outside the package), the bytes of every image and of the
manifest, the weights' sha256, the library versions and the environment variables the build
reads. What does not: the caches (a cleaned cache gives the same site) and the options in
:data:`NOT_OUTPUT` (``--jobs``, ``--quiet``...).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

from .codehash import hash_tree
from .images import ImageError, available, image_bytes
from .theme import theme_folders

__all__ = ["inputs_fingerprint"]

_PACKAGE = Path(__file__).parent
_ENV = ("DINOREPORT_ANALYSIS_DEVICE",)

#: BuildOptions fields that do not change what a build writes; every other field is part of the
#: fingerprint, so a new option counts until it is listed here (tests check the list is honest).
NOT_OUTPUT = frozenset({
    "out",  # where the site goes, not what it holds
    "quiet",  # terminal output only
    "jobs",  # the schedule; outputs are merged in report order
    "force", "no_cache", "discard_edits",  # whether to rebuild / reuse / replace, not what is built
    "fetch",  # downloads images; their bytes are hashed below
    "analysis_timeout_s",  # when to give up, not what is computed
    "site_src", "theme",  # folders: their files are hashed below
})


def inputs_fingerprint(cfg: Any, opts: Any, plan: Any, versions: dict[str, str], skip: tuple[Path, ...] = ()) -> str:
    """sha256 (hex) of the inputs of a build of ``cfg`` with ``opts`` as resolved in ``plan``;
    ``skip``: resolved folders never read as inputs (the output folder, the cache)."""
    h = hashlib.sha256()
    hash_tree(h, _PACKAGE, "package")
    h.update(repr(cfg).encode())
    for name in sorted(f.name for f in dataclasses.fields(opts)):
        if name not in NOT_OUTPUT:
            h.update(f"{name}={getattr(opts, name)!r}\0".encode())
    site_src = Path(opts.site_src or cfg.root)
    hash_tree(h, site_src, "site_src", skip)
    theme = opts.theme if opts.theme is not None else cfg.theme  # as pipeline.report_theme
    for i, folder in enumerate(theme_folders(theme)):
        hash_tree(h, folder, f"theme{i}")
    if cfg.images.manifest is not None and Path(cfg.images.manifest).is_file():
        h.update(b"manifest\0" + hashlib.sha256(Path(cfg.images.manifest).read_bytes()).digest())
    for e in sorted(plan.iset.entries, key=lambda e: e.id):
        try:
            data = image_bytes(e) if available(e) else b"\0missing"
        except ImageError as exc:  # unreadable now: the build will say so; differ from any bytes
            data = f"\0error {exc}".encode()
        h.update(f"image:{e.id}\0".encode() + hashlib.sha256(data).digest())
    for mid, w in sorted(plan.weights.items()):
        h.update(f"weights:{mid}={getattr(w, 'sha256', None)}\0".encode())
    h.update(repr(sorted(versions.items())).encode())
    for k in _ENV:
        h.update(f"env:{k}={os.environ.get(k, '')}\0".encode())
    return h.hexdigest()
