"""The study's observations as claims, each with a metric, a rule fixed in advance and a verdict.

A claim is data (:class:`Claim`): what it says in our words, whether it is
about *training* or *architecture*, which metric it rests on, which figure
shows it, and one or more rule parts (:class:`Part`). :func:`evaluate_all`
tests every part of every claim at once and returns one row per claim
``{id, statement, about, metric, values, rule, verdict, reason}``.

Models are named by role, so the catalogue does not depend on model ids:

- ``dense_cnn``: the ConvNeXt distilled from DINOv3 (the study's subject);
- ``cls_cnn``: the same ConvNeXt trained as an ImageNet classifier;
- ``dense_vit``: the DINOv3 ViT teacher family.

:func:`roles_from_timm` finds them from timm names.

What a claim is about
---------------------
``about = "training"``: what DINOv3 distillation or ImageNet training put into
the features (two networks of one architecture that differ, or a property the
study credits to the DINOv3 objective). ``about = "architecture"``: what the
network's wiring does whatever its weights (a hierarchy of local
convolutions, global attention). Only a comparison with untrained networks of
the same architecture can separate the two: that is what the controls do.

Controls
--------
A training claim is judged against controls measured in the same build
(``controls`` of :func:`evaluate_all`; :data:`CONTROLS` says what each is):

- ``untrained``, for every metric: the same architecture untrained, as timm
  initialises it before training (``pretrained=False``, seeded;
  ``analysis.control_seeds`` seeds, default 1, the per-unit value the mean over
  seeds). timm's own init is the recipe because it is what training starts
  from: what the trained value adds over it is what training put in. The
  project's ``--random-init`` recipe (every block exercised, for pipeline tests)
  is no network's starting point and scores much higher on some metrics
  (``pc23_coherence`` 0.80 against 0.27); ``analysis.control_init =
  "every-block"`` takes it instead, for comparison. The two ConvNeXts share one
  control (one architecture, one init).
- free controls, where they are the right null (:data:`FREE_CONTROLS`): the
  photo itself pooled to each grid (``edge_drop``), a centred ellipse of the
  reference mask's size (``pc1_iou_ref``), the subjects split into two halves
  instead of instances (``c4_instance_separation``), random masks of the
  PC1 masks' sizes (the part-sharing metrics), positions shuffled
  (``pc23_coherence``).

Every part of a training claim on one network (``above``/``below``) whose
``learnt`` is true gets one control part per control of its metric: the
trained value minus the control's (``below``: the control's minus the
trained), paired unit by unit, must be above :data:`CONTROL_MARGIN` of the
metric, tested like any part and in the same Holm family. A part comparing
two networks of one architecture has no control part: their untrained
controls are one network, so the control's difference is exactly zero and the
part is its own control. Architecture claims take no control part. With
``controls=None`` (the simulations below, unit tests of the rule parts) no
control part enters; a build always passes its controls, and a control it did
not measure makes its part "cannot tell".

Measurements
------------
``measurements[metric][model_id]`` is a 1-D sequence with one value per unit
(an image, unless :data:`METRICS` says otherwise), in the same unit order for
every model; NaN marks a unit without a value. Comparisons between two models
are paired unit by unit, over the units where both have a value. The
part-sharing metrics (:data:`PAIR_METRICS`) are valued per image as the mean
over its pairs with the other images of its group; ``unit_groups[metric]``
names each unit's group (one group when absent).

Verdict rules (decided before looking at any real data)
-------------------------------------------------------
Every rule part is a t test of the mean over units, with ``n - 1`` degrees of
freedom and standard error ``sd / sqrt(n)`` (sd with ddof=1): the spread over
images is the noise. Images are independent units; the per-image values of a
part-sharing metric are not (every pair enters two images' values), so their
standard error is the leave-one-image-out jackknife of the group's mean over
pairs, ``2 (n - 1) / (n - 2) * sd / sqrt(n)`` for a group of n images (the
jackknife of a mean over pairs, written in the per-image means; several
groups are combined weighted by their images, with ``n - groups`` degrees of
freedom; a group needs three images).

Each part has two one-sided p-values, that it holds and that it fails:

- ``above`` (``below``): holds when the mean is above (below) the bar, fails
  when it is on the other side (equal counts as failing);
- ``greater``: on paired differences ``a - b``; holds when the difference
  exceeds the tolerance, fails when it is below minus the tolerance. The
  tolerance is :data:`REL_TOL` times the larger of the two means'
  magnitudes, so two equal-to-the-last-digit numbers (e.g. 0.990094 vs
  0.990002) are a tie even when every image agrees;
- ``differ``: on paired differences, holds when the difference lies outside
  ``[-margin, margin]``, fails when it lies inside (two one-sided tests).

The part's p-value is twice the smaller of the two. Holm's step-down
procedure runs over the p-values of all parts of all claims judged together
(in a build: every part of the catalogue that could be tested) at a
family-wise level :data:`ALPHA`; a rejected part holds or fails by the side
of its smaller p-value, an unrejected one is a tie within noise. Holm rather
than Bonferroni because it controls the same family-wise error and is never
less powerful; rather than Hochberg or Benjamini-Hochberg because the parts
share models and images and so are dependent in unknown ways, which Holm
allows and the others do not (Hochberg) or control a weaker error rate
(false discovery rate). For a single part it is exactly "the 95% interval
excludes the bar".

A claim is "supported" when all its parts hold, "not supported" when any part
fails, and "cannot tell" otherwise. It is also "cannot tell", whatever the
numbers, when

- the weights are random (the claims are about trained networks);
- a role has no model in the build, or a metric was not measured;
- fewer than :data:`MIN_IMAGES` units have a value (below three the spread
  over images, and so the noise, cannot be estimated usefully);
- a part is a tie within noise (see above).

Level and power, measured
-------------------------
These are the rates of the rule parts alone (``controls=None``). Control parts only add
conditions and hypotheses to the Holm family, so they cannot raise the chance of a false
"supported"; they lower the power, by how much depends on how far the trained values stand
above their controls (not simulated).

``tests/test_analysis_claims.py::test_rules_hold_their_level_and_power``
simulates the decision rule (2,000 seeded draws per setting, 18 images) on
per-unit values: normal per-image values with sd 1 (for ``greater`` and
``differ``: paired differences), and for the part-sharing metrics pair
matrices ``mu + a_i + a_j + e_ij`` with image effects ``a_i`` (sd 0.5) and
pair noise ``e_ij`` (sd 1), i.e. groups whose images differ in how well they
match all the others. Measured:

- worst-case null of each claim (one part exactly at its bar, every other
  part of the catalogue 3 sd beyond its own): "supported" 2.3% (part_colours)
  to 3.0% (pc1_subject), and 3.7% for tails_differ (a ``differ`` part can
  hold on either side of its small margin); with the old per-image interval
  on the pair metrics part_colours was 15-16% (one such part alone: 14.5% at
  18 images, 15.6% at 9; with the jackknife 2.4% and 1.8%);
- the family, every part at its bar: some claim "supported" in 0.1% of draws;
- power, every part of one claim 1.5 sd beyond its bar (pair metrics: 1.5
  pair-noise sd) and every other part at its bar: "supported" 92%
  (part_colours, four parts) to 99.6% (tails_differ). At 1.25 sd: 60%
  (part_colours) and 85-95% for the others; at 1.25 sd with every claim
  true at once, 98-100%.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["MIN_IMAGES", "REL_TOL", "CONFIDENCE", "ALPHA", "ROLES", "ABOUT", "METRICS", "PAIR_METRICS",
           "CONTROLS", "FREE_CONTROLS", "CONTROL_MARGIN", "CONTROL_INIT_WHY", "METRIC_GLOSS",
           "Verdict", "Part", "Claim", "CLAIMS", "unit_estimate", "part_pvalues", "holm", "judge",
           "evaluate", "evaluate_all", "roles_from_timm"]

Verdict = Literal["supported", "not supported", "cannot tell"]

MIN_IMAGES = 3
REL_TOL = 0.01
CONFIDENCE = 0.95
# Family-wise error level of Holm's procedure over all parts judged together.
ALPHA = 0.05

ROLES: dict[str, str] = {
    "dense_cnn": "the DINOv3 ConvNeXt",
    "cls_cnn": "the ImageNet ConvNeXt",
    "dense_vit": "the DINOv3 ViT",
}

ABOUT: dict[str, str] = {
    "training": "what DINOv3 distillation or ImageNet training put into the features",
    "architecture": "what the network's wiring does whatever its weights",
}

# What the pipeline computes for each metric, per unit. One name per concept:
# these keys are the `metric` of the claims rows.
METRICS: dict[str, str] = {
    "pc1_iou_ref": "IoU with the photo's reference mask of the side of the last stage's PC1 "
                   "that fits it better (spatial.subject_iou, orient='reference': the sign of a "
                   "principal component is arbitrary), per image with a reference mask",
    "pc1_iou_border": "the same IoU for the side the border rule picks (the mask the figures "
                      "show; spatial.subject_iou, orient='border'), per image with a reference "
                      "mask; shown alongside pc1_iou_ref, no rule uses it",
    "pc1_speck_share": "share of isolated specks among the interior cells of the PC1 foreground "
                       "mask of the last stage (spatial.speck_share of masks.foreground_mask), "
                       "per image",
    "pc23_coherence": "mean neighbour coherence (Moran's I, spatial.neighbour_coherence) of the "
                      "within-image PC2 and PC3 maps of the last stage, per image",
    "norm_outlier_share": "share of last-stage positions whose feature norm is over twice the "
                          "median norm of their 8 neighbours (outliers.local_norm_outliers), per "
                          "image",
    "edge_drop": "edge following (spatial.edge_following over the interior cells, against the "
                 "photo as fed to the network) at the first reported stage minus at the last "
                 "stage, per image",
    "far_similarity_first": "mean cosine similarity of distant positions (spatial.far_similarity) "
                            "at the first reported stage, per image",
    "c4_instance_separation": "instance separation (instances.instance_separation) at stage C4, "
                              "per image whose reference mask has two or more instances",
    "part_colour_gain": "colour agreement (correspond.colour_agreement) of mutually nearest "
                        "foreground cells (channels standardised over the group) in the masked "
                        "across-image PCA minus in the naive one, both fitted on the group's "
                        "other images, per image of the group: mean over its pairs",
    "part_match_excess": "cycle_share_excess (correspond.cycle_share_excess) of the foreground "
                         "cells of two images of the group, channels standardised over the "
                         "group, per image of the group: mean over its pairs",
    "tail_log_ratio": "log10 of p99.9/p99 of the non-zero |x| (outliers.value_tails "
                      "high_tail_ratio), mean over the stages, per image",
}

# One line per metric for a reader: what a high value means (shown with the claim boxes).
METRIC_GLOSS: dict[str, str] = {
    "pc1_iou_ref": "overlap (IoU, 0 to 1) of the first component's mask with the drawn outline",
    "pc1_iou_border": "the same overlap for the side of the first component the border rule picks",
    "pc1_speck_share": "share of the mask's inner cells that are isolated specks (lower is cleaner)",
    "pc23_coherence": "how smooth components two and three are (Moran's I: 1 smooth, 0 noise)",
    "norm_outlier_share": "share of positions whose feature norm is over twice their neighbours'",
    "edge_drop": "how much more the first stage follows the photo's edges than the last (rank correlation)",
    "far_similarity_first": "mean cosine similarity of distant positions at the first stage",
    "c4_instance_separation": "at C4, similarity within a subject minus between two subjects",
    "part_colour_gain": "how much closer matched cells' colours get when the PCA is fitted on subjects only",
    "part_match_excess": "share of cells whose match across photos leads back to them, above chance",
    "tail_log_ratio": "log10 of how far the top 0.1% of values reach beyond the top 1%",
}

CONTROLS: dict[str, str] = {
    "untrained": "the same architecture untrained (timm's init, pretrained=False, seeded)",
    "photo": "the photo itself pooled to each stage's grid, measured as if it were a feature map",
    "centre_prior": "a centred ellipse with as many cells as the reference mask, in place of the PC1 mask",
    "halves": "the subjects' cells split into two halves in place of the instances",
    "random_masks": "random masks with as many cells as each PC1 mask, in place of the masks",
    "shuffled": "the last stage's positions shuffled (seeded) before the PCA",
}

# The controls of each metric besides the untrained network.
FREE_CONTROLS: dict[str, tuple[str, ...]] = {
    "pc1_iou_ref": ("centre_prior",),
    "pc23_coherence": ("shuffled",),
    "edge_drop": ("photo",),
    "c4_instance_separation": ("halves",),
    "part_colour_gain": ("random_masks",),
    "part_match_excess": ("random_masks",),
}

# How far a trained value must beat each control, in the metric's own units (fixed before any
# trained model was run): a tenth of the range for the [0, 1]-like scores, half the 1% bar for
# the outlier share, and a hundredth for the part-sharing excesses, whose bars are 0 and whose
# untrained values the review measured at -0.03 to 0.045.
CONTROL_MARGIN: dict[str, float] = {
    "pc1_iou_ref": 0.1,
    "pc1_speck_share": 0.02,
    "pc23_coherence": 0.1,
    "norm_outlier_share": 0.005,
    "edge_drop": 0.05,
    "far_similarity_first": 0.05,
    "c4_instance_separation": 0.05,
    "part_colour_gain": 0.01,
    "part_match_excess": 0.01,
    "tail_log_ratio": 0.02,
}

CONTROL_INIT_WHY: dict[str, str] = {
    "timm": "timm's own init (pretrained=False), what training starts from, so that what the trained "
            "value adds over it is what training put in",
    "every-block": "the project's random init (every block's weights rescaled so that each changes "
                   "its input), chosen by analysis.control_init; no training starts from it",
}

# Metrics valued per image as the mean over its pairs with the group's other images.
PAIR_METRICS = frozenset({"part_colour_gain", "part_match_excess"})

_UNITS: dict[str, str] = {
    "pc1_iou_ref": "images with a reference mask",
    "pc1_iou_border": "images with a reference mask",
    "c4_instance_separation": "images with two or more instances",
    "part_colour_gain": "images in a group",
    "part_match_excess": "images in a group",
}


def _unit(metric: str) -> str:
    return _UNITS.get(metric, "images")


def _num(x: float) -> str:
    """3 significant digits with a true minus sign (U+2212), as the page writes every number."""
    return f"{x:.3g}".replace("-", "−")


@dataclass(frozen=True)
class Part:
    """One condition of a claim's rule.

    Attributes
    ----------
    kind : {"above", "below", "greater", "differ"}
        See the module docstring.
    metric : str
        Key of :data:`METRICS`.
    role : str
        Key of :data:`ROLES`: the model the condition is about.
    other : str or None
        Second role, for "greater" (role > other) and "differ".
    bound : float
        The bar for "above"/"below"; the margin for "differ"; unused for "greater".
    note : str
        Optional words on the bound, printed in brackets after the condition.
    learnt : bool
        Whether the condition states something training put into the features: on a
        training claim such a part on one network must also beat its controls (module
        docstring). False for a condition an untrained network may meet as well without
        contradicting the claim (e.g. "noise for the ImageNet ConvNeXt").
    """

    kind: Literal["above", "below", "greater", "differ"]
    metric: str
    role: str
    other: str | None = None
    bound: float = 0.0
    note: str = ""
    learnt: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("above", "below", "greater", "differ"):
            raise ValueError(f"Part.kind must be above, below, greater or differ, got {self.kind!r}")
        if self.metric not in METRICS:
            raise ValueError(f"Part.metric {self.metric!r} is not in METRICS")
        for r in (self.role, self.other):
            if r is not None and r not in ROLES:
                raise ValueError(f"Part role {r!r} is not one of {sorted(ROLES)}")
        if (self.other is None) != (self.kind in ("above", "below")):
            raise ValueError(f"Part of kind {self.kind!r} {'needs' if self.other is None else 'takes no'}"
                             " second role")

    def text(self) -> str:
        """The condition in words, e.g. 'pc1_iou_ref of the DINOv3 ViT above 0.5'."""
        who = ROLES[self.role]
        if self.kind in ("above", "below"):
            text = f"{self.metric} of {who} {self.kind} {_num(self.bound)}"
        elif self.kind == "greater":
            text = f"{self.metric} of {who} greater than that of {ROLES[self.other]}"
        else:
            text = (f"{self.metric} of {who} and of {ROLES[self.other]} differ by more than "
                    f"{_num(self.bound)}")
        return f"{text} ({self.note})" if self.note else text

    def controls(self, about: str) -> tuple[str, ...]:
        """The controls this part must beat on a claim about ``about`` (module docstring)."""
        if about != "training" or not self.learnt or self.other is not None:
            return ()
        return ("untrained",) + FREE_CONTROLS.get(self.metric, ())

    def control_text(self, control: str) -> str:
        """The control part in words."""
        who, margin = ROLES[self.role], _num(CONTROL_MARGIN[self.metric])
        if self.kind == "below":
            return f"{self.metric} of {who} below its {control} control's by more than {margin}"
        return f"{self.metric} of {who} above its {control} control's by more than {margin}"


@dataclass(frozen=True)
class Claim:
    """One observation of the study, made testable.

    Attributes
    ----------
    id : str
        Stable slug used in JSON and anchors.
    statement : str
        The observation in our own words.
    metric : str
        The metric whose per-model means fill the row's ``values``.
    parts : tuple of Part
        All must hold for "supported".
    figure : str
        Figure kind the reader can check it against (e.g. "foreground_mask").
    about : {"training", "architecture"}
        Whether the claim is about what training put into the features or
        about what the architecture does whatever its weights (:data:`ABOUT`).
    """

    id: str
    statement: str
    metric: str
    parts: tuple[Part, ...]
    figure: str
    about: Literal["training", "architecture"]

    def __post_init__(self) -> None:
        if self.about not in ABOUT:
            raise ValueError(f"Claim {self.id!r}: about must be one of {sorted(ABOUT)}, got {self.about!r}")

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every metric its parts use, :attr:`metric` first."""
        return tuple(dict.fromkeys((self.metric,) + tuple(p.metric for p in self.parts)))

    def control_parts(self) -> tuple[tuple[Part, str], ...]:
        """(part, control) for every control part of the claim, in part order."""
        return tuple((p, c) for p in self.parts for c in p.controls(self.about))

    def rule_text(self, controls: bool = False, control_init: str = "timm", control_seeds: int = 1) -> str:
        """:attr:`rule`, and with ``controls`` the control parts and the untrained recipe."""
        extra = self.control_parts() if controls else ()
        if not extra:
            return self.rule
        seeds = f"{control_seeds} seed{'s' if control_seeds != 1 else ''}"
        return (self.rule + " Against controls, each must also hold, paired over the same units and "
                "in the same family: " + "; ".join(p.control_text(c) for p, c in extra)
                + f". The untrained control is the same architecture with {CONTROL_INIT_WHY[control_init]} "
                  f"({seeds}, the mean over seeds per unit)"
                + "".join(f"; the {c} control is {CONTROLS[c]}" for c in dict.fromkeys(c for _, c in extra)
                          if c != "untrained") + ".")

    @property
    def rule(self) -> str:
        """The rule in words, as printed in the claims table."""
        greater = any(p.kind == "greater" for p in self.parts)
        pair = any(p.metric in PAIR_METRICS for p in self.parts)
        return ("; ".join(p.text() for p in self.parts)
                + f". Each must hold in a two-sided t test over {_unit(self.metric)}"
                + f" (at least {MIN_IMAGES})"
                + (", its spread the jackknife over the group's images (an image's value shares "
                   "pairs with the others)" if pair else "")
                + f", with Holm's correction over every part of the claims table (family-wise "
                  f"{ALPHA:.0%})"
                + (f"; differences within {REL_TOL:.0%} are ties." if greater else "."))


