"""Part co-segmentation per group: one k-means over the foreground cells of all its images."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import analysis as A
from ..analysis.parts import cosegment, image_purity
from ..context import BuildContext
from ..drawing import PART_COLOUR_NAMES, part_rgb
from ..figures import rgb_map
from ..page import Figure, Panel, Row, Table
from ..options import option
from ._common import photo_row, rnd, rnd_all, slug
from .registry import FigureKind, ForegroundMasks, Needs, SectionOutput, TableKind, register_analysis


@dataclass(frozen=True)
class Options:
    coseg_k: int = option(4, "parts per group in the co-segmentation (one distinct colour each)", min=2, max=9)


@register_analysis(
    "cosegmentation", order=45, thread_safe=True, needs=Needs(artifacts=(ForegroundMasks,)), options=Options,
    figures=(FigureKind("cosegmentation", "parts shared by the images of a group (k-means on foreground features)"),),
    tables=(TableKind("cosegmentation", "share of a group's foreground in each part", percent=("largest part", "image purity")),),
)
def cosegmentation(ctx: BuildContext) -> SectionOutput:
    """k-means with ``coseg_k`` parts on the unit-length last-stage features of the
    PC1 foreground cells of every image of a group, per model; seeded with ``seed``."""
    out = SectionOutput()
    masks = ctx.artifact(ForegroundMasks).by_model
    k = ctx.options.coseg_k
    rows: list[dict[str, Any]] = []
    for group, ids in sorted(ctx.groups.items()):
        if len(ids) < 2:
            continue
        fig_rows = []
        for m in ctx.models:
            stride = m.stage(m.last).stride
            fmaps = ctx.stage_maps(m.id, ids, m.last)  # read one at a time: memory flat in group size
            gmasks = [A.resize_nearest(masks[m.id][i], ctx.grid(i, stride)) for i in ids]
            if sum(int(g.sum()) for g in gmasks) < k:
                continue  # fewer foreground cells than parts: nothing to cluster
            seg = cosegment(fmaps, gmasks, k, seed=ctx.cfg.seed)
            rows.append({"model": m.id, "stage": m.last, "group": group, "k": k, "inertia": rnd(seg.inertia),
                         "n_cells": seg.n_cells, "part_shares": rnd_all(seg.part_shares),
                         "image_purity": rnd(image_purity(seg.labels))})
            fig_rows.append(Row(m.label, tuple(
                Panel(ctx.writer.png(rgb_map(part_rgb(lab))),
                      f"Parts ({k}, one colour each) of {m.label} {m.last} in image {i} of group {group}; "
                      f"background grey", i)
                for i, lab in zip(ids, seg.labels))))
        if not fig_rows:
            continue
        photos = photo_row(ctx, ids)
        out.figures.append(Figure(
            id=slug("cosegmentation", group), kind="cosegmentation", group=group,
            caption=(f"Part co-segmentation of group '{group}': k-means with k = {k} on the last stage's "
                     f"foreground features (PC1 masks, each vector scaled to unit length) of all {len(ids)} "
                     f"images at once, one fit per model, so a colour is one part in every image of a row. "
                     f"Colours follow part size, largest first: {', '.join(PART_COLOUR_NAMES[:k])}. "
                     f"Background grey. {ctx.provenance()}"),
            column_labels=tuple(ids), rows=(photos,) + tuple(fig_rows)))
    out.results["cosegmentation"] = rows
    tab = tuple((r["group"], ctx.label(r["model"]), r["stage"], r["k"], r["n_cells"], r["part_shares"][0],
                 " / ".join(f"{s:.0%}" for s in r["part_shares"]), rnd(r["inertia"] / r["n_cells"]),
                 r["image_purity"])
                for r in rows)
    if tab:
        out.tables.append(Table(
            id="cosegmentation", kind="cosegmentation",
            caption=("Part co-segmentation per group and model: foreground cells clustered, the share of "
                     "the largest part, all shares (largest first), the k-means inertia per cell "
                     "(squared distance of a unit-length feature to its part centre: 0 when every cell "
                     "sits on its centre, near 1 when the directions share nothing), and the image "
                     "purity: the mean share of an image's foreground in its most common part (100% = "
                     "one part per image, the parts separate images rather than regions)."),
            columns=("group", "model", "stage", "k", "cells", "largest part", "part shares",
                     "inertia per cell", "image purity"), rows=tab))
    return out
