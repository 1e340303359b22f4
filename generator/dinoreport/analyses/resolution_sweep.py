"""How stable each model's last-stage PCA and PC1 mask are when the input resolution changes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import analysis as A
from ..config import ReportConfig
from ..context import BuildContext
from ..figures import mask_layer, rgb_map
from ..page import Figure, Panel, Row, Table
from ..modelmeta import crop_multiple, model_meta
from ..options import option
from ._common import mask_threshold_option, rnd, slug
from .registry import FigureKind, Needs, SectionOutput, TableKind, register_analysis


SWEEP_FACTORS = (0.5, 1.0, 2.0)
"""The default sweep, as multiples of the report's own resolution."""


def default_sweep(resolution: int, multiple: int) -> tuple[int, ...]:
    """The sweep's short sides when the config names none: :data:`SWEEP_FACTORS` × ``resolution``,
    each snapped to the nearest multiple of the build's crop ``multiple`` (px, at least one).

    448 px with a crop of 32 (or 224) gives (224, 448, 896); 224 px with 32 gives (128, 224, 448).
    """
    snapped = {max(multiple, int(resolution * f + multiple / 2) // multiple * multiple) for f in SWEEP_FACTORS}
    return tuple(sorted(snapped))


@dataclass(frozen=True)
class Options:
    sweep: tuple[int, ...] = option((), "short sides (px) of the featured images compared; empty: ½×, 1× "
                                    "and 2× the report's resolution on the crop rule", min=14, max=2048)
    mask_threshold: float = mask_threshold_option()


def sweep_sides(cfg: ReportConfig, opts: Options) -> tuple[int, ...]:
    """The short sides swept: ``opts.sweep``, or :func:`default_sweep` on the models' crop rule."""
    if opts.sweep:
        return tuple(opts.sweep)
    multiple = crop_multiple({spec.timm: model_meta(spec.timm, spec.stages).multiple for spec in cfg.models})
    return default_sweep(cfg.resolution, multiple)


def _needs(cfg: ReportConfig, opts: Options) -> Needs:
    """Features of the featured images, every model, at each swept short side but the build's."""
    return Needs(extra_resolutions=tuple(sorted(set(sweep_sides(cfg, opts)) - {cfg.resolution})))


@register_analysis(
    "resolution_sweep", order=92, thread_safe=True, needs=_needs, options=Options,
    figures=(FigureKind("resolution_sweep", "last-stage PCA and PC1 mask of a featured image at each "
                        "swept resolution, models as rows"),),
    tables=(TableKind("resolution_sweep", "PC1 mask IoU against the build's resolution and PC1 share "
                      "per model and resolution", percent=("PC1", "mask IoU")),),
)
def resolution_sweep(ctx: BuildContext) -> SectionOutput:
    """Per featured image and model: PCA and PC1 mask at each swept resolution, compared with the
    build's own resolution (mask IoU on a common grid, PC1 explained variance)."""
    out = SectionOutput()
    base = ctx.cfg.resolution
    resolutions = sorted(set(sweep_sides(ctx.cfg, ctx.options)) | {base})
    if len(resolutions) < 2:
        return out
    thr = ctx.options.mask_threshold
    rows: list[dict[str, Any]] = []
    for image in ctx.featured:
        photo = ctx.writer.photo(ctx.images[image], 448)  # the photo of the image's other figures
        fig_rows = []
        for m in ctx.models:
            fmaps = {r: ctx.fmap(m.id, image, m.last, resolution=r) for r in resolutions
                     if r == base or ctx.has_resolution(r, m.id)}
            points = A.resolution_sweep(fmaps, base, threshold=thr)
            panels = []
            for p in points:
                rows.append({"model": m.id, "image": image, "resolution": p.resolution,
                             "grid": list(p.grid), "pc1_explained": rnd(p.pc1_explained),
                             "mask_iou_vs_base": rnd(p.mask_iou_vs_base)})
                h, w = p.grid
                rgb = A.to_rgb(A.pca_within(fmaps[p.resolution], k=3).proj)
                panels.append(Panel(ctx.writer.png(rgb_map(rgb)),
                                    f"Within-image PCA as RGB of {m.label} {m.last}, image {image}, "
                                    f"short side {p.resolution} px ({h}×{w} cells)",
                                    f"{h}×{w} · PC1 {p.pc1_explained:.0%}"))
                panels.append(Panel(photo,
                                    f"PC1 foreground of {m.label} {m.last}, image {image}, short side "
                                    f"{p.resolution} px (tinted); IoU {p.mask_iou_vs_base:.2f} with "
                                    f"the mask at {base} px",
                                    "base" if p.resolution == base else f"IoU {p.mask_iou_vs_base:.2f}",
                                    layer=ctx.writer.png(mask_layer(p.mask))))
            fig_rows.append(Row(m.label, tuple(panels)))
        out.figures.append(Figure(
            id=slug("resolution-sweep", image), kind="resolution_sweep", image=image,
            caption=(f"Image {image} fed at short sides {', '.join(map(str, resolutions))} px: for each, "
                     f"the last stage's within-image PCA as RGB (grid and PC1 share below) and its PC1 "
                     f"foreground mask (IoU with the mask at the build's {base} px, both resized by "
                     f"nearest neighbour to the finer grid). {ctx.provenance()}"),
            column_labels=tuple(f"{r} px {what}" for r in resolutions for what in ("PCA", "mask")),
            rows=tuple(fig_rows)))
    out.results["resolution_sweep"] = rows
    tab = []
    for m in ctx.models:
        for r in resolutions:
            sel = [x for x in rows if x["model"] == m.id and x["resolution"] == r]
            if sel:
                tab.append((m.label, r, rnd(np.mean([x["pc1_explained"] for x in sel])),
                            rnd(np.mean([x["mask_iou_vs_base"] for x in sel])), len(sel)))
    if tab:
        out.tables.append(Table(
            id="resolution-sweep", kind="resolution_sweep",
            caption=(f"Resolution sweep of the featured images: share of variance on PC1 and IoU of "
                     f"the PC1 mask with the mask at {base} px, mean over images."),
            columns=("model", "short side px", "PC1", "mask IoU", "images"), rows=tuple(tab)))
    return out
