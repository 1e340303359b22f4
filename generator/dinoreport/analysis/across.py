"""Across-image PCA over a group of images, streamed, and joint colour scaling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._threads import on_one_blas_thread
from .device import analysis_device, to_device, to_numpy
from .checks import check_fmap, check_k
from .linalg import rounding_floor, top_components, top_eigh
from .pca import whiten_scale

__all__ = ["PCAFit", "CovarianceAccumulator", "pixels", "project", "joint_rgb", "joint_scale"]


@dataclass(frozen=True)
class PCAFit:
    """Principal components fitted on pooled pixels.

    Attributes
    ----------
    mean : (D,) ndarray of float64
    components : (k, D) ndarray of float64
        Unit rows, largest-|entry| positive; zero rows where rank < k.
    explained_variance_ratio : (k,) ndarray of float64
        Share of the total variance; 0 for absent components.
    n_pixels : int
        Number of rows the fit saw.
    scatter : float
        Total sum of squares about the mean of those rows (what the ratios are shares of);
        NaN when not known, e.g. a fit built by hand. ``project(..., whiten=True)`` needs it.
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray
    n_pixels: int
    scatter: float = float("nan")


class CovarianceAccumulator:
    """Streaming mean and covariance of D-dimensional rows.

    Memory is O(D^2) whatever the number of updates. Sums are float64 and
    taken about a shift (the first non-empty chunk's mean), so a large common
    offset does not cancel catastrophically. Results depend on the update
    order only through float64 rounding.

    Parameters
    ----------
    dim : int
        Row length D, >= 1.
    """

    def __init__(self, dim: int) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
        self._dim = int(dim)
        self._n = 0
        self._shift: np.ndarray | None = None
        self._s1 = np.zeros(self._dim, dtype=np.float64)
        self._s2 = np.zeros((self._dim, self._dim), dtype=np.float64)
        self._floor = 0.0

    @property
    def dim(self) -> int:
        """Row length D."""
        return self._dim

    @property
    def n(self) -> int:
        """Number of rows seen so far."""
        return self._n

    @on_one_blas_thread
    def update(self, x: np.ndarray) -> None:
        """Add rows.

        Parameters
        ----------
        x : (N, D) array_like of real numbers, finite; N may be 0.

        Raises
        ------
        ValueError
            On a wrong shape or non-finite values (state is left unchanged).
        """
        arr = np.asarray(x)
        if arr.ndim != 2 or arr.shape[1] != self._dim:
            raise ValueError(f"x must be (N, {self._dim}), got shape {arr.shape}")
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"x must be real-valued, got dtype {arr.dtype}")
        if arr.shape[0] == 0:
            return
        x64 = arr.astype(np.float64)
        bad = x64.size - int(np.count_nonzero(np.isfinite(x64)))
        if bad:
            raise ValueError(f"x must be finite, got {bad} non-finite values")
        self._floor += rounding_floor(arr.shape[0], self._dim, float(np.abs(x64).max()), arr.dtype)
        if self._shift is None:
            self._shift = x64.mean(axis=0)
        x64 -= self._shift
        self._s1 += x64.sum(axis=0)
        dev = analysis_device()
        if dev is not None:  # the D x D product on the GPU, one D x D copy back
            t = to_device(x64, dev)
            self._s2 += to_numpy(t.T @ t)
        else:
            self._s2 += x64.T @ x64
        self._n += arr.shape[0]

    def mean(self) -> np.ndarray:
        """(D,) float64 mean of all rows seen."""
        if self._n == 0:
            raise ValueError("no rows: update() was never given a non-empty x")
        return self._shift + self._s1 / self._n

    def covariance(self, ddof: int = 1) -> np.ndarray:
        """(D, D) float64 covariance, as ``np.cov(pooled, rowvar=False, ddof=ddof)``.

        Raises ValueError when fewer than ``ddof + 1`` rows were seen.
        """
        if self._n <= ddof:
            raise ValueError(f"covariance with ddof={ddof} needs more than {ddof} rows, got {self._n}")
        return self._scatter() / (self._n - ddof)

    def _scatter(self) -> np.ndarray:
        sc = self._s2 - np.outer(self._s1, self._s1) / self._n
        return (sc + sc.T) / 2.0

    @on_one_blas_thread
    def fit(self, k: int = 3) -> PCAFit:
        """Exact PCA (eigh of the D x D covariance) of all rows seen.

        Parameters
        ----------
        k : int
            Number of components, >= 1; rank < k gives zero rows with ratio 0
            (directions whose scatter is within the input dtype's storage
            rounding count as absent).

        Returns
        -------
        PCAFit

        Raises
        ------
        ValueError
            If no rows were seen or `k` < 1.
        """
        k = check_k(k)
        if self._n == 0:
            raise ValueError("cannot fit PCA on 0 rows: update() was never given a non-empty x")
        scatter = self._scatter()
        w, vt = top_eigh(scatter, k)
        total = float(np.clip(np.trace(scatter), 0.0, None))
        comps, ratio = top_components(w, vt, k, self._dim, self._floor, total=total)
        return PCAFit(mean=self.mean(), components=comps, explained_variance_ratio=ratio,
                      n_pixels=self._n, scatter=total)


def _check_mask(mask: np.ndarray, hw: tuple[int, int], name: str = "mask") -> np.ndarray:
    m = np.asarray(mask)
    if m.dtype != np.bool_:
        raise ValueError(f"{name} must be bool, got dtype {m.dtype}")
    if m.shape != hw:
        raise ValueError(f"{name} must have shape {hw} to match the map, got {m.shape}")
    return m