CLAIMS: tuple[Claim, ...] = (
    Claim("pc1_subject",
          "In the last stage, the first principal component of a photo's own features marks out "
          "its subject, for both DINOv3 networks.",
          "pc1_iou_ref",
          (Part("above", "pc1_iou_ref", "dense_cnn", bound=0.5),
           Part("above", "pc1_iou_ref", "dense_vit", bound=0.5)),
          "foreground_mask", "training"),
    Claim("later_pcs_smooth",
          "Components two and three of the last stage form smooth regions for the DINOv3 ConvNeXt "
          "and scattered noise for the ImageNet ConvNeXt.",
          "pc23_coherence",
          (Part("above", "pc23_coherence", "dense_cnn", bound=0.5),
           Part("below", "pc23_coherence", "cls_cnn", bound=0.5, learnt=False),
           Part("greater", "pc23_coherence", "dense_cnn", "cls_cnn")),
          "within_pca", "training"),
    Claim("imagenet_outliers",
          "The ImageNet ConvNeXt's last stage has more positions with an outsized feature norm "
          "than the DINOv3 ConvNeXt's, at least one in a hundred.",
          "norm_outlier_share",
          (Part("greater", "norm_outlier_share", "cls_cnn", "dense_cnn"),
           Part("above", "norm_outlier_share", "cls_cnn", bound=0.01)),
          "norm_maps", "training"),
    # Edges first, larger structure later: what training put into the stages (an untrained
    # network's stages follow the photo's edges too, through pooling alone: issue 22).
    Claim("edges_to_objects",
          "Both ConvNeXts change where the photo has edges in their first stage, and less so in "
          "their last.",
          "edge_drop",
          (Part("above", "edge_drop", "dense_cnn", bound=0.0),
           Part("above", "edge_drop", "cls_cnn", bound=0.0)),
          "stage_pca", "training"),
    # Attention reaches the whole image from the first block; a convolution does not.
    Claim("vit_global_early",
          "At its first reported block the ViT already gives distant positions similar features, "
          "more than either ConvNeXt does at its first stage.",
          "far_similarity_first",
          (Part("greater", "far_similarity_first", "dense_vit", "dense_cnn"),
           Part("greater", "far_similarity_first", "dense_vit", "cls_cnn")),
          "stage_pca", "architecture"),
    Claim("c4_instances",
          "At stage C4 the DINOv3 ConvNeXt already gives separate subjects of one photo different "
          "features, more clearly than the ImageNet ConvNeXt.",
          "c4_instance_separation",
          (Part("above", "c4_instance_separation", "dense_cnn", bound=0.1),
           Part("greater", "c4_instance_separation", "dense_cnn", "cls_cnn")),
          "stage_pca", "training"),
    Claim("part_colours",
          "Across photos of one kind, the subjects' cells find their counterparts in the other "
          "photos, and matched cells get closer colours when the across-image PCA is fitted on "
          "the subjects only than when it is fitted on whole photos.",
          "part_colour_gain",
          (Part("above", "part_match_excess", "dense_vit", bound=0.0),
           Part("above", "part_match_excess", "dense_cnn", bound=0.0),
           Part("above", "part_colour_gain", "dense_vit", bound=0.0),
           Part("above", "part_colour_gain", "dense_cnn", bound=0.0)),
          "across_pca_masked", "training"),
    Claim("masks_cleaner",
          "The DINOv3 ConvNeXt's subject mask fits the drawn outline better and has fewer stray "
          "specks than the ImageNet ConvNeXt's.",
          "pc1_iou_ref",
          (Part("greater", "pc1_iou_ref", "dense_cnn", "cls_cnn"),
           Part("greater", "pc1_speck_share", "cls_cnn", "dense_cnn")),
          "foreground_mask", "training"),
    # p99.9 / p99 is 1.28 for normal values and 1.5 for Laplace ones (the shape the study sees
    # the distributions approach): a 10% margin keeps that difference (17%) clearly outside.
    Claim("tails_differ",
          "Two ConvNeXts with the same architecture but different training have feature values "
          "with clearly different tails: one network's tail ratio is over 1.1 times the other's.",
          "tail_log_ratio",
          (Part("differ", "tail_log_ratio", "dense_cnn", "cls_cnn", bound=math.log10(1.1),
                note="log10 of 1.1: one tail ratio over 1.1 times the other"),),
          "feature_hist", "training"),
)


