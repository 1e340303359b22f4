"""Bytes of an entry: local file, installed package data or the URL cache; downloads."""
from __future__ import annotations

import hashlib
import http.client
import importlib.util
import re
import stat
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from ..atomic import atomic_path

from ..cachedir import cache_dir
from .decoding import decode
from .manifest import _is_http
from .model import ImageEntry, ImageError, _USER_AGENT


def cached_path(entry: ImageEntry) -> Path:
    """Where a URL entry's bytes live in the cache.

    ``cache_dir()/'images'/<sha256 or sha256(url)><ext>``, ext the URL path's suffix
    (lower case, ``.img`` when it has none).
    """
    if entry.url is None:
        raise ImageError(f"image '{entry.id}' has no url; only url entries are cached")
    key = entry.sha256 or hashlib.sha256(entry.url.encode("utf-8")).hexdigest()
    suffix = Path(urllib.parse.unquote(urllib.parse.urlsplit(entry.url).path)).suffix.lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,5}", suffix):
        suffix = ".img"
    return cache_dir() / "images" / f"{key}{suffix}"


def _package_root(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _package_file(spec: str) -> Path:
    """Locate an installed package's data file: ``skimage:astronaut``, ``sklearn:china.jpg``."""
    prefix, _, name = spec.partition(":")
    root = _package_root(prefix)
    if root is None:
        raise ImageError(f"package image '{spec}': {prefix} is not installed; pip install it")
    if prefix == "skimage":
        folders = [root / "data"]
        try:  # files fetched by skimage's own pooch registry (not bundled in the wheel)
            from skimage.data import _fetchers

            fetcher = getattr(_fetchers, "_image_fetcher", None)
            if fetcher is not None:
                folders.append(Path(fetcher.abspath) / "data")
        except Exception:  # noqa: BLE001 - optional location only
            pass
    else:  # sklearn
        folders = [root / "datasets" / "images"]
    names = [name] if Path(name).suffix else [f"{name}{ext}" for ext in (".png", ".jpg", ".jpeg")]
    for folder in folders:
        for candidate in names:
            if (folder / candidate).is_file():
                return folder / candidate
    raise ImageError(
        f"package image '{spec}': no file {' or '.join(names)} in "
        f"{', '.join(str(f) for f in folders)}; check the name or the installed version"
    )


def _verify(entry: ImageEntry, data: bytes, where: str) -> None:
    if entry.sha256 is None:
        return
    got = hashlib.sha256(data).hexdigest()
    if got != entry.sha256:
        raise ImageError(
            f"image '{entry.id}' ({where}): sha256 mismatch: expected {entry.sha256}, got {got}; "
            f"the file changed — replace it or update images.{entry.id}.sha256"
        )


_NOT_REGULAR = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def file_problem(path: Path) -> str | None:
    """Why a local image file cannot be read as one, or None when it is a regular file.

    Checked before reading: reading a FIFO would wait forever, a folder gives a bare OS error.

    Returns
    -------
    str or None
        ``"file not found"`` (also a symlink to nothing) or ``"not a regular file: it is a
        folder"`` and the like for a named pipe (FIFO), socket or device.
    """
    try:
        mode = Path(path).stat().st_mode
    except FileNotFoundError:
        return "file not found"
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _NOT_REGULAR if test(mode)), "something else")
    return f"not a regular file: it is {kind}"


def image_bytes(entry: ImageEntry) -> bytes:
    """The bytes of an entry's image file, sha256-verified when the digest is known.

    ``file`` -> read it; ``package`` -> the installed package's data file; ``url`` -> the
    cached copy (:func:`cached_path`), never the network.

    Raises
    ------
    ImageError
        File missing/unreadable, package file missing, URL not cached yet (run
        ``dinoreport images fetch``), sha256 mismatch.
    """
    if entry.file is not None:
        path, where = entry.file, str(entry.file)
        problem = file_problem(path)
        if problem is not None:
            raise ImageError(f"image '{entry.id}': {path}: {problem}; check images.{entry.id}.file")
    elif entry.package is not None:
        path = _package_file(entry.package)
        where = f"{entry.package} -> {path}"
    elif entry.url is not None:
        path = cached_path(entry)
        where = f"{entry.url} -> {path}"
        if not path.is_file():
            raise ImageError(
                f"image '{entry.id}' ({entry.url}) is not in the cache {path.parent}; "
                "run `dinoreport images fetch` (needs network) or use --images with a local folder"
            )
    else:
        raise ImageError(f"image '{entry.id}' has none of file, package, url")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(
            f"image '{entry.id}': cannot read {path} ({exc.strerror or exc}); check the path"
        ) from exc
    _verify(entry, data, where)
    return data


