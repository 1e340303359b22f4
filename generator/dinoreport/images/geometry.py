"""Resize and crop to the model input size (short side = resolution, sides a multiple of 32)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from .model import ImageError


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
