"""Positional bias per model and stage: what the L2-normalised features share at each grid
position across images (ViT position embeddings, ConvNeXt zero-padding borders)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import analysis as A
from ..context import BuildContext
from ..drawing import norm_image
from ..figures import rgb_map
from ..options import option
from ..page import Figure, Panel, Row, Table
from ._common import rnd, rnd_all
from .registry import FigureKind, SectionOutput, TableKind, register_analysis


@dataclass(frozen=True)
class Options:
    position_resize: bool = option(True, "positional bias: bring images of another crop to the stage's most "
                                         "frequent grid (bilinear, as for CKA); false: use only the images "
                                         "already on it")


@register_analysis(
    "position_bias", order=57, thread_safe=True, options=Options,
    figures=(FigureKind("position_bias", "the mean over images of the normalised features at each position: "
                                         "its PCA as RGB and its norm, per model and stage"),),
    tables=(TableKind("position_bias", "share of feature variance explained by grid position alone",
                      percent=("share", "share (chance-corrected)")),),
)
def position_bias(ctx: BuildContext) -> SectionOutput:
    """Mean of the unit-length features at each grid position over every image, per model and
    stage, on the stage's most frequent grid; the share of variance position explains and the
    border ratio."""
    out = SectionOutput()
    rows: list[dict[str, Any]] = []
    fig_rows: list[Row] = []
    ids = ctx.image_ids()
    if len(ids) < 2:
        return out
    opt = ctx.options
    for m in ctx.models:
        pca_panels, norm_panels = [], []
        for st in m.stages:
            grids = [ctx.grid(i, st.stride) for i in ids]
            grid = A.common_grid(grids)
            acc = A.PositionAccumulator(st.channels, grid)
            for i, g in zip(ids, grids):
                if g != grid and not opt.position_resize:
                    continue
                fmap = ctx.fmap(m.id, i, st.name)
                acc.update(fmap if g == grid else A.resize_map(fmap, grid, dtype=np.float32))
            if acc.n < 2:
                continue  # fewer than two images on the grid: no spread to compare with
            res = acc.result()
            pca = A.pca_within(res.mean_map.astype(np.float32), k=3)
            rows.append({"model": m.id, "stage": st.name, "share": rnd(res.share),
                         "share_adjusted": rnd(res.share_adjusted), "border_ratio": rnd(res.border_ratio),
                         "mean_norm": rnd(float(res.mean_norm.mean())),
                         "mean_map_explained_variance_ratio": rnd_all(pca.explained_variance_ratio),
                         "grid": list(grid), "n_images": res.n_images,
                         "n_resized": sum(1 for g in grids if g != grid) if opt.position_resize else 0})
            where = f"{m.label} {st.name}, mean over {res.n_images} images on a {grid[0]}x{grid[1]} grid"
            pca_panels.append(Panel(ctx.writer.png(rgb_map(A.to_rgb(pca.proj))),
                                    f"PCA of the mean normalised feature per position, {where}, as RGB",
                                    f"{st.name} · {res.share_adjusted:.1%} by position"))
            lo, hi = float(res.mean_norm.min()), float(res.mean_norm.max())
            norm_panels.append(Panel(ctx.writer.png(norm_image(res.mean_norm, lo, hi)),
                                     f"Norm of the mean normalised feature per position, {where}, viridis "
                                     f"from {lo:.3g} to {hi:.3g}",
                                     f"{st.name} · norm {lo:.2f}–{hi:.2f}"))
        if pca_panels:
            fig_rows += [Row(f"{m.label} · PCA", tuple(pca_panels)), Row(f"{m.label} · norm", tuple(norm_panels))]
    out.results["position_bias"] = rows
    if not rows:
        return out
    out.figures.append(Figure(
        id="position-bias-maps", kind="position_bias",
        caption=(f"What the images share at each grid position: their features, "
                 f"each position's vector scaled to length 1, averaged position by position ("
                 f"{'images of another crop brought to' if opt.position_resize else 'only images already on'} "
                 f"the stage's most frequent grid). First row per model: the "
                 f"first three components of that mean map as RGB, labelled with the share of the "
                 f"features' variance that position alone explains (chance-corrected); second row: the "
                 f"length of the mean vector (1: every image points the same way there), each panel on "
                 f"its own scale. {ctx.provenance()}"),
        rows=tuple(fig_rows)))
    out.tables.append(Table(
        id="position-bias", kind="position_bias",
        caption=("Share of the variance of the normalised features explained by grid position alone "
                 "(between-position over total sum of squares), raw and corrected for the share noise "
                 "alone gives; the border ratio compares how far the outer ring of positions lies from "
                 "the interior's mean with how far interior positions do (about 1: no border effect)."),
        columns=("model", "stage", "share", "share (chance-corrected)", "border ratio", "mean norm", "images"),
        rows=tuple((ctx.label(r["model"]), r["stage"], r["share"], r["share_adjusted"], r["border_ratio"],
                    r["mean_norm"], r["n_images"]) for r in rows)))
    return out
