"""Streaming feature statistics and histograms.

Memory is bounded by one chunk plus O(bins) state, whatever the number of
chunks: every function takes a *factory* ``chunks()`` that returns a fresh
iterator, and walks it a few times instead of holding the data.

Where the arithmetic runs follows :func:`.device.analysis_device`: numpy on a
CPU, torch on a GPU (or torch on the CPU when asked, as the tests do). Each
chunk is moved to the device once per walk and every per-value step (moments,
bin indices, counts, the selection and sort of order statistics) runs there in
float64; only O(bins) counts come back. The order statistics and counts are the
same values on both paths; moments agree up to summation order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .device import analysis_device

__all__ = ["FeatureStats", "feature_stats", "shared_bin_edges", "histogram"]

_FINE_BINS = 4096
# Order statistics are selected by sorting the values of one fine bin; if a bin
# holds more than this many values it is histogrammed again instead.
_COLLECT_BUDGET = 1 << 21
_MAX_LEVELS = 12
_OUTLIER_STDS = 6.0


@dataclass(frozen=True)
class FeatureStats:
    """Summary of all values of a pooled set of feature maps.

    Attributes
    ----------
    count : int
        Number of values.
    mean, std : float
        Mean and population standard deviation (ddof=0).
    min, max : float
    p1, p99 : float
        ``np.percentile(x, [1, 99])`` with linear interpolation, exact.
    skew : float
        Biased sample skewness (``scipy.stats.skew(bias=True)``); 0 for constant data.
    kurtosis : float
        Biased EXCESS kurtosis (``scipy.stats.kurtosis(fisher=True, bias=True)``);
        0 for constant data.
    outlier_fraction : float
        Fraction of values with ``|x - mean| > 6 * std``; 0 for constant data.
    """

    count: int
    mean: float
    std: float
    min: float
    max: float
    p1: float
    p99: float
    skew: float
    kurtosis: float
    outlier_fraction: float


class _NumpyOps:
    """The per-value steps of this module on numpy arrays (the CPU path)."""

    @staticmethod
    def put(flat: np.ndarray) -> np.ndarray:
        return flat

    @staticmethod
    def f64(x: np.ndarray) -> np.ndarray:
        return x.astype(np.float64, copy=False)

    @staticmethod
    def floor_index(x: np.ndarray, hi: int) -> np.ndarray:
        """int64 of non-negative ``x`` (truncated), clipped to ``[0, hi]``."""
        idx = x.astype(np.int64)
        np.clip(idx, 0, hi, out=idx)
        return idx

    @staticmethod
    def as_int(mask: np.ndarray) -> np.ndarray:
        return mask  # numpy adds a bool array to an int64 one in place, without a copy

    @staticmethod
    def bincount(idx: np.ndarray, n: int) -> np.ndarray:
        return np.bincount(idx, minlength=n)

    @staticmethod
    def sorted_concat(parts: list[np.ndarray]) -> np.ndarray:
        return np.sort(np.concatenate(parts)) if parts else np.empty(0)

    @staticmethod
    def edges(e: np.ndarray) -> np.ndarray:
        return e

    @staticmethod
    def bin_right(e: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.searchsorted(e, v, side="right")


class _TorchOps:
    """The same steps on torch tensors of one device (float64 as on the numpy path)."""

    def __init__(self, dev) -> None:
        import torch

        self.torch, self.dev = torch, dev

    def put(self, flat: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(flat)).to(self.dev)

    def f64(self, x):
        return x.to(self.torch.float64)

    def floor_index(self, x, hi: int):
        return x.to(self.torch.int64).clamp_(0, hi)

    def as_int(self, mask):
        return mask.to(self.torch.int64)

    def bincount(self, idx, n: int) -> np.ndarray:
        return self.torch.bincount(idx, minlength=n).cpu().numpy().astype(np.int64)

    def sorted_concat(self, parts: list):
        if not parts:
            return np.empty(0)
        return self.torch.sort(self.torch.cat(parts)).values

    def edges(self, e: np.ndarray):
        return self.torch.from_numpy(e).to(self.dev)

    def bin_right(self, e, v):
        return self.torch.searchsorted(e, v, right=True)


def _ops():
    dev = analysis_device()
    return _NumpyOps if dev is None else _TorchOps(dev)


def _as_values(chunk: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(chunk)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{what} chunks must be real numbers, got dtype {arr.dtype}")
    flat = arr.reshape(-1)
    if np.issubdtype(flat.dtype, np.floating):
        bad = flat.size - int(np.count_nonzero(np.isfinite(flat)))
        if bad:
            raise ValueError(f"{what} got {bad} non-finite values (NaN/inf) in a chunk of {flat.size}")
    return flat


def _chunk_values(chunks: Callable[[], Iterable[np.ndarray]], what: str, ops=_NumpyOps):
    """Each chunk's values, flat, checked, on the device of ``ops``."""
    for chunk in chunks():
        flat = _as_values(chunk, what)
        if flat.size:
            yield ops.put(flat)