def available(entry: ImageEntry) -> bool:
    """True when the entry's bytes can be read without the network (sha256 not checked)."""
    try:
        if entry.file is not None:
            return entry.file.is_file()
        if entry.package is not None:
            return _package_file(entry.package).is_file()
        if entry.url is not None:
            return cached_path(entry).is_file()
    except ImageError:
        return False
    return False


MAX_DOWNLOAD_BYTES = 64 * 2**20
"""Largest body :func:`fetch` accepts for one image (bytes); a photo for a report is far smaller."""

_CHUNK = 64 * 1024


class _FetchFailure(Exception):
    """One image could not be fetched; the message is the reason shown to the user."""


def _network_reason(exc: BaseException) -> str:
    """A one-line reason for a failed request or read (no traceback, no class paths)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        if not isinstance(exc.reason, BaseException):
            return str(exc.reason)
        exc = exc.reason
    if isinstance(exc, http.client.IncompleteRead):
        return f"connection closed after {len(exc.partial):,} bytes of a chunk (short body); try again"
    if isinstance(exc, http.client.BadStatusLine):  # also RemoteDisconnected
        line = str(exc).strip()
        return ("the server closed the connection without an HTTP reply" if not line or "closed" in line
                else f"the reply is not HTTP (status line {line[:60]!r}); check the URL and port")
    if isinstance(exc, http.client.HTTPException):
        return f"malformed HTTP reply ({type(exc).__name__}: {exc})"
    if isinstance(exc, TimeoutError):
        return "no data within the time limit (timed out)"
    return str(exc) or type(exc).__name__


def _download(url: str, dest: Path, timeout: float, max_bytes: int) -> tuple[str, str]:
    """Stream ``url``'s body into ``dest``; ``timeout`` bounds the whole download.

    Parameters
    ----------
    url : str
        http(s) URL.
    dest : Path
        File to write (a ``.part`` file; the caller renames it into place).
    timeout : float
        Seconds for the whole download (each read also waits at most this long, so the
        worst case is about twice it).
    max_bytes : int
        Refuse a body larger than this, announced (Content-Length) or while streaming.

    Returns
    -------
    (content_type, sha256 hex digest of the body)

    Raises
    ------
    _FetchFailure
        HTTP error, unreachable host, timeout, deadline passed, body too large or short,
        non-HTTP reply. Errors writing ``dest`` propagate as OSError.
    """
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) only
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise _FetchFailure(_network_reason(exc)) from exc
    with response:
        ctype = response.headers.get_content_type()
        announced = response.headers.get("Content-Length", "").strip()
        expected = int(announced) if announced.isdigit() else None
        too_large = (f"the body is larger than the {max_bytes:,}-byte limit "
                     "(MAX_DOWNLOAD_BYTES); use a smaller copy of the image")
        if expected is not None and expected > max_bytes:
            raise _FetchFailure(f"{too_large} (Content-Length {expected:,})")
        digest = hashlib.sha256()
        got = 0
        with open(dest, "wb") as out:
            while True:
                if time.monotonic() > deadline:
                    raise _FetchFailure(f"took longer than {timeout:g} s in total (deadline; "
                                        f"{got:,} bytes arrived); try again or raise --timeout")
                try:
                    chunk = response.read1(_CHUNK)
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    raise _FetchFailure(_network_reason(exc)) from exc
                if not chunk:
                    break
                got += len(chunk)
                if got > max_bytes:
                    raise _FetchFailure(too_large)
                digest.update(chunk)
                out.write(chunk)
    if expected is not None and got < expected:
        raise _FetchFailure(f"connection closed after {got:,} of {expected:,} bytes (short body); try again")
    if got == 0:
        raise _FetchFailure("empty response")
    return ctype, digest.hexdigest()


def _check_image(path: Path, name: str, max_pixels: int) -> None:
    """Raise ImageError unless ``path`` decodes as an image (what every build will need)."""
    decode(path.read_bytes(), name=name, max_pixels=max_pixels)


def fetch(
    entries: Iterable[ImageEntry],
    *,
    timeout: float = 20.0,
    max_bytes: int | None = None,
    max_pixels: int = 64_000_000,
    progress: Callable[[str], None] | None = None,
) -> list[tuple[str, str]]:
    """Download URL entries that are not cached yet.

    Each download streams into a ``.part`` file in the cache folder, is sha256-verified when
    the digest is known and must decode as an image; only then is it renamed into place
    (atomic). A failed download leaves nothing. A cached file is reported ``"cached"`` only
    when it matches its sha256 or, without one, decodes as an image; otherwise it is fetched
    again. Entries with a local ``file``/``package`` are reported ``"cached"`` when readable
    and ``"failed: ..."`` otherwise. Never raises for one bad entry: each one gets its line
    and the list goes on.

    Parameters
    ----------
    entries : iterable of ImageEntry
    timeout : float
        Seconds for one whole download (not per read: a server that drips bytes is cut off).
    max_bytes : int, optional
        Largest body accepted; default :data:`MAX_DOWNLOAD_BYTES`.
    max_pixels : int
        Decompression-bomb guard of the image check (config ``images.max_pixels``).
    progress : callable, optional
        Called with one line per entry, ``"<id>: <status>"``.

    Returns
    -------
    list of (id, status)
        In input order; status is ``"cached"``, ``"fetched"`` or ``"failed: <reason>"``.
    """
    cap = MAX_DOWNLOAD_BYTES if max_bytes is None else max_bytes
    results: list[tuple[str, str]] = []
    for entry in entries:
        try:
            status = _fetch_one(entry, timeout, cap, max_pixels)
        except Exception as exc:  # noqa: BLE001 - one image's surprise must not end the list
            status = f"failed: unexpected {type(exc).__name__}: {exc}"
        results.append((entry.id, status))
        if progress is not None:
            progress(f"{entry.id}: {status}")
    return results


def _cached_ok(entry: ImageEntry, target: Path, max_pixels: int) -> bool:
    if entry.sha256 is not None:
        return hashlib.sha256(target.read_bytes()).hexdigest() == entry.sha256
    try:
        _check_image(target, str(target), max_pixels)
    except ImageError:
        return False
    return True


def _fetch_one(entry: ImageEntry, timeout: float, max_bytes: int, max_pixels: int) -> str:
    if entry.url is None:  # a local file or package data: nothing to download
        if available(entry):
            return "cached"
        problem = file_problem(entry.file) if entry.file is not None else "not found"
        return f"failed: {entry.origin}: {problem or 'not found'} (a local file: nothing to fetch)"
    target = cached_path(entry)
    if target.is_file() and _cached_ok(entry, target, max_pixels):
        return "cached"
    if not _is_http(entry.url):
        return f"failed: not an http(s) URL: {entry.url}"
    try:
        with atomic_path(target) as part:
            ctype, got = _download(entry.url, part, timeout, max_bytes)
            if entry.sha256 is not None and got != entry.sha256:
                raise _FetchFailure(f"sha256 mismatch: expected {entry.sha256}, got {got}; the file "
                                    f"at {entry.url} changed — check it and update images.{entry.id}.sha256")
            try:
                _check_image(part, f"{entry.url}", max_pixels)
            except ImageError as exc:
                raise _FetchFailure(f"not an image (the server sent {ctype}): {exc}; check that the "
                                    "URL points to the image file itself, not a page about it") from exc
    except _FetchFailure as exc:
        reason = str(exc)
        return f"failed: {reason}" if entry.url in reason else f"failed: {reason} ({entry.url})"
    except OSError as exc:
        return f"failed: cannot write {target} ({exc.strerror or exc})"
    return "fetched"