def unit_estimate(x: np.ndarray, groups: Sequence | None = None, pair_mean: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Mean over units, its standard error, degrees of freedom and units used.

    Parameters
    ----------
    x : (..., n) array_like of float, finite
        One value per unit along the last axis (leading axes: e.g. simulation draws).
    groups : (n,) sequence of hashable, optional
        Group of each unit, for ``pair_mean``; one group when absent.
    pair_mean : bool
        True when each unit is an image's mean over its pairs with the other images
        of its group (:data:`PAIR_METRICS`): the standard error is then the
        leave-one-image-out jackknife of the group's mean over pairs (see the module
        docstring). Groups of fewer than three images are left out.

    Returns
    -------
    mean, se : (...) ndarray of float64
    df : int
        ``n - 1``, or ``n - number of groups`` for pair means.
    n : int
        Units used (0 when none can be used).
    """
    a = np.asarray(x, dtype=np.float64)
    n = a.shape[-1]
    if not pair_mean:
        if n < 2:
            return a.mean(axis=-1) if n else np.zeros(a.shape[:-1]), np.zeros(a.shape[:-1]), 0, n
        return a.mean(axis=-1), a.std(axis=-1, ddof=1) / math.sqrt(n), n - 1, n
    labels = np.zeros(n, dtype=np.int64) if groups is None else np.asarray(groups)
    if labels.shape != (n,):
        raise ValueError(f"groups must hold one label per unit ({n}), got shape {labels.shape}")
    total, means, variances = 0, [], []
    for g in sorted(set(labels.tolist())):
        xg = a[..., labels == g]
        k = xg.shape[-1]
        if k < 3:
            continue
        factor = 2.0 * (k - 1) / (k - 2)
        means.append((k, xg.mean(axis=-1)))
        variances.append((k, (factor * xg.std(axis=-1, ddof=1)) ** 2 / k))
        total += k
    if total == 0:
        return np.zeros(a.shape[:-1]), np.zeros(a.shape[:-1]), 0, 0
    mean = sum(k * m for k, m in means) / total
    var = sum((k / total) ** 2 * v for k, v in variances)
    return mean, np.sqrt(var), total - len(means), total


def _z(diff: np.ndarray, se: np.ndarray) -> np.ndarray:
    """diff / se, and +-inf (0 for diff 0) where there is no spread."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(se > 0, diff / np.where(se > 0, se, 1.0), np.sign(diff) * np.inf)


