"""Correspondences between the foreground cells of two images, and whether colours follow them.

Metrics
-------
mutual_nn / cycle_consistent_share
    Cell i of image A and cell j of image B match when j is i's nearest
    neighbour in B and i is j's nearest neighbour in A (cosine similarity of
    the full feature vectors): the cycle A -> B -> A returns to its start.
    Mutual nearest neighbours are the usual way to read dense correspondences
    off self-supervised features without training (e.g. Amir et al., "Deep
    ViT Features as Dense Visual Descriptors", 2022). The share is the number
    of matches over ``min(N_a, N_b)``, the most there can be. Unrelated
    features still give many matches by chance (about half the cells for two
    sets of independent Gaussian vectors, whatever the dimension), so compare
    the share against a baseline rather than against 0.
cycle_share_excess
    The share minus its chance level, the share found after the channels of
    image B are rotated by half their number: each cell keeps its values,
    but channel k of A no longer lines up with channel k of B, so any match
    left is chance. Near 0 when the two images share no parts, clearly above
    0 when the same parts have the same features in both.
colour_agreement
    Whether matched cells get the same colour in an across-image PCA picture:
    ``1 - mean colour distance of matched pairs / mean colour distance of all
    pairs``. 1 when every match has identical colours, about 0 when matches
    are no closer in colour than random pairs of cells. Dividing by the
    all-pairs distance makes it independent of how much colour contrast the
    picture has at all, which is what differs between a naive and a masked
    fit. The part-sharing claim compares it between the masked and the naive
    across-image PCA on the same matches.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mutual_nn", "cycle_consistent_share", "cycle_share_excess", "colour_agreement"]


def _rows(x: np.ndarray, name: str, dim: int | None = None) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} must be (N, D) with N, D >= 1, got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} must have {dim} columns to match, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be real-valued, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise ValueError(f"{name} must be finite, got {bad} non-finite values")
    return arr


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def mutual_nn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mutual nearest neighbours between two sets of feature vectors.

    Parameters
    ----------
    a : (N_a, D) array_like, finite
        E.g. the foreground cells of image A (``pixels(fmap, mask)``).
    b : (N_b, D) array_like, finite

    Returns
    -------
    (M, 2) ndarray of int64
        Rows ``(i, j)``: ``b[j]`` is the most cosine-similar row of `b` to
        ``a[i]`` and ``a[i]`` the most similar row of `a` to ``b[j]``. Sorted by
        i; each i and each j appears at most once. Ties go to the lower index.
        A zero vector has similarity 0 with everything.
    """
    ua = _unit(_rows(a, "a"))
    ub = _unit(_rows(b, "b", ua.shape[1]))
    sim = ua @ ub.T
    a_to_b = np.argmax(sim, axis=1)
    b_to_a = np.argmax(sim, axis=0)
    i = np.flatnonzero(b_to_a[a_to_b] == np.arange(ua.shape[0]))
    return np.stack([i, a_to_b[i]], axis=1).astype(np.int64)


def cycle_consistent_share(a: np.ndarray, b: np.ndarray) -> float:
    """Share of cells whose nearest-neighbour cycle A -> B -> A closes.

    Parameters
    ----------
    a, b : (N_a, D), (N_b, D) array_like, finite

    Returns
    -------
    float in (0, 1]
        ``len(mutual_nn(a, b)) / min(N_a, N_b)``; symmetric in a and b up to
        ties. Never 0: the globally most similar pair is always mutual.
    """
    pairs = mutual_nn(a, b)
    return pairs.shape[0] / min(np.shape(a)[0], np.shape(b)[0])


def cycle_share_excess(a: np.ndarray, b: np.ndarray) -> float:
    """Cycle-consistent share above its chance level.

    Parameters
    ----------
    a, b : (N_a, D), (N_b, D) array_like, finite

    Returns
    -------
    float in (-1, 1)
        ``cycle_consistent_share(a, b) - cycle_consistent_share(a, roll(b, D // 2, axis=1))``.
        The rotation is fixed (no randomness) and is not the identity for
        D >= 2; for D = 1 the result is 0.
    """
    bb = np.asarray(b)
    if bb.ndim != 2:
        raise ValueError(f"b must be (N, D) with N, D >= 1, got shape {bb.shape}")
    null = np.roll(bb, bb.shape[1] // 2, axis=1)
    return cycle_consistent_share(a, b) - cycle_consistent_share(a, null)


def colour_agreement(rgb_a: np.ndarray, rgb_b: np.ndarray, pairs: np.ndarray) -> float:
    """How much closer in colour matched cells are than random pairs of cells.

    Parameters
    ----------
    rgb_a : (N_a, 3) array_like, finite
        Colours of image A's cells in [0, 1] (e.g. ``joint_rgb`` output at the
        foreground cells, in the same order as the features given to
        :func:`mutual_nn`).
    rgb_b : (N_b, 3) array_like, finite
    pairs : (M, 2) int array, M >= 1
        Matches ``(i, j)``, e.g. from :func:`mutual_nn`.

    Returns
    -------
    float <= 1
        ``1 - mean_pairs |rgb_a[i] - rgb_b[j]| / mean_{all i, j} |rgb_a[i] - rgb_b[j]|``
        (Euclidean distance in RGB). 0.0 when all colours are identical (no
        contrast: nothing can agree).
    """
    ca = _rows(rgb_a, "rgb_a")
    cb = _rows(rgb_b, "rgb_b", ca.shape[1])
    p = np.asarray(pairs)
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] < 1 or not np.issubdtype(p.dtype, np.integer):
        raise ValueError(f"pairs must be a non-empty (M, 2) int array, got shape {p.shape} "
                         f"dtype {p.dtype}")
    if p[:, 0].min() < 0 or p[:, 0].max() >= ca.shape[0] or p[:, 1].min() < 0 \
            or p[:, 1].max() >= cb.shape[0]:
        raise ValueError(f"pairs index outside rgb_a ({ca.shape[0]} rows) or rgb_b ({cb.shape[0]} rows)")
    # Mean distance over all N_a * N_b pairs, in row blocks to bound memory.
    total = 0.0
    step = max(1, 4_000_000 // max(1, cb.shape[0]))
    for s in range(0, ca.shape[0], step):
        d = ca[s:s + step, None, :] - cb[None, :, :]
        total += float(np.sqrt((d * d).sum(axis=2)).sum())
    base = total / (ca.shape[0] * cb.shape[0])
    if base <= 0.0:
        return 0.0
    matched = float(np.linalg.norm(ca[p[:, 0]] - cb[p[:, 1]], axis=1).mean())
    return 1.0 - matched / base
