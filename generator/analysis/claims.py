"""The study's observations as claims, each with a metric, a rule fixed in advance and a verdict.

A claim is data (:class:`Claim`): what it says in our words, which metric it
rests on, which figure shows it, and one or more rule parts (:class:`Part`).
:func:`evaluate` applies the parts to per-image measurements and returns one
row ``{id, statement, metric, values, rule, verdict, reason}``.

Models are named by role, so the catalogue does not depend on model ids:

- ``dense_cnn``: the ConvNeXt distilled from DINOv3 (the study's subject);
- ``cls_cnn``: the same ConvNeXt trained as an ImageNet classifier;
- ``dense_vit``: the DINOv3 ViT teacher family.

:func:`roles_from_timm` finds them from timm names.

Measurements
------------
``measurements[metric][model_id]`` is a 1-D sequence with one value per unit
(an image, unless :data:`METRICS` says otherwise), in the same unit order for
every model; NaN marks a unit without a value. Comparisons between two models
are paired unit by unit, over the units where both have a value.

Verdict rules (decided before looking at any real data)
-------------------------------------------------------
Every rule part looks at the mean over units and its 95% Student-t interval,
``mean +- t(0.975, n - 1) * sd / sqrt(n)`` (sd with ddof=1): the spread over
images is the noise.

- ``above`` (``below``): holds when the whole interval is above (below) the
  bar, fails when the whole interval is on the wrong side (touching the bar
  counts as failing), and is a tie otherwise.
- ``greater``: on paired differences ``a - b``. Holds when the interval's low
  end exceeds the tolerance, fails when its high end is below minus the
  tolerance, tie otherwise. The tolerance is :data:`REL_TOL` times the larger
  of the two means' magnitudes, so two equal-to-the-last-digit numbers
  (e.g. 0.990094 vs 0.990002) are a tie even when every image agrees.
- ``differ``: on paired differences, holds when the interval lies entirely
  outside ``[-margin, margin]``, fails when it lies entirely inside, tie
  otherwise.

A claim is "supported" when all its parts hold, "not supported" when any part
fails, and "cannot tell" otherwise. It is also "cannot tell", whatever the
numbers, when

- the weights are random (the claims are about trained networks);
- a role has no model in the build, or a metric was not measured;
- fewer than :data:`MIN_IMAGES` units have a value (below three the spread
  over images, and so the noise, cannot be estimated usefully);
- a part is a tie within noise (see above).

For the part-sharing metrics a unit is one image of the group, valued by the
mean over its pairs with the other images; these units share pairs and so are
not independent, which makes the interval somewhat too narrow. It is still the
spread a reader sees across the group's pictures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["MIN_IMAGES", "REL_TOL", "CONFIDENCE", "ROLES", "METRICS", "Verdict", "Part", "Claim",
           "CLAIMS", "judge", "evaluate", "evaluate_all", "roles_from_timm"]

Verdict = Literal["supported", "not supported", "cannot tell"]

MIN_IMAGES = 3
REL_TOL = 0.01
CONFIDENCE = 0.95

ROLES: dict[str, str] = {
    "dense_cnn": "the DINOv3 ConvNeXt",
    "cls_cnn": "the ImageNet ConvNeXt",
    "dense_vit": "the DINOv3 ViT",
}

# What the pipeline computes for each metric, per unit. One name per concept:
# these keys are the `metric` of the claims rows.
METRICS: dict[str, str] = {
    "pc1_iou_ref": "IoU of the PC1 foreground mask of the last stage with the photo's reference "
                   "mask (spatial.subject_iou), per image with a reference mask",
    "pc1_speck_share": "share of isolated specks in the PC1 foreground mask of the last stage "
                       "(spatial.speck_share of masks.foreground_mask), per image",
    "pc23_coherence": "mean neighbour coherence (Moran's I, spatial.neighbour_coherence) of the "
                      "within-image PC2 and PC3 maps of the last stage, per image",
    "norm_outlier_share": "share of last-stage positions with a high-norm outlier "
                          "(outliers.norm_outliers, k = 5), per image",
    "edge_drop": "edge following (spatial.edge_following, against the photo as fed to the "
                 "network) at the first reported stage minus at the last stage, per image",
    "far_similarity_first": "mean cosine similarity of distant positions (spatial.far_similarity) "
                            "at the first reported stage, per image",
    "c4_instance_separation": "instance separation (instances.instance_separation) at stage C4, "
                              "per image whose reference mask has two or more instances",
    "part_colour_gain": "colour agreement (correspond.colour_agreement) of mutually nearest "
                        "foreground cells in the masked across-image PCA minus in the naive one, "
                        "per image of the group: mean over its pairs with the other images",
    "part_match_excess": "cycle_share_excess (correspond.cycle_share_excess) of the foreground "
                         "cells of two images of the group, per image of the group: mean over "
                         "its pairs with the other images",
    "tail_log_ratio": "log10 of p99.9/p50 of |x| (outliers.value_tails), mean over the stages, "
                      "per image",
}

_UNITS: dict[str, str] = {
    "pc1_iou_ref": "images with a reference mask",
    "c4_instance_separation": "images with two or more instances",
    "part_colour_gain": "images in a group",
    "part_match_excess": "images in a group",
}


def _unit(metric: str) -> str:
    return _UNITS.get(metric, "images")


def _num(x: float) -> str:
    return f"{x:.3g}"


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
    """

    kind: Literal["above", "below", "greater", "differ"]
    metric: str
    role: str
    other: str | None = None
    bound: float = 0.0
    note: str = ""

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
    """

    id: str
    statement: str
    metric: str
    parts: tuple[Part, ...]
    figure: str

    @property
    def rule(self) -> str:
        """The rule in words, as printed in the claims table."""
        greater = any(p.kind == "greater" for p in self.parts)
        return ("; ".join(p.text() for p in self.parts)
                + f". Each must hold beyond the {CONFIDENCE:.0%} interval over {_unit(self.metric)}"
                + f" (at least {MIN_IMAGES})"
                + (f"; differences within {REL_TOL:.0%} are ties." if greater else "."))


CLAIMS: tuple[Claim, ...] = (
    Claim("pc1_subject",
          "In the last stage, the first principal component of a photo's own features marks out "
          "its subject, for both DINOv3 networks.",
          "pc1_iou_ref",
          (Part("above", "pc1_iou_ref", "dense_cnn", bound=0.5),
           Part("above", "pc1_iou_ref", "dense_vit", bound=0.5)),
          "foreground_mask"),
    Claim("later_pcs_smooth",
          "Components two and three of the last stage form smooth regions for the DINOv3 ConvNeXt "
          "and scattered noise for the ImageNet ConvNeXt.",
          "pc23_coherence",
          (Part("above", "pc23_coherence", "dense_cnn", bound=0.5),
           Part("below", "pc23_coherence", "cls_cnn", bound=0.5),
           Part("greater", "pc23_coherence", "dense_cnn", "cls_cnn")),
          "within_pca"),
    Claim("imagenet_outliers",
          "The ImageNet ConvNeXt's last stage has more positions with an outsized feature norm "
          "than the DINOv3 ConvNeXt's, at least one in a hundred.",
          "norm_outlier_share",
          (Part("greater", "norm_outlier_share", "cls_cnn", "dense_cnn"),
           Part("above", "norm_outlier_share", "cls_cnn", bound=0.01)),
          "within_pca"),
    Claim("edges_to_objects",
          "Both ConvNeXts change where the photo has edges in their first stage, and less so in "
          "their last.",
          "edge_drop",
          (Part("above", "edge_drop", "dense_cnn", bound=0.0),
           Part("above", "edge_drop", "cls_cnn", bound=0.0)),
          "stage_pca"),
    Claim("vit_global_early",
          "At its first reported block the ViT already gives distant positions similar features, "
          "more than either ConvNeXt does at its first stage.",
          "far_similarity_first",
          (Part("greater", "far_similarity_first", "dense_vit", "dense_cnn"),
           Part("greater", "far_similarity_first", "dense_vit", "cls_cnn")),
          "stage_pca"),
    Claim("c4_instances",
          "At stage C4 the DINOv3 ConvNeXt already gives separate subjects of one photo different "
          "features, more clearly than the ImageNet ConvNeXt.",
          "c4_instance_separation",
          (Part("above", "c4_instance_separation", "dense_cnn", bound=0.1),
           Part("greater", "c4_instance_separation", "dense_cnn", "cls_cnn")),
          "stage_pca"),
    Claim("part_colours",
          "Across photos of one kind, the subjects' cells find their counterparts in the other "
          "photos, and matched cells get closer colours when the across-image PCA is fitted on "
          "the subjects only than when it is fitted on whole photos.",
          "part_colour_gain",
          (Part("above", "part_match_excess", "dense_vit", bound=0.0),
           Part("above", "part_match_excess", "dense_cnn", bound=0.0),
           Part("above", "part_colour_gain", "dense_vit", bound=0.0),
           Part("above", "part_colour_gain", "dense_cnn", bound=0.0)),
          "across_pca_masked"),
    Claim("masks_cleaner",
          "The DINOv3 ConvNeXt's subject mask fits the drawn outline better and has fewer stray "
          "specks than the ImageNet ConvNeXt's.",
          "pc1_iou_ref",
          (Part("greater", "pc1_iou_ref", "dense_cnn", "cls_cnn"),
           Part("greater", "pc1_speck_share", "cls_cnn", "dense_cnn")),
          "foreground_mask"),
    Claim("tails_differ",
          "Two ConvNeXts with the same architecture but different training have feature values "
          "with clearly different tails: one tail ratio is over 1.5 times the other.",
          "tail_log_ratio",
          (Part("differ", "tail_log_ratio", "dense_cnn", "cls_cnn", bound=math.log10(1.5),
                note="log10 of 1.5: one tail ratio over 1.5 times the other"),),
          "feature_hist"),
)


def _interval(x: np.ndarray) -> tuple[float, float]:
    """Mean and half-width of the two-sided t interval at CONFIDENCE."""
    from scipy.stats import t

    n = x.size
    m = float(x.mean())
    sd = float(x.std(ddof=1))
    return m, float(t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sd / math.sqrt(n)


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


def judge(part: Part, measurements: Mapping[str, Mapping[str, Sequence[float]]],
          roles: Mapping[str, str]) -> tuple[Verdict, str]:
    """Apply one rule part.

    Parameters
    ----------
    part : Part
    measurements : {metric: {model_id: (n_units,) values}}
        NaN where a unit has no value; see the module docstring.
    roles : {role: model_id}

    Returns
    -------
    verdict : "supported" (the part holds), "not supported" (it fails) or "cannot tell"
    reason : str
        The numbers behind it, or why it cannot be told.
    """
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
    n = int(np.count_nonzero(ok))
    if n < MIN_IMAGES:
        return "cannot tell", (f"too few {_unit(part.metric)} for {part.metric}: {n} "
                               f"(need {MIN_IMAGES})")
    a_id, a = series[0][0], series[0][1][ok]
    if part.kind in ("above", "below"):
        m, half = _interval(a)
        lo, hi = m - half, m + half
        desc = (f"{part.metric} of {a_id}: mean {_num(m)}, interval [{_num(lo)}, {_num(hi)}] "
                f"over {n} {_unit(part.metric)}")
        bar = part.bound
        if part.kind == "above":
            if lo > bar:
                return "supported", f"{desc}, above {_num(bar)}"
            if hi <= bar:
                return "not supported", f"{desc}, not above {_num(bar)}"
        else:
            if hi < bar:
                return "supported", f"{desc}, below {_num(bar)}"
            if lo >= bar:
                return "not supported", f"{desc}, not below {_num(bar)}"
        return "cannot tell", f"{desc}: {_num(bar)} is within noise"
    b_id, b = series[1][0], series[1][1][ok]
    m, half = _interval(a - b)
    lo, hi = m - half, m + half
    desc = (f"{part.metric}: {a_id} {_num(float(a.mean()))} vs {b_id} {_num(float(b.mean()))}, "
            f"difference {_num(m)}, interval [{_num(lo)}, {_num(hi)}] over {n} {_unit(part.metric)}")
    if part.kind == "greater":
        tol = max(REL_TOL * max(abs(float(a.mean())), abs(float(b.mean()))), 1e-12)
        if lo > tol:
            return "supported", f"{desc}: {a_id} is greater"
        if hi < -tol:
            return "not supported", f"{desc}: {b_id} is greater"
        return "cannot tell", f"{desc}: a tie within noise"
    margin = part.bound
    if lo > margin or hi < -margin:
        return "supported", f"{desc}: they differ by more than {_num(margin)}"
    if lo >= -margin and hi <= margin:
        return "not supported", f"{desc}: they differ by less than {_num(margin)}"
    return "cannot tell", f"{desc}: a difference of {_num(margin)} is within noise"


def evaluate(claim: Claim, measurements: Mapping[str, Mapping[str, Sequence[float]]],
             roles: Mapping[str, str], *, random_weights: bool) -> dict:
    """Verdict of one claim.

    Parameters
    ----------
    claim : Claim
    measurements : {metric: {model_id: (n_units,) values}}
        See the module docstring. Models not in `roles` may be present; they
        appear in ``values`` but no rule looks at them.
    roles : {role: model_id}
        E.g. from :func:`roles_from_timm`.
    random_weights : bool
        True when the networks were not trained: the verdict is then
        "cannot tell" whatever the numbers.

    Returns
    -------
    dict
        ``{"id", "statement", "metric", "values", "rule", "verdict", "reason"}``;
        ``values`` maps every measured model id (sorted) to the mean of its
        finite values of ``claim.metric`` (models without any are left out).
    """
    values: dict[str, float] = {}
    for model in sorted(measurements.get(claim.metric, {})):
        s = _series(measurements, claim.metric, model)
        fin = s[np.isfinite(s)]
        if fin.size:
            values[model] = float(fin.mean())
    results = []
    for p in claim.parts:
        res = judge(p, measurements, roles)
        if res not in results:  # two parts on one model can fail for the same reason
            results.append(res)
    if random_weights:
        verdict: Verdict = "cannot tell"
        reason = "the weights are random, and the claim is about trained networks"
    elif any(v == "not supported" for v, _ in results):
        verdict = "not supported"
        reason = "; ".join(r for v, r in results if v == "not supported")
    elif any(v == "cannot tell" for v, _ in results):
        verdict = "cannot tell"
        reason = "; ".join(r for v, r in results if v == "cannot tell")
    else:
        verdict = "supported"
        reason = "; ".join(r for _, r in results)
    return {"id": claim.id, "statement": claim.statement, "metric": claim.metric,
            "values": values, "rule": claim.rule, "verdict": verdict, "reason": reason}


def evaluate_all(measurements: Mapping[str, Mapping[str, Sequence[float]]],
                 roles: Mapping[str, str], *, random_weights: bool,
                 claims: Sequence[Claim] = CLAIMS) -> list[dict]:
    """Rows of :func:`evaluate` for every claim, in catalogue order."""
    return [evaluate(c, measurements, roles, random_weights=random_weights) for c in claims]


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