def pixels(fmap: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Pixels of a feature map as rows.

    Parameters
    ----------
    fmap : (C, H, W) array_like, finite
    mask : (H, W) bool array, optional
        Keep only True (foreground) pixels.

    Returns
    -------
    (N, C) ndarray of float32
        Row-major pixel order; N = H * W, or the number of True cells.
    """
    fm = check_fmap(fmap)
    c, h, w = fm.shape
    rows = fm.reshape(c, h * w).T
    if mask is not None:
        rows = rows[_check_mask(mask, (h, w)).reshape(-1)]
    return np.ascontiguousarray(rows, dtype=np.float32)


@on_one_blas_thread
def project(fit: PCAFit, fmap: np.ndarray, whiten: bool = False) -> np.ndarray:
    """Project every pixel of a map onto fitted components.

    Parameters
    ----------
    fit : PCAFit with D == C
    fmap : (C, H, W) array_like, finite
    whiten : bool
        Divide each projection by its component's standard deviation over the fitted pixels
        (``ddof=1``, as ``sklearn.decomposition.PCA(whiten=True)``); absent components stay 0.

    Returns
    -------
    (k, H, W) ndarray of float32
        ``(pixel - fit.mean) . component`` in feature units, or in standard deviations when
        whitened.
    """
    fm = check_fmap(fmap)
    c, h, w = fm.shape
    if fit.components.shape[1] != c:
        raise ValueError(f"fmap has {c} channels but the fit has {fit.components.shape[1]}")
    x = fm.reshape(c, h * w).T.astype(np.float64) - fit.mean
    proj = (x @ fit.components.T).T
    if whiten:
        if not np.isfinite(fit.scatter):
            raise ValueError("whiten needs the fit's scatter (PCAFit.scatter); fit with CovarianceAccumulator.fit")
        proj = proj * whiten_scale(fit.explained_variance_ratio, fit.scatter, fit.n_pixels)[:, None]
    return proj.reshape(-1, h, w).astype(np.float32)


def _check_group(projs: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None, ndim: int
                 ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    arrs = [np.asarray(p, dtype=np.float64) for p in projs]
    if not arrs:
        raise ValueError("projs must hold at least one map, got 0")
    for i, a in enumerate(arrs):
        if a.ndim != ndim or (ndim == 3 and a.shape[0] < 3) or a.size == 0:
            want = "(k >= 3, H, W)" if ndim == 3 else "(H, W)"
            raise ValueError(f"projs[{i}] must be {want}, got shape {a.shape}")
        bad = a.size - int(np.count_nonzero(np.isfinite(a)))
        if bad:
            raise ValueError(f"projs[{i}] must be finite, got {bad} non-finite values")
    if masks is None:
        return arrs, None
    ms = list(masks)
    if len(ms) != len(arrs):
        raise ValueError(f"got {len(arrs)} projs but {len(ms)} masks")
    return arrs, [_check_mask(m, a.shape[-2:], f"masks[{i}]") for i, (m, a) in enumerate(zip(ms, arrs))]


def joint_rgb(projs: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None = None
              ) -> list[np.ndarray]:
    """Colour a group's projections with one shared min-max per channel.

    Parameters
    ----------
    projs : sequence of (k >= 3, H_i, W_i) arrays, finite
        Projections of each image onto the same components.
    masks : sequence of (H_i, W_i) bool arrays, optional
        Foreground; the range is taken over foreground pixels only.

    Returns
    -------
    list of (H_i, W_i, 3) ndarray of float32
        In [0, 1] (values outside the foreground range are clipped). A channel
        with no spread maps to 0.5. With masks, background pixels are NaN (the
        figure code paints them neutral grey); if no image has any foreground
        every pixel is NaN.
    """
    arrs, ms = _check_group(projs, masks, 3)
    sel = [a[:3].reshape(3, -1) if ms is None else a[:3].reshape(3, -1)[:, m.reshape(-1)]
           for a, m in zip(arrs, ms if ms is not None else [None] * len(arrs))]
    pooled = np.concatenate(sel, axis=1)
    out = []
    if pooled.shape[1] == 0:
        return [np.full(a.shape[1:] + (3,), np.nan, dtype=np.float32) for a in arrs]
    lo = pooled.min(axis=1)
    hi = pooled.max(axis=1)
    span = hi - lo
    const = span == 0
    for i, a in enumerate(arrs):
        v = (a[:3] - lo[:, None, None]) / np.where(const, 1.0, span)[:, None, None]
        v[const] = 0.5
        rgb = np.clip(np.moveaxis(v, 0, -1), 0.0, 1.0).astype(np.float32)
        if ms is not None:
            rgb[~ms[i]] = np.nan
        out.append(np.ascontiguousarray(rgb))
    return out


def joint_scale(projs: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None = None) -> float:
    """Shared symmetric colour scale for signed single-component maps.

    Parameters
    ----------
    projs : sequence of (H_i, W_i) arrays, finite
        One component's projection per image.
    masks : sequence of (H_i, W_i) bool arrays, optional
        Only foreground values count.

    Returns
    -------
    float
        max |value| over (the foreground of) all images, so ``v / scale`` lies in
        [-1, 1]; 1.0 when that max is 0 or there is no foreground.
    """
    arrs, ms = _check_group(projs, masks, 2)
    m = 0.0
    for i, a in enumerate(arrs):
        v = a if ms is None else a[ms[i]]
        if v.size:
            m = max(m, float(np.abs(v).max()))
    return m if m > 0.0 else 1.0