def part_pvalues(kind: str, est: np.ndarray, se: np.ndarray, df: int, bound: float = 0.0,
                 tol: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One-sided p-values that a part holds and that it fails (module docstring).

    Parameters
    ----------
    kind : {"above", "below", "greater", "differ"}
    est, se : (...) array_like
        Mean over units (of paired differences for greater/differ) and its standard error.
    df : int >= 1
    bound : float
        Bar (above/below) or margin (differ).
    tol : (...) array_like
        Tolerance for "greater".

    Returns
    -------
    p_hold, p_fail : (...) ndarray of float64 in [0, 1]
        Without spread (se 0) the side of the estimate decides (p 0 or 1); equal to
        the bar or inside the margin counts as failing, as the module docstring says.
    """
    from scipy.stats import t

    e = np.asarray(est, dtype=np.float64)
    s = np.asarray(se, dtype=np.float64)
    flat = s <= 0

    def sf(z):
        return t.sf(z, df)

    def cdf(z):
        return t.cdf(z, df)

    if kind in ("above", "below"):
        z = _z(e - bound, s)
        hold, fail = (sf(z), cdf(z)) if kind == "above" else (cdf(z), sf(z))
        lost = flat & ((e <= bound) if kind == "above" else (e >= bound))
    elif kind == "greater":
        hold, fail = sf(_z(e - tol, s)), cdf(_z(e + tol, s))
        lost = np.zeros(e.shape, dtype=bool)
    elif kind == "differ":
        zu, zl = _z(e - bound, s), _z(e + bound, s)
        hold = np.minimum(sf(zu), cdf(zl))
        fail = np.maximum(cdf(zu), sf(zl))
        lost = flat & (np.abs(e) <= bound)
    else:
        raise ValueError(f"kind must be above, below, greater or differ, got {kind!r}")
    hold = np.where(lost, 1.0, hold)
    fail = np.where(lost, 0.0, fail)
    return np.asarray(hold, dtype=np.float64), np.asarray(fail, dtype=np.float64)


def holm(p: np.ndarray, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down procedure along the last axis.

    Parameters
    ----------
    p : (..., m) array_like of float
        Two-sided p-values; NaN marks a hypothesis that is not in the family (a
        part that could not be tested).
    alpha : float
        Family-wise error level.

    Returns
    -------
    rejected : (..., m) ndarray of bool
    bar : (..., m) ndarray of float64
        The level each p-value was compared with, ``alpha / (m_finite - rank)``;
        NaN where p is NaN.
    """
    pa = np.asarray(p, dtype=np.float64)
    fin = np.isfinite(pa)
    m = fin.sum(axis=-1, keepdims=True)
    order = np.argsort(np.where(fin, pa, np.inf), axis=-1, kind="stable")
    ps = np.take_along_axis(pa, order, axis=-1)
    rank = np.arange(pa.shape[-1])
    thr = alpha / np.maximum(m - rank, 1)
    ok = ((ps < thr) | (ps == 0.0)) & (rank < m)
    passed = np.cumprod(ok, axis=-1).astype(bool)
    rejected = np.zeros(pa.shape, dtype=bool)
    bar = np.full(pa.shape, np.nan)
    np.put_along_axis(rejected, order, passed, axis=-1)
    np.put_along_axis(bar, order, np.where(rank < m, thr, np.nan), axis=-1)
    return rejected, bar


def _series(measurements: Mapping[str, Mapping[str, Sequence[float]]], metric: str,
            model: str) -> np.ndarray | None:
    per_model = measurements.get(metric)
    if per_model is None or model not in per_model:
        return None
    arr = np.asarray(per_model[model], dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"measurements[{metric!r}][{model!r}] must be 1-D (one value per unit), "
                         f"got shape {arr.shape}")
    if np.isinf(arr).any():
        raise ValueError(f"measurements[{metric!r}][{model!r}] holds inf; use NaN for a missing value")
    return arr


@dataclass(frozen=True)
class _Test:
    """A part's two p-values and the words for each outcome."""

    p_hold: float
    p_fail: float
    desc: str
    holds: str
    fails: str
    tie: str

    @property
    def p(self) -> float:
        return min(1.0, 2.0 * min(self.p_hold, self.p_fail))


def _test(part: Part, measurements: Mapping[str, Mapping[str, Sequence[float]]],
          roles: Mapping[str, str], unit_groups: Mapping[str, Sequence] | None
          ) -> _Test | tuple[Verdict, str]:
    """The part's test, or ("cannot tell", why) when it cannot be tested."""
    needed = [part.role] + ([part.other] if part.other else [])
    series = []
    for role in needed:
        model = roles.get(role)
        if model is None:
            return "cannot tell", f"no model in the role of {ROLES[role]} in this build"
        s = _series(measurements, part.metric, model)
        if s is None:
            return "cannot tell", f"{part.metric} was not measured for {model}"
        series.append((model, s))
    if len(series) == 2 and series[0][1].shape != series[1][1].shape:
        raise ValueError(f"measurements[{part.metric!r}] for {series[0][0]} and {series[1][0]} "
                         f"have different lengths: {series[0][1].size} and {series[1][1].size}")
    ok = np.all([np.isfinite(s) for _, s in series], axis=0)
    pair = part.metric in PAIR_METRICS
    groups = None
    if pair and unit_groups is not None and part.metric in unit_groups:
        groups = np.asarray(unit_groups[part.metric])
        if groups.shape != series[0][1].shape:
            raise ValueError(f"unit_groups[{part.metric!r}] has {groups.size} labels for "
                             f"{series[0][1].size} units")
        groups = groups[ok]
    unit = _unit(part.metric)
    a_id, a = series[0][0], series[0][1][ok]
    x = a if len(series) == 1 else a - series[1][1][ok]
    est, se, df, n = unit_estimate(x, groups, pair) if x.size else (0.0, 0.0, 0, 0)
    if n < MIN_IMAGES:
        extra = " (in groups of at least three)" if pair else ""
        return "cannot tell", f"too few {unit} for {part.metric}: {n} (need {MIN_IMAGES}){extra}"
    from scipy.stats import t

    est, se = float(est), float(se)
    half = float(t.ppf(0.5 + CONFIDENCE / 2, df)) * se
    lo, hi = est - half, est + half
    spread = ", jackknife over images" if pair else ""
    if part.kind in ("above", "below"):
        p_hold, p_fail = part_pvalues(part.kind, est, se, df, part.bound)
        desc = (f"{part.metric} of {a_id}: mean {_num(est)}, {CONFIDENCE:.0%} interval [{_num(lo)}, "
                f"{_num(hi)}] over {n} {unit}{spread}")
        bar = _num(part.bound)
        return _Test(float(p_hold), float(p_fail), desc, f"{part.kind} {bar}", f"not {part.kind} {bar}",
                     f"{bar} is within noise")
    b_id, b = series[1][0], series[1][1][ok]
    desc = (f"{part.metric}: {a_id} {_num(float(a.mean()))} vs {b_id} {_num(float(b.mean()))}, "
            f"difference {_num(est)}, {CONFIDENCE:.0%} interval [{_num(lo)}, {_num(hi)}] over {n} "
            f"{unit}{spread}")
    if part.kind == "greater":
        tol = max(REL_TOL * max(abs(float(a.mean())), abs(float(b.mean()))), 1e-12)
        p_hold, p_fail = part_pvalues("greater", est, se, df, tol=tol)
        return _Test(float(p_hold), float(p_fail), desc, f"{a_id} is greater", f"{b_id} is greater",
                     "a tie within noise")
    p_hold, p_fail = part_pvalues("differ", est, se, df, part.bound)
    margin = _num(part.bound)
    return _Test(float(p_hold), float(p_fail), desc, f"they differ by more than {margin}",
                 f"they differ by less than {margin}", f"a difference of {margin} is within noise")


Controls = Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]]


