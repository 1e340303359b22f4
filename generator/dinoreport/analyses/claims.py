"""The study's observations as measured claims: a metric per claim, a rule fixed in advance,
a verdict (see :mod:`dinoreport.analysis.claims` for the catalogue and the rules).

Per-image metrics are computed on every image of the build for every model
(:func:`dinoreport.analysis.claim_metrics.image_metrics`); the part-sharing metrics on each
group named by ``analysis.part_groups`` (default ``["dogs"]``: photos of one kind of subject;
a named group the build lacks contributes no images). Results:

- ``claims``: one row per catalogue claim, ``{id, statement, about, metric, values: {model id:
  mean}, rule, verdict, reason, figure}`` (``about``: "training" or "architecture", what the claim
  credits; ``figure``: the figure kind the claim can be checked on);
  ``metrics``: each metric of the claim with its per-model means and its controls' means;
  ``groups``: the groups the part-sharing metrics were measured on;
- ``claim_metrics``: the per-unit numbers the verdicts rest on, ``{model, unit, metric, value,
  control}`` (unit = image id, or ``group/image`` for the part-sharing metrics; control "" for
  the trained model, else the name of the control, :data:`~dinoreport.analysis.claims.CONTROLS`);
  NaN units are left out.

Controls (see the claims module): the untrained control's maps come from the pipeline
(``Needs(controls=True)``: extracted only when the build has trained weights); the free controls
are computed here from the trained maps, the photos and the reference masks. A random-init
build measures no control (it judges nothing).
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..analysis import claims as C
from ..analysis.claim_metrics import (GROUP_METRICS, IMAGE_METRICS, free_controls, group_metrics, image_metrics,
                                      random_masks)
from ..analysis.masks import foreground_mask
from ..analysis.pca import pca_within
from ..context import BuildContext
from ..page import Table
from ..options import option
from ..suggest import did_you_mean
from ._common import mask_threshold_option, rnd
from .claimhtml import narrative_helpers, number


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
    control_seeds: int = option(1, "untrained seeds per architecture for the claims' controls (one extra "
                                "extraction each, only when the build has trained weights)", min=1, max=10)
    control_init: str = option("timm", "init recipe of the untrained controls: \"timm\" (timm's own, what "
                               "training starts from) or \"every-block\" (the project's random init)",
                               choices=("timm", "every-block"))


def _needs(cfg, opts: Options) -> Needs:
    """The within_pca masks, the reference masks, and untrained controls (``control_seeds``
    seeds of ``control_init``; the pipeline extracts them only when the weights are trained)."""
    return Needs(artifacts=(ForegroundMasks,), reference_masks=True, controls=opts.control_seeds,
                 control_init=opts.control_init)
from .registry import ForegroundMasks, Needs, SectionOutput, TableKind, register_analysis


Series = dict[str, dict[str, list[float]]]  # {metric: {model id: [value per unit]}}


def _seed(*parts: str) -> int:
    """A fixed seed for a control's randomness, from names (no clock, no order dependence)."""
    return zlib.crc32("/".join(parts).encode())


def _groups(ctx: BuildContext) -> list[tuple[str, tuple[str, ...]]]:
    return [(g, ctx.groups.get(g, ())) for g in ctx.options.part_groups if len(ctx.groups.get(g, ())) >= 2]


def _measure_maps(ctx: BuildContext, stages_of, last_of, masks_of) -> Series:
    """Per-image and per-group metrics of every model: ``stages_of(m, i)`` gives the stage maps,
    ``last_of(m, i)`` the last stage, ``masks_of(m, ids)`` the foreground masks of a group."""
    per: Series = {k: {} for k in IMAGE_METRICS + GROUP_METRICS}
    for m in ctx.models:
        for k in per:
            per[k][m.id] = []
        for i in ctx.image_ids():
            vals = image_metrics(stages_of(m, i), photo=ctx.images[i], reference=ctx.reference_masks.get(i),
                                 threshold=ctx.options.mask_threshold)
            for k in IMAGE_METRICS:
                per[k][m.id].append(vals[k])
        for group, ids in _groups(ctx):
            gm = group_metrics([last_of(m, i) for i in ids], masks_of(m, group, ids))
            for k in GROUP_METRICS:
                per[k][m.id].extend(gm[k])
    return per


