"""All claim metrics of one image (one model), or of one group, in the form the claims take.

These compose the metric functions exactly as :data:`dinoreport.analysis.claims.METRICS`
describes, so a section only has to collect the numbers into
``measurements[metric][model_id]`` lists, one entry per image, in one image order
for all models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .across import pixels
from .correspond import colour_agreement, cycle_share_excess, mutual_nn
from .instances import instance_labels, instance_separation
from .masks import foreground_mask, mask_iou
from .outliers import local_norm_outliers, value_tails
from .checks import check_fmap
from .linalg import rounding_floor, top_components, top_eigh
from .pca import pca_within
from .spatial import edge_following, far_similarity, neighbour_coherence, pool_mean, speck_share, subject_iou

__all__ = ["IMAGE_METRICS", "GROUP_METRICS", "INSTANCE_STAGE", "MIN_INSTANCE_CELLS", "image_metrics",
           "group_metrics", "free_controls", "random_masks", "centre_prior", "split_halves", "pooled_photo"]

IMAGE_METRICS = ("pc1_iou_ref", "pc1_iou_border", "pc1_speck_share", "pc23_coherence", "norm_outlier_share", "edge_drop",
                 "far_similarity_first", "c4_instance_separation", "tail_log_ratio")
GROUP_METRICS = ("part_colour_gain", "part_match_excess")
INSTANCE_STAGE = "C4"
# An instance must cover at least a 2 x 2 block of the C4 grid: a thinner sliver of a
# drawn outline is not something a feature map can be asked to keep apart.
MIN_INSTANCE_CELLS = 4


def _instances_on_grid(reference: np.ndarray, instances: np.ndarray | None,
                       shape: tuple[int, int]) -> np.ndarray:
    """(h, w) int32 instance labels on the grid: majority vote per cell and instance."""
    if instances is None:
        return instance_labels(pool_mean(reference, shape) >= 0.5, MIN_INSTANCE_CELLS)
    lab = np.asarray(instances)
    if lab.shape != np.shape(reference) or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"instances must be an int array of the reference's shape "
                         f"{np.shape(reference)}, got shape {lab.shape} dtype {lab.dtype}")
    out = np.zeros(shape, dtype=np.int32)
    k = 0
    for label in np.unique(lab[lab > 0]):
        cells = pool_mean(lab == label, shape) >= 0.5
        if np.count_nonzero(cells & (out == 0)) >= MIN_INSTANCE_CELLS:
            k += 1
            out[cells & (out == 0)] = k
    return out


def image_metrics(stages: Sequence[tuple[str, np.ndarray]], *, photo: np.ndarray | None = None,
                  reference: np.ndarray | None = None, instances: np.ndarray | None = None,
                  threshold: float = 0.0) -> dict[str, float]:
    """Every per-image claim metric of one model on one image.

    Parameters
    ----------
    stages : sequence of (stage name, (C, H, W) feature map), first stage first
        All reported stages of one model for one image (e.g. C2..C5 or B3..B12).
    photo : (H, W) or (H, W, 3) array_like, optional
        The photo as fed to the network; needed for ``edge_drop``.
    reference : (H, W) bool array, optional
        The drawn subject mask at photo resolution; needed for ``pc1_iou_ref``
        and ``c4_instance_separation``.
    instances : (H, W) int array, optional
        Instance numbers (0 background) of the reference; without it the
        4-connected components of the reference are the instances.
    threshold : float
        PC1 foreground threshold (``analysis.mask_threshold``).

    Returns
    -------
    {metric: float}
        Exactly the keys of :data:`IMAGE_METRICS`; NaN where the metric does
        not apply: no photo, no reference, no stage named C4, fewer than two
        instances of at least :data:`MIN_INSTANCE_CELLS` cells on the C4 grid,
        a grid without interior cells (fewer than 3 rows or columns) for
        ``edge_drop`` and ``pc1_speck_share``.
    """
    if not stages:
        raise ValueError("stages must hold at least one (name, fmap) pair, got none")
    maps = [(name, check_fmap(f, f"stage {name}")) for name, f in stages]
    first, last = maps[0][1], maps[-1][1]
    nan = float("nan")
    out = dict.fromkeys(IMAGE_METRICS, nan)
    proj = pca_within(last, 3).proj
    out["pc1_speck_share"] = speck_share(foreground_mask(proj[0], threshold))
    out["pc23_coherence"] = (neighbour_coherence(proj[1]) + neighbour_coherence(proj[2])) / 2.0
    out["norm_outlier_share"] = local_norm_outliers(last).share
    out["far_similarity_first"] = far_similarity(first)
    out["tail_log_ratio"] = float(np.mean(np.log10([value_tails(f).high_tail_ratio for _, f in maps])))
    if photo is not None:
        out["edge_drop"] = edge_following(first, photo) - edge_following(last, photo)
    if reference is not None:
        out["pc1_iou_ref"] = subject_iou(proj[0], reference, threshold, orient="reference")
        out["pc1_iou_border"] = subject_iou(proj[0], reference, threshold, orient="border")
        c4 = dict(maps).get(INSTANCE_STAGE)
        if c4 is not None:
            lab = _instances_on_grid(reference, instances, c4.shape[1:])
            if lab.max() >= 2:
                out["c4_instance_separation"] = instance_separation(c4, lab)
    return out


def pooled_photo(photo: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(3, h, w) float64: each RGB channel of the photo averaged over the cells of the grid
    (a grey photo gives one channel): the photo as a feature map with no network at all."""
    arr = np.asarray(photo, dtype=np.float64)
    chans = [arr] if arr.ndim == 2 else [arr[..., k] for k in range(arr.shape[2])]
    return np.stack([pool_mean(c, shape) for c in chans])


