"""Pure analyses of feature maps: arrays in, arrays/dataclasses out."""

from .across import CovarianceAccumulator, PCAFit, joint_rgb, joint_scale, pixels, project
from .channels import pick_channels
from .cka import linear_cka, resize_map
from .explorer import cosine_map, explorer_codes
from .masks import foreground_mask, mask_iou, orient_by_border, resize_nearest
from .pca import PCAResult, check_fmap, minmax, pca_within, to_rgb
from .stats import FeatureStats, feature_stats, histogram, shared_bin_edges

__all__ = [
    "CovarianceAccumulator",
    "FeatureStats",
    "PCAFit",
    "PCAResult",
    "check_fmap",
    "cosine_map",
    "explorer_codes",
    "feature_stats",
    "foreground_mask",
    "histogram",
    "joint_rgb",
    "joint_scale",
    "linear_cka",
    "mask_iou",
    "minmax",
    "orient_by_border",
    "pca_within",
    "pick_channels",
    "pixels",
    "project",
    "resize_map",
    "resize_nearest",
    "shared_bin_edges",
    "to_rgb",
]
