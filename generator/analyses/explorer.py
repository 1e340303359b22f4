"""Compact last-stage features of the featured images for the similarity explorer."""
from __future__ import annotations

from typing import Any


from .. import analysis as A
from ..context import BuildContext
from .registry import SectionOutput, register_analysis


@register_analysis("explorer", order=80)
def explorer(ctx: BuildContext) -> SectionOutput:
    """Compact last-stage features of the featured images and their group mates for the page."""
    import base64

    out = SectionOutput()
    links = {}
    for p in ctx.featured:
        mates = next((ids for _, ids in sorted(ctx.groups.items()) if p in ids), ())
        links[p] = [p] + [i for i in mates if i != p][:3]
    shown = sorted({i for ids in links.values() for i in ids})
    if not shown:
        return out
    feats: dict[str, dict[str, Any]] = {}
    for m in ctx.models:
        codes = A.explorer_codes([ctx.fmap(m.id, i, m.last) for i in shown], dims=ctx.cfg.analysis.explorer_dims)
        feats[m.id] = {}
        for i, c in zip(shown, codes):
            h, w, d = c.shape
            feats[m.id][i] = {"h": h, "w": w, "d": d,
                              "b64": base64.b64encode(c.astype("<f2").tobytes()).decode("ascii")}
    images = []
    for i in shown:
        h, w = ctx.images[i].shape[:2]
        group = next((g for g, ids in sorted(ctx.groups.items()) if i in ids), None)
        images.append({"id": i, "photo": ctx.writer.photo(ctx.images[i], 448), "width": w, "height": h,
                       "group": group})
    out.explorer = {
        "models": [{"id": m.id, "label": m.label} for m in ctx.models],
        "images": images, "probes": list(ctx.featured), "links": links, "features": feats,
        "stage": {m.id: m.last for m in ctx.models},
    }
    return out