def centre_prior(cells: int, shape: tuple[int, int]) -> np.ndarray:
    """(h, w) bool: the ``cells`` cells nearest the grid's centre, distances scaled by the grid's
    sides (a centred ellipse of the grid's aspect ratio with exactly that many cells)."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    r = ((y + 0.5 - h / 2) / h) ** 2 + ((x + 0.5 - w / 2) / w) ** 2
    order = np.argsort(r.reshape(-1), kind="stable")
    out = np.zeros(h * w, dtype=bool)
    out[order[:int(cells)]] = True
    return out.reshape(h, w)


def split_halves(labels: np.ndarray) -> np.ndarray:
    """(h, w) int32: the foreground cells of ``labels`` (> 0) numbered 1 and 2 by halves along
    the foreground's longer side (row-major order of the sorted coordinate breaks ties): two
    "instances" that are one subject cut in two."""
    lab = np.asarray(labels)
    ys, xs = np.nonzero(lab > 0)
    if ys.size == 0:
        return np.zeros(lab.shape, dtype=np.int32)
    along = xs if np.ptp(xs) >= np.ptp(ys) else ys
    order = np.argsort(along, kind="stable")
    out = np.zeros(lab.shape, dtype=np.int32)
    half = np.ones(ys.size, dtype=np.int32)
    half[order[ys.size // 2:]] = 2
    out[ys, xs] = half
    return out


def random_masks(masks: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Masks with each one's cells placed at random (as many cells, same grid)."""
    out = []
    for m in masks:
        a = np.asarray(m, dtype=bool)
        out.append(rng.permutation(a.reshape(-1)).reshape(a.shape))
    return out