def _seed_mean(runs: list[Series]) -> Series:
    """Per unit, the mean over seeds of the finite values (NaN where no seed has one)."""
    out: Series = {}
    for k in runs[0]:
        out[k] = {}
        for mid in runs[0][k]:
            stack = np.array([r[k][mid] for r in runs], dtype=np.float64)
            fin = np.isfinite(stack)
            total = np.where(fin, stack, 0.0).sum(axis=0)
            count = fin.sum(axis=0)
            out[k][mid] = [float(t / c) if c else float("nan") for t, c in zip(total, count)]
    return out


def measure(ctx: BuildContext) -> tuple[Series, list[dict[str, Any]], dict[str, list[str]], dict[str, Series]]:
    """Every claim metric of every model, and of every control, in one unit order for all.

    Returns
    -------
    measurements : {metric: {model id: [value per unit]}}, NaN where a unit has no value
    detail : rows ``{model, unit, metric, value, control}`` of the finite values, sorted
    unit_groups : {group metric: [group name per unit]}, the same for every model
    controls : {control: {metric: {model id: [value per unit]}}}, under the trained model's id;
        empty under random weights
    """
    masks = ctx.artifact(ForegroundMasks).by_model
    thr = ctx.options.mask_threshold
    unit_groups: dict[str, list[str]] = {k: [] for k in GROUP_METRICS}
    for group, ids in _groups(ctx):
        for k in GROUP_METRICS:
            unit_groups[k].extend([group] * len(ids))
    measurements = _measure_maps(
        ctx, lambda m, i: [(st.name, ctx.fmap(m.id, i, st.name)) for st in m.stages],
        lambda m, i: ctx.fmap(m.id, i, m.last), lambda m, g, ids: [masks[m.id][i] for i in ids])
    controls: dict[str, Series] = {}
    if not ctx.random_init:
        controls = _free_controls(ctx, masks)
        if ctx.control_keys:
            def own_masks(m, g, ids, k):
                return [foreground_mask(pca_within(ctx.control_fmap(m.id, i, m.last, k), 1).proj[0], thr)
                        for i in ids]

            runs = [_measure_maps(ctx, lambda m, i, k=k: [(st.name, ctx.control_fmap(m.id, i, st.name, k))
                                                          for st in m.stages],
                                  lambda m, i, k=k: ctx.control_fmap(m.id, i, m.last, k),
                                  lambda m, g, ids, k=k: own_masks(m, g, ids, k))
                    for k in range(len(ctx.control_keys))]
            controls["untrained"] = _seed_mean(runs)
    detail = _detail(ctx, measurements, "") + [d for name, c in sorted(controls.items())
                                               for d in _detail(ctx, c, name)]
    detail.sort(key=lambda d: (d["metric"], d["control"], d["model"], d["unit"]))
    return measurements, detail, unit_groups, controls


def _free_controls(ctx: BuildContext, masks) -> dict[str, Series]:
    """The free controls of every model (claim_metrics.free_controls; random masks per group)."""
    out: dict[str, Series] = {}
    for m in ctx.models:
        for i in ctx.image_ids():
            vals = free_controls([(st.name, ctx.fmap(m.id, i, st.name)) for st in m.stages],
                                 photo=ctx.images[i], reference=ctx.reference_masks.get(i),
                                 threshold=ctx.options.mask_threshold, seed=_seed("shuffled", m.id, i))
            for name, per in vals.items():
                for k, v in per.items():
                    out.setdefault(name, {}).setdefault(k, {}).setdefault(m.id, []).append(v)
        for group, ids in _groups(ctx):
            rng = np.random.default_rng(_seed("random_masks", m.id, group))
            gm = group_metrics([ctx.fmap(m.id, i, m.last) for i in ids],
                               random_masks([masks[m.id][i] for i in ids], rng))
            for k in GROUP_METRICS:
                out.setdefault("random_masks", {}).setdefault(k, {}).setdefault(m.id, []).extend(gm[k])
    return out


