"""Pure analyses of feature maps: arrays in, arrays/dataclasses out."""

from .across import CovarianceAccumulator, PCAFit, joint_rgb, joint_scale, pixels, project
from .channels import pick_channels
from .cka import CkaAccumulator, linear_cka, resize_map
from .claim_metrics import group_metrics, image_metrics
from .correspond import colour_agreement, cycle_consistent_share, cycle_share_excess, mutual_nn
from .explorer import cosine_error, cosine_map, explorer_codes, explorer_int8, requantize, stage_dims
from .instances import instance_labels, instance_separation
from .masks import chance_iou, foreground_mask, mask_iou, orient_by_border, resize_nearest
from .outliers import NormOutliers, ValueTails, local_norm_outliers, norm_outliers, value_tails
from .checks import check_fmap
from .pca import PCAResult, minmax, pca_within, sigmoid_rgb, to_rgb, whiten_scale
from .position import PositionAccumulator, PositionBias, common_grid, l2_normalise
from .probe import ProbeResult, image_folds, probe_images, stack_training, train_probe
from .spectrum import Spectrum, effective_rank, participation_ratio, spectrum, subsample_cells
from .spatial import (edge_following, far_similarity, neighbour_coherence, pool_mean, sobel_magnitude,
                      speck_share, subject_iou)
from .sweep import SweepPoint, resolution_sweep
from .stats import FeatureStats, feature_stats, histogram, histograms, shared_bin_edges

__all__ = [
    "chance_iou",
    "CovarianceAccumulator",
    "FeatureStats",
    "NormOutliers",
    "PCAFit",
    "PCAResult",
    "SweepPoint",
    "ValueTails",
    "check_fmap",
    "colour_agreement",
    "cosine_error",
    "cosine_map",
    "cycle_consistent_share",
    "cycle_share_excess",
    "edge_following",
    "explorer_codes",
    "explorer_int8",
    "requantize",
    "far_similarity",
    "feature_stats",
    "foreground_mask",
    "group_metrics",
    "histogram",
    "histograms",
    "image_metrics",
    "instance_labels",
    "instance_separation",
    "joint_rgb",
    "resolution_sweep",
    "joint_scale",
    "CkaAccumulator",
    "linear_cka",
    "mask_iou",
    "minmax",
    "mutual_nn",
    "neighbour_coherence",
    "local_norm_outliers",
    "norm_outliers",
    "orient_by_border",
    "pca_within",
    "pick_channels",
    "pixels",
    "pool_mean",
    "project",
    "resize_map",
    "resize_nearest",
    "shared_bin_edges",
    "sobel_magnitude",
    "speck_share",
    "stage_dims",
    "subject_iou",
    "to_rgb",
    "value_tails",
    "sigmoid_rgb",
    "whiten_scale",
    "PositionAccumulator",
    "PositionBias",
    "common_grid",
    "l2_normalise",
    "ProbeResult",
    "image_folds",
    "probe_images",
    "stack_training",
    "train_probe",
    "Spectrum",
    "effective_rank",
    "participation_ratio",
    "spectrum",
    "subsample_cells",
]
