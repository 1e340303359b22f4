"""Linear CKA between every stage of every pair of models."""
from __future__ import annotations

from itertools import combinations

import numpy as np

from .. import analysis as A
from ..context import BuildContext
from ..figures import heatmap_figure
from ..page import Figure, Panel, Row, Table
from ._common import rnd, slug
from .registry import FigureKind, SectionOutput, TableKind, register_analysis


@register_analysis(
    "cka", order=60, thread_safe=True,
    figures=(FigureKind("cka", "linear CKA between stages of every model pair"),),
    tables=(TableKind("cka_best", "best-matching stage of one model for each stage of another"),),
)
def cka(ctx: BuildContext) -> SectionOutput:
    """Linear CKA between every stage of every pair of models, maps resized to each image's
    coarsest grid (the smallest stage grid among all models) and pooled over images."""
    out = SectionOutput()
    ids = ctx.image_ids()
    grid_stride = max(s.stride for m in ctx.models for s in m.stages)
    models = list(ctx.models)
    # One image at a time into the accumulator: memory holds cross products, not pooled maps.
    acc = A.CkaAccumulator([((a.id, sa.name), (b.id, sb.name)) for a, b in combinations(models, 2)
                            for sa in a.stages for sb in b.stages])
    for i in ids:
        rows_i = {}
        for m in models:
            for st in m.stages:
                fmap = A.resize_map(ctx.fmap(m.id, i, st.name), ctx.grid(i, grid_stride))
                rows_i[(m.id, st.name)] = fmap.reshape(fmap.shape[0], -1).T
        acc.update(rows_i)
    rows = []
    best = []
    for a, b in combinations(models, 2):
        vals = np.array([[acc.value((a.id, sa.name), (b.id, sb.name)) for sb in b.stages]
                         for sa in a.stages])
        for (x, sa), (y, sb) in ((p, q) for p in enumerate(a.stages) for q in enumerate(b.stages)):
            rows.append({"model_a": a.id, "stage_a": sa.name, "model_b": b.id, "stage_b": sb.name,
                         "value": rnd(vals[x, y])})
        for x, sa in enumerate(a.stages):
            y = int(np.argmax(vals[x]))
            best.append((a.label, sa.name, b.label, b.stages[y].name, rnd(vals[x, y])))
        panel = Panel(ctx.writer.plot(heatmap_figure(
            vals, [s.name for s in a.stages], [s.name for s in b.stages],
            title=f"{a.label} vs {b.label}", xlabel=b.label, ylabel=a.label)),
            f"Linear CKA between the stages of {a.label} (rows) and {b.label} (columns)", "")
        out.figures.append(Figure(
            id=slug("cka", a.id, b.id), kind="cka",
            caption=(f"Linear CKA between every stage of {a.label} and {b.label} over all {len(ids)} "
                     f"images, each map resized to the coarsest grid. {ctx.provenance()}"),
            rows=(Row("", (panel,)),)))
    out.results["cka"] = rows
    if best:
        out.tables.append(Table(
            id="cka-best", kind="cka_best",
            caption="For each stage of one model, the best-matching stage of the other by linear CKA.",
            columns=("model", "stage", "other model", "best stage", "CKA"), rows=tuple(best)))
    return out
