"""The image set: manifest -> entries -> bytes -> decoded RGB arrays -> model input size.

Data flow (each step a plain value)::

    load_manifest / scan_folder  ->  ImageSet (entries sorted by id, groups)
    image_bytes(entry)           ->  bytes      (local file, installed package data, or URL cache)
    decode(bytes, name=...)      ->  (H, W, 3) uint8 RGB   (EXIF applied, any PIL mode converted)
    preprocess(rgb, resolution)  ->  (h, w, 3) uint8       (short side = resolution, crop to 32)

I/O lives only in :func:`load_manifest`, :func:`scan_folder`, :func:`image_bytes`,
:func:`fetch`, :func:`available`, :func:`load_image` and :func:`load_mask`. Everything else
is a pure function of its arguments.

Every failure is an :class:`ImageError` (a ``ValueError``) whose message names the file or the
manifest key (dotted, e.g. ``images.dog_pug.license``) and says what to do about it.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import io
import os
import re
import struct
import threading
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .atomic import atomic_write
from .refmasks import Polygons, parse_polygons, rasterize

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageEntry",
    "ImageError",
    "ImageSet",
    "available",
    "cache_dir",
    "cached_path",
    "crop_geometry",
    "decode",
    "fetch",
    "image_bytes",
    "load_image",
    "load_manifest",
    "load_mask",
    "preprocess",
    "scan_folder",
    "to_rgb",
]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})
"""File suffixes (lower case) that :func:`scan_folder` reads as images."""

_ID_RE = re.compile(r"^[a-z0-9_]+$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_PACKAGES = ("skimage", "sklearn")
_USER_AGENT = "dinoreport/0.1 (feature-map report generator; python urllib)"


class ImageError(ValueError):
    """A problem with an image, the image manifest or the image cache.

    The message names the file (or manifest key, dotted like ``images.dog_pug.license``)
    and says what to do.
    """


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class ImageEntry:
    """One image of the set and where its bytes come from.

    Exactly one of ``file``, ``package`` and ``url`` is set.

    Attributes
    ----------
    id : str
        ``[a-z0-9_]+``, unique within the set.
    subject : str
        What the photo shows, for captions.
    groups : tuple of str
        Group names (``[a-z0-9_]+``) the image belongs to.
    author, license : str
        Attribution, e.g. ``"NASA"``, ``"Public domain"``, ``"CC BY 2.0"``.
    license_url, source_url : str or None
        The license text, and the page that states the license.
    file : Path or None
        Local file, resolved absolute.
    package : str or None
        ``"skimage:astronaut"`` or ``"sklearn:china.jpg"``: installed package data.
    url : str or None
        http(s) URL, fetched into :func:`cache_dir` by :func:`fetch`.
    sha256 : str or None
        Lower-case hex digest of the file bytes; verified whenever the bytes are read.
    original_url : str or None
        Full-resolution original of a bundled ``file`` that was resized; not read by builds.
    modified : str or None
        How the bundled file differs from the original (``"resized to 1024x682"``), for credits.
    mask : Path or None
        Optional ground-truth foreground mask (any image file, nonzero = foreground).
    mask_polygons : Polygons or None
        Optional reference foreground mask drawn as polygons in normalised coordinates
        (:mod:`generator.refmasks`); at most one of ``mask`` and ``mask_polygons``.
    """

    id: str
    subject: str
    groups: tuple[str, ...]
    author: str
    license: str
    license_url: str | None = None
    source_url: str | None = None
    file: Path | None = None
    package: str | None = None
    url: str | None = None
    sha256: str | None = None
    original_url: str | None = None
    modified: str | None = None
    mask: Path | None = None
    mask_polygons: Polygons | None = None

    @property
    def share_alike(self) -> bool:
        """True when the license is share-alike (contains ``SA``, e.g. ``CC BY-SA 4.0``)."""
        return re.search(r"(?<![A-Za-z])SA(?![A-Za-z])", self.license) is not None

    @property
    def origin(self) -> str:
        """Where the bytes come from, for messages: the file path, package spec or URL."""
        return str(self.file or self.package or self.url)


@dataclass(frozen=True)
class ImageSet:
    """A validated image set.

    Attributes
    ----------
    entries : tuple of ImageEntry
        Sorted by id.
    groups : dict of str to tuple of str
        Group name -> sorted ids, from the entries' ``groups``; keys sorted.
    source : str
        Manifest path or folder, for messages.
    """

    entries: tuple[ImageEntry, ...]
    groups: dict[str, tuple[str, ...]]
    source: str

    def __getitem__(self, image_id: str) -> ImageEntry:
        for entry in self.entries:
            if entry.id == image_id:
                return entry
        raise KeyError(image_id)


def _make_set(entries: Iterable[ImageEntry], source: str) -> ImageSet:
    ordered = tuple(sorted(entries, key=lambda e: e.id))
    groups: dict[str, list[str]] = {}
    for entry in ordered:
        for group in entry.groups:
            groups.setdefault(group, []).append(entry.id)
    return ImageSet(
        entries=ordered,
        groups={g: tuple(sorted(ids)) for g, ids in sorted(groups.items())},
        source=source,
    )


# --------------------------------------------------------------------------- manifest

# key -> (expected python type, description for messages, required)
_KEYS: dict[str, tuple[type, str, bool]] = {
    "id": (str, "a string of [a-z0-9_]", True),
    "subject": (str, "a string", False),
    "groups": (list, "a list of strings", False),
    "author": (str, "a string", True),
    "license": (str, "a string", True),
    "license_url": (str, "an http(s) URL string", False),
    "source_url": (str, "an http(s) URL string", False),
    "file": (str, "a path string", False),
    "package": (str, "a string like 'skimage:astronaut'", False),
    "url": (str, "an http(s) URL string", False),
    "original_url": (str, "an http(s) URL string", False),
    "modified": (str, "a string, e.g. 'resized to 1024x682'", False),
    "sha256": (str, "64 lower-case hex digits", False),
    "mask": (str, "a path string", False),
    "mask_polygons": (list, "a list of polygons [[[x, y], ...], ...] in 0..1", False),
}


def _suggest(key: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    if close:
        return f" — did you mean '{close[0]}'?"
    return f" — valid keys: {', '.join(sorted(valid))}"


def _is_http(url: str) -> bool:
    parsed = urllib.parse.urlsplit(url)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _parse_entry(raw: Any, index: int, source: str, root: Path) -> ImageEntry:
    """Validate one ``[[image]]`` table; relative paths resolve against ``root``."""
    where = f"{source}: image[{index}]"
    if not isinstance(raw, dict):
        raise ImageError(f"{where}: expected a table ([[image]]), got {type(raw).__name__}")
    image_id = raw.get("id")
    if isinstance(image_id, str):
        where = f"{where} ({image_id})"
    dotted = f"images.{image_id if isinstance(image_id, str) else index}"

    for key in raw:
        if key not in _KEYS:
            raise ImageError(
                f"{where}: unknown key '{key}'{_suggest(key, _KEYS)} "
                f"(at {dotted}.{key}; rename or remove it)"
            )
    for key, (typ, desc, required) in _KEYS.items():
        if key not in raw:
            if required:
                raise ImageError(f"{where}: missing required key {dotted}.{key} ({desc})")
            continue
        value = raw[key]
        if not isinstance(value, typ) or isinstance(value, bool):
            raise ImageError(
                f"{where}: {dotted}.{key} must be {desc}, got {type(value).__name__} {value!r}"
            )
        if key == "groups" and not all(isinstance(v, str) for v in value):
            raise ImageError(f"{where}: {dotted}.{key} must be {desc}, got {value!r}")

    assert isinstance(image_id, str)
    if not _ID_RE.match(image_id):
        raise ImageError(
            f"{where}: {dotted}.id {image_id!r} must match [a-z0-9_]+ "
            "(lower-case letters, digits, underscore)"
        )
    groups = tuple(raw.get("groups", ()))
    for group in groups:
        if not _ID_RE.match(group):
            raise ImageError(f"{where}: {dotted}.groups: group {group!r} must match [a-z0-9_]+")
    if len(set(groups)) != len(groups):
        raise ImageError(f"{where}: {dotted}.groups lists a group twice: {list(groups)}")
    for key in ("author", "license"):
        if not raw[key].strip():
            raise ImageError(f"{where}: {dotted}.{key} is empty; give the {key} of the image")

    sources = [k for k in ("file", "package", "url") if k in raw]
    if len(sources) != 1:
        got = ", ".join(sources) if sources else "none"
        raise ImageError(
            f"{where}: give exactly one of {dotted}.file, {dotted}.package, {dotted}.url "
            f"(got {got})"
        )
    for key in ("url", "original_url", "license_url", "source_url"):
        if key in raw and not _is_http(raw[key]):
            raise ImageError(
                f"{where}: {dotted}.{key} must be an http:// or https:// URL, got {raw[key]!r}"
            )
    package = raw.get("package")
    if package is not None:
        prefix, _, name = package.partition(":")
        if prefix not in _PACKAGES or not name or "/" in name or "\\" in name or ".." in name:
            raise ImageError(
                f"{where}: {dotted}.package {package!r} must look like 'skimage:astronaut' or "
                f"'sklearn:china.jpg' (packages: {', '.join(_PACKAGES)})"
            )
    polygons = None
    if "mask_polygons" in raw:
        if "mask" in raw:
            raise ImageError(f"{where}: give at most one of {dotted}.mask and {dotted}.mask_polygons")
        try:
            polygons = parse_polygons(raw["mask_polygons"], f"{where}: {dotted}.mask_polygons")
        except ValueError as exc:
            raise ImageError(str(exc)) from exc
    sha = raw.get("sha256")
    if sha is not None and not _SHA_RE.match(sha):
        raise ImageError(
            f"{where}: {dotted}.sha256 must be 64 lower-case hex digits, got {sha!r}"
        )

    def resolve(key: str) -> Path | None:
        if key not in raw:
            return None
        path = (root / Path(raw[key]).expanduser()).resolve()
        if not _inside(path, root):
            raise ImageError(
                f"{where}: {dotted}.{key} {raw[key]!r} points outside the manifest's folder "
                f"{root}; move the file into that folder and give a relative path"
            )
        return path

    return ImageEntry(
        id=image_id,
        subject=raw.get("subject", image_id),
        groups=groups,
        author=raw["author"],
        license=raw["license"],
        license_url=raw.get("license_url"),
        source_url=raw.get("source_url"),
        file=resolve("file"),
        package=package,
        url=raw.get("url"),
        sha256=sha,
        original_url=raw.get("original_url"),
        modified=raw.get("modified"),
        mask=resolve("mask"),
        mask_polygons=polygons,
    )


def load_manifest(path: Path) -> ImageSet:
    """Read and validate an image manifest (TOML with ``[[image]]`` tables).

    Parameters
    ----------
    path : Path
        The manifest file. Relative ``file``/``mask`` paths resolve against its folder and
        must stay inside it.

    Returns
    -------
    ImageSet
        Entries sorted by id; ``source`` is ``str(path)``.

    Raises
    ------
    ImageError
        Unreadable file, TOML syntax error, unknown key (with the closest valid key), wrong
        type, missing key, duplicate id, path outside the folder, non-http(s) URL.
    """
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: accept a byte order mark
    except OSError as exc:
        raise ImageError(f"{source}: cannot read the image manifest ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ImageError(f"{source}: the image manifest is not UTF-8 text ({exc})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ImageError(f"{source}: TOML syntax error: {exc}") from exc

    for key in data:
        if key != "image":
            raise ImageError(
                f"{source}: unknown top-level key '{key}'{_suggest(key, ['image'])} "
                "(the manifest holds only [[image]] tables)"
            )
    raw_entries = data.get("image", [])
    if not isinstance(raw_entries, list):
        raise ImageError(f"{source}: 'image' must be an array of tables ([[image]]), not a table")

    root = path.parent.resolve()
    entries: list[ImageEntry] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_entries):
        entry = _parse_entry(raw, index, source, root)
        if entry.id in seen:
            raise ImageError(
                f"{source}: image[{index}]: duplicate id '{entry.id}' (also image[{seen[entry.id]}]);"
                " ids must be unique — rename one"
            )
        seen[entry.id] = index
        entries.append(entry)
    return _make_set(entries, source)


def _folder_id(stem: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", stem.lower())


def scan_folder(folder: Path) -> ImageSet:
    """Read a folder as an image set.

    A folder holding ``manifest.toml`` is read with :func:`load_manifest`. Otherwise every
    image file in it (not recursive; suffixes in :data:`IMAGE_SUFFIXES`, case-insensitive,
    hidden files skipped) is an entry: id = stem lower-cased with every character outside
    ``[a-z0-9_]`` replaced by ``_``; group = the id's part before the first ``_`` (none when
    the id has no ``_``); author and license ``"unknown"``.

    Raises
    ------
    ImageError
        Folder missing, no images in it, or two files giving the same id (names both).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: image folder not found; pass an existing folder")
    manifest = folder / "manifest.toml"
    if manifest.is_file():
        return load_manifest(manifest)

    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
    by_id: dict[str, Path] = {}
    entries: list[ImageEntry] = []
    for file in files:
        image_id = _folder_id(file.stem)
        if image_id in by_id:
            raise ImageError(
                f"{folder}: files '{by_id[image_id].name}' and '{file.name}' both give the id "
                f"'{image_id}'; rename one of them"
            )
        by_id[image_id] = file
        prefix, sep, _ = image_id.partition("_")
        entries.append(
            ImageEntry(
                id=image_id,
                subject=file.stem,
                groups=(prefix,) if sep and prefix else (),
                author="unknown",
                license="unknown",
                file=file.resolve(),
            )
        )
    if not entries:
        raise ImageError(
            f"{folder}: no image files found (looked for "
            f"{', '.join(sorted(IMAGE_SUFFIXES))}); add images or a manifest.toml"
        )
    return _make_set(entries, str(folder))


