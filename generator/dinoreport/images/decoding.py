"""Bytes -> (H, W, 3) uint8 RGB: EXIF, any PIL mode, size limits."""
from __future__ import annotations

import io
import struct
import threading
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .model import ImageError


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
