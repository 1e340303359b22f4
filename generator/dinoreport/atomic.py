"""Write a file so that readers see the old content or the new, never a part of it."""
from __future__ import annotations

import os
import re
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "atomic_write", "part_prefix", "HOST"]

# Which machine wrote a temporary file: a cache folder may be shared between machines (NFS),
# where a process id alone says nothing about another machine's writers.
HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def part_prefix() -> str:
    """``.part-PID.HOST-``: the start of this process's temporary file names."""
    return f".part-{os.getpid()}.{HOST}-"


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``; renamed onto it when the block ends without error.

    On any error (including Ctrl-C) the temporary file is removed and ``path`` is untouched.
    The name carries the process id and host (:func:`part_prefix`), so files left by a killed
    process can be swept later (:func:`dinoreport.cachedir.sweep_parts`), by its own machine only.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=part_prefix(), suffix=path.suffix, dir=path.parent)
    except OSError as exc:
        raise _naming(exc, path) from exc
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _naming(exc, path) from exc
        raise


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` with the file it was about (a failed write often carries no file name)."""
    if exc.filename is not None:
        return exc
    return type(exc)(exc.errno, exc.strerror or str(exc), str(path))


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
