"""All claim metrics of one image (one model), or of one group, in the form the claims take.

These compose the metric functions exactly as :data:`generator.analysis.claims.METRICS`
describes, so a section only has to collect the numbers into
``measurements[metric][model_id]`` lists, one entry per image, in one image order
for all models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .across import CovarianceAccumulator, joint_rgb, pixels, project
from .correspond import colour_agreement, cycle_share_excess, mutual_nn
from .instances import instance_labels, instance_separation
from .masks import foreground_mask
from .outliers import norm_outliers, value_tails
from .pca import check_fmap, pca_within
from .spatial import edge_following, far_similarity, neighbour_coherence, pool_mean, speck_share, subject_iou

__all__ = ["IMAGE_METRICS", "GROUP_METRICS", "INSTANCE_STAGE", "MIN_INSTANCE_CELLS", "image_metrics",
           "group_metrics"]

IMAGE_METRICS = ("pc1_iou_ref", "pc1_speck_share", "pc23_coherence", "norm_outlier_share", "edge_drop",
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
        instances of at least :data:`MIN_INSTANCE_CELLS` cells on the C4 grid.
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
    out["norm_outlier_share"] = norm_outliers(last).share
    out["far_similarity_first"] = far_similarity(first)
    ratios = [value_tails(f).tail_ratio for _, f in maps]
    if all(0.0 < r < math.inf for r in ratios):
        out["tail_log_ratio"] = float(np.mean(np.log10(ratios)))
    if photo is not None:
        out["edge_drop"] = edge_following(first, photo) - edge_following(last, photo)
    if reference is not None:
        out["pc1_iou_ref"] = subject_iou(proj[0], reference, threshold)
        c4 = dict(maps).get(INSTANCE_STAGE)
        if c4 is not None:
            lab = _instances_on_grid(reference, instances, c4.shape[1:])
            if lab.max() >= 2:
                out["c4_instance_separation"] = instance_separation(c4, lab)
    return out


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
        the other images of (masked - naive) :func:`colour_agreement` of the
        mutual nearest foreground cells, and of :func:`cycle_share_excess`.
        Colours as in the report: masked fit on foreground pixels, coloured
        over the foreground; naive fit on all pixels, coloured over all. An
        image is NaN when the group has fewer than two images with at least
        one foreground cell.
    """
    if len(maps) != len(masks):
        raise ValueError(f"got {len(maps)} maps but {len(masks)} masks")
    n = len(maps)
    fms = [check_fmap(f, f"maps[{i}]") for i, f in enumerate(maps)]
    ms = [np.asarray(m) for m in masks]
    has = [bool(np.any(m)) for m in ms]
    nan_out = {k: [float("nan")] * n for k in GROUP_METRICS}
    if sum(has) < 2:
        return nan_out
    c = fms[0].shape[0]
    masked, naive = CovarianceAccumulator(c), CovarianceAccumulator(c)
    for f, m in zip(fms, ms):
        masked.update(pixels(f, m))
        naive.update(pixels(f))
    fit_m, fit_n = masked.fit(3), naive.fit(3)
    rgb_m = joint_rgb([project(fit_m, f) for f in fms], ms)
    rgb_n = joint_rgb([project(fit_n, f) for f in fms])
    fg = [pixels(f, m) for f, m in zip(fms, ms)]
    gain = np.zeros((n, n))
    excess = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            if not (has[i] and has[j]):
                continue
            pairs = mutual_nn(fg[i], fg[j])
            g = (colour_agreement(rgb_m[i][ms[i]], rgb_m[j][ms[j]], pairs)
                 - colour_agreement(rgb_n[i][ms[i]], rgb_n[j][ms[j]], pairs))
            gain[i, j] = gain[j, i] = g
            excess[i, j] = excess[j, i] = cycle_share_excess(fg[i], fg[j])
    k = sum(has) - 1
    return {"part_colour_gain": [float(gain[i].sum() / k) if has[i] else float("nan") for i in range(n)],
            "part_match_excess": [float(excess[i].sum() / k) if has[i] else float("nan")
                                  for i in range(n)]}
