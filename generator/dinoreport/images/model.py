"""The data model of an image set: entries, sets and the one error type."""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..refmasks import Polygons


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
        (:mod:`dinoreport.refmasks`); at most one of ``mask`` and ``mask_polygons``.
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
