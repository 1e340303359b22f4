"""Bytes of an entry: local file, installed package data or the URL cache; downloads."""
from __future__ import annotations

import hashlib
import importlib.util
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from ..atomic import atomic_write

from ..cachedir import cache_dir
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


def _download(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only
        return response.read()


def fetch(
    entries: Iterable[ImageEntry],
    *,
    timeout: float = 20.0,
    progress: Callable[[str], None] | None = None,
) -> list[tuple[str, str]]:
    """Download URL entries that are not cached yet.

    Each download goes to a temporary file in the cache folder, is sha256-verified when the
    digest is known, and is renamed into place (atomic); a failed download leaves nothing.
    Entries with a local ``file``/``package`` are reported ``"cached"`` when readable and
    ``"failed: ..."`` otherwise. Never raises for one bad entry.

    Parameters
    ----------
    entries : iterable of ImageEntry
    timeout : float
        Seconds per request.
    progress : callable, optional
        Called with one line per entry, ``"<id>: <status>"``.

    Returns
    -------
    list of (id, status)
        In input order; status is ``"cached"``, ``"fetched"`` or ``"failed: <reason>"``.
    """
    results: list[tuple[str, str]] = []
    for entry in entries:
        status = _fetch_one(entry, timeout)
        results.append((entry.id, status))
        if progress is not None:
            progress(f"{entry.id}: {status}")
    return results


def _fetch_one(entry: ImageEntry, timeout: float) -> str:
    if entry.url is None:
        return "cached" if available(entry) else f"failed: {entry.origin} not found"
    target = cached_path(entry)
    if target.is_file():
        if entry.sha256 is None or hashlib.sha256(target.read_bytes()).hexdigest() == entry.sha256:
            return "cached"
    if not _is_http(entry.url):
        return f"failed: not an http(s) URL: {entry.url}"
    try:
        data = _download(entry.url, timeout)
    except urllib.error.HTTPError as exc:
        return f"failed: HTTP {exc.code} {exc.reason} for {entry.url}"
    except urllib.error.URLError as exc:
        return f"failed: {exc.reason} ({entry.url})"
    except (OSError, ValueError) as exc:
        return f"failed: {exc} ({entry.url})"
    if not data:
        return f"failed: empty response from {entry.url}"
    got = hashlib.sha256(data).hexdigest()
    if entry.sha256 is not None and got != entry.sha256:
        return f"failed: sha256 mismatch: expected {entry.sha256}, got {got}"
    try:
        atomic_write(target, data)
    except OSError as exc:
        return f"failed: cannot write {target} ({exc.strerror or exc})"
    return "fetched"
