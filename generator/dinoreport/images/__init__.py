"""The image set, one module per job: manifest -> entries -> bytes -> decoded RGB arrays -> model input size.

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

Modules: ``model`` (ImageEntry, ImageSet, ImageError), ``manifest`` (manifest schema, folder
scan), ``fetching`` (bytes of an entry, downloads),
``decoding`` (bytes -> RGB), ``geometry`` (resize and crop), ``masks`` (an entry's preprocessed
pixels and reference mask), ``store`` (preprocessed pixels on disk during a build, read on
demand). The public names are imported here.
"""
from __future__ import annotations

from .model import IMAGE_SUFFIXES, ImageEntry, ImageError, ImageSet
from .manifest import load_manifest, scan_folder
from ..cachedir import cache_dir
from .fetching import available, cached_path, fetch, file_problem, image_bytes
from .decoding import decode, to_rgb
from .geometry import crop_geometry, preprocess
from .masks import load_image, load_mask
from .store import ImageStore

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageEntry",
    "ImageError",
    "ImageSet",
    "ImageStore",
    "available",
    "cache_dir",
    "cached_path",
    "crop_geometry",
    "decode",
    "fetch",
    "file_problem",
    "image_bytes",
    "load_image",
    "load_manifest",
    "load_mask",
    "preprocess",
    "scan_folder",
    "to_rgb",
]