def _control_test(part: Part, control: str, measurements: Mapping[str, Mapping[str, Sequence[float]]],
                  controls: Controls, roles: Mapping[str, str],
                  unit_groups: Mapping[str, Sequence] | None) -> _Test | tuple[Verdict, str]:
    """The test that ``part``'s trained value beats its ``control`` by CONTROL_MARGIN."""
    model = roles.get(part.role)
    if model is None:
        return "cannot tell", f"no model in the role of {ROLES[part.role]} in this build"
    trained = _series(measurements, part.metric, model)
    if trained is None:
        return "cannot tell", f"{part.metric} was not measured for {model}"
    ctrl = _series(controls.get(control, {}), part.metric, model)
    if ctrl is None:
        return "cannot tell", f"no {control} control of {part.metric} was measured for {model}"
    if ctrl.shape != trained.shape:
        raise ValueError(f"controls[{control!r}][{part.metric!r}][{model!r}] has {ctrl.size} units, "
                         f"the trained values {trained.size}")
    ok = np.isfinite(trained) & np.isfinite(ctrl)
    pair = part.metric in PAIR_METRICS
    groups = None
    if pair and unit_groups is not None and part.metric in unit_groups:
        groups = np.asarray(unit_groups[part.metric])[ok]
    x = (trained - ctrl)[ok] if part.kind != "below" else (ctrl - trained)[ok]
    est, se, df, n = unit_estimate(x, groups, pair) if x.size else (0.0, 0.0, 0, 0)
    unit = _unit(part.metric)
    if n < MIN_IMAGES:
        return "cannot tell", (f"too few {unit} with a {control} control for {part.metric}: {n} "
                               f"(need {MIN_IMAGES})")
    from scipy.stats import t

    est, se = float(est), float(se)
    half = float(t.ppf(0.5 + CONFIDENCE / 2, df)) * se
    margin = CONTROL_MARGIN[part.metric]
    p_hold, p_fail = part_pvalues("above", est, se, df, margin)
    side = "trained minus control" if part.kind != "below" else "control minus trained"
    desc = (f"{part.metric} of {model}: {_num(float(trained[ok].mean()))} vs its {control} control "
            f"{_num(float(ctrl[ok].mean()))}, {side} {_num(est)}, {CONFIDENCE:.0%} interval "
            f"[{_num(est - half)}, {_num(est + half)}] over {n} {unit}"
            + (", jackknife over images" if pair else ""))
    m = _num(margin)
    return _Test(float(p_hold), float(p_fail), desc, f"beats its {control} control by more than {m}",
                 f"does not beat its {control} control by {m}",
                 f"a margin of {m} over its {control} control is within noise")