# --------------------------------------------------------------------------- bytes


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


# --------------------------------------------------------------------------- decoding

_PIL_LOCK = threading.Lock()


def _too_large(name: str, size: str, max_pixels: int) -> ImageError:
    return ImageError(
        f"{name}: image is too large ({size}); the limit is max_pixels={max_pixels:,} "
        "(decompression-bomb guard) — downscale the file or raise max_pixels"
    )


def _composite_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 RGBA -> (H, W, 3) uint8 RGB composited on white, rounded."""
    rgb = rgba[..., :3].astype(np.uint32)
    alpha = rgba[..., 3:4].astype(np.uint32)
    out = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return out.astype(np.uint8)


def to_rgb(im: Image.Image) -> np.ndarray:
    """Convert any PIL image mode to (H, W, 3) uint8 RGB.

    Alpha (RGBA, LA, PA, P or L/RGB with a ``transparency`` entry) is composited on white.
    16-bit modes (``I;16*``) are scaled by value/257 (65535 -> 255), not clipped. Mode ``I``
    (32-bit int) is read as 16-bit when all values lie in [0, 65535] (what 16-bit PNG/TIFF
    give), else scaled from the full int32 range. Mode ``F`` is read as [0, 1] when all values
    lie in it, else clipped to [0, 255]. Everything else (CMYK, YCbCr, 1, L, P...) goes through
    PIL's ``convert``.

    Parameters
    ----------
    im : PIL.Image.Image
        A loaded image.

    Returns
    -------
    (H, W, 3) uint8 ndarray
    """
    mode = im.mode
    if mode.startswith("I;16") or mode == "I" or mode == "F":
        arr = np.asarray(im)
        if mode == "F":
            a = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
            if a.size and a.min() >= 0.0 and a.max() <= 1.0:
                a = a * 255.0
            gray = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        else:
            a = arr.astype(np.int64)
            if mode == "I" and a.size and (a.min() < 0 or a.max() > 65535):
                gray = np.rint((a + 2**31) / (2**32 - 1) * 255.0).astype(np.uint8)
            else:
                gray = ((a * 255 + 32767) // 65535).astype(np.uint8)  # = round(v / 257)
        return np.repeat(gray[..., None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
    if has_alpha:
        return _composite_white(np.asarray(im.convert("RGBA")))
    if mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8).copy()


def _head(data: bytes) -> str:
    return repr(data[:12])


def decode(data: bytes, *, name: str, max_pixels: int = 64_000_000) -> np.ndarray:
    """Decode image file bytes to RGB.

    EXIF orientation is applied (``PIL.ImageOps.exif_transpose``), animated images give
    their first frame, any mode is converted by :func:`to_rgb` (alpha on white, 16-bit
    /257, CMYK via PIL).

    Parameters
    ----------
    data : bytes
        The file's bytes.
    name : str
        File name or id, used in error messages.
    max_pixels : int
        Refuse images with width * height above this, checked from the header before
        decoding. PIL's own decompression-bomb error is reported the same way.

    Returns
    -------
    (H, W, 3) uint8 ndarray
        H, W after EXIF orientation.

    Raises
    ------
    ImageError
        Empty, not an image, truncated or corrupt data, or too many pixels; the message names
        ``name`` and the reason.
    """
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes); replace it with a real image file")
    with _PIL_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
        Image.MAX_IMAGE_PIXELS = max_pixels
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            try:
                im = Image.open(io.BytesIO(data))
            except Image.DecompressionBombError as exc:
                raise _too_large(name, str(exc).split(",")[0], max_pixels) from exc
            except UnidentifiedImageError as exc:
                raise ImageError(
                    f"{name}: not a recognised image file (starts with {_head(data)}); "
                    "check it is a JPEG/PNG/GIF/WebP/BMP/TIFF image"
                ) from exc
            width, height = im.size
            if width * height > max_pixels:
                raise _too_large(
                    name, f"{width}x{height} = {width * height:,} pixels", max_pixels
                )
            if width == 0 or height == 0:
                raise ImageError(f"{name}: image has zero size ({width}x{height})")
            try:
                if getattr(im, "n_frames", 1) > 1:
                    im.seek(0)
                im.load()
                im = ImageOps.exif_transpose(im)
                return to_rgb(im)
            except Image.DecompressionBombError as exc:
                raise _too_large(name, str(exc).split(",")[0], max_pixels) from exc
            except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
                reason = str(exc) or type(exc).__name__
                hint = "re-download or re-export it"
                if "truncated" in reason:
                    reason = f"truncated or incomplete file: {reason}"
                raise ImageError(
                    f"{name}: cannot decode {im.format or 'image'} "
                    f"({width}x{height}, {len(data):,} bytes): {reason}; {hint}"
                ) from exc
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved


# --------------------------------------------------------------------------- geometry


def crop_geometry(
    height: int, width: int, resolution: int, multiple: int = 32
) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """Resize and crop geometry of :func:`preprocess`, as plain integers.

    Parameters
    ----------
    height, width : int
        Source size.
    resolution : int
        Target short side.
    multiple : int
        Each output side is cropped down to a multiple of this.

    Returns
    -------
    (rh, rw) : tuple of int
        Size after the aspect-preserving resize (short side == resolution, long side rounded).
    (top, left, h, w) : tuple of int
        Centre crop inside the resized image: offset ``floor((size - target) / 2)``.
    """
    if height <= 0 or width <= 0 or resolution <= 0 or multiple <= 0:
        raise ValueError(
            f"sizes must be positive, got {height}x{width}, resolution={resolution}, "
            f"multiple={multiple}"
        )
    if height <= width:
        rh, rw = resolution, max(1, round(width * resolution / height))
    else:
        rh, rw = max(1, round(height * resolution / width)), resolution
    h, w = rh // multiple * multiple, rw // multiple * multiple
    return (rh, rw), ((rh - h) // 2, (rw - w) // 2, h, w)


def _check_rgb(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", type(rgb).__name__)
        raise ValueError(f"rgb must be an (H, W, 3) uint8 array, got {shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be uint8, got {rgb.dtype}")


MAX_ASPECT = 4  # long side / short side of a source image


def _resize_crop(
    arr: np.ndarray, resolution: int, multiple: int, resample: int, name: str
) -> np.ndarray:
    height, width = arr.shape[:2]
    # The short side is resized to ``resolution``, so the long side (and the tokens a ViT
    # attends over) grows with the aspect ratio: bound it before resizing anything.
    if max(height, width) > MAX_ASPECT * min(height, width):
        raise ImageError(
            f"{name}: aspect ratio {max(height, width) / max(1, min(height, width)):.0f}:1 "
            f"({width}x{height} pixels) is beyond the limit {MAX_ASPECT}:1 — crop the image "
            "to a part at most four times as long as it is wide"
        )
    if min(height, width) < multiple:
        raise ImageError(
            f"{name}: image is too small ({width}x{height} pixels); the minimum is "
            f"{multiple}x{multiple} (one {multiple}-px cell) — use a larger image"
        )
    (rh, rw), (top, left, h, w) = crop_geometry(height, width, resolution, multiple)
    if h < multiple or w < multiple:
        raise ImageError(
            f"{name}: image is too small at resolution {resolution}: {width}x{height} gives "
            f"{rw}x{rh}, below the minimum {multiple}x{multiple} (one {multiple}-px cell)"
        )
    if (rh, rw) != (height, width):
        im = Image.fromarray(arr)
        arr = np.asarray(im.resize((rw, rh), resample, reducing_gap=None))
    if (h, w) != (rh, rw):
        arr = arr[top : top + h, left : left + w]
    return arr


def preprocess(
    rgb: np.ndarray, resolution: int, multiple: int = 32, *, name: str = "image"
) -> np.ndarray:
    """Resize so the short side equals ``resolution``, then centre-crop to multiples.

    Bicubic with antialias (PIL ``resize(..., BICUBIC, reducing_gap=None)``); the long side is
    rounded to the nearest pixel; each side is then centre-cropped down to a multiple of
    ``multiple`` (offset ``floor((size - target) / 2)``). An image already at the target
    size is not resampled: a ``resolution``-short-side image whose sides are multiples of
    ``multiple`` is returned unchanged (same values; a view of the input).

    Parameters
    ----------
    rgb : (H, W, 3) uint8 ndarray
    resolution : int
        Target short side, e.g. 448.
    multiple : int
        Output sides are multiples of this (32 = ConvNeXt C5 stride).
    name : str
        For error messages.

    Returns
    -------
    (h, w, 3) uint8 ndarray
        ``h, w`` multiples of ``multiple``; e.g. 1280x853 (W x H) at 448 -> (448, 672, 3).

    Raises
    ------
    ImageError
        The image (or the result) has a side below ``multiple`` pixels.
    """
    _check_rgb(rgb)
    return _resize_crop(rgb, resolution, multiple, Image.BICUBIC, name)


# --------------------------------------------------------------------------- entry-level


def load_image(
    entry: ImageEntry, resolution: int, *, multiple: int = 32, max_pixels: int = 64_000_000
) -> np.ndarray:
    """:func:`image_bytes` -> :func:`decode` -> :func:`preprocess`.

    Returns
    -------
    (h, w, 3) uint8 ndarray
    """
    data = image_bytes(entry)
    name = f"{entry.id} ({entry.origin})"
    rgb = decode(data, name=name, max_pixels=max_pixels)
    return preprocess(rgb, resolution, multiple, name=name)


def _mask_array(data: bytes, name: str) -> np.ndarray:
    """Decode mask bytes to (H, W) uint8 with nonzero = foreground (EXIF applied)."""
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
        im = ImageOps.exif_transpose(im)
    except Exception as exc:  # noqa: BLE001 - any PIL failure becomes an ImageError
        raise ImageError(f"{name}: cannot decode mask: {exc}; give a PNG mask") from exc
    arr = np.asarray(im)
    if arr.ndim == 3:
        channels = 1 if im.mode in ("LA", "PA", "La") else min(arr.shape[2], 3)
        arr = arr[..., :channels].any(axis=2)
    return (arr != 0).astype(np.uint8) * 255


def _source_size(entry: ImageEntry) -> tuple[int, int]:
    """(H, W) of the entry's image after EXIF orientation, from the header only."""
    data = image_bytes(entry)
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            orientation = im.getexif().get(0x0112, 1)
    except Exception as exc:  # noqa: BLE001
        raise ImageError(f"{entry.id} ({entry.origin}): cannot read image header: {exc}") from exc
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return height, width


