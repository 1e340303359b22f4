"""Within-image PCA of every stage; RGB and PC1..PC3 figures of the last stage; PC1 foreground masks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .. import analysis as A
from ..context import BuildContext, ModelFacts
from ..figures import mask_layer, rgb_map, signed_map
from ..page import Figure, Panel, Row, Table
from ._common import WHITENED, mask_threshold_option, rnd, rnd_all, slug, whiten_option
from .registry import FigureKind, ForegroundMasks, SectionOutput, TableKind, register_analysis


def pc_pictures(res: A.PCAResult, k: int = 3,
                whitened: A.PCAResult | None = None) -> list[tuple[Image.Image, str, float | None]]:
    """The pictures of a within-image PCA, as the report draws them: the first three components
    as RGB, then PC1..PCk each signed (blue negative, red positive, symmetric scale), one pixel
    per cell. Returns ``(picture, label, scale)`` per panel (scale: the ±vmax of a component,
    None for RGB); :mod:`dinoreport.show` draws the same. ``whitened`` (the same PCA with
    ``whiten=True``) colours the RGB picture with a fixed sigmoid instead of a min-max (single
    components are scale-free either way)."""
    rgb = A.to_rgb(res.proj) if whitened is None else A.sigmoid_rgb(whitened.proj)
    out: list[tuple[Image.Image, str, float | None]] = [(rgb_map(rgb), "RGB", None)]
    for j in range(min(k, res.proj.shape[0])):
        pc = res.proj[j]
        vmax = float(np.abs(pc).max())
        out.append((signed_map(pc, vmax), f"PC{j + 1} ({res.explained_variance_ratio[j]:.0%})", vmax))
    return out


def _pc_panels(ctx: BuildContext, m: ModelFacts, image: str, res: A.PCAResult,
               whitened: A.PCAResult | None = None) -> tuple[Panel, ...]:
    where = f"{m.label}, {m.last}, image {image}"
    panels = []
    for j, (pic, label, vmax) in enumerate(pc_pictures(res, whitened=whitened)):
        if vmax is None:
            panels.append(Panel(ctx.writer.png(pic), f"PCA of {where} as RGB"
                                + (" (whitened, sigmoid colours)" if whitened is not None else ""), "RGB"))
        else:
            panels.append(Panel(ctx.writer.png(pic),
                                f"PC{j} of {where}, blue negative, red positive, scale ±{vmax:.3g}", label))
    return tuple(panels)


@dataclass(frozen=True)
class Options:
    mask_threshold: float = mask_threshold_option()
    whiten: bool = whiten_option()


@register_analysis(
    "within_pca", order=10, thread_safe=True, provides=(ForegroundMasks,), options=Options,
    figures=(FigureKind("within_pca", "within-image PCA of the last stage: RGB and PC1..PC3 per model"),
             FigureKind("foreground_mask", "PC1 foreground mask overlaid on the image")),
    tables=(TableKind("explained_variance", "explained variance of PC1..PC3 per model and image",
                      percent=("PC1", "PC2", "PC3")),),
)
def within_pca(ctx: BuildContext) -> SectionOutput:
    """PCA per image and stage; RGB + PC1..PC3 figures of the last stage; PC1 foreground masks."""
    out = SectionOutput()
    rows: list[dict[str, Any]] = []
    masks: dict[str, dict[str, np.ndarray]] = {m.id: {} for m in ctx.models}
    thr = ctx.options.mask_threshold
    figs: dict[str, list[Row]] = {i: [] for i in ctx.image_ids()}
    for m, image in ctx.each_model_image():
        for st in m.stages:
            fmap = ctx.fmap(m.id, image, st.name)
            res = A.pca_within(fmap, k=3)
            row = {"model": m.id, "stage": st.name, "image": image,
                   "explained_variance_ratio": rnd_all(res.explained_variance_ratio)}
            if st.name == m.last:
                mask = A.foreground_mask(res.proj[0], threshold=thr)
                masks[m.id][image] = mask
                row["fg_fraction"] = rnd(mask.mean())
                # Masks stay on the unwhitened PC1, so mask_threshold keeps its feature units.
                whitened = A.pca_within(fmap, k=3, whiten=True) if ctx.options.whiten else None
                figs[image].append(Row(m.label, _pc_panels(ctx, m, image, res, whitened)))
            rows.append(row)
    out.results["within_image_pca"] = rows
    for image in ctx.image_ids():
        photo = Panel(ctx.writer.photo(ctx.images[image], 448), f"Photo {image}", "")
        out.figures.append(Figure(
            id=slug("within-pca", image), kind="within_pca", image=image,
            caption=(f"Within-image PCA of the last stage for image {image}: the first three "
                     f"components as RGB{WHITENED if ctx.options.whiten else ''}, then each component alone (signed, centred at zero; "
                     f"percent of variance explained in brackets). {ctx.provenance()}"),
            column_labels=("RGB", "PC1", "PC2", "PC3"),
            rows=(Row("Photo", (photo,)),) + tuple(figs[image]),
        ))
    out.shared[ForegroundMasks.key] = masks
    # Explained variance table: PC1..PC3 of the last stage, mean over images.
    tab = []
    for m in ctx.models:
        ev = np.array([r["explained_variance_ratio"] for r in rows
                       if r["model"] == m.id and r["stage"] == m.last])
        tab.append((m.label, m.last, *(rnd(v) for v in ev.mean(axis=0)), len(ev)))
    out.tables.append(Table(
        id="explained-variance", kind="explained_variance",
        caption="Share of variance of the last stage explained by PC1..PC3, mean over all images.",
        columns=("model", "stage", "PC1", "PC2", "PC3", "images"), rows=tuple(tab)))
    # Mask overlays: one figure, images as rows, models as columns.
    mask_rows = []
    for image in ctx.image_ids():
        # The photo of the image's PCA figure under each model's mask: one photo file for all.
        photo_file = ctx.writer.photo(ctx.images[image], 448)
        panels = tuple(
            Panel(photo_file, f"Foreground of image {image} from PC1 of {m.label} {m.last} (tinted)",
                  f"{masks[m.id][image].mean():.0%}", layer=ctx.writer.png(mask_layer(masks[m.id][image])))
            for m in ctx.models)
        mask_rows.append(Row(image, panels))
    out.figures.append(Figure(
        id="foreground-masks", kind="foreground_mask",
        caption=(f"Foreground from the first within-image component of the last stage, signed so the "
                 f"border ring is background, thresholded at {thr:g}; tinted cells are foreground "
                 f"(share in the label). {ctx.provenance()}"),
        column_labels=tuple(m.label for m in ctx.models), rows=tuple(mask_rows)))
    return out
