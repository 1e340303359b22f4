"""Spatial measures of feature maps and PC maps: smoothness, specks, subject, edges, reach.

Each metric turns one map of one image into one number, so a claim can compare
models image by image (see :mod:`dinoreport.analysis.claims`). All are pure and
deterministic; none fits anything to the data.

Metrics
-------
neighbour_coherence
    Moran's I with rook (4-neighbour) weights of a scalar map: the correlation
    between each cell and its up/down/left/right neighbours, relative to the
    map mean. About 0 for white noise, near 1 for a smooth map, negative for a
    checkerboard. Used for "the later components are smooth regions".
speck_share
    Share of the interior cells of a bool mask that differ from all four of
    their 4-neighbours: isolated single-cell specks. 0 for clean blobs; a fair
    coin per cell gives 1/16 at every grid size. Border cells are left out:
    with only two or three neighbours to disagree with they become specks
    more easily, which would make the share depend on the grid size.
    Used for "masks are cleaner".
subject_iou
    IoU of the PC1 foreground mask (:func:`~dinoreport.analysis.masks.foreground_mask`)
    against a reference mask drawn on the photo, pooled to the feature grid by
    majority vote. Used for "PC1 is the subject".
edge_following
    Spearman rank correlation, over the interior cells of the grid, between
    the feature gradient magnitude of a stage's map and the Sobel edge
    magnitude of the photo averaged over each cell. Near 1 when the map
    changes exactly where the photo has edges, about 0 when its changes are
    unrelated to them. The border ring is left out: there the gradient is a
    one-sided difference (larger for noise) and the Sobel filter sees a
    replicated edge (smaller), which alone made white noise read about -0.3.
far_similarity
    Mean cosine similarity between positions at least half the shorter grid
    side apart. A map whose positions all carry the same image-wide content
    scores near 1; a map of purely local content (zero-mean, short-range)
    scores near 0. A constant offset shared by all positions also counts as
    shared content, so compare it between models, not to an absolute bar.
"""

from __future__ import annotations

import numpy as np

from .masks import foreground_mask, mask_iou, orient_by_border
from .checks import check_fmap

__all__ = ["pool_mean", "neighbour_coherence", "speck_share", "subject_iou", "sobel_magnitude",
           "edge_following", "far_similarity"]

# ITU-R BT.601 luma weights: the usual grey conversion before an edge filter.
_LUMA = np.array([0.299, 0.587, 0.114])


def _check_2d(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty (H, W) array, got shape {arr.shape}")
    if arr.dtype != np.bool_:
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"{name} must be real-valued, got dtype {arr.dtype}")
        bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise ValueError(f"{name} must be finite, got {bad} non-finite values")
    return arr


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    s = tuple(shape)
    if len(s) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1
                          for v in s):
        raise ValueError(f"shape must be two positive ints, got {shape!r}")
    return int(s[0]), int(s[1])