def load_mask(
    entry: ImageEntry,
    shape: tuple[int, int],
    *,
    resolution: int | None = None,
    multiple: int = 32,
) -> np.ndarray | None:
    """The entry's ground-truth foreground mask in the geometry of :func:`load_image`.

    Parameters
    ----------
    entry : ImageEntry
    shape : (h, w)
        Shape of the preprocessed image the mask must match.
    resolution : int, optional
        The resolution given to :func:`load_image`. When omitted it is inferred from
        ``shape`` as the smallest resolution that gives that shape (exact whenever the
        resolution is a multiple of ``multiple``, e.g. 448).
    multiple : int

    Returns
    -------
    (h, w) bool ndarray or None
        None when the entry has neither ``mask`` nor ``mask_polygons``. Polygons are
        rasterised at the source size; either mask is resized with nearest neighbour, same crop.

    Raises
    ------
    ImageError
        Mask unreadable, or its size differs from the image's.
    """
    if entry.mask is None and entry.mask_polygons is None:
        return None
    img_h, img_w = _source_size(entry)
    if entry.mask is None:
        name = f"{entry.id} mask_polygons"
        mask = rasterize(entry.mask_polygons, (img_h, img_w)).astype(np.uint8) * 255
    else:
        name = f"{entry.id} mask ({entry.mask})"
        try:
            data = entry.mask.read_bytes()
        except OSError as exc:
            raise ImageError(f"{name}: cannot read ({exc.strerror or exc}); check images.{entry.id}.mask") from exc
        mask = _mask_array(data, name)
    if mask.shape != (img_h, img_w):
        raise ImageError(
            f"{name}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is {img_w}x{img_h}; "
            "the mask must have the image's size"
        )
    h, w = int(shape[0]), int(shape[1])
    if resolution is None:
        for candidate in range(min(h, w), min(h, w) + multiple):
            if crop_geometry(img_h, img_w, candidate, multiple)[1][2:] == (h, w):
                resolution = candidate
                break
        else:
            raise ImageError(
                f"{name}: no resolution maps the {img_w}x{img_h} image to shape {(h, w)}; "
                "pass resolution="
            )
    out = _resize_crop(mask, resolution, multiple, Image.NEAREST, name)
    if out.shape != (h, w):
        raise ImageError(
            f"{name}: mask geometry {out.shape[:2]} does not match the image shape {(h, w)}"
        )
    return out > 0