class _Moments:
    """Count, mean and central moment sums M2..M4, merged pairwise (Chan/Pebay)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.m3 = 0.0
        self.m4 = 0.0

    def add(self, x, ops=_NumpyOps) -> None:
        """Merge one chunk: a 1-D array or tensor of ``ops``."""
        x = ops.f64(x)
        nb = int(x.shape[0])
        mb = float(x.mean())
        d = x - mb
        d2 = d * d
        m2b = float(d2.sum())
        m3b = float(d2 @ d)
        m4b = float(d2 @ d2)
        na = self.n
        if na == 0:
            self.n, self.mean, self.m2, self.m3, self.m4 = nb, mb, m2b, m3b, m4b
            return
        n = na + nb
        delta = mb - self.mean
        dn = delta / n
        # Pebay (2008) pairwise update; each chunk's sums are about its own mean,
        # so a large common offset never enters a power sum.
        m4 = (self.m4 + m4b + delta * dn ** 3 * na * nb * (na * na - na * nb + nb * nb)
              + 6.0 * dn * dn * (na * na * m2b + nb * nb * self.m2)
              + 4.0 * dn * (na * m3b - nb * self.m3))
        m3 = (self.m3 + m3b + delta * dn * dn * na * nb * (na - nb)
              + 3.0 * dn * (na * m2b - nb * self.m2))
        m2 = self.m2 + m2b + delta * dn * na * nb
        self.mean = self.mean + dn * nb
        self.n, self.m2, self.m3, self.m4 = n, m2, m3, m4


def _percentile_ranks(n: int, q: float) -> tuple[int, int, float]:
    """numpy's 'linear' method: virtual index (n - 1) * q / 100."""
    qq = np.true_divide(q, 100)
    virtual = (n - 1) * qq
    lo = int(math.floor(virtual))
    gamma = float(virtual - lo)
    return lo, min(lo + 1, n - 1), gamma


def _lerp(a: float, b: float, t: float) -> float:
    # Same two-sided form as numpy's _lerp, so results agree to the last bit.
    diff = b - a
    if t >= 0.5:
        return float(b - diff * (1 - t))
    return float(a + diff * t)


class _Group:
    """Values selected by a chain of (lo, scale, nbins, bin) filters."""

    def __init__(self, chain, below, count, ranks, lo, hi):
        self.chain = chain
        self.below = below
        self.count = count
        self.ranks = ranks
        self.lo = lo
        self.hi = hi

    def select(self, x, ops=_NumpyOps):
        for lo, scale, nb, b in self.chain:
            x = x[_bin_index(x, lo, scale, nb, ops) == b]
            if not x.shape[0]:
                break
        return x


def _bin_index(x, lo: float, scale: float, nb: int, ops=_NumpyOps):
    # Same float64 arithmetic in every pass, so a value lands in the same bin
    # each time it is seen; edges are never compared directly.
    return ops.floor_index((ops.f64(x) - lo) * scale, nb - 1)


