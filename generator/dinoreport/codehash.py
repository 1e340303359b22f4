"""sha256 of the code a computed result depends on, for cache keys that cannot go stale.

No hand list of files: a section's key covers every Python module and figure template of this
package (an analysis may import any of them: drawing, figures, the pure math) and, for an
analysis from outside the package, every module of the folder or package it was loaded from
(a user analysis in ``site_src/analyses/`` may import a helper beside it).
"""
from __future__ import annotations

import hashlib
import os
import sys
from functools import lru_cache
from pathlib import Path
from types import ModuleType

__all__ = ["package_sha256", "module_code_sha256", "hash_tree"]

_PACKAGE = Path(__file__).resolve().parent
_SUFFIXES = (".py", ".j2")


def hash_tree(h: "hashlib._Hash", root: Path, tag: str, skip: tuple[Path, ...] = (),
              suffixes: tuple[str, ...] | None = None) -> None:
    """Every regular file below ``root`` by path and bytes (sorted; ``__pycache__``, hidden
    folders and the folders in ``skip``, such as the output folder inside a report folder, left out);
    with ``suffixes``, only files whose names end so."""
    if not root.is_dir():
        h.update(f"{tag}:absent".encode())
        return
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith(".")
                             and (here / d).resolve() not in skip)
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.suffix == ".pyc" or not p.is_file() or (suffixes is not None and p.suffix not in suffixes):
                continue
            h.update(f"{tag}:{p.relative_to(root).as_posix()}\0".encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())


def _folder_sha256(root: Path) -> str:
    h = hashlib.sha256()
    hash_tree(h, root, "code", suffixes=_SUFFIXES)
    return h.hexdigest()


@lru_cache(maxsize=1)
def package_sha256() -> str:
    """Every ``.py`` and ``.j2`` file of this package, by path and bytes (read once a process;
    a user's folder is read each time, as it may be edited while ``serve`` runs)."""
    return _folder_sha256(_PACKAGE)


def _code_root(module: ModuleType) -> Path | None:
    """The folder whose modules ``module`` can import beside it: its top-level package's folder,
    or the folder of a module loaded from a file (site_src/analyses/x.py)."""
    file = getattr(module, "__file__", None)
    if not file:
        return None
    top = sys.modules.get(module.__name__.partition(".")[0])
    paths = list(getattr(top, "__path__", []) or []) if top is not None and top is not module else []
    if paths and Path(file).resolve().is_relative_to(Path(paths[0]).resolve()):
        return Path(paths[0]).resolve()
    return Path(file).resolve().parent


def module_code_sha256(module: ModuleType | None) -> str:
    """sha256 of the code ``module`` can use: this package's for its own modules, else every
    module of the folder or package it came from (recomputed when any of them changes)."""
    root = _code_root(module) if module is not None else None
    if root is None:
        return hashlib.sha256(b"no source").hexdigest()
    if root == _PACKAGE or root.is_relative_to(_PACKAGE):
        return package_sha256()
    return _folder_sha256(root)