def _decide(test: _Test, rejected: bool, bar: float) -> tuple[Verdict, str]:
    p = f"p {test.p:.2g}, Holm bar {bar:.2g}"
    if rejected and test.p_hold < test.p_fail:
        return "supported", f"{test.desc}: {test.holds} ({p})"
    if rejected:
        return "not supported", f"{test.desc}: {test.fails} ({p})"
    return "cannot tell", f"{test.desc}: {test.tie} ({p})"


def judge(part: Part, measurements: Mapping[str, Mapping[str, Sequence[float]]],
          roles: Mapping[str, str], unit_groups: Mapping[str, Sequence] | None = None
          ) -> tuple[Verdict, str]:
    """Apply one rule part on its own (a family of one: Holm is the plain test at ALPHA).

    Parameters
    ----------
    part : Part
    measurements : {metric: {model_id: (n_units,) values}}
        NaN where a unit has no value; see the module docstring.
    roles : {role: model_id}
    unit_groups : {metric: (n_units,) group labels}, optional
        For :data:`PAIR_METRICS`; one group when absent.

    Returns
    -------
    verdict : "supported" (the part holds), "not supported" (it fails) or "cannot tell"
    reason : str
        The numbers behind it, or why it cannot be told.
    """
    test = _test(part, measurements, roles, unit_groups)
    if isinstance(test, tuple):
        return test
    rejected, bar = holm(np.array([test.p]))
    return _decide(test, bool(rejected[0]), float(bar[0]))


