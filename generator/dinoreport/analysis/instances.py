"""Instance labels from a reference mask, and how well a map keeps instances apart.

Metric
------
instance_separation
    Over the foreground cells of a photo with several instances of a subject
    (reference labels 1..n), the mean cosine similarity of the centred
    features of two cells of the same instance minus that of two cells of
    different instances. Features are centred on the foreground mean, so
    what all instances share ("dog") cancels and only what tells them apart
    remains. About 0 when the map does not tell instances apart, up to 2 when
    each instance is one direction and instances point opposite ways. A
    silhouette-style within/between contrast, computed exactly from per-
    instance sums of unit vectors (no pair matrix).
"""

from __future__ import annotations

import numpy as np

from .checks import check_fmap

__all__ = ["instance_labels", "instance_separation"]


def instance_labels(mask: np.ndarray, min_cells: int = 1) -> np.ndarray:
    """Number the 4-connected components of a foreground mask.

    Parameters
    ----------
    mask : (H, W) bool array
        Reference subject mask on the feature grid.
    min_cells : int >= 1
        Components with fewer cells become background (0).

    Returns
    -------
    (H, W) ndarray of int32
        0 background, 1..n instances numbered in raster order of their first
        cell.
    """
    from scipy.ndimage import label

    m = np.asarray(mask)
    if m.ndim != 2 or m.size == 0 or m.dtype != np.bool_:
        raise ValueError(f"mask must be a non-empty (H, W) bool array, got shape {m.shape} "
                         f"dtype {m.dtype}")
    if isinstance(min_cells, bool) or not isinstance(min_cells, (int, np.integer)) or min_cells < 1:
        raise ValueError(f"min_cells must be an integer >= 1, got {min_cells!r}")
    lab, n = label(m)  # default structure: 4-connectivity
    sizes = np.bincount(lab.reshape(-1), minlength=n + 1)
    keep = np.flatnonzero(sizes >= min_cells)
    keep = keep[keep > 0]
    remap = np.zeros(n + 1, dtype=np.int32)
    remap[keep] = np.arange(1, keep.size + 1, dtype=np.int32)
    return remap[lab]


def instance_separation(fmap: np.ndarray, labels: np.ndarray) -> float:
    """Within-instance minus between-instance cosine similarity of foreground cells.

    Parameters
    ----------
    fmap : (C, H, W) array_like, finite
        One stage's map (e.g. C4).
    labels : (H, W) int array
        0 background, k > 0 instance k (e.g. :func:`instance_labels` of the
        reference mask pooled to the grid).

    Returns
    -------
    float in [-2, 2]
        ``mean_{same instance, i != j} cos(z_i, z_j) - mean_{different instances} cos(z_i, z_j)``
        with ``z = feature - mean over all foreground cells``.

    Raises
    ------
    ValueError
        If fewer than two instances are present, or no instance has two cells.
    """
    fm = check_fmap(fmap)
    c, h, w = fm.shape
    lab = np.asarray(labels)
    if lab.shape != (h, w) or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be an int array of shape {(h, w)}, got shape {lab.shape} "
                         f"dtype {lab.dtype}")
    flat = lab.reshape(-1)
    fg = flat > 0
    ids, inv, counts = np.unique(flat[fg], return_inverse=True, return_counts=True)
    if ids.size < 2:
        raise ValueError(f"instance_separation needs at least 2 instances, got {ids.size}")
    n_within = int(np.sum(counts * (counts - 1)))
    if n_within == 0:
        raise ValueError("instance_separation needs an instance with at least 2 cells")
    x = fm.reshape(c, -1).T[fg].astype(np.float64)
    x -= x.mean(axis=0)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    u = np.divide(x, n, out=np.zeros_like(x), where=n > 0)
    # sum_{i,j in k} u_i.u_j = |S_k|^2, so pair sums need only the per-instance sums S_k.
    sums = np.zeros((ids.size, c))
    np.add.at(sums, inv, u)
    self_dots = np.bincount(inv, weights=np.einsum("ij,ij->i", u, u), minlength=ids.size)
    within = float(np.sum(np.einsum("ij,ij->i", sums, sums) - self_dots)) / n_within
    tot = sums.sum(axis=0)
    between_sum = float(tot @ tot - np.einsum("ij,ij->", sums, sums))
    n_between = int(counts.sum() ** 2 - np.sum(counts ** 2))
    return within - between_sum / n_between
