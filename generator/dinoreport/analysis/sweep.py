"""Stability of the PC1 foreground mask across input resolutions (pure functions)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .masks import foreground_mask, mask_iou, resize_nearest
from .pca import pca_within

__all__ = ["SweepPoint", "resolution_sweep"]


@dataclass(frozen=True)
class SweepPoint:
    """One resolution of a sweep.

    resolution : short side in px.
    grid : (h, w) cells of the feature map.
    pc1_explained : share of variance on PC1, in [0, 1].
    mask : (h, w) bool PC1 foreground mask at this resolution's own grid.
    mask_iou_vs_base : IoU with the base resolution's mask, both resized by nearest neighbour
        to the finer of the two grids; 1.0 for the base itself.
    """

    resolution: int
    grid: tuple[int, int]
    pc1_explained: float
    mask: np.ndarray
    mask_iou_vs_base: float


def resolution_sweep(fmaps: Mapping[int, np.ndarray], base: int, threshold: float = 0.0) -> list[SweepPoint]:
    """PC1 explained variance and PC1-mask IoU against ``base`` for each resolution.

    Parameters
    ----------
    fmaps : ``{resolution px: (C, h, w) feature map}`` of one image and one model stage;
        grids may differ in size and need not be integer multiples of each other.
    base : the resolution whose mask the others are compared with; a key of ``fmaps``.
    threshold : foreground threshold on the oriented PC1 (see :func:`foreground_mask`).

    Returns
    -------
    list of :class:`SweepPoint`, by increasing resolution.
    """
    if base not in fmaps:
        raise ValueError(f"base resolution {base} is not among the swept ones {sorted(fmaps)}")
    masks, ev = {}, {}
    for r in sorted(fmaps):
        res = pca_within(fmaps[r], k=1)
        masks[r] = foreground_mask(res.proj[0], threshold=threshold)
        ev[r] = float(res.explained_variance_ratio[0])
    out = []
    for r in sorted(fmaps):
        a, b = masks[r], masks[base]
        # a common grid: the finer of the two, so no cell of either mask is dropped
        shape = max(a.shape, b.shape, key=lambda s: s[0] * s[1])
        iou = mask_iou(resize_nearest(a, shape), resize_nearest(b, shape))
        out.append(SweepPoint(r, tuple(a.shape), ev[r], a, iou))
    return out