def free_controls(stages: Sequence[tuple[str, np.ndarray]], *, photo: np.ndarray | None = None,
                  reference: np.ndarray | None = None, instances: np.ndarray | None = None,
                  threshold: float = 0.0, seed: int = 0) -> dict[str, dict[str, float]]:
    """The per-image free controls of :data:`dinoreport.analysis.claims.FREE_CONTROLS`.

    Parameters are those of :func:`image_metrics`; ``seed`` seeds the shuffle.

    Returns
    -------
    {control: {metric: float}}
        ``photo``: ``edge_drop`` of the photo pooled to the first and last stages' grids;
        ``centre_prior``: ``pc1_iou_ref`` of :func:`centre_prior` with the reference's cells;
        ``halves``: ``c4_instance_separation`` with the instances replaced by
        :func:`split_halves` of them; ``shuffled``: ``pc23_coherence`` of the last stage
        with its positions permuted. NaN exactly where the metric itself is.
    """
    maps = [(name, check_fmap(f, f"stage {name}")) for name, f in stages]
    first, last = maps[0][1], maps[-1][1]
    nan = float("nan")
    out = {"photo": {"edge_drop": nan}, "centre_prior": {"pc1_iou_ref": nan},
           "halves": {"c4_instance_separation": nan}, "shuffled": {"pc23_coherence": nan}}
    c, h, w = last.shape
    perm = np.random.default_rng(seed).permutation(h * w)
    mixed = last.reshape(c, -1)[:, perm].reshape(c, h, w)
    proj = pca_within(mixed, 3).proj
    out["shuffled"]["pc23_coherence"] = (neighbour_coherence(proj[1]) + neighbour_coherence(proj[2])) / 2.0
    if photo is not None:
        out["photo"]["edge_drop"] = (edge_following(pooled_photo(photo, first.shape[1:]), photo)
                                     - edge_following(pooled_photo(photo, last.shape[1:]), photo))
    if reference is not None:
        on_grid = pool_mean(np.asarray(reference, dtype=np.float64), (h, w)) >= 0.5
        out["centre_prior"]["pc1_iou_ref"] = mask_iou(centre_prior(int(on_grid.sum()), (h, w)), on_grid)
        c4 = dict(maps).get(INSTANCE_STAGE)
        if c4 is not None:
            lab = _instances_on_grid(reference, instances, c4.shape[1:])
            if lab.max() >= 2:
                out["halves"]["c4_instance_separation"] = instance_separation(c4, split_halves(lab))
    return out


