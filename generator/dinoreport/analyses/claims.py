"""The study's observations as measured claims: a metric per claim, a rule fixed in advance,
a verdict (see :mod:`dinoreport.analysis.claims` for the catalogue and the rules).

Per-image metrics are computed on every image of the build for every model
(:func:`dinoreport.analysis.claim_metrics.image_metrics`); the part-sharing metrics on each
group named by ``analysis.part_groups`` (default ``["dogs"]``: photos of one kind of subject;
a named group the build lacks contributes no images). Results:

- ``claims``: one row per catalogue claim, ``{id, statement, about, metric, values: {model id:
  mean}, rule, verdict, reason, figure}`` (``about``: "training" or "architecture", what the claim
  credits; ``figure``: the figure kind the claim can be checked on);
- ``claim_metrics``: the per-unit numbers the verdicts rest on, ``{model, unit, metric, value}``
  (unit = image id, or ``group/image`` for the part-sharing metrics); NaN units are left out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..analysis import claims as C
from ..analysis.claim_metrics import GROUP_METRICS, IMAGE_METRICS, group_metrics, image_metrics
from ..context import BuildContext
from ..page import Table
from ..options import option
from ..suggest import did_you_mean
from ._common import mask_threshold_option, rnd


def _known_groups(groups: tuple[str, ...], cfg) -> tuple[int, str] | None:
    """The first of ``groups`` that the config's own [groups] lack (when it defines groups;
    otherwise they come from the manifest or folder, known only once it is read)."""
    for i, g in enumerate(groups):
        if cfg.groups and g not in cfg.groups:
            return i, f"unknown group '{g}'" + did_you_mean(g, cfg.groups)
    return None


@dataclass(frozen=True)
class Options:
    # Not every group qualifies: "everyday" holds unrelated photos.
    part_groups: tuple[str, ...] = option(("dogs",), "groups of photos of one kind of subject, on which "
                                          "the part-sharing claim is measured", check=_known_groups)
    mask_threshold: float = mask_threshold_option()
from .registry import ForegroundMasks, Needs, SectionOutput, TableKind, register_analysis


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def measure(ctx: BuildContext) -> tuple[dict[str, dict[str, list[float]]], list[dict[str, Any]],
                                        dict[str, list[str]]]:
    """Every claim metric of every model, in one unit order for all models.

    Returns
    -------
    measurements : {metric: {model id: [value per unit]}}, NaN where a unit has no value
    detail : rows ``{model, unit, metric, value}`` of the finite values, sorted
    unit_groups : {group metric: [group name per unit]}, the same for every model
    """
    masks = ctx.artifact(ForegroundMasks).by_model
    measurements: dict[str, dict[str, list[float]]] = {k: {} for k in IMAGE_METRICS + GROUP_METRICS}
    detail: list[dict[str, Any]] = []
    images = ctx.image_ids()
    unit_groups: dict[str, list[str]] = {k: [] for k in GROUP_METRICS}
    for group in ctx.options.part_groups:
        ids = ctx.groups.get(group, ())
        if len(ids) >= 2:
            for k in GROUP_METRICS:
                unit_groups[k].extend([group] * len(ids))
    for m in ctx.models:
        per: dict[str, list[float]] = {k: [] for k in IMAGE_METRICS + GROUP_METRICS}
        for i in images:
            stages = [(st.name, ctx.fmap(m.id, i, st.name)) for st in m.stages]
            vals = image_metrics(stages, photo=ctx.images[i], reference=ctx.reference_masks.get(i),
                                 threshold=ctx.options.mask_threshold)
            for k in IMAGE_METRICS:
                per[k].append(vals[k])
                if math.isfinite(vals[k]):
                    detail.append({"model": m.id, "unit": i, "metric": k, "value": rnd(vals[k])})
        for group in ctx.options.part_groups:
            ids = ctx.groups.get(group, ())
            if len(ids) < 2:
                continue
            gm = group_metrics([ctx.fmap(m.id, i, m.last) for i in ids], [masks[m.id][i] for i in ids])
            for k in GROUP_METRICS:
                per[k].extend(gm[k])
                for i, v in zip(ids, gm[k]):
                    if math.isfinite(v):
                        detail.append({"model": m.id, "unit": f"{group}/{i}", "metric": k, "value": rnd(v)})
        for k, v in per.items():
            measurements[k][m.id] = v
    detail.sort(key=lambda d: (d["metric"], d["model"], d["unit"]))
    return measurements, detail, unit_groups


@register_analysis(
    "claims", order=90, thread_safe=True, needs=Needs(artifacts=(ForegroundMasks,), reference_masks=True),
    options=Options,
    tables=(TableKind("claims", "each observation of the study with its per-model numbers, rule and "
                                "verdict (needs the within_pca analysis)"),),
)
def claims(ctx: BuildContext) -> SectionOutput:
    """One verdict per catalogue claim, the numbers behind it, and the claims table."""
    out = SectionOutput()
    measurements, detail, unit_groups = measure(ctx)
    roles = C.roles_from_timm({m.id: m.timm for m in ctx.models})
    rows = C.evaluate_all(measurements, roles, random_weights=ctx.random_init, unit_groups=unit_groups)
    figure_of = {c.id: c.figure for c in C.CLAIMS}
    for r in rows:
        r["values"] = {k: rnd(v) for k, v in r["values"].items() if np.isfinite(v)}
        r["figure"] = figure_of[r["id"]]
    out.results["claims"] = rows
    out.results["claim_metrics"] = detail
    out.tables.append(Table(
        id="claims", kind="claims",
        caption=("Each observation of the study as a claim: whether it is about training or about "
                 "the architecture, the per-model mean of the metric it is "
                 "measured by, the verdict and the reason for it, and the kind of figure to check it on; "
                 "the rule of each claim is given with it in the text. "
                 + ("The weights are random, so every verdict is 'cannot tell'. " if ctx.random_init else "")
                 + ctx.provenance()),
        columns=("claim", "statement", "about", "metric: mean per model", "verdict", "reason", "figures"),
        rows=tuple((r["id"], r["statement"], r["about"],
                    f"{r['metric']}: " + ("; ".join(f"{m.label} {_fmt(r['values'][m.id])}"
                                                    for m in ctx.models if m.id in r["values"])
                                          or "no values"),
                    r["verdict"], r["reason"], r["figure"].replace("_", " ")) for r in rows)))
    return out