def _detail(ctx: BuildContext, series: Series, control: str) -> list[dict[str, Any]]:
    """The finite per-unit values of ``series`` as rows (units named as in the module docstring)."""
    images = ctx.image_ids()
    group_units = [f"{g}/{i}" for g, ids in _groups(ctx) for i in ids]
    rows = []
    for k, per in series.items():
        units = group_units if k in GROUP_METRICS else images
        for mid, vals in per.items():
            for u, v in zip(units, vals):
                if math.isfinite(v):
                    rows.append({"model": mid, "unit": u, "metric": k, "value": rnd(v), "control": control})
    return rows


def _fmt(x: float) -> str:
    """A number as the claim boxes show it (claimhtml.number: U+2212 minus)."""
    return number(x)


def metrics_cell(row: dict[str, Any], label) -> str:
    """Every metric of a claim with each model's mean and, in brackets, its controls' means."""
    out = []
    for metric, d in row["metrics"].items():
        per = []
        for mid in d["values"]:
            ctrl = [f"{name.replace('_', ' ')} {_fmt(v[mid])}" for name, v in d["controls"].items() if mid in v]
            per.append(f"{label(mid)} {_fmt(d['values'][mid])}" + (f" ({', '.join(ctrl)})" if ctrl else ""))
        out.append(f"{metric}: " + ("; ".join(per) or "no values"))
    return ". ".join(out)


@register_analysis(
    "claims", order=90, thread_safe=True, needs=_needs, options=Options,
    tables=(TableKind("claims", "each observation of the study with its per-model numbers, controls, rule and "
                                "verdict (needs the within_pca analysis)", refs=("figures",)),),
    helpers=narrative_helpers,
)
def claims(ctx: BuildContext) -> SectionOutput:
    """One verdict per catalogue claim, the numbers behind it, and the claims table."""
    out = SectionOutput()
    measurements, detail, unit_groups, controls = measure(ctx)
    roles = C.roles_from_timm({m.id: m.timm for m in ctx.models})
    an = ctx.options
    rows = C.evaluate_all(measurements, roles, random_weights=ctx.random_init, unit_groups=unit_groups,
                          controls=None if ctx.random_init else controls, control_init=an.control_init,
                          control_seeds=len(ctx.control_keys) or an.control_seeds)
    by_id = {c.id: c for c in C.CLAIMS}
    groups = [g for g, _ in _groups(ctx)]
    order = [m.id for m in ctx.models]
    for r in rows:
        r["values"] = {k: rnd(v) for k, v in r["values"].items() if np.isfinite(v)}
        r["metrics"] = {k: {"values": {m: rnd(d["values"][m]) for m in order if m in d["values"]},
                            "controls": {c: {m: rnd(v[m]) for m in order if m in v}
                                         for c, v in d["controls"].items()}}
                        for k, d in r["metrics"].items()}
        r["figure"] = by_id[r["id"]].figure
        r["groups"] = groups if set(by_id[r["id"]].metrics) & C.PAIR_METRICS else []
    out.results["claims"] = rows
    out.results["claim_metrics"] = detail
    label = {m.id: m.label for m in ctx.models}.get
    out.tables.append(Table(
        id="claims", kind="claims",
        caption=("Each observation of the study as a claim: whether it is about training or about "
                 "the architecture, the per-model mean of every metric it is measured by with its "
                 "controls' means in brackets (for training claims in a build with trained weights), "
                 "the verdict and the reason for it, and the figures to check it on; "
                 "the rule of each claim is given with it in the text. "
                 + ("The weights are random, so every verdict is 'cannot tell' and no control is measured. "
                    if ctx.random_init else "")
                 + ctx.provenance()),
        columns=("claim", "statement", "about", "metrics: mean per model (controls)", "verdict", "reason",
                 "figures"),
        rows=tuple((r["id"], r["statement"], r["about"], metrics_cell(r, label), r["verdict"], r["reason"],
                    f"kind={r['figure']}" + (f" group={','.join(r['groups'])}" if r["groups"] else ""))
                   for r in rows)))
    return out
