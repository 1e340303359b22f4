"""The output folder: refuse what we did not write, keep the user's files, swap in atomically.

A site written by dinoreport carries ``data/.dinoreport-manifest.json``: every file the build
wrote (path relative to the site, sha256). Only a folder with that marker is ever replaced.
Files the user added to a site (``CNAME``, notes, a ``.git`` folder) are not in the marker;
they are copied into the new site before the swap. A file of ours that the user edited since
is refused by name unless ``discard_edits``.

The swap is two renames: ``out -> .out.old-PID`` then ``.out.tmp-PID-* -> out``. A build killed
between them leaves no ``out``; :func:`recover` (run first by every build) renames the old site
back, and temporary folders of builds whose process is gone are removed.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

__all__ = ["OutDirError", "MARKER", "check_out", "recover", "make_tmp", "scratch", "swap_in", "written_files",
           "pid_alive"]

MARKER = "data/.dinoreport-manifest.json"
_FORMAT = "dinoreport-site-1"
_OLD_RE = re.compile(r"\.old-(\d+)$")
_TMP_RE = re.compile(r"\.tmp-(\d+)-[^/]*$")


class OutDirError(RuntimeError):
    """An output folder we must not replace; the message names it and the ways out."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (a kill of pid 0 probes without signalling)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _files(root: Path) -> list[str]:
    """Every file and symlink below ``root`` (symlinks not followed), sorted, posix-relative."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames.sort()
        for name in dirnames:
            if (d / name).is_symlink():
                out.append((d / name).relative_to(root).as_posix())
        out += [(d / n).relative_to(root).as_posix() for n in sorted(filenames)]
    return sorted(out)


def written_files(site: Path) -> dict[str, str] | None:
    """``{relative path: sha256}`` from the marker of ``site``, or None without a valid marker."""
    try:
        data = json.loads((site / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = data.get("files") if isinstance(data, dict) else None
    if data.get("format") != _FORMAT or not isinstance(files, dict):
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        return None
    return files


def _user_files(out: Path, ours: dict[str, str]) -> tuple[list[str], list[str]]:
    """(files in ``out`` we did not write, files we wrote that were changed since)."""
    added, edited = [], []
    for rel in _files(out):
        if rel == MARKER:
            continue
        p = out / rel
        if rel not in ours:
            added.append(rel)
        elif p.is_symlink() or _sha(p) != ours[rel]:
            edited.append(rel)
    return added, edited


def intact(out: Path) -> bool:
    """Whether ``out`` is a site of ours with every file we wrote present and unchanged."""
    ours = written_files(out)
    if ours is None:
        return False
    _, edited = _user_files(out, ours)
    return not edited and all((out / rel).is_file() for rel in ours)


def _listing(names: list[str], n: int = 8) -> str:
    more = f"\n  ... and {len(names) - n} more" if len(names) > n else ""
    return "".join(f"\n  {x}" for x in names[:n]) + more


def check_out(out: Path, inputs: Iterable[Path], *, discard_edits: bool = False) -> Path:
    """The resolved ``out`` if a build may write it, else :class:`OutDirError`.

    Refused: a folder that is or contains an input; an existing non-empty folder without our
    marker; a site of ours in which the user edited files we wrote (unless ``discard_edits``).
    """
    out = Path(out).resolve()
    for p in inputs:
        p = Path(p).resolve()
        if out == p or out in p.parents:
            raise OutDirError(f"--out {out} would replace the input folder {p}; choose another folder")
    if out.exists() and not out.is_dir():
        raise OutDirError(f"--out {out} is a file, not a folder; choose another path")
    if not out.exists() or not any(out.iterdir()):
        return out
    ours = written_files(out)
    if ours is None:
        raise OutDirError(
            f"--out {out} exists and was not written by dinoreport (no valid {MARKER}); refusing to "
            "replace it. Ways out: pass --out a new or empty folder, or move that folder away yourself.")
    _, edited = _user_files(out, ours)
    if edited and not discard_edits:
        raise OutDirError(
            f"--out {out}: these files written by an earlier build were changed since:{_listing(edited)}\n"
            "A rebuild would overwrite them. Copy your changes elsewhere (site_src/ or templates/ "
            "are the place for edits), or pass --discard-edits to replace them anyway.")
    return out


def recover(out: Path) -> list[str]:
    """Finish or undo swaps and clean-ups that killed builds left beside ``out``.

    Returns one line per action taken (for the terminal).
    """
    out = Path(out).resolve()
    said: list[str] = []
    if not out.parent.is_dir():
        return said
    prefix = f".{out.name}."
    for p in sorted(out.parent.iterdir()):
        if not p.name.startswith(prefix):
            continue
        rest = p.name[len(prefix) - 1:]
        m_old, m_tmp = _OLD_RE.match(rest), _TMP_RE.match(rest)
        if m_old and not pid_alive(int(m_old.group(1))) and written_files(p) is not None:
            if not out.exists():
                os.replace(p, out)
                said.append(f"restored {out} from {p.name} (an earlier build was killed while swapping)")
            else:
                # The swap was done (the user's files were copied into the new site first).
                shutil.rmtree(p, ignore_errors=True)
                said.append(f"removed {p.name}, left by a killed build")
        elif m_tmp and not pid_alive(int(m_tmp.group(1))):
            shutil.rmtree(p, ignore_errors=True)
            said.append(f"removed {p.name}, left by a killed build")
    return said


def make_tmp(out: Path) -> Path:
    """A fresh, world-readable folder beside ``out`` named after this process (see recover)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a site is meant to be served
    return tmp


@contextmanager
def scratch(out: Path) -> Iterator[Path]:
    """A private folder beside ``out`` for a build's working files, removed when the block ends,
    by error or not.

    Beside ``out`` rather than in the system's temporary folder: that may be held in memory,
    which is what the files are there to spare. Named like :func:`make_tmp`'s folders, so
    :func:`recover` removes one that a killed build left.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-scratch-", dir=out.parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _write_marker(tmp: Path) -> None:
    files = {rel: _sha(tmp / rel) for rel in _files(tmp) if rel != MARKER}
    marker = tmp / MARKER
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"format": _FORMAT, "files": files}, indent=1, sort_keys=True) + "\n",
                      encoding="utf-8")


def _carry(out: Path, tmp: Path, ours: dict[str, str]) -> None:
    """Copy the files of ``out`` that we did not write into ``tmp`` (symlinks as symlinks)."""
    added, _ = _user_files(out, ours)
    clash = [rel for rel in added if (tmp / rel).exists() or (tmp / rel).is_symlink()]
    if clash:
        raise OutDirError(
            f"--out {out}: these files of yours have the names of files the build writes:{_listing(clash)}\n"
            "Rename or move them, then build again.")
    for rel in added:
        src, dst = out / rel, tmp / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)


def swap_in(tmp: Path, out: Path) -> None:
    """Mark ``tmp`` as ours, carry the user's files over from ``out``, then swap with two renames.

    Up to the first rename ``out`` is untouched; between the renames :func:`recover` restores
    it; after the second only the old copy is left to delete.
    """
    _write_marker(tmp)
    old = None
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if out.exists():
        ours = written_files(out)
        if ours is None:  # check_out ran first; something else wrote here meanwhile
            raise OutDirError(f"--out {out} changed during the build and is no longer a dinoreport site; "
                              "the new site is not swapped in")
        _carry(out, tmp, ours)
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
