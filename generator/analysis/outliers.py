"""High-norm outlier positions and the heaviness of value tails.

Metrics
-------
norm_outliers
    The L2 norm of every position's feature vector; a position is an outlier
    when its norm exceeds ``median + k * 1.4826 * MAD`` of the map's norms,
    with k = :data:`OUTLIER_K` fixed in advance. 1.4826 * MAD estimates the
    standard deviation of normal data while ignoring the outliers themselves,
    so for a map without outliers the expected share is about 3e-7 (the
    one-sided normal tail beyond 5 sd). This is the "high-norm token" test of
    Darcet et al., "Vision Transformers Need Registers" (2024), with a robust
    cut instead of a hand-picked norm.
value_tails
    Excess kurtosis and the tail ratio ``p99.9(|x|) / p50(|x|)`` of all values
    of a map. Normal data give 0 and 4.88, Laplace data 3 and 9.97. The ratio
    is scale-free, so it compares networks whose features live on different
    scales.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .device import analysis_device
from .pca import check_fmap

__all__ = ["OUTLIER_K", "NormOutliers", "norm_outliers", "ValueTails", "value_tails"]

OUTLIER_K = 5.0
# 1 / Phi^-1(3/4): turns a MAD into a standard deviation for normal data.
_MAD_TO_SD = 1.4826


@dataclass(frozen=True)
class NormOutliers:
    """High-norm positions of one feature map.

    Attributes
    ----------
    share : float in [0, 1]
        Fraction of the H * W positions flagged.
    max_over_median : float
        Largest norm over the median norm; inf when the median is 0 and the
        maximum is not, 1.0 for an all-zero map.
    threshold : float
        The norm cut, in feature units.
    mask : (H, W) ndarray of bool
        True at flagged positions.
    norms : (H, W) ndarray of float64
        L2 norm of every position's C-vector.
    """

    share: float
    max_over_median: float
    threshold: float
    mask: np.ndarray
    norms: np.ndarray


def norm_outliers(fmap: np.ndarray, k: float = OUTLIER_K) -> NormOutliers:
    """Find positions whose feature norm is far above the map's typical norm.

    Parameters
    ----------
    fmap : (C, H, W) array_like, finite
    k : float > 0
        Cut in robust standard deviations above the median norm.

    Returns
    -------
    NormOutliers
        A position is flagged when ``norm > median + k * 1.4826 * MAD``
        (strictly). When more than half the norms are equal (MAD = 0) every
        norm above the median is flagged.
    """
    fm = check_fmap(fmap)
    kf = float(k)
    if not (np.isfinite(kf) and kf > 0):
        raise ValueError(f"k must be a finite number > 0, got {k!r}")
    norms = np.linalg.norm(fm.astype(np.float64), axis=0)
    med = float(np.median(norms))
    mad = float(np.median(np.abs(norms - med)))
    thr = med + kf * _MAD_TO_SD * mad
    mask = norms > thr
    top = float(norms.max())
    if med > 0:
        ratio = top / med
    else:
        ratio = float("inf") if top > 0 else 1.0
    return NormOutliers(share=float(np.count_nonzero(mask)) / norms.size, max_over_median=ratio,
                        threshold=thr, mask=mask, norms=norms)


@dataclass(frozen=True)
class ValueTails:
    """Tail heaviness of a set of values.

    Attributes
    ----------
    excess_kurtosis : float
        Biased excess kurtosis (0 for normal data, 0.0 for constant data).
    tail_ratio : float
        ``p99.9(|x|) / p50(|x|)`` (numpy 'linear' percentiles); inf when the
        median |x| is 0 and p99.9 is not, 1.0 when both are 0.
    """

    excess_kurtosis: float
    tail_ratio: float


def _percentiles(n: int, qs: tuple[float, ...], pick) -> list[float]:
    """numpy's 'linear' percentiles of ``n`` values, given ``pick(ranks) -> {rank: value}``
    that returns the order statistics (0-based ranks) of the values."""
    pos = [(n - 1) * q / 100.0 for q in qs]
    at = pick(sorted({min(int(np.floor(p)) + j, n - 1) for p in pos for j in (0, 1)}))
    out = []
    for p in pos:
        lo = int(np.floor(p))
        a, b = at[lo], at[min(lo + 1, n - 1)]
        out.append(a + (b - a) * (p - lo))
    return out


def _tails_numpy(v: np.ndarray, qs: tuple[float, ...]) -> tuple[float, float, list[float]]:
    """Variance and fourth central moment of ``v`` (float64) and percentiles of ``|v|``: one
    partial sort in ``v``'s own dtype (float32 maps are not widened to float64 first: the
    order statistics are the same values)."""
    d = v.astype(np.float64) - v.mean(dtype=np.float64)
    d *= d  # squared deviations in place: one float64 copy of the data, not three
    var, m4 = float(d.mean()), float(np.mean(d * d))
    del d
    a = np.abs(v)

    def pick(ks: list[int]) -> dict[int, float]:
        part = np.partition(a, ks)
        return {k: float(part[k]) for k in ks}

    return var, m4, _percentiles(a.size, qs, pick)


def _tails_torch(v: np.ndarray, qs: tuple[float, ...], dev) -> tuple[float, float, list[float]]:
    """:func:`_tails_numpy` on a torch device; the order statistics are the same values."""
    import torch

    own = v.dtype if v.dtype in (np.float32, np.float64) else np.float64  # exact for float16
    t = torch.from_numpy(np.ascontiguousarray(v, dtype=own)).to(dev)
    d = t.to(torch.float64)
    d = d - d.mean()
    d *= d
    var, m4 = float(d.mean()), float((d * d).mean())
    del d
    a = t.abs()
    return var, m4, _percentiles(a.shape[0], qs, lambda ks: {k: float(torch.kthvalue(a, k + 1).values) for k in ks})


def value_tails(x: np.ndarray) -> ValueTails:
    """Excess kurtosis and p99.9/p50 of |x| for all values of an array.

    Parameters
    ----------
    x : array_like of real numbers, any shape, at least one value, finite
        E.g. one stage's (C, H, W) map, or several pooled.

    Returns
    -------
    ValueTails
        Computed with numpy, or with torch on :func:`.device.analysis_device` when one is
        set (same order statistics; moments equal up to summation order).
    """
    arr = np.asarray(x)
    if arr.size == 0:
        raise ValueError("value_tails needs at least one value, got an empty array")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"x must be real-valued, got dtype {arr.dtype}")
    v = arr.reshape(-1)
    if not np.issubdtype(v.dtype, np.floating):
        v = v.astype(np.float64)  # |INT_MIN| overflows in its own dtype
    bad = v.size - int(np.count_nonzero(np.isfinite(v)))
    if bad:
        raise ValueError(f"x must be finite, got {bad} non-finite values")
    dev = analysis_device()
    var, m4, (p50, p999) = (_tails_numpy(v, (50.0, 99.9)) if dev is None
                            else _tails_torch(v, (50.0, 99.9), dev))
    kurt = float(m4 / var ** 2 - 3.0) if var > 0 else 0.0
    if p50 > 0:
        ratio = float(p999 / p50)
    else:
        ratio = float("inf") if p999 > 0 else 1.0
    return ValueTails(excess_kurtosis=kurt, tail_ratio=ratio)
