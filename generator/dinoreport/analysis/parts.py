"""Part co-segmentation: one k-means over the foreground cells of several images.

Metrics
-------
kmeans
    Lloyd's algorithm with k-means++ seeding, ``n_init`` seeded restarts, the
    fit with the lowest inertia kept. Written out in numpy (float64, one
    thread) instead of scikit-learn's ``KMeans`` because the threaded sums
    there may differ in the last bits between runs, and builds must be
    byte-identical.
cosegment
    The foreground cells of all images of a group, each scaled to unit length
    (so that a part is a direction in feature space, as in cosine matching;
    the overall size of a feature says nothing about which part it is), are
    clustered together; the same part therefore has the same label in every
    image. Parts are numbered by their share of the group's foreground cells,
    largest first, so labels and colours do not depend on the random start.
    Inertia is the k-means objective on those unit vectors: the sum over cells
    of the squared distance to the part centre (0 when every cell sits on its
    centre, at most 4 per cell).
image_purity
    Mean over images of the share of an image's foreground cells that fall in
    its most common part. Near 1 when the parts separate whole images rather
    than regions within them (one colour per image); about the largest part
    share when the parts mix freely across images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .across import pixels

__all__ = ["KMeansResult", "kmeans", "Coseg", "cosegment", "image_purity"]


@dataclass(frozen=True)
class KMeansResult:
    """A k-means fit.

    Attributes
    ----------
    labels : (N,) ndarray of int64
        Cluster of each row, in ``0..k-1``.
    centers : (k, D) ndarray of float64
    inertia : float
        Sum of squared distances of the rows to their centres.
    """

    labels: np.ndarray
    centers: np.ndarray
    inertia: float


def _sqdist(x: np.ndarray, c: np.ndarray, x_sq: np.ndarray) -> np.ndarray:
    # |x - c|^2 = |x|^2 - 2 x.c + |c|^2, clipped at 0 against rounding.
    d = x_sq[:, None] - 2.0 * (x @ c.T) + np.einsum("kd,kd->k", c, c)[None, :]
    return np.maximum(d, 0.0)


def _plus_plus(x: np.ndarray, k: int, x_sq: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007): each new centre drawn with
    probability proportional to the squared distance to the nearest centre so far."""
    n = x.shape[0]
    centers = [x[rng.integers(n)]]
    d = _sqdist(x, centers[0][None, :], x_sq)[:, 0]
    for _ in range(1, k):
        total = float(d.sum())
        # All rows on existing centres (fewer distinct rows than k): any row will do.
        i = int(rng.integers(n)) if total <= 0 else int(np.searchsorted(np.cumsum(d), rng.random() * total))
        i = min(i, n - 1)
        centers.append(x[i])
        d = np.minimum(d, _sqdist(x, x[i][None, :], x_sq)[:, 0])
    return np.stack(centers)


def kmeans(x: np.ndarray, k: int, *, seed: int = 0, n_init: int = 4, max_iter: int = 100,
           tol: float = 1e-6) -> KMeansResult:
    """Seeded k-means (Lloyd's algorithm, k-means++ starts).

    Parameters
    ----------
    x : (N, D) array_like, finite, N >= k
    k : int >= 1
    seed : int
        Seeds the starts; the same input and seed give the same result.
    n_init : int >= 1
        Restarts; the fit with the lowest inertia is returned (the first on ties).
    max_iter : int >= 1
        Lloyd iterations per start.
    tol : float
        Stop a start when no centre moved more than ``tol`` (in feature units).

    Returns
    -------
    KMeansResult
        A cluster left empty by an iteration keeps its previous centre.
    """
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"x must be (N, D) with D >= 1, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"x must be real-valued, got dtype {arr.dtype}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if arr.shape[0] < k:
        raise ValueError(f"k-means with k={k} needs at least {k} rows, got {arr.shape[0]}")
    if n_init < 1 or max_iter < 1:
        raise ValueError(f"n_init and max_iter must be >= 1, got {n_init} and {max_iter}")
    xf = arr.astype(np.float64)
    bad = xf.size - int(np.count_nonzero(np.isfinite(xf)))
    if bad:
        raise ValueError(f"x must be finite, got {bad} non-finite values")
    x_sq = np.einsum("nd,nd->n", xf, xf)
    rng = np.random.default_rng(seed)
    best: KMeansResult | None = None
    for _ in range(n_init):
        centers = _plus_plus(xf, k, x_sq, rng)
        for _ in range(max_iter):
            labels = np.argmin(_sqdist(xf, centers, x_sq), axis=1)
            onehot = np.zeros((k, xf.shape[0]))
            onehot[labels, np.arange(xf.shape[0])] = 1.0
            sums = onehot @ xf  # per-cluster sums in one product (np.add.at is ~10x slower)
            counts = np.bincount(labels, minlength=k)
            new = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centers)
            moved = float(np.max(np.linalg.norm(new - centers, axis=1)))
            centers = new
            if moved <= tol:
                break
        d = _sqdist(xf, centers, x_sq)
        labels = np.argmin(d, axis=1)
        inertia = float(d[np.arange(len(labels)), labels].sum())
        if best is None or inertia < best.inertia:
            best = KMeansResult(labels=labels.astype(np.int64), centers=centers, inertia=inertia)
    assert best is not None
    return best


