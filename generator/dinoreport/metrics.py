"""The pure analysis functions the report uses, in one documented place (arrays in, arrays or
dataclasses out; no I/O, no plotting). They are re-exported from the modules that define them,
so a notebook computes exactly what a build computes. docs/api.md lists them with their shapes.

- Within-image PCA: :func:`pca_within` -> :class:`PCAResult`; :func:`to_rgb`, :func:`minmax`.
- Masks: :func:`foreground_mask` (PC1, border ring as background), :func:`orient_by_border`,
  :func:`mask_iou`, :func:`resize_nearest`.
- Across-image PCA: :class:`CovarianceAccumulator` -> :class:`PCAFit`; :func:`pixels`,
  :func:`project`, :func:`joint_rgb`, :func:`joint_scale`.
- Statistics: :func:`feature_stats` -> :class:`FeatureStats`; :func:`histogram`,
  :func:`histograms`, :func:`shared_bin_edges`; :func:`norm_outliers`, :func:`value_tails`.
- Similarity: :func:`linear_cka`, :class:`CkaAccumulator`, :func:`resize_map`.
- Co-segmentation: :func:`cosegment` -> :class:`Coseg`; :func:`kmeans`.
- Correspondences: :func:`mutual_nn`, :func:`match_cells` -> :class:`CellMatches`,
  :func:`cycle_consistent_share`, :func:`colour_agreement`.
- Resolution: :func:`resolution_sweep` -> :class:`SweepPoint`.
- Channels: :func:`pick_channels` (seeded).
"""
from __future__ import annotations

from .analysis import (CkaAccumulator, CovarianceAccumulator, FeatureStats, NormOutliers, PCAFit, PCAResult,
                       SweepPoint, ValueTails, colour_agreement, cycle_consistent_share, feature_stats,
                       foreground_mask, histogram, histograms, joint_rgb, joint_scale, linear_cka, mask_iou,
                       minmax, mutual_nn, norm_outliers, orient_by_border, pca_within, pick_channels, pixels,
                       project, resize_map, resize_nearest, resolution_sweep, shared_bin_edges, to_rgb,
                       value_tails)
from .analysis.matches import CellMatches, match_cells
from .analysis.parts import Coseg, KMeansResult, cosegment, kmeans

__all__ = [
    "CellMatches", "CkaAccumulator", "Coseg", "CovarianceAccumulator", "FeatureStats", "KMeansResult",
    "NormOutliers", "PCAFit", "PCAResult", "SweepPoint", "ValueTails", "colour_agreement", "cosegment",
    "cycle_consistent_share", "feature_stats", "foreground_mask", "histogram", "histograms", "joint_rgb",
    "joint_scale", "kmeans", "linear_cka", "mask_iou", "match_cells", "minmax", "mutual_nn", "norm_outliers",
    "orient_by_border", "pca_within", "pick_channels", "pixels", "project", "resize_map", "resize_nearest",
    "resolution_sweep", "shared_bin_edges", "to_rgb", "value_tails",
]