def evaluate(claim: Claim, measurements: Mapping[str, Mapping[str, Sequence[float]]],
             roles: Mapping[str, str], *, random_weights: bool,
             unit_groups: Mapping[str, Sequence] | None = None, controls: Controls | None = None) -> dict:
    """Verdict of one claim judged alone (its parts are the whole Holm family).

    See :func:`evaluate_all`, which a build uses, for the parameters and the row.
    """
    return evaluate_all(measurements, roles, random_weights=random_weights, claims=(claim,),
                        unit_groups=unit_groups, controls=controls)[0]


def evaluate_all(measurements: Mapping[str, Mapping[str, Sequence[float]]],
                 roles: Mapping[str, str], *, random_weights: bool,
                 claims: Sequence[Claim] = CLAIMS,
                 unit_groups: Mapping[str, Sequence] | None = None,
                 controls: Controls | None = None, control_init: str = "timm",
                 control_seeds: int = 1) -> list[dict]:
    """Verdicts of claims judged together: Holm's procedure runs over all their parts.

    Parameters
    ----------
    measurements : {metric: {model_id: (n_units,) values}}
        See the module docstring. Models not in `roles` may be present; they
        appear in ``values`` but no rule looks at them.
    roles : {role: model_id}
        E.g. from :func:`roles_from_timm`.
    random_weights : bool
        True when the networks were not trained: the verdict is then
        "cannot tell" whatever the numbers.
    claims : sequence of Claim
        The family, in the order of the rows.
    unit_groups : {metric: (n_units,) group labels}, optional
        The group of each unit of a :data:`PAIR_METRICS` metric.
    controls : {control: {metric: {model_id: (n_units,) values}}}, optional
        Each control's values (:data:`CONTROLS`) in the units of ``measurements``,
        under the trained model's id. Given, every training claim's control parts
        join the family (module docstring); a control absent from it makes its part
        "cannot tell". None: no control part (the rule parts alone).
    control_init, control_seeds : str, int
        How the untrained control was made, for the rule's words.

    Returns
    -------
    list of dict, one per claim in order
        ``{"id", "statement", "about", "metric", "values", "metrics", "rule",
        "verdict", "reason"}``; ``values`` maps every measured model id (sorted)
        to the mean of its finite values of ``claim.metric`` (models without any
        are left out); ``metrics`` maps each metric of the claim's parts
        (``claim.metric`` first) to ``{"values": {model: mean}, "controls":
        {control: {model: mean}}}`` (the controls of that metric that were given).
    """
    tests = [[_test(p, measurements, roles, unit_groups) for p in c.parts]
             + ([_control_test(p, k, measurements, controls, roles, unit_groups)
                 for p, k in c.control_parts()] if controls is not None else [])
             for c in claims]
    flat = [t for ts in tests for t in ts]
    p = np.array([t.p if isinstance(t, _Test) else np.nan for t in flat])
    rejected, bar = holm(p) if p.size else (np.zeros(0, bool), np.zeros(0))
    rows, k = [], 0
    for claim, ts in zip(claims, tests):
        results = []
        # Why a part could not be tested at all (no model, no values, too few units): said even
        # under random weights, so that a reader learns every reason a claim cannot be judged.
        untestable = list(dict.fromkeys(t[1] for t in ts if isinstance(t, tuple)))
        for t in ts:
            res = t if isinstance(t, tuple) else _decide(t, bool(rejected[k]), float(bar[k]))
            k += 1
            if res not in results:  # two parts on one model can fail for the same reason
                results.append(res)
        row = _row(claim, measurements, results, random_weights, untestable)
        row["metrics"] = {m: {"values": _means(measurements, m),
                              "controls": {k: v for k in sorted(controls or {})
                                           if (v := _means(controls[k], m))}}
                          for m in claim.metrics}
        row["rule"] = claim.rule_text(controls is not None, control_init, control_seeds)
        rows.append(row)
    return rows


