"""Checks of the arrays the analyses take, shared by every module of this package."""
from __future__ import annotations

import numpy as np

__all__ = ["check_fmap", "check_k"]


def check_fmap(x: np.ndarray, name: str = "fmap") -> np.ndarray:
    """Validate a single feature map and return it as float32.

    Parameters
    ----------
    x : (C, H, W) array_like, real
        One image's feature map: C channels on an H x W grid.
    name : str
        Name used in error messages.

    Returns
    -------
    (C, H, W) ndarray of float32
        The same values (a view when `x` is already float32).

    Raises
    ------
    ValueError
        If `x` is not 3-D, has C == 0 or H * W == 0, is not real-valued,
        or holds NaN/inf (the message gives how many).
    """
    arr = np.asarray(x)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be (C, H, W), got shape {arr.shape}")
    c, h, w = arr.shape
    if c < 1 or h * w < 1:
        raise ValueError(f"{name} must have C >= 1 and H * W >= 1, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
            or arr.dtype == np.bool_):
        raise ValueError(f"{name} must be real-valued, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise ValueError(f"{name} must be finite, got {bad} non-finite values of {arr.size}")
    return arr


def check_k(k: int) -> int:
    """``k`` (a count of components or parts) as an int; raises ValueError unless an integer >= 1."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    return int(k)
