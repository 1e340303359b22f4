"""The manifest schema and the folder scan: TOML or a folder -> :class:`ImageSet`."""
from __future__ import annotations

import re
import tomllib
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..refmasks import parse_polygons
from ..suggest import closest
from ..textfile import NotUTF8, read_utf8

from .model import IMAGE_SUFFIXES, ImageEntry, ImageError, ImageSet, _ID_RE, _PACKAGES, _SHA_RE, _make_set


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
    close = closest(key, valid, n=1, cutoff=0.6)
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
        text = read_utf8(path)  # a byte order mark is accepted, UTF-16 is not
    except OSError as exc:
        raise ImageError(f"{source}: cannot read the image manifest ({exc.strerror or exc})") from exc
    except NotUTF8 as exc:
        raise ImageError(f"{source}: the image manifest is not UTF-8 text ({exc}); save it as UTF-8") from None
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
