"""Compact per-pixel codes for the in-page cosine-similarity explorer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._threads import on_one_blas_thread
from .checks import check_fmap
from .linalg import orient_rows, top_eigh

__all__ = ["explorer_codes", "explorer_int8", "requantize", "stage_dims", "cosine_error", "cosine_map"]


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
    basis = _basis(fms, min(int(dims), c))
    d = basis.shape[0]
    return [(_unit_pixels(f) @ basis.T).reshape(f.shape[1], f.shape[2], d).astype(np.float16)
            for f in fms]


def _basis(fms: list[np.ndarray], d: int) -> np.ndarray:
    """(d, C) top eigenvectors of the pooled uncentred Gram matrix of the unit features."""
    c = fms[0].shape[0]
    gram = np.zeros((c, c), dtype=np.float64)
    for f in fms:
        u = _unit_pixels(f)
        gram += u.T @ u
    _, vt = top_eigh(gram, d)
    return orient_rows(vt)


def explorer_int8(fmaps: Sequence[np.ndarray], dims: int) -> list[np.ndarray]:
    """int8 codes whose normalised dot products approximate pixel cosines.

    Parameters
    ----------
    fmaps : sequence of (C, H_i, W_i) arrays, finite
        The images of one group for one model and stage (same C).
    dims : int
        Code length, >= 1; values above C are reduced to C.

    Returns
    -------
    list of (H_i, W_i, d) ndarray of int8
        The codes of :func:`explorer_codes` (unit features projected on the group's top
        ``d`` uncentred principal directions), each vector scaled so its largest entry is
        +-127 and rounded. The scale is not kept: the reader L2-normalises every vector, so
        only directions matter. Zero features give zero codes.
    """
    if isinstance(dims, bool) or not isinstance(dims, (int, np.integer)) or dims < 1:
        raise ValueError(f"dims must be an integer >= 1, got {dims!r}")
    fms = [check_fmap(f, f"fmaps[{i}]") for i, f in enumerate(fmaps)]
    if not fms:
        raise ValueError("fmaps must hold at least one map, got 0")
    for i, f in enumerate(fms):
        if f.shape[0] != fms[0].shape[0]:
            raise ValueError(f"fmaps[{i}] has {f.shape[0]} channels, fmaps[0] has {fms[0].shape[0]}")
    d = min(int(dims), fms[0].shape[0])
    basis = _basis(fms, d)
    out = []
    for f in fms:
        z = _unit_pixels(f) @ basis.T
        peak = np.abs(z).max(axis=1, keepdims=True)
        q = np.rint(z / np.where(peak > 0, peak, 1.0) * 127.0).astype(np.int8)
        out.append(q.reshape(f.shape[1], f.shape[2], d))
    return out


def requantize(codes: np.ndarray, bits: int, dims: int | None = None) -> np.ndarray:
    """int8 codes rounded to fewer levels (and cut to fewer dimensions), for a lighter copy of
    the explorer's data.

    Parameters
    ----------
    codes : (..., d) int8 array
        Codes of :func:`explorer_int8` (each vector's largest entry is +-127, or all zero).
    bits : int in [2, 8]
        Each vector is rescaled so its largest entry is +-(2**(bits-1) - 1) and rounded; 8
        with no cut returns the codes unchanged.
    dims : int >= 1, optional
        Keep only the first ``dims`` entries (the group's leading principal directions come
        first) before rescaling; None or ``dims >= d`` keeps them all.

    Returns
    -------
    (..., min(d, dims)) int8 array with entries in [-(2**(bits-1) - 1), 2**(bits-1) - 1]
        Directions only matter (the reader normalises), so no scale is kept. Zero vectors stay
        zero. Deterministic: the page renderer recomputes exactly what the analysis measured.
    """
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 8:
        raise ValueError(f"bits must be an integer in [2, 8], got {bits!r}")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, (int, np.integer)) or dims < 1):
        raise ValueError(f"dims must be an integer >= 1 or None, got {dims!r}")
    q = np.asarray(codes)
    if q.dtype != np.int8:
        raise ValueError(f"codes must be int8, got {q.dtype}")
    cut = dims is not None and dims < q.shape[-1]
    if bits == 8 and not cut:
        return q
    if cut:
        q = q[..., :dims]
    top = 2 ** (bits - 1) - 1
    x = q.astype(np.float64)
    peak = np.abs(x).max(axis=-1, keepdims=True)
    return np.rint(x / np.where(peak > 0, peak, 1.0) * top).astype(np.int8)


def stage_dims(positions: Sequence[int], channels: Sequence[int], dims: int, budget_bytes: int) -> list[int]:
    """Code length per stage so that one image's int8 codes of all stages fit a byte budget.

    Parameters
    ----------
    positions : per stage, the largest number of positions (h * w) of any image.
    channels : per stage, the feature channels C (a code never has more).
    dims : the longest code wanted, >= 1.
    budget_bytes : bytes of base64 text allowed for one image, all stages together.

    Returns
    -------
    list of int, per stage, each in [1, min(dims, C)]
        Every stage gets the full length when the budget allows. Otherwise the stage with the
        most positions (the finest grid, which costs most) is cut first, to what is left after
        the smaller stages take their full length; only if that would go below one dimension
        are the smaller stages cut too, evenly. Raises ValueError when even one dimension per
        position would not fit.
    """
    n = [int(p) for p in positions]
    cap = [max(1, min(int(dims), int(c))) for c in channels]
    raw = budget_bytes * 3 // 4 - 4 * len(n)  # base64: 4 characters per 3 bytes, padding slack
    if sum(n) > raw:
        raise ValueError(f"{sum(n)} positions do not fit {budget_bytes} bytes even at one dimension each")
    out = [0] * len(n)
    left = raw
    order = sorted(range(len(n)), key=lambda i: -n[i])
    for k, i in enumerate(order):
        smaller = order[k + 1:]
        full_rest = sum(n[j] * cap[j] for j in smaller)
        min_rest = sum(n[j] for j in smaller)
        # leave at least one dimension per position for the smaller stages
        out[i] = max(1, min(cap[i], (left - min(full_rest, left - n[i])) // n[i], (left - min_rest) // n[i]))
        left -= out[i] * n[i]
    return out


def cosine_error(fmaps: Sequence[np.ndarray], codes: Sequence[np.ndarray], pairs: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Max and mean absolute error of code cosines against exact feature cosines.

    Parameters
    ----------
    fmaps : sequence of (C, H_i, W_i) arrays, the exact features.
    codes : sequence of (H_i, W_i, d) arrays, their codes (any dtype; normalised here).
    pairs : number of position pairs drawn (seeded, uniformly over all positions of all maps).

    Returns
    -------
    (max_abs, mean_abs) : floats, in cosine units.
    """
    sizes = [int(np.prod(np.shape(f)[1:])) for f in fmaps]
    approx = np.concatenate([np.asarray(c, dtype=np.float64).reshape(-1, c.shape[-1]) for c in codes])
    if sum(sizes) != approx.shape[0]:
        raise ValueError(f"fmaps have {sum(sizes)} positions, codes {approx.shape[0]}")
    norm = np.linalg.norm(approx, axis=1, keepdims=True)
    approx = approx / np.where(norm > 0, norm, 1.0)
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, approx.shape[0], size=(2, pairs))
    # Only the drawn positions are normalised, not every position of every map.
    drawn = np.unique(np.concatenate([a, b]))
    starts = np.cumsum([0] + sizes)
    rows = []
    for k, f in enumerate(fmaps):
        local = drawn[(drawn >= starts[k]) & (drawn < starts[k + 1])] - starts[k]
        fm = np.asarray(f)
        rows.append(_unit_pixels(fm.reshape(fm.shape[0], -1)[:, local]))
    exact = np.concatenate(rows)
    ia, ib = np.searchsorted(drawn, a), np.searchsorted(drawn, b)
    err = np.abs((exact[ia] * exact[ib]).sum(1) - (approx[a] * approx[b]).sum(1))
    return float(err.max()), float(err.mean())


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