def _means(measurements: Mapping[str, Mapping[str, Sequence[float]]], metric: str) -> dict[str, float]:
    """{model: mean of its finite values of ``metric``} for every model with one, sorted."""
    values: dict[str, float] = {}
    for model in sorted(measurements.get(metric, {})):
        s = _series(measurements, metric, model)
        fin = s[np.isfinite(s)]
        if fin.size:
            values[model] = float(fin.mean())
    return values


def _row(claim: Claim, measurements: Mapping[str, Mapping[str, Sequence[float]]],
         results: list[tuple[Verdict, str]], random_weights: bool, untestable: Sequence[str] = ()) -> dict:
    values = _means(measurements, claim.metric)
    if random_weights:
        verdict: Verdict = "cannot tell"
        reason = "the weights are random, and the claim is about trained networks"
        if untestable:
            reason += "; and besides, " + "; ".join(untestable)
    elif any(v == "not supported" for v, _ in results):
        verdict = "not supported"
        reason = "; ".join(r for v, r in results if v == "not supported")
    elif any(v == "cannot tell" for v, _ in results):
        verdict = "cannot tell"
        reason = "; ".join(r for v, r in results if v == "cannot tell")
    else:
        verdict = "supported"
        reason = "; ".join(r for _, r in results)
    return {"id": claim.id, "statement": claim.statement, "about": claim.about, "metric": claim.metric,
            "values": values, "rule": claim.rule, "verdict": verdict, "reason": reason}

def roles_from_timm(models: Mapping[str, str]) -> dict[str, str]:
    """Assign roles to models from their timm names.

    Parameters
    ----------
    models : {model_id: timm name with pretrained tag}
        In config order; the first model that fits a role takes it.

    Returns
    -------
    {role: model_id}
        ``dense_cnn``: a ``convnext*`` name containing "dinov3"; ``cls_cnn``: a
        ``convnext*`` name whose tag has "in1k", "in12k" or "in22k" and no
        "dinov3"; ``dense_vit``: a ``vit*`` name containing "dinov3". Roles
        with no fitting model are absent.
    """
    out: dict[str, str] = {}
    for mid, name in models.items():
        low = name.lower()
        arch, _, tag = low.partition(".")
        dense = "dinov3" in low
        if arch.startswith("convnext"):
            role = "dense_cnn" if dense else (
                "cls_cnn" if any(t in tag for t in ("in1k", "in12k", "in22k")) else None)
        elif arch.startswith("vit"):
            role = "dense_vit" if dense else None
        else:
            role = None
        if role is not None and role not in out:
            out[role] = mid
    return out
