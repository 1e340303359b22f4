"""Dense correspondences within a group: mutual nearest neighbours of foreground cells."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import analysis as A
from ..analysis.matches import chance_cycle_share, match_cells, spread_pick
from ..context import BuildContext
from ..drawing import match_canvas
from ..page import Figure, Panel, Row, Table
from ..options import option
from ._common import rnd, slug
from .registry import FigureKind, ForegroundMasks, Needs, SectionOutput, TableKind, register_analysis

# Lines drawn per pair: more turn the picture into a mesh.
MAX_LINES = 40


def pair_order(ids: tuple[str, ...]) -> list[tuple[str, str]]:
    """Every pair of ``ids`` (sorted), neighbours first: (0, 1), (1, 2), ..., then (0, 2), (1, 3),
    ... so that the first few pairs show many different images rather than one against all."""
    n = len(ids)
    return [(ids[i], ids[i + d]) for d in range(1, n) for i in range(n - d)]


@dataclass(frozen=True)
class Options:
    correspondence_pairs: int = option(6, "image pairs per group drawn with their matches (0: no figures)",
                                       min=0, max=100)


@register_analysis(
    "correspondences", order=47, thread_safe=True, needs=Needs(artifacts=(ForegroundMasks,)), options=Options,
    figures=(FigureKind("correspondences", "mutual nearest-neighbour matches between pairs of images of a group"),),
    tables=(TableKind("correspondences", "cycle-consistent share of matches per group and model",
                      percent=("cycle-consistent share", "chance level")),),
)
def correspondences(ctx: BuildContext) -> SectionOutput:
    """For the first ``correspondence_pairs`` pairs of each group (see :func:`pair_order`),
    the mutual nearest neighbours between the two images' last-stage PC1 foreground cells."""
    out = SectionOutput()
    masks = ctx.artifact(ForegroundMasks).by_model
    n_pairs = ctx.options.correspondence_pairs
    rows: list[dict[str, Any]] = []
    for group, ids in sorted(ctx.groups.items()):
        pairs = pair_order(ids)[:n_pairs]
        if not pairs:
            continue
        fig_rows = []
        for a, b in pairs:
            panels = []
            for m in ctx.models:
                fa, fb = ctx.fmap(m.id, a, m.last), ctx.fmap(m.id, b, m.last)
                ma = A.resize_nearest(masks[m.id][a], fa.shape[1:])
                mb = A.resize_nearest(masks[m.id][b], fb.shape[1:])
                if not ma.any() or not mb.any():
                    # Keep the column for this model: the photos without lines, and why.
                    none = np.zeros((0, 2), dtype=np.int64)
                    canvas = match_canvas(ctx.images[a], ctx.images[b], fa.shape[1:], fb.shape[1:], none, none)
                    panels.append(Panel(ctx.writer.photographic(canvas),
                                        f"No matches of {m.label}: image {a if not ma.any() else b} has no "
                                        f"foreground cells", "no foreground"))
                    continue
                found = match_cells(fa, fb, ma, mb)
                chance = chance_cycle_share(fa, fb, ma, mb)
                rows.append({"model": m.id, "stage": m.last, "group": group, "image_a": a, "image_b": b,
                             "n_mutual": found.n_mutual, "n_a": found.n_a, "n_b": found.n_b,
                             "cycle_consistent_share": rnd(found.cycle_consistent_share),
                             "chance_share": rnd(chance)})
                pick = spread_pick(found.n_mutual, MAX_LINES)
                canvas = match_canvas(ctx.images[a], ctx.images[b], fa.shape[1:], fb.shape[1:],
                                      found.pos_a[pick], found.pos_b[pick])
                panels.append(Panel(
                    ctx.writer.photographic(canvas),
                    f"{len(pick)} of {found.n_mutual} mutual nearest-neighbour matches of {m.label} {m.last} "
                    f"between image {a} (left) and image {b} (right)",
                    f"{found.n_mutual} match{'' if found.n_mutual == 1 else 'es'} · "
                    f"{found.cycle_consistent_share:.0%} cycle-consistent"))
            if panels:
                fig_rows.append(Row(f"{a} ↔ {b}", tuple(panels)))
        if not fig_rows:
            continue
        out.figures.append(Figure(
            id=slug("correspondences", group), kind="correspondences", group=group,
            caption=(f"Correspondences in group '{group}', {len(pairs)} image pairs (neighbours in sorted order "
                     f"first): a line joins a "
                     f"foreground cell of the left image to a cell of the right one when each is the "
                     f"other's most similar foreground cell (cosine, last stage, PC1 masks). At most "
                     f"{MAX_LINES} lines per pair, spread evenly over the matches in reading order of the "
                     f"left image; the label gives all matches and their share of the smaller foreground. "
                     f"{ctx.provenance()}"),
            column_labels=tuple(m.label for m in ctx.models), rows=tuple(fig_rows)))
    out.results["correspondences"] = rows
    tab = []
    for group in sorted({r["group"] for r in rows}):
        for m in ctx.models:
            rs = [r for r in rows if r["group"] == group and r["model"] == m.id]
            if rs:
                tab.append((group, m.label, m.last, len(rs),
                            rnd(sum(r["n_mutual"] for r in rs) / len(rs)),
                            rnd(sum(r["cycle_consistent_share"] for r in rs) / len(rs)),
                            rnd(sum(r["chance_share"] for r in rs) / len(rs))))
    if tab:
        out.tables.append(Table(
            id="correspondences", kind="correspondences",
            caption=("Mutual nearest-neighbour matches per group and model, mean over the pairs drawn: "
                     "matches per pair, their share of the smaller foreground (cycle-consistent share), "
                     "and the same share with one image's channels rotated by half their number (chance "
                     "level: what features that do not line up give)."),
            columns=("group", "model", "stage", "pairs", "matches", "cycle-consistent share", "chance level"),
            rows=tuple(tab)))
    return out
