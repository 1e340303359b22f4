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
local_norm_outliers
    A position is an outlier when its norm exceeds :data:`LOCAL_FACTOR` times
    the median norm of its 8 neighbours. The reference is local, so a subject
    whose features are simply larger than the background's (a bright blob) is
    not an outlier, while an isolated high-norm cell (or a pair of them) is.
    The claims use this one; :func:`norm_outliers` compares with the whole
    map and so also flags a large-norm region.
value_tails
    Excess kurtosis and the tail ratio ``p99.9(|x|) / p50(|x|)`` of all values
    of a map. Normal data give 0 and 4.88, Laplace data 3 and 9.97. The ratio
    is scale-free, so it compares networks whose features live on different
    scales. It also moves with the bulk (a map with many exact zeros has a
    small median); ``high_tail_ratio`` ``p99.9 / p99`` of the non-zero |x|
    looks only at the tail: 1.28 for normal values, 1.5 for Laplace ones,
    ``10 ** (1 / a)`` for a power-law tail of index a.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .device import analysis_device
from .checks import check_fmap

__all__ = ["OUTLIER_K", "LOCAL_FACTOR", "NormOutliers", "norm_outliers", "local_norm_outliers",
           "ValueTails", "value_tails"]

OUTLIER_K = 5.0
# A high-norm token is several times the norm of the tokens around it (Darcet et al. report
# about ten times); twice the neighbourhood's median is far outside the spread of the norms of
# normal data (about 1 / sqrt(2 C) relative) while catching any such token.
LOCAL_FACTOR = 2.0
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


def local_norm_outliers(fmap: np.ndarray, factor: float = LOCAL_FACTOR) -> NormOutliers:
    """Find positions whose feature norm is far above that of their neighbourhood.

    Parameters
    ----------
    fmap : (C, H, W) array_like, finite
    factor : float > 1
        A position is flagged when its norm exceeds ``factor`` times the median
        norm of its 8 neighbours (fewer at the border and corners; the cell
        itself does not count).

    Returns
    -------
    NormOutliers
        ``threshold`` is ``factor`` times the median of the local medians (a
        typical cut, for display); ``max_over_median`` as in
        :func:`norm_outliers`. A map with one position has no neighbourhood and
        no outliers.
    """
    fm = check_fmap(fmap)
    fac = float(factor)
    if not (np.isfinite(fac) and fac > 1.0):
        raise ValueError(f"factor must be a finite number > 1, got {factor!r}")
    norms = np.linalg.norm(fm.astype(np.float64), axis=0)
    h, w = norms.shape
    pad = np.pad(norms, 1, constant_values=np.nan)
    around = np.stack([pad[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                       for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)])
    if h * w == 1:
        local = norms.copy()
    else:
        import warnings

        with warnings.catch_warnings():  # a 1 x 1 map is handled above; no all-NaN slice remains
            warnings.simplefilter("ignore", RuntimeWarning)
            local = np.nanmedian(around, axis=0)
    mask = norms > fac * local
    med = float(np.median(norms))
    top = float(norms.max())
    ratio = top / med if med > 0 else (float("inf") if top > 0 else 1.0)
    return NormOutliers(share=float(np.count_nonzero(mask)) / norms.size, max_over_median=ratio,
                        threshold=fac * float(np.median(local)), mask=mask, norms=norms)


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
    high_tail_ratio : float
        ``p99.9 / p99`` of the non-zero |x| (numpy 'linear' percentiles of
        those): the tail alone, unchanged by exact zeros and by the shape of
        the bulk; 1.0 when there are no non-zero values.
    """

    excess_kurtosis: float
    tail_ratio: float
    high_tail_ratio: float = 1.0


def _percentiles(n: int, qs: tuple[float, ...], pick, skip: int = 0) -> list[float]:
    """numpy's 'linear' percentiles of ``n`` values, given ``pick(ranks) -> {rank: value}``
    that returns the order statistics (0-based ranks) of the values. With ``skip`` the
    percentiles are those of all but the ``skip`` smallest values (ranks stay those of all
    ``n``), e.g. of the non-zero |x|."""
    m = n - skip
    pos = [skip + (m - 1) * q / 100.0 for q in qs]
    at = pick(sorted({min(int(np.floor(p)) + j, n - 1) for p in pos for j in (0, 1)}))
    out = []
    for p in pos:
        lo = int(np.floor(p))
        a, b = at[lo], at[min(lo + 1, n - 1)]
        out.append(a + (b - a) * (p - lo))
    return out


_HIGH_QS = (99.0, 99.9)


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

    zeros = a.size - int(np.count_nonzero(a))
    return var, m4, _percentiles(a.size, qs, pick) + _high(a.size, zeros, pick)


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

    def pick(ks: list[int]) -> dict[int, float]:
        return {k: float(torch.kthvalue(a, k + 1).values) for k in ks}

    zeros = a.shape[0] - int(torch.count_nonzero(a))
    return var, m4, _percentiles(a.shape[0], qs, pick) + _high(a.shape[0], zeros, pick)


def _high(n: int, zeros: int, pick) -> list[float]:
    """[p99, p99.9] of the non-zero |x| (zeros sort first), or [] when all are zero."""
    return [] if zeros >= n else _percentiles(n, _HIGH_QS, pick, skip=zeros)


def value_tails(x: np.ndarray) -> ValueTails:
    """Excess kurtosis, p99.9/p50 of |x| and p99.9/p99 of the non-zero |x| of an array.

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
    var, m4, (p50, p999, *high) = (_tails_numpy(v, (50.0, 99.9)) if dev is None
                                   else _tails_torch(v, (50.0, 99.9), dev))
    kurt = float(m4 / var ** 2 - 3.0) if var > 0 else 0.0
    if p50 > 0:
        ratio = float(p999 / p50)
    else:
        ratio = float("inf") if p999 > 0 else 1.0
    # The non-zero |x| are all > 0, so p99 of them is too.
    hi_ratio = float(high[1] / high[0]) if high else 1.0
    return ValueTails(excess_kurtosis=kurt, tail_ratio=ratio, high_tail_ratio=hi_ratio)