def _order_statistics(chunks, n: int, vmin: float, vmax: float, ranks: list[int],
                      mean: float, std: float, ops=_NumpyOps) -> tuple[dict[int, float], int]:
    """Exact values at 0-based `ranks` of the sorted pooled data, and the outlier count."""
    result: dict[int, float] = {}
    outliers = 0
    count_outliers = std > 0.0
    pending = [_Group([], 0, n, sorted(set(ranks)), vmin, vmax)]
    level = 0
    while pending:
        refine = [g for g in pending
                  if g.count > _COLLECT_BUDGET and level < _MAX_LEVELS and g.hi > g.lo]
        collect = [g for g in pending if g not in refine]
        hists = [np.zeros(_FINE_BINS, np.int64) for _ in refine]
        gmin = [math.inf for _ in refine]
        gmax = [-math.inf for _ in refine]
        scales = [_FINE_BINS / (g.hi - g.lo) for g in refine]
        bags: list[list] = [[] for _ in collect]
        thr = _OUTLIER_STDS * std
        for x in _chunk_values(chunks, "feature_stats", ops):
            if count_outliers:
                outliers += int((abs(ops.f64(x) - mean) > thr).sum())
            for i, g in enumerate(refine):
                v = g.select(x, ops)
                if v.shape[0]:
                    hists[i] += ops.bincount(_bin_index(v, g.lo, scales[i], _FINE_BINS, ops), _FINE_BINS)
                    gmin[i] = min(gmin[i], float(v.min()))
                    gmax[i] = max(gmax[i], float(v.max()))
            for i, g in enumerate(collect):
                v = g.select(x, ops)
                if v.shape[0]:
                    bags[i].append(ops.f64(v))
        count_outliers = False
        for i, g in enumerate(collect):
            vals = ops.sorted_concat(bags[i])
            if vals.shape[0] != g.count:
                raise RuntimeError(
                    f"chunks() changed between passes: expected {g.count} values, saw {vals.shape[0]}")
            for r in g.ranks:
                result[r] = float(vals[r - g.below])
        nxt = []
        for i, g in enumerate(refine):
            if int(hists[i].sum()) != g.count:
                raise RuntimeError("chunks() changed between passes: counts differ")
            if gmin[i] == gmax[i]:
                for r in g.ranks:
                    result[r] = gmin[i]
                continue
            cum = np.cumsum(hists[i])
            before = cum - hists[i]
            by_bin: dict[int, list[int]] = {}
            for r in g.ranks:
                b = int(np.searchsorted(cum, r - g.below, side="right"))
                by_bin.setdefault(b, []).append(r)
            for b, rs in sorted(by_bin.items()):
                width = 1.0 / scales[i]
                lo_b = max(g.lo + b * width, gmin[i])
                hi_b = min(g.lo + (b + 1) * width, gmax[i])
                nxt.append(_Group(g.chain + [(g.lo, scales[i], _FINE_BINS, b)],
                                  g.below + int(before[b]), int(hists[i][b]), rs, lo_b, hi_b))
        pending = nxt
        level += 1
    return result, outliers


def feature_stats(chunks: Callable[[], Iterable[np.ndarray]]) -> FeatureStats:
    """Exact summary statistics of all values of many arrays, streamed.

    Parameters
    ----------
    chunks : callable returning an iterable of array_like
        Each call returns a fresh iterator over chunks of any shape (e.g. one
        image's (C, H, W) map each); all values are pooled. It is called 2-4
        times (more only for extremely concentrated data) and must yield the
        same data each time.

    Returns
    -------
    FeatureStats
        Computed in float64 whatever the input dtype. Pass 1 merges per-chunk
        moments (Chan/Pebay) plus min/max; pass 2 counts outliers and builds a
        4096-bin histogram over [min, max]; pass 3 sorts only the values in the
        bins that hold the needed order statistics (bins holding more than ~2M
        values are histogrammed again first). Percentiles therefore equal
        ``np.percentile`` on the pooled float64 data exactly. Constant data:
        std 0, skew 0, kurtosis 0, outlier_fraction 0.

    Raises
    ------
    ValueError
        If there are no values, or any value is NaN/inf (the message says how many).
    """
    ops = _ops()
    mom = _Moments()
    vmin, vmax = math.inf, -math.inf
    for x in _chunk_values(chunks, "feature_stats", ops):
        mom.add(x, ops)
        vmin = min(vmin, float(x.min()))
        vmax = max(vmax, float(x.max()))
    n = mom.n
    if n == 0:
        raise ValueError("feature_stats got no data: chunks() yielded 0 values")
    if vmin == vmax:
        return FeatureStats(count=n, mean=vmin, std=0.0, min=vmin, max=vmax, p1=vmin,
                            p99=vmin, skew=0.0, kurtosis=0.0, outlier_fraction=0.0)
    var = mom.m2 / n
    std = math.sqrt(var)
    if var > 0.0:
        skew = (mom.m3 / n) / var ** 1.5
        kurt = (mom.m4 / n) / (var * var) - 3.0
    else:
        skew, kurt = 0.0, 0.0
    plan = [_percentile_ranks(n, q) for q in (1.0, 99.0)]
    ranks = [r for lo, hi, _ in plan for r in (lo, hi)]
    values, outliers = _order_statistics(chunks, n, vmin, vmax, ranks, mom.mean, std, ops)
    p1, p99 = (_lerp(values[lo], values[hi], g) for lo, hi, g in plan)
    return FeatureStats(count=n, mean=float(mom.mean), std=std, min=vmin, max=vmax,
                        p1=p1, p99=p99, skew=float(skew), kurtosis=float(kurt),
                        outlier_fraction=outliers / n)