def pool_mean(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Average a fine 2-D array over the cells of a coarser grid.

    Parameters
    ----------
    x : (H, W) array_like, finite (bool is read as 0/1)
        E.g. a photo's edge magnitude, or a reference mask, in pixels.
    shape : (h, w) ints with h <= H and w <= W
        The feature grid.

    Returns
    -------
    (h, w) ndarray of float64
        Each pixel belongs to the cell that contains its centre, i.e. pixel row
        i goes to cell row ``floor((i + 0.5) * h / H)``; the value is the mean
        over the pixels of that cell. With H = s * h this is block averaging.
    """
    arr = _check_2d(x, "x").astype(np.float64)
    h, w = _check_shape(shape)
    hi, wi = arr.shape
    if h > hi or w > wi:
        raise ValueError(f"pool_mean only shrinks: grid {(h, w)} is larger than the array {arr.shape}")
    # Integer arithmetic keeps pixels on exact cell boundaries in the same cell every time.
    rows = ((2 * np.arange(hi) + 1) * h) // (2 * hi)
    cols = ((2 * np.arange(wi) + 1) * w) // (2 * wi)
    cell = (rows[:, None] * w + cols[None, :]).reshape(-1)
    sums = np.bincount(cell, weights=arr.reshape(-1), minlength=h * w)
    counts = np.bincount(cell, minlength=h * w)
    return (sums / counts).reshape(h, w)


def neighbour_coherence(x: np.ndarray) -> float:
    """Moran's I of a scalar map with 4-neighbour (rook) weights.

    Parameters
    ----------
    x : (H, W) array_like, finite
        E.g. one principal component's projection (feature units; the value is
        scale-free).

    Returns
    -------
    float
        ``I = (N / S0) * sum_{i~j} z_i z_j / sum_i z_i^2`` with ``z = x - mean(x)``,
        the sum over ordered pairs of 4-neighbours and S0 their number. Near 1
        for a smooth map, about ``-1 / (N - 1)`` for white noise (standard
        error about ``1 / sqrt(N)``), -1 for a checkerboard. A constant map,
        or one with a single cell, has no structure to measure and gives 0.0.
    """
    arr = _check_2d(x, "x").astype(np.float64)
    h, w = arr.shape
    n_pairs = 2 * (h * (w - 1) + (h - 1) * w)
    z = arr - arr.mean()
    ss = float(np.einsum("ij,ij->", z, z))
    if n_pairs == 0 or ss <= 0.0:
        return 0.0
    cross = 2.0 * (float(np.sum(z[:, 1:] * z[:, :-1])) + float(np.sum(z[1:, :] * z[:-1, :])))
    return float((arr.size / n_pairs) * cross / ss)


def speck_share(mask: np.ndarray) -> float:
    """Share of interior cells that differ from all four of their 4-neighbours.

    Parameters
    ----------
    mask : (H, W) bool array
        E.g. a PC1 foreground mask.

    Returns
    -------
    float in [0, 1], or NaN
        Over the (H - 2) * (W - 2) interior cells; NaN when the mask has fewer
        than 3 rows or columns (no cell has all four neighbours).
    """
    m = _check_2d(mask, "mask")
    if m.dtype != np.bool_:
        raise ValueError(f"mask must be bool, got dtype {m.dtype}")
    if min(m.shape) < 3:
        return float("nan")
    c = m[1:-1, 1:-1]
    speck = (c != m[:-2, 1:-1]) & (c != m[2:, 1:-1]) & (c != m[1:-1, :-2]) & (c != m[1:-1, 2:])
    return float(np.count_nonzero(speck)) / c.size


def subject_iou(pc1: np.ndarray, reference: np.ndarray, threshold: float = 0.0,
                ring: int = 1, orient: str = "border") -> float:
    """IoU of the PC1 foreground mask against a reference subject mask.

    Parameters
    ----------
    pc1 : (h, w) array_like, finite
        Projection onto the within-image PC1 (any sign).
    reference : (H, W) bool array with H >= h, W >= w
        The subject, drawn on the photo at any resolution at least the grid's.
    threshold, ring
        As for :func:`~dinoreport.analysis.masks.foreground_mask`.
    orient : {"border", "reference"}
        "border": the sign the border rule picks
        (:func:`~dinoreport.analysis.masks.foreground_mask`, the mask the
        figures show); it picks the wrong side when the subject fills the
        border. "reference": the better of the two signs, i.e. whether either
        side of PC1 is the subject; the sign of a principal component is
        arbitrary, so this scores PC1 itself, not the orientation rule.

    Returns
    -------
    float in [0, 1]
        ``mask_iou(pc1 mask, reference on the grid)``; a grid cell is subject
        when at least half of its pixels are (:func:`pool_mean` >= 0.5).
    """
    if orient not in ("border", "reference"):
        raise ValueError(f"orient must be 'border' or 'reference', got {orient!r}")
    fg = foreground_mask(pc1, threshold, ring)
    ref = _check_2d(reference, "reference")
    if ref.dtype != np.bool_:
        raise ValueError(f"reference must be a bool mask, got dtype {ref.dtype}")
    on_grid = pool_mean(ref, fg.shape) >= 0.5
    iou = mask_iou(fg, on_grid)
    if orient == "reference":
        oriented, _ = orient_by_border(pc1, ring)
        iou = max(iou, mask_iou(-oriented > float(threshold), on_grid))
    return iou


def sobel_magnitude(image: np.ndarray) -> np.ndarray:
    """Sobel edge magnitude of a photo.

    Parameters
    ----------
    image : (H, W) grey or (H, W, 3) RGB array_like, finite, any range

    Returns
    -------
    (H, W) ndarray of float64
        ``hypot(sobel_rows, sobel_cols)`` of the grey image (BT.601 luma for
        RGB), edges replicated at the border; in the image's units per pixel.
    """
    from scipy.ndimage import sobel

    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = np.asarray(arr, dtype=np.float64) @ _LUMA
    grey = _check_2d(arr, "image").astype(np.float64)
    return np.hypot(sobel(grey, axis=0, mode="nearest"), sobel(grey, axis=1, mode="nearest"))


def _feature_gradient(fm: np.ndarray) -> np.ndarray:
    """(H, W) magnitude of the spatial gradient over all channels, each standardised.

    Channels are z-scored over positions first so that a few high-variance
    channels do not decide where the map "changes".
    """
    x = fm.astype(np.float64)
    c, h, w = x.shape
    sd = x.reshape(c, -1).std(axis=1)
    keep = sd > 0
    z = (x[keep] - x[keep].mean(axis=(1, 2), keepdims=True)) / sd[keep, None, None]
    g = np.zeros((h, w))
    if h > 1:
        g += np.sum(np.gradient(z, axis=1) ** 2, axis=0)
    if w > 1:
        g += np.sum(np.gradient(z, axis=2) ** 2, axis=0)
    return np.sqrt(g)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import rankdata

    ra, rb = rankdata(a.reshape(-1)), rankdata(b.reshape(-1))
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def edge_following(fmap: np.ndarray, image: np.ndarray) -> float:
    """How much a stage's map changes where the photo has edges.

    Parameters
    ----------
    fmap : (C, h, w) array_like, finite
        One stage's feature map of the photo.
    image : (H, W) or (H, W, 3) array_like with H >= h, W >= w
        The photo as fed to the network (same framing), any range.

    Returns
    -------
    float in [-1, 1], or NaN
        Spearman correlation over the (h - 2) * (w - 2) interior cells between
        the feature gradient magnitude (channels z-scored, central differences)
        and the Sobel magnitude of the photo averaged per cell
        (:func:`pool_mean`). Border cells are left out because both their
        gradient (one-sided) and their Sobel value (replicated pixels) are
        computed differently from the interior's, which correlates the two
        maps by itself. 0.0 when either map is constant over the interior;
        NaN when the grid has fewer than 3 rows or columns (no interior).
    """
    fm = check_fmap(fmap)
    edges = pool_mean(sobel_magnitude(image), fm.shape[1:])
    if min(fm.shape[1:]) < 3:
        return float("nan")
    inner = (slice(1, -1), slice(1, -1))
    return _spearman(_feature_gradient(fm)[inner], edges[inner])


def far_similarity(fmap: np.ndarray, min_dist_frac: float = 0.5, max_positions: int = 1024) -> float:
    """Mean cosine similarity between distant positions of a map.

    Parameters
    ----------
    fmap : (C, H, W) array_like, finite, with H * W >= 2
    min_dist_frac : float in (0, 1]
        A pair counts as distant when its Euclidean distance in grid cells is
        at least ``min_dist_frac * min(H, W)``.
    max_positions : int
        Positions are taken on a regular sub-grid (every s-th row and column,
        s the smallest stride giving at most this many) to bound the pairs.

    Returns
    -------
    float in [-1, 1]
        Mean over distant pairs of the uncentred cosine similarity; a zero
        vector has similarity 0 with everything.
    """
    fm = check_fmap(fmap)
    c, h, w = fm.shape
    if not 0.0 < float(min_dist_frac) <= 1.0:
        raise ValueError(f"min_dist_frac must be in (0, 1], got {min_dist_frac!r}")
    if isinstance(max_positions, bool) or not isinstance(max_positions, (int, np.integer)) \
            or max_positions < 2:
        raise ValueError(f"max_positions must be an integer >= 2, got {max_positions!r}")
    if h * w < 2:
        raise ValueError(f"fmap needs at least 2 positions for far_similarity, got shape {fm.shape}")
    s = 1
    while -(-h // s) * -(-w // s) > max_positions:
        s += 1
    rows, cols = np.arange(0, h, s), np.arange(0, w, s)
    sub = fm[:, rows][:, :, cols].reshape(c, -1).T.astype(np.float64)
    norms = np.linalg.norm(sub, axis=1)
    u = np.divide(sub, norms[:, None], out=np.zeros_like(sub), where=norms[:, None] > 0)
    yy, xx = np.meshgrid(rows, cols, indexing="ij")
    pos = np.stack([yy.reshape(-1), xx.reshape(-1)], axis=1).astype(np.float64)
    dist = np.sqrt(((pos[:, None, :] - pos[None, :, :]) ** 2).sum(axis=2))
    far = np.triu(dist >= float(min_dist_frac) * min(h, w) - 1e-9, k=1)
    if not far.any():
        raise ValueError(f"no pair of positions is {min_dist_frac} * min(H, W) apart in a map "
                         f"of shape {fm.shape}; lower min_dist_frac")
    return float((u @ u.T)[far].mean())
