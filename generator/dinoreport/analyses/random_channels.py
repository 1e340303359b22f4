"""Seeded random channels of every stage for the featured images."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import analysis as A
from ..context import BuildContext
from ..figures import signed_map
from ..page import Figure, Panel, Row
from ..options import option
from ._common import slug
from .registry import FigureKind, SectionOutput, register_analysis


@dataclass(frozen=True)
class Options:
    random_channels: int = option(5, "seeded random channels shown per stage", min=1, max=64)


@register_analysis(
    "random_channels", order=30, thread_safe=True, options=Options,
    figures=(FigureKind("random_channels", "five seeded random channels per stage"),),
)
def random_channels(ctx: BuildContext) -> SectionOutput:
    """A few seeded random channels of every stage, the same indices for models of one width."""
    out = SectionOutput()
    k = ctx.options.random_channels
    chosen: list[dict[str, Any]] = []
    for m in ctx.models:
        for st in m.stages:
            # Keyed by stage and width, so models of one architecture show the same indices.
            ch = A.pick_channels(st.channels, k, ctx.cfg.seed, f"random-channels:{st.name}:{st.channels}")
            chosen.append({"model": m.id, "stage": st.name, "channels": list(ch)})
    out.results["random_channels"] = chosen
    by = {(c["model"], c["stage"]): c["channels"] for c in chosen}
    for image in ctx.featured:
        for m in ctx.models:
            rows = []
            for st in m.stages:
                fmap = ctx.fmap(m.id, image, st.name)
                panels = []
                for c in by[(m.id, st.name)]:
                    x = fmap[c]
                    vmax = float(np.abs(x).max())
                    panels.append(Panel(
                        ctx.writer.png(signed_map(x, vmax)),
                        f"Channel {c} of {m.label} stage {st.name}, image {image}, scale ±{vmax:.3g}",
                        f"ch {c}"))
                rows.append(Row(st.name, tuple(panels)))
            out.figures.append(Figure(
                id=slug("random-channels", image, m.id), kind="random_channels", image=image,
                caption=(f"{k} seeded random channels per stage of {m.label} for image {image} "
                         f"(seed {ctx.cfg.seed}); diverging colours, symmetric scale per channel. "
                         f"{ctx.provenance(m)}"),
                column_labels=tuple(f"channel {i + 1}" for i in range(k)), rows=tuple(rows)))
    return out
