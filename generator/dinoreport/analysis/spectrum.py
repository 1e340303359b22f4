"""The variance spectrum of a stage's features: how many directions carry the variance.

All functions are pure: arrays in, arrays/dataclasses out.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._threads import on_one_blas_thread
from .across import CovarianceAccumulator

__all__ = ["Spectrum", "spectrum", "effective_rank", "participation_ratio", "subsample_cells"]


def _check_eigvals(eigvals: np.ndarray) -> np.ndarray:
    ev = np.asarray(eigvals, dtype=np.float64)
    if ev.ndim != 1 or ev.size == 0:
        raise ValueError(f"eigvals must be a non-empty 1-D array, got shape {ev.shape}")
    if not np.all(np.isfinite(ev)):
        raise ValueError("eigvals must be finite")
    return np.clip(ev, 0.0, None)  # rounding leaves tiny negative eigenvalues of a PSD matrix


def effective_rank(eigvals: np.ndarray) -> float:
    """exp of the Shannon entropy (nats) of the normalised eigenvalues ``p = lambda / sum lambda``
    (Roy & Vetterli, 2007): d for d equal eigenvalues, 1 for one direction, 0 for no variance.

    eigvals : (D,) array of a covariance's eigenvalues (any order, >= 0 up to rounding).
    """
    ev = _check_eigvals(eigvals)
    total = ev.sum()
    if total <= 0:
        return 0.0
    p = ev[ev > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def participation_ratio(eigvals: np.ndarray) -> float:
    """``(sum lambda)^2 / sum lambda^2``: d for d equal eigenvalues, 1 for one direction, 0 for
    none; weighs the large eigenvalues more than :func:`effective_rank` does."""
    ev = _check_eigvals(eigvals)
    sq = float(np.sum(ev * ev))
    return float(ev.sum() ** 2 / sq) if sq > 0 else 0.0


@dataclass(frozen=True)
class Spectrum:
    """Eigenvalues of a covariance and the summaries the report gives.

    explained_variance_ratio : (D,) float64, descending, sums to 1 (all zeros without variance)
    effective_rank, participation_ratio : float, see the functions of those names
    n_rows : int, the rows the covariance saw
    """

    explained_variance_ratio: np.ndarray
    effective_rank: float
    participation_ratio: float
    n_rows: int


@on_one_blas_thread
def spectrum(acc: CovarianceAccumulator) -> Spectrum:
    """The full eigenvalue spectrum of an accumulator's covariance (exact, LAPACK eigvalsh)."""
    from scipy.linalg import eigh

    cov = acc.covariance(ddof=0)
    ev = np.clip(eigh(cov, eigvals_only=True, check_finite=False)[::-1], 0.0, None)
    # Eigenvalues at rounding level belong to the null space (as in pca._top_components);
    # left in, a rank-5 stage of 768 channels would count hundreds of tiny directions.
    ev[ev <= ev[0] * ev.size * np.finfo(np.float64).eps * 16] = 0.0
    total = ev.sum()
    ratio = ev / total if total > 0 else np.zeros_like(ev)
    return Spectrum(explained_variance_ratio=ratio, effective_rank=effective_rank(ev),
                    participation_ratio=participation_ratio(ev), n_rows=acc.n)


def subsample_cells(fmap: np.ndarray, max_cells: int, seed: int) -> np.ndarray:
    """At most ``max_cells`` cells of a (C, H, W) map as (n, C) float32 rows, drawn without
    replacement by a generator seeded with ``seed`` (all cells, in order, when there are fewer):
    bounds the cost of a covariance over many large early-stage maps."""
    c, h, w = fmap.shape
    rows = np.asarray(fmap, dtype=np.float32).reshape(c, h * w).T
    if h * w <= max_cells:
        return np.ascontiguousarray(rows)
    pick = np.sort(np.random.default_rng(seed).choice(h * w, max_cells, replace=False))
    return np.ascontiguousarray(rows[pick])
