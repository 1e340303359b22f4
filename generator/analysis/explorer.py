"""Compact per-pixel codes for the in-page cosine-similarity explorer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._threads import on_one_blas_thread
from .pca import _orient_rows, check_fmap, top_eigh

__all__ = ["explorer_codes", "cosine_map"]


def _unit_pixels(fm: np.ndarray) -> np.ndarray:
    c = fm.shape[0]
    x = fm.reshape(c, -1).T.astype(np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    # A zero feature has no direction; it stays zero and so has cosine 0 with everything.
    return x / np.where(norm > 0, norm, 1.0)


@on_one_blas_thread
def explorer_codes(fmaps: Sequence[np.ndarray], dims: int = 64) -> list[np.ndarray]:
    """Low-dimensional codes whose dot products approximate pixel cosines.

    Parameters
    ----------
    fmaps : sequence of (C, H_i, W_i) arrays, finite
        The images of one group for one model (same C).
    dims : int
        Code length, >= 1; values above C are reduced to C.

    Returns
    -------
    list of (H_i, W_i, dims) ndarray of float16
        Every pixel's feature is L2-normalised (zero features stay zero), then
        projected onto the top `dims` eigenvectors of the pooled UNCENTRED
        C x C Gram matrix (= top right singular vectors of the stacked unit
        features; exact, float64). Centring is skipped because the explorer
        needs dot products, not variances. When the features span at most
        `dims` dimensions, code dot products equal the cosines up to float16
        rounding. Eigenvector signs: largest-|entry| positive.
    """
    if isinstance(dims, bool) or not isinstance(dims, (int, np.integer)) or dims < 1:
        raise ValueError(f"dims must be an integer >= 1, got {dims!r}")
    fms = [check_fmap(f, f"fmaps[{i}]") for i, f in enumerate(fmaps)]
    if not fms:
        raise ValueError("fmaps must hold at least one map, got 0")
    c = fms[0].shape[0]
    for i, f in enumerate(fms):
        if f.shape[0] != c:
            raise ValueError(f"fmaps[{i}] has {f.shape[0]} channels, fmaps[0] has {c}")
    d = min(int(dims), c)
    gram = np.zeros((c, c), dtype=np.float64)
    for f in fms:
        u = _unit_pixels(f)
        gram += u.T @ u
    _, vt = top_eigh(gram, d)
    basis = _orient_rows(vt)
    return [(_unit_pixels(f) @ basis.T).reshape(f.shape[1], f.shape[2], d).astype(np.float16)
            for f in fms]


def cosine_map(codes: np.ndarray, y: int, x: int, other: np.ndarray | None = None) -> np.ndarray:
    """Cosine similarity between one probe position and every position of a map.

    Reference for the browser implementation.

    Parameters
    ----------
    codes : (H, W, d) array_like
        Codes of the probed image (from :func:`explorer_codes`).
    y, x : int
        Probe row and column, ``0 <= y < H``, ``0 <= x < W``.
    other : (H2, W2, d) array_like, optional
        Codes to compare against; default `codes`.

    Returns
    -------
    (H2, W2) ndarray of float32 in [-1, 1]
        Computed in float32. Positions with a zero code (or a zero probe) get 0.
    """
    a = np.asarray(codes)
    if a.ndim != 3 or a.size == 0:
        raise ValueError(f"codes must be (H, W, d), got shape {a.shape}")
    h, w, d = a.shape
    for name, v, lim in (("y", y, h), ("x", x, w)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < lim:
            raise ValueError(f"{name} must be an integer in [0, {lim}), got {v!r}")
    b = a if other is None else np.asarray(other)
    if b.ndim != 3 or b.shape[2] != d:
        raise ValueError(f"other must be (H2, W2, {d}), got shape {b.shape}")
    probe = a[y, x].astype(np.float32)
    bb = b.astype(np.float32)
    for name, arr in (("codes", a), ("other", b)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite, got "
                             f"{arr.size - int(np.count_nonzero(np.isfinite(arr)))} non-finite values")
    dots = bb @ probe
    norms = np.linalg.norm(bb, axis=2) * np.linalg.norm(probe)
    out = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    return np.clip(out, -1.0, 1.0).astype(np.float32)
