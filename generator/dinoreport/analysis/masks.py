"""Foreground masks from the within-image PC1, and mask comparison."""

from __future__ import annotations

import numpy as np

__all__ = ["orient_by_border", "foreground_mask", "mask_iou", "resize_nearest"]


def _check_map2d(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty (H, W) array, got shape {arr.shape}")
    return arr


def _check_ring(ring: int) -> int:
    if isinstance(ring, bool) or not isinstance(ring, (int, np.integer)) or ring < 1:
        raise ValueError(f"ring must be an integer >= 1, got {ring!r}")
    return int(ring)


def border_ring(shape: tuple[int, int], ring: int = 1) -> np.ndarray:
    """Bool (H, W) mask of the outer `ring` cells on all four sides.

    When H <= 2 * ring or W <= 2 * ring the ring covers every cell, so the
    whole map counts as border.
    """
    h, w = shape
    rows = np.arange(h)
    cols = np.arange(w)
    r = (rows < ring) | (rows >= h - ring)
    c = (cols < ring) | (cols >= w - ring)
    return r[:, None] | c[None, :]


def orient_by_border(pc1: np.ndarray, ring: int = 1) -> tuple[np.ndarray, bool]:
    """Choose the sign of a PC1 map so that the image border reads as background.

    Parameters
    ----------
    pc1 : (H, W) array_like, finite
        Projection onto the first principal component (any float dtype).
    ring : int
        Width of the border ring in cells, >= 1. The ring is every cell within
        `ring` cells of an edge; if H <= 2 * ring or W <= 2 * ring that is the
        whole map.

    Returns
    -------
    oriented : (H, W) ndarray of float32
        ``pc1`` or ``-pc1`` such that the mean over the ring is <= 0.
    flipped : bool
        True if the sign was flipped. A ring mean of exactly 0 is left as is.

    Raises
    ------
    ValueError
        If `pc1` is not a non-empty 2-D finite array or `ring` < 1.
    """
    arr = _check_map2d(pc1, "pc1").astype(np.float32)
    ring = _check_ring(ring)
    bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise ValueError(f"pc1 must be finite, got {bad} non-finite values")
    border_mean = float(arr[border_ring(arr.shape, ring)].astype(np.float64).mean())
    if border_mean > 0.0:
        return -arr, True
    return arr, False


def foreground_mask(pc1: np.ndarray, threshold: float = 0.0, ring: int = 1) -> np.ndarray:
    """Foreground = oriented PC1 above a threshold.

    Parameters
    ----------
    pc1 : (H, W) array_like, finite
        Projection onto the within-image PC1 of the last stage.
    threshold : float
        In the units of the oriented projection (feature units along the unit
        PC1 direction, relative to the image mean); 0 splits at the mean.
    ring : int
        Border ring width passed to :func:`orient_by_border`.

    Returns
    -------
    (H, W) ndarray of bool
        True where ``oriented > threshold``.
    """
    thr = float(threshold)
    if not np.isfinite(thr):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    oriented, _ = orient_by_border(pc1, ring)
    return oriented > thr


def resize_nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D array (pixel-centre aligned).

    Parameters
    ----------
    mask : (H, W) array_like, any dtype
    shape : (h, w) of positive ints

    Returns
    -------
    (h, w) ndarray, same dtype as `mask`
        Output cell (i, j) takes input cell ``(floor((i + 0.5) * H / h),
        floor((j + 0.5) * W / w))``, so integer upscaling repeats cells and
        integer downscaling picks the cell just past each block's centre.
    """
    arr = _check_map2d(mask, "mask")
    if (len(tuple(shape)) != 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer))
                                     or s < 1 for s in shape)):
        raise ValueError(f"shape must be two positive ints, got {shape!r}")
    h, w = int(shape[0]), int(shape[1])
    hi, wi = arr.shape
    # Integer arithmetic avoids float rounding at exact block boundaries.
    rows = np.minimum(((2 * np.arange(h) + 1) * hi) // (2 * h), hi - 1)
    cols = np.minimum(((2 * np.arange(w) + 1) * wi) // (2 * w), wi - 1)
    return arr[rows[:, None], cols[None, :]]


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks.

    Parameters
    ----------
    a, b : (H, W) and (h, w) bool arrays
        If shapes differ, the mask with fewer cells (ties: `b`) is resized to
        the other's shape with :func:`resize_nearest`.

    Returns
    -------
    float in [0, 1]
        |a & b| / |a | b|; 1.0 when both are empty.
    """
    ma = _check_map2d(a, "a")
    mb = _check_map2d(b, "b")
    for name, m in (("a", ma), ("b", mb)):
        if m.dtype != np.bool_:
            raise ValueError(f"{name} must be a bool mask, got dtype {m.dtype}")
    if ma.shape != mb.shape:
        if ma.size > mb.size or (ma.size == mb.size):
            mb = resize_nearest(mb, ma.shape)
        else:
            ma = resize_nearest(ma, mb.shape)
    union = int(np.count_nonzero(ma | mb))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(ma & mb)) / union


def chance_iou(a: np.ndarray, b: np.ndarray) -> float:
    """The IoU two masks would have by chance: independent masks with their foreground shares.

    Parameters
    ----------
    a, b : (H, W) and (h, w) bool arrays
        Brought to one grid as in :func:`mask_iou`.

    Returns
    -------
    float in [0, 1]
        ``p q / (p + q - p q)`` for foreground shares p of `a` and q of `b`: the expected
        intersection over the expected union when each cell is foreground in `a` with
        probability p and, independently, in `b` with probability q. 1.0 when both are empty
        (as :func:`mask_iou` scores two empty masks).
    """
    ma = _check_map2d(a, "a")
    mb = _check_map2d(b, "b")
    for name, m in (("a", ma), ("b", mb)):
        if m.dtype != np.bool_:
            raise ValueError(f"{name} must be a bool mask, got dtype {m.dtype}")
    # Shares are taken on the grid mask_iou compares on, so the two numbers are comparable.
    if ma.shape != mb.shape:
        if ma.size >= mb.size:
            mb = resize_nearest(mb, ma.shape)
        else:
            ma = resize_nearest(ma, mb.shape)
    p, q = float(ma.mean()), float(mb.mean())
    union = p + q - p * q
    return 1.0 if union == 0 else p * q / union
