"""The project-wide cache folder, and what the cache writes there, so that ``dinoreport clean``
removes exactly that and nothing else.

``$DINOREPORT_CACHE`` may point at a folder that also holds other things; a file is ours only
if its path below the cache root matches one of :data:`OURS` (the names the writers use).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .atomic import HOST
from .outdir import pid_alive

__all__ = ["OURS", "PARTS", "cache_dir", "cache_files", "clean_cache", "sweep_parts"]


def cache_dir() -> Path:
    """The cache root: ``$DINOREPORT_CACHE``, else ``$XDG_CACHE_HOME/dinoreport``, else
    ``~/.cache/dinoreport``. Not created here."""
    explicit = os.environ.get("DINOREPORT_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "dinoreport"
    return Path.home() / ".cache" / "dinoreport"

PARTS = ("features", "sections", "figures", "images", "models")  # the folders the cache writes
_H = "[0-9a-f]"
_PART = r"\.part-\d+(?:\.[A-Za-z0-9]+)?-[^/]*"  # atomic.part_prefix; no host: older versions
OURS = re.compile(
    "^(?:"
    rf"features/{_H}{{2}}/(?:{_H}{{64}}\.(?:safetensors|verified)|{_PART})"   # features.FeatureCache
    rf"|sections/(?:{_H}{{64}}\.(?:json|npz|pkl)|{_PART})"       # section_cache (pkl: older builds)
    rf"|figures/(?:{_H}{{20}}\.[a-z]{{2,4}}|{_PART})"            # figures.FigureWriter names
    rf"|images/(?:{_H}{{64}}\.[a-z0-9]{{1,5}}|{_PART})"          # images.cached_path
    rf"|models/(?:(?:meta|names)-{_H}{{32}}\.json|{_PART})"      # modelmeta
    ")$"
)


def cache_files(root: Path) -> list[Path]:
    """The files below ``root`` that the cache wrote (sorted); symlinks are never followed."""
    root = Path(root)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath, name)
            if OURS.match(p.relative_to(root).as_posix()) and not p.is_symlink():
                out.append(p)
    return out


def clean_cache(root: Path) -> tuple[int, list[Path]]:
    """Remove the cache's own files below ``root`` and the folders that become empty.

    Returns
    -------
    (number of files removed, paths left because something else lives there)
    """
    root = Path(root)
    files = cache_files(root)
    for p in files:
        p.unlink(missing_ok=True)
    for dirpath, _, _ in sorted(os.walk(root), key=lambda t: -len(t[0])):
        d = Path(dirpath)
        if d != root and d.relative_to(root).parts[0] in PARTS:
            try:
                d.rmdir()
            except OSError:
                pass  # not empty: someone else's files
    try:
        root.rmdir()
    except OSError:
        pass
    left = sorted(p for p in root.iterdir()) if root.exists() else []
    return len(files), left


_PART_RE = re.compile(r"^\.part-(\d+)(?:\.([A-Za-z0-9]+))?-")


def sweep_parts(root: Path) -> int:
    """Remove the ``.part-PID.HOST-*`` files (see :mod:`dinoreport.atomic`) that killed processes
    of this machine left in the cache's folders; returns how many. Files of running processes,
    and those of other machines sharing the folder, are left alone (names without a host come
    from older versions and count as this machine's)."""
    n = 0
    for part in PARTS:
        for dirpath, _, filenames in os.walk(Path(root) / part):
            for name in filenames:
                m = _PART_RE.match(name)
                if m and m.group(2) in (None, HOST) and not pid_alive(int(m.group(1))):
                    Path(dirpath, name).unlink(missing_ok=True)
                    n += 1
    return n
