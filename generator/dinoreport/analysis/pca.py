"""Within-image PCA of one feature map, and the min-max scaling used to colour it.

All functions are pure: arrays in, arrays/dataclasses out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._threads import on_one_blas_thread
from .checks import check_fmap, check_k
from .device import analysis_device, to_device, to_numpy
from .linalg import rounding_floor, top_components, top_eigh, top_eigh_torch

__all__ = ["PCAResult", "pca_decompose", "pca_within", "minmax", "to_rgb", "whiten_scale", "sigmoid_rgb"]


def _pca_decompose_torch(x: np.ndarray, k: int, floor: float, dev) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`pca_decompose` with the centring, the smaller scatter matrix and its eigh on ``dev``."""
    import torch

    n, d = x.shape
    t = to_device(x, dev)
    mean = t.mean(dim=0)
    xc = t - mean
    total = float((xc * xc).sum())
    if n <= d:
        ev, u = top_eigh_torch(xc @ xc.T, k)
        vt = torch.zeros((ev.shape[0], d), dtype=torch.float64, device=dev)
        nz = ev > 0
        vt[nz] = (u[nz] @ xc) / ev[nz].sqrt()[:, None]
        norms = vt.norm(dim=1, keepdim=True)
        vt = torch.where(norms > 0, vt / norms.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
    else:
        ev, vt = top_eigh_torch(xc.T @ xc, k)
    comps, ratio = top_components(to_numpy(ev), to_numpy(vt), k, d, floor, total=total)
    return to_numpy(mean), comps, ratio


@on_one_blas_thread
def pca_decompose(x: np.ndarray, k: int, floor: float = 0.0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact PCA of a float64 (N, D) matrix: (mean, components, ratio).

    Top-k eigenpairs of the smaller scatter matrix: the N x N Gram matrix when N <= D
    (components recovered as X^T u / sqrt(lambda)), else the D x D scatter matrix.
    Directions with scatter <= `floor` are reported absent. With a GPU
    (:func:`analysis_device`) the work runs there, in float64 as here.
    """
    dev = analysis_device()
    if dev is not None:
        return _pca_decompose_torch(x, k, floor, dev)
    n, d = x.shape
    mean = x.mean(axis=0)
    xc = x - mean
    total = float(np.einsum("ij,ij->", xc, xc))
    if n <= d:
        ev, u = top_eigh(xc @ xc.T, k)
        vt = np.zeros((ev.size, d))
        nz = ev > 0
        vt[nz] = (u[nz] @ xc) / np.sqrt(ev[nz])[:, None]
        # Renormalise: rounding in X^T u leaves rows a hair off unit length.
        norms = np.linalg.norm(vt, axis=1, keepdims=True)
        vt = np.divide(vt, norms, out=np.zeros_like(vt), where=norms > 0)
    else:
        ev, vt = top_eigh(xc.T @ xc, k)
    comps, ratio = top_components(ev, vt, k, d, floor, total=total)
    return mean, comps, ratio


@dataclass(frozen=True)
class PCAResult:
    """Within-image PCA of one feature map.

    Attributes
    ----------
    proj : (k, H, W) ndarray of float32
        Projection of every centred pixel onto each component (feature units).
    explained_variance_ratio : (k,) ndarray of float64
        Share of the total variance (sum over all channels) per component; 0 for
        components that do not exist (rank < k).
    components : (k, C) ndarray of float64
        Unit principal directions (rows), or zero rows where rank < k. Sign rule:
        the entry of largest absolute value is positive.
    mean : (C,) ndarray of float64
        Per-channel mean over the H * W pixels.
    """

    proj: np.ndarray
    explained_variance_ratio: np.ndarray
    components: np.ndarray
    mean: np.ndarray


@on_one_blas_thread
def pca_within(fmap: np.ndarray, k: int = 3, whiten: bool = False) -> PCAResult:
    """Exact PCA of one feature map, treating its pixels as samples.

    Parameters
    ----------
    fmap : (C, H, W) array_like, finite
        Feature map; pixels become the rows of an (H * W, C) matrix.
    k : int
        Number of components, >= 1. May exceed the rank: missing components
        are zero rows with ratio 0 and a zero projection. A direction whose
        variance is within float32 storage rounding of the input counts as
        missing (see :func:`rounding_floor`).
    whiten : bool
        Divide each projection by the standard deviation of its component over the map's
        pixels (``ddof=1``, as ``sklearn.decomposition.PCA(whiten=True)``), so every component
        has unit variance; absent components stay zero. Colour whitened projections with
        :func:`sigmoid_rgb`, as Meta's DINOv3 PCA notebook does.

    Returns
    -------
    PCAResult
        See :class:`PCAResult` (``proj`` in standard deviations when whitened). Matches ``sklearn.decomposition.PCA(k,
        svd_solver='full')`` up to the sign of each component. A constant map
        gives all-zero components, ratios and projections.

    Raises
    ------
    ValueError
        From :func:`check_fmap`, or if `k` is not an integer >= 1.
    """
    fm = check_fmap(fmap)
    k = check_k(k)
    c, h, w = fm.shape
    x = fm.reshape(c, h * w).T.astype(np.float64)
    floor = rounding_floor(h * w, c, float(np.abs(fm).max()), np.dtype(np.float32))
    mean, comps, ratio = pca_decompose(x, k, floor)
    proj = ((x - mean) @ comps.T).T
    if whiten:
        xc = x - mean
        proj = proj * whiten_scale(ratio, float(np.einsum("ij,ij->", xc, xc)), h * w)[:, None]
    proj = proj.reshape(k, h, w).astype(np.float32)
    return PCAResult(proj=proj, explained_variance_ratio=ratio, components=comps, mean=mean)


def whiten_scale(ratio: np.ndarray, scatter: float, n_rows: int) -> np.ndarray:
    """Per-component factors that give projections unit variance.

    Parameters
    ----------
    ratio : (k,) explained variance ratios (0 for absent components)
    scatter : float, total sum of squares about the mean of the fitted rows
    n_rows : int, number of fitted rows

    Returns
    -------
    (k,) ndarray of float64
        ``1 / sqrt(ratio * scatter / (n_rows - 1))``; 0 where the component is absent (or
        there is a single row), so its projection stays zero.
    """
    var = np.asarray(ratio, dtype=np.float64) * float(scatter) / max(int(n_rows) - 1, 1)
    return np.divide(1.0, np.sqrt(var), out=np.zeros_like(var), where=var > 0)


def sigmoid_rgb(proj: np.ndarray, gain: float = 2.0) -> np.ndarray:
    """Colour the first three *whitened* projections as Meta's DINOv3 PCA notebook does:
    ``sigmoid(gain * z)`` per channel, one fixed mapping for every image and pixel, so colours
    compare across images without a min-max that a few extreme cells would set.

    Parameters
    ----------
    proj : (k >= 3, H, W) array_like, finite or NaN (NaN stays NaN: drawn grey)
        Projections in standard deviations (``pca_within(..., whiten=True)`` or
        ``project(..., whiten=True)``).
    gain : float > 0

    Returns
    -------
    (H, W, 3) ndarray of float32 in [0, 1]; a projection of 0 is 0.5.
    """
    arr = np.asarray(proj, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[0] < 3:
        raise ValueError(f"proj must be (k >= 3, H, W), got shape {arr.shape}")
    if not gain > 0:
        raise ValueError(f"gain must be > 0, got {gain!r}")
    z = np.moveaxis(arr[:3], 0, -1)
    return np.ascontiguousarray(1.0 / (1.0 + np.exp(-gain * z)), dtype=np.float32)


def minmax(x: np.ndarray, axis_channels: bool = True) -> np.ndarray:
    """Min-max scale to [0, 1].

    Parameters
    ----------
    x : (k, H, W) array_like when `axis_channels`, else any non-empty shape
        Values to scale. NaN marks a missing value: it is ignored when finding
        the range and stays NaN in the output. +-inf is an error.
    axis_channels : bool
        True: each channel ``x[i]`` is scaled by its own min and max.
        False: one min and max over the whole array.

    Returns
    -------
    ndarray of float32, same shape as `x`
        ``(x - min) / (max - min)``. A constant (or all-NaN but for one value)
        channel maps to 0.5; an all-NaN channel stays NaN.

    Raises
    ------
    ValueError
        If the shape is wrong, the array is empty, or it holds +-inf.
    """
    arr = np.asarray(x)
    if axis_channels and arr.ndim != 3:
        raise ValueError(f"minmax with axis_channels=True needs (k, H, W), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"minmax needs a non-empty array, got shape {arr.shape}")
    a = arr.astype(np.float64)
    n_inf = int(np.count_nonzero(np.isinf(a)))
    if n_inf:
        raise ValueError(f"minmax input must not hold inf, got {n_inf} infinite values")
    flat = a.reshape(a.shape[0], -1) if axis_channels else a.reshape(1, -1)
    valid = ~np.isnan(flat)
    has = valid.any(axis=1)
    lo = np.where(has, np.min(np.where(valid, flat, np.inf), axis=1), 0.0)
    hi = np.where(has, np.max(np.where(valid, flat, -np.inf), axis=1), 0.0)
    span = hi - lo
    const = span == 0
    # Constant channels would divide by zero; mid-grey says "no contrast".
    scaled = (flat - lo[:, None]) / np.where(const, 1.0, span)[:, None]
    scaled[const] = 0.5
    scaled[~valid] = np.nan
    return np.clip(scaled, 0.0, 1.0).reshape(arr.shape).astype(np.float32)


def to_rgb(proj: np.ndarray) -> np.ndarray:
    """Colour the first three projections of one image.

    Parameters
    ----------
    proj : (k, H, W) array_like with k >= 3
        E.g. ``PCAResult.proj``.

    Returns
    -------
    (H, W, 3) ndarray of float32 in [0, 1]
        Channels 0, 1, 2 -> R, G, B, each min-max scaled over this image
        (constant channel -> 0.5).

    Raises
    ------
    ValueError
        If `proj` is not 3-D with at least 3 channels, or holds inf.
    """
    arr = np.asarray(proj)
    if arr.ndim != 3 or arr.shape[0] < 3:
        raise ValueError(f"proj must be (k >= 3, H, W), got shape {arr.shape}")
    return np.ascontiguousarray(np.moveaxis(minmax(arr[:3]), 0, -1))