@dataclass(frozen=True)
class Coseg:
    """Parts shared by a group of feature maps.

    Attributes
    ----------
    labels : list of (H_i, W_i) ndarray of int64
        Part of each cell, ``0..k-1``, numbered by share (0 = largest); -1 outside the mask.
    part_shares : (k,) ndarray of float64
        Share of all foreground cells of the group in each part; sums to 1, non-increasing.
    inertia : float
        k-means objective on the unit-length features (see the module docstring).
    n_cells : int
        Foreground cells clustered.
    """

    labels: list[np.ndarray]
    part_shares: np.ndarray
    inertia: float
    n_cells: int


#: At most this many foreground cells go into the k-means fit; larger groups are fitted on a
#: seeded sample and every cell is then given its nearest part (memory stays bounded).
MAX_FIT_CELLS = 20_000


def _unit_rows(f: np.ndarray, m: np.ndarray) -> np.ndarray:
    x = pixels(f, m).astype(np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def cosegment(fmaps: Sequence[np.ndarray], masks: Sequence[np.ndarray], k: int, *, seed: int = 0,
              n_init: int = 4, max_fit_cells: int = MAX_FIT_CELLS) -> Coseg:
    """Cluster the foreground cells of several maps into ``k`` parts shared by all of them.

    Parameters
    ----------
    fmaps : sequence of (C, H_i, W_i) array_like, finite
        One map per image, the same C for all. Each is read by index, one at a time (twice
        when the group has more than ``max_fit_cells`` foreground cells), so the sequence
        may load maps lazily.
    masks : sequence of (H_i, W_i) bool
        Foreground cells to cluster, one per map.
    k : int >= 1
        Number of parts; the masks must hold at least k cells in all.
    seed, n_init : see :func:`kmeans`.
    max_fit_cells : int >= k
        Up to this many cells, every cell is in the fit. Above it, the fit uses a seeded
        uniform sample of this many cells, and every cell then takes its nearest centre
        (labels, shares and inertia over all cells).

    Returns
    -------
    Coseg
    """
    if len(fmaps) != len(masks) or not len(fmaps):
        raise ValueError(f"give one mask per map and at least one map, got {len(fmaps)} maps "
                         f"and {len(masks)} masks")
    ms = [np.asarray(m, dtype=bool) for m in masks]
    counts_i = [int(m.sum()) for m in ms]
    n = sum(counts_i)
    if n < k:
        raise ValueError(f"{n} foreground cells in all, fewer than k={k} parts")
    if n <= max_fit_cells:
        rows = [_unit_rows(fmaps[i], m) for i, m in enumerate(ms)]
        dims = {r.shape[1] for r in rows}
        if len(dims) != 1:
            raise ValueError(f"every map must have the same number of channels, got {sorted(dims)}")
        x = np.concatenate(rows)
        fit = kmeans(x, k, seed=seed, n_init=n_init)
        flat, inertia = fit.labels, fit.inertia
    else:
        # Fit on a seeded sample (drawn from the mask counts, before any map is read) ...
        take = np.sort(np.random.default_rng([seed, 7]).choice(n, size=max_fit_cells, replace=False))
        starts = np.cumsum([0] + counts_i)
        sample, dims = [], set()
        for i, m in enumerate(ms):
            local = take[(take >= starts[i]) & (take < starts[i + 1])] - starts[i]
            r = _unit_rows(fmaps[i], m)
            dims.add(r.shape[1])
            sample.append(r[local])
        if len(dims) != 1:
            raise ValueError(f"every map must have the same number of channels, got {sorted(dims)}")
        fit = kmeans(np.concatenate(sample), k, seed=seed, n_init=n_init)
        del sample
        # ... then every cell, map by map, to its nearest centre.
        c_sq = np.einsum("kd,kd->k", fit.centers, fit.centers)
        parts, inertia = [], 0.0
        for i, m in enumerate(ms):
            r = _unit_rows(fmaps[i], m)
            d = np.maximum(np.einsum("nd,nd->n", r, r)[:, None] - 2.0 * (r @ fit.centers.T) + c_sq[None, :], 0.0)
            lab = np.argmin(d, axis=1)
            inertia += float(d[np.arange(lab.size), lab].sum())
            parts.append(lab)
        flat = np.concatenate(parts).astype(np.int64)
    counts = np.bincount(flat, minlength=k)
    # Largest part first; equal sizes keep k-means' order (stable sort).
    order = np.argsort(-counts, kind="stable")
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    ranked = rank[flat]
    labels, start = [], 0
    for m, c in zip(ms, counts_i):
        lab = np.full(m.shape, -1, dtype=np.int64)
        lab[m] = ranked[start:start + c]
        labels.append(lab)
        start += c
    return Coseg(labels=labels, part_shares=counts[order] / n, inertia=inertia, n_cells=int(n))


def image_purity(labels: Sequence[np.ndarray]) -> float:
    """Mean over images of the largest part's share of that image's foreground.

    Parameters
    ----------
    labels : sequence of (H_i, W_i) int arrays
        Part labels, -1 outside the foreground (as in :attr:`Coseg.labels`).

    Returns
    -------
    float in (0, 1]
        Images without foreground cells are left out; 1.0 when none has any.
    """
    shares = []
    for lab in labels:
        fg = np.asarray(lab)[np.asarray(lab) >= 0]
        if fg.size:
            shares.append(np.bincount(fg).max() / fg.size)
    return float(np.mean(shares)) if shares else 1.0