def shared_bin_edges(lo: float, hi: float, nbins: int = 100) -> np.ndarray:
    """Evenly spaced bin edges, shared by every histogram of one comparison.

    Parameters
    ----------
    lo, hi : float
        Finite range, ``lo <= hi``. If equal, widened to ``[lo - 0.5, hi + 0.5]``.
    nbins : int
        Number of bins, >= 1.

    Returns
    -------
    (nbins + 1,) ndarray of float64
    """
    lo_f, hi_f = float(lo), float(hi)
    if not (math.isfinite(lo_f) and math.isfinite(hi_f)):
        raise ValueError(f"lo and hi must be finite, got lo={lo!r}, hi={hi!r}")
    if lo_f > hi_f:
        raise ValueError(f"lo must be <= hi, got lo={lo!r}, hi={hi!r}")
    if isinstance(nbins, bool) or not isinstance(nbins, (int, np.integer)) or nbins < 1:
        raise ValueError(f"nbins must be an integer >= 1, got {nbins!r}")
    if lo_f == hi_f:
        lo_f, hi_f = lo_f - 0.5, hi_f + 0.5
    return np.linspace(lo_f, hi_f, int(nbins) + 1, dtype=np.float64)


def histogram(chunks: Callable[[], Iterable[np.ndarray]], edges: np.ndarray) -> np.ndarray:
    """Streamed histogram with fixed edges, identical to ``np.histogram(pooled, edges)``.

    Parameters
    ----------
    chunks : callable returning an iterable of array_like
        As for :func:`feature_stats`; walked once.
    edges : (nbins + 1,) array_like of float, finite, strictly increasing
        Bin i is ``[edges[i], edges[i+1])``; the last bin also includes
        ``edges[-1]``.

    Returns
    -------
    (nbins,) ndarray of int64
        Values outside ``[edges[0], edges[-1]]`` are NOT counted (the pipeline
        crops to the 1st-99th percentile this way), so the sum can be below the
        number of values.

    Raises
    ------
    ValueError
        If `edges` is malformed or any value is NaN/inf.
    """
    return histograms(chunks, [edges])[0]


def histograms(chunks: Callable[[], Iterable[np.ndarray]], edge_sets: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Several :func:`histogram` s of the same values in one walk over the chunks.

    Parameters
    ----------
    chunks : callable returning an iterable of array_like; walked once.
    edge_sets : sequence of (nbins_k + 1,) edges, each as for :func:`histogram`.

    Returns
    -------
    list of (nbins_k,) ndarray of int64, one per edge set, in order.
    """
    ops = _ops()
    plans = [_edge_plan(e) for e in edge_sets]
    counts = [np.zeros(p[0].size - 1, dtype=np.int64) for p in plans]
    on_device = [ops.edges(e) for e, _, _ in plans]
    for x in _chunk_values(chunks, "histogram", ops):
        v_all = ops.f64(x)
        for (e, uniform, scale), e_dev, out in zip(plans, on_device, counts):
            out += _bin_counts(v_all, e, e_dev, uniform, scale, ops)
    return counts


def _edge_plan(edges: np.ndarray) -> tuple[np.ndarray, bool, float]:
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2:
        raise ValueError(f"edges must be 1-D with at least 2 entries, got shape {e.shape}")
    if not np.all(np.isfinite(e)):
        raise ValueError(f"edges must be finite, got {e[~np.isfinite(e)][:3].tolist()}")
    if not np.all(np.diff(e) > 0):
        raise ValueError("edges must be strictly increasing, got "
                         f"a step <= 0 at index {int(np.argmin(np.diff(e) > 0))}")
    d = np.diff(e)
    uniform = bool(np.all(np.abs(d - d.mean()) <= 1e-9 * d.mean()))
    return e, uniform, (e.size - 1) / (float(e[-1]) - float(e[0]))


def _bin_counts(v_all, e: np.ndarray, e_dev, uniform: bool, scale: float, ops=_NumpyOps) -> np.ndarray:
    """Counts of float64 values (on the device of ``ops``) in the bins of edges ``e``
    (``e_dev``: the same edges on that device); values outside are dropped."""
    nb = e.size - 1
    lo, hi = float(e[0]), float(e[-1])
    v = v_all[(v_all >= lo) & (v_all <= hi)]
    if not v.shape[0]:
        return np.zeros(nb, dtype=np.int64)
    if uniform:
        # Fast guess, then the same edge comparisons np.histogram makes, so
        # values on or next to an edge land exactly where numpy puts them.
        idx = ops.floor_index((v - lo) * scale, nb - 1)
        idx -= ops.as_int(v < e_dev[idx])
        idx += ops.as_int((v >= e_dev[idx + 1]) & (idx < nb - 1))
    else:
        idx = ops.bin_right(e_dev, v) - 1
        idx[idx == nb] = nb - 1
    return ops.bincount(idx, nb)