def _standardised(rows: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Rows with every channel z-scored over all rows of the group together.

    A channel that is large in every image would otherwise decide every nearest
    neighbour in every image, and agree with itself across images whether or not
    any cell corresponds; the chance baseline (rolled channels) does not share it.
    """
    pooled = np.concatenate([r for r in rows if r.shape[0]], axis=0).astype(np.float64)
    mu = pooled.mean(axis=0)
    sd = pooled.std(axis=0)
    sd[sd <= 0] = 1.0
    return [(r.astype(np.float64) - mu) / sd for r in rows]


class _Scatter:
    """Per-image sums of centred rows, so that a PCA fit leaving images out is a sum of the rest."""

    def __init__(self, rows: Sequence[np.ndarray]) -> None:
        pooled = [r for r in rows if r.shape[0]]
        self.shift = np.concatenate(pooled, axis=0).astype(np.float64).mean(axis=0)
        cs = [r.astype(np.float64) - self.shift for r in rows]
        self.n = np.array([c.shape[0] for c in cs])
        self.s1 = np.stack([c.sum(axis=0) for c in cs])
        self.s2 = np.stack([c.T @ c for c in cs])
        self.max_abs = np.array([float(np.abs(r).max()) if r.size else 0.0 for r in rows])
        self.dtype = np.result_type(*[r.dtype for r in rows])

    def fit_without(self, drop: Sequence[int], k: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """(mean (D,), components (k, D)) of the rows of every image not in `drop`.

        The sums are added up over the kept images (not subtracted from the total, which
        would leave rounding noise in directions the kept rows do not have); directions with
        no more scatter than storage rounding are zero rows, as in the report's PCA fits.
        """
        keep = [i for i in range(self.n.size) if i not in set(drop)]
        n = int(self.n[keep].sum())
        dim = self.s1.shape[1]
        if n == 0:
            return self.shift, np.zeros((k, dim))
        s1 = self.s1[keep].sum(axis=0)
        scatter = self.s2[keep].sum(axis=0) - np.outer(s1, s1) / n
        scatter = (scatter + scatter.T) / 2.0
        w, vt = top_eigh(scatter, k)
        floor = rounding_floor(n, dim, float(self.max_abs[keep].max()), self.dtype)
        comps, _ = top_components(w, vt, k, dim, floor, total=float(np.clip(np.trace(scatter), 0.0, None)))
        return self.shift + s1 / n, comps


def _colours(x: np.ndarray, fit: tuple[np.ndarray, np.ndarray], span_rows: np.ndarray) -> np.ndarray:
    """(N, k) colours in [0, 1]: projections min-max scaled over the rows of `span_rows`."""
    mean, comps = fit
    p = (x.astype(np.float64) - mean) @ comps.T
    q = (span_rows.astype(np.float64) - mean) @ comps.T
    lo, hi = q.min(axis=0), q.max(axis=0)
    span = hi - lo
    out = (p - lo) / np.where(span > 0, span, 1.0)
    out[:, span <= 0] = 0.5
    return np.clip(out, 0.0, 1.0)


def group_metrics(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> dict[str, list[float]]:
    """Part-sharing metrics of one model on one group of images.

    Parameters
    ----------
    maps : sequence of (C, H_i, W_i) feature maps, one per image of the group
        The stage the across-image study uses (the last stage).
    masks : sequence of (H_i, W_i) bool foreground masks (PC1 masks)

    Returns
    -------
    {"part_colour_gain": [...], "part_match_excess": [...]}
        One value per image, in the order given: the mean over its pairs with
        the other images with foreground of

        - ``part_match_excess``: :func:`cycle_share_excess` of the two images'
          foreground cells, every channel standardised over the foreground
          cells of the whole group first;
        - ``part_colour_gain``: (masked - naive) :func:`colour_agreement` of the
          mutual nearest foreground cells (standardised as above). The colours
          are the report's: masked = PCA fitted on foreground cells, scaled over
          the pair's foreground; naive = PCA on all cells, scaled over all of
          the pair's cells; but both are fitted on the group's *other* images.
          A PCA fitted on the cells it is scored on aligns with their own noise,
          which is largest among the foreground cells the matches come from, so
          the in-sample masked fit "gains" on independent noise; fitted on the
          other images it does not, and parts shared by the group still are.

        An image is NaN when it has no foreground cell, or when fewer than two
        (excess) or three (gain) images of the group have one.
    """
    if len(maps) != len(masks):
        raise ValueError(f"got {len(maps)} maps but {len(masks)} masks")
    n = len(maps)
    fms = [check_fmap(f, f"maps[{i}]") for i, f in enumerate(maps)]
    ms = [np.asarray(m) for m in masks]
    has = [bool(np.any(m)) for m in ms]
    out = {k: [float("nan")] * n for k in GROUP_METRICS}
    if sum(has) < 2:
        return out
    fg = [pixels(f, m) for f, m in zip(fms, ms)]
    z = _standardised(fg)
    gain_ok = sum(has) >= 3
    if gain_ok:
        every = [pixels(f) for f in fms]
        masked = _Scatter([fg[k] if has[k] else fg[k][:0] for k in range(n)])
        naive = _Scatter(every)
    gain = np.zeros((n, n))
    excess = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            if not (has[i] and has[j]):
                continue
            excess[i, j] = excess[j, i] = cycle_share_excess(z[i], z[j])
            if not gain_ok:
                continue
            pairs = mutual_nn(z[i], z[j])
            fit_m, fit_n = masked.fit_without((i, j)), naive.fit_without((i, j))
            span_m = np.concatenate([fg[i], fg[j]])
            span_n = np.concatenate([every[i], every[j]])
            g = (colour_agreement(_colours(fg[i], fit_m, span_m), _colours(fg[j], fit_m, span_m), pairs)
                 - colour_agreement(_colours(fg[i], fit_n, span_n), _colours(fg[j], fit_n, span_n), pairs))
            gain[i, j] = gain[j, i] = g
    k = sum(has) - 1
    out["part_match_excess"] = [float(excess[i].sum() / k) if has[i] else float("nan") for i in range(n)]
    if gain_ok:
        out["part_colour_gain"] = [float(gain[i].sum() / k) if has[i] else float("nan") for i in range(n)]
    return out
