"""Entry-level loading: an entry's preprocessed pixels and its reference mask."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

from ..refmasks import rasterize

from .decoding import decode
from .fetching import image_bytes
from .geometry import _resize_crop, crop_geometry, preprocess
from .model import ImageEntry, ImageError


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
