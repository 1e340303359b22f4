"""Feature norm per position for every stage, and the positions whose norm is an outlier."""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import analysis as A
from ..analysis.outliers import OUTLIER_K
from ..context import BuildContext
from ..drawing import norm_image
from ..page import Figure, Panel, Row, Table
from ._common import rnd, slug
from .registry import FigureKind, SectionOutput, TableKind, register_analysis


@register_analysis(
    "norm_maps", order=55, thread_safe=True,
    figures=(FigureKind("norm_maps", "L2 norm of every position's feature per stage, outliers marked"),),
    tables=(TableKind("norm_outliers", "share of high-norm outlier positions per model and stage",
                      percent=("mean share",)),),
)
def norm_maps(ctx: BuildContext) -> SectionOutput:
    """``norm_outliers`` (median + 5 × 1.4826 × MAD of the map's norms) on every stage of every
    image; maps of the featured images."""
    out = SectionOutput()
    rows: list[dict[str, Any]] = []
    panels: dict[str, list[Row]] = {i: [] for i in ctx.featured}
    for m in ctx.models:
        per_image: dict[str, list[Panel]] = {i: [] for i in ctx.featured}
        for st in m.stages:
            for image in ctx.image_ids():
                res = A.norm_outliers(ctx.fmap(m.id, image, st.name))
                rows.append({"model": m.id, "stage": st.name, "image": image, "share": rnd(res.share),
                             "n_outliers": int(res.mask.sum()), "max_over_median": rnd(res.max_over_median),
                             "threshold": rnd(res.threshold)})
                if image not in per_image:
                    continue
                # Per panel: from the smallest norm to the outlier cut (or the largest norm when
                # that is lower), so the ordinary positions use the whole colour range and the
                # outliers, above the cut, are marked instead of flattening everything else.
                lo = float(res.norms.min())
                hi = min(float(res.norms.max()), res.threshold)
                per_image[image].append(Panel(
                    ctx.writer.png(norm_image(res.norms, lo, hi, res.mask)),
                    f"Feature norm of {m.label} {st.name} for image {image}, viridis from {lo:.3g} to "
                    f"{hi:.3g}; {int(res.mask.sum())} outlier positions in red",
                    f"{st.name} · max/median {res.max_over_median:.2f}"
                    + (f" · {int(res.mask.sum())} outliers" if res.mask.any() else "")))
        for image, ps in per_image.items():
            panels[image].append(Row(m.label, tuple(ps)))
    for image in ctx.featured:
        photo = Panel(ctx.writer.photo(ctx.images[image], 448), f"Photo {image}", "")
        out.figures.append(Figure(
            id=slug("norm-maps", image), kind="norm_maps", image=image,
            caption=(f"L2 norm of every position's feature vector in image {image}, one panel per stage. "
                     f"Each panel has its own scale (viridis, dark = small), from its smallest norm up to "
                     f"the outlier cut median + {OUTLIER_K:g} × 1.4826 × MAD of its norms; positions above "
                     f"the cut are outliers, drawn red. The label gives the largest norm over the median. "
                     f"{ctx.provenance()}"),
            rows=(Row("Photo", (photo,)),) + tuple(panels[image])))
    out.results["norm_outliers"] = rows
    tab = []
    for m in ctx.models:
        for st in m.stages:
            rs = [r for r in rows if r["model"] == m.id and r["stage"] == st.name]
            tab.append((m.label, st.name, rnd(float(np.mean([r["share"] for r in rs]))),
                        sum(1 for r in rs if r["n_outliers"] > 0), len(rs),
                        rnd(float(np.median([r["max_over_median"] for r in rs]))),
                        rnd(max(r["max_over_median"] for r in rs))))
    if tab:
        out.tables.append(Table(
            id="norm-outliers", kind="norm_outliers",
            caption=(f"High-norm positions per model and stage over all images: mean share of outlier "
                     f"positions (norm above median + {OUTLIER_K:g} × 1.4826 × MAD of the image's norms), "
                     f"images with at least one, and the largest norm over the median norm (median and "
                     f"largest over images)."),
            columns=("model", "stage", "mean share", "images with outliers", "images",
                     "max/median (median)", "max/median (largest)"), rows=tuple(tab)))
    return out
