"""Across-image PCA per group: on all pixels and on the PC1 foreground only."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import analysis as A
from ..context import BuildContext
from ..figures import rgb_map, signed_map
from ..page import Figure, Panel, Row, Table
from ..options import option
from ._common import WHITENED, nan_outside, photo_row, rnd_all, slug, whiten_option
from .registry import FigureKind, ForegroundMasks, Needs, ProbeMasks, SectionOutput, TableKind, register_analysis


@dataclass(frozen=True)
class Options:
    whiten: bool = whiten_option()
    across_mask: str = option("pc1", "foreground of the masked across-image PCA: 'pc1' (each image's "
                                     "within-image PC1 mask) or 'probe' (the linear foreground probe's mask, "
                                     "as in Meta's recipe; PC1 where the probe has none)", choices=("pc1", "probe"))


def _needs(cfg, options: Options) -> Needs:
    return Needs(artifacts=(ForegroundMasks, ProbeMasks) if options.across_mask == "probe" else (ForegroundMasks,))


def _masks(ctx: BuildContext) -> tuple[dict, str]:
    """``{model: {image: mask}}`` for the masked fit, and their source for the captions."""
    pc1 = ctx.artifact(ForegroundMasks).by_model
    if ctx.options.across_mask != "probe":
        return pc1, "PC1 masks"
    probe = ctx.artifact(ProbeMasks).by_model
    return ({m: {i: probe.get(m, {}).get(i, mk) for i, mk in ms.items()} for m, ms in pc1.items()},
            "linear-probe masks, PC1 masks for images without one")


@register_analysis(
    "across_pca", order=40, thread_safe=True, needs=_needs, options=Options,
    figures=(FigureKind("across_pca_naive", "across-image PCA over a group, all pixels"),
             FigureKind("across_pca_masked", "across-image PCA over a group, foreground pixels only"),
             FigureKind("across_pca_components", "single across-image components (masked)")),
    tables=(TableKind("across_pca", "explained variance of across-image PCA per group",
                      percent=("PC1", "PC2", "PC3")),),
)
def across_pca(ctx: BuildContext) -> SectionOutput:
    """PCA over all the images of a group together: on all cells, on the PC1 foreground, single components."""
    out = SectionOutput()
    masks, mask_source = _masks(ctx)
    whiten = ctx.options.whiten
    rows: list[dict[str, Any]] = []
    for group, ids in sorted(ctx.groups.items()):
        if len(ids) < 2:
            continue
        naive_rows, masked_rows, comp_rows = [], [], []
        for m in ctx.models:
            for st in m.stages:
                # One read of each map feeds both fits; the last stage's maps are read again
                # for the projections drawn below (holding them would grow with the group).
                accs = {False: A.CovarianceAccumulator(st.channels), True: A.CovarianceAccumulator(st.channels)}
                gmasks = []
                for image in ids:
                    fmap = ctx.fmap(m.id, image, st.name)
                    mk = A.resize_nearest(masks[m.id][image], fmap.shape[1:])
                    gmasks.append(mk)
                    accs[False].update(A.pixels(fmap))
                    accs[True].update(A.pixels(fmap, mk))
                for masked, acc in accs.items():
                    if acc.n < 3:
                        continue
                    fit = acc.fit(k=3)
                    rows.append({"model": m.id, "stage": st.name, "group": group, "masked": masked,
                                 "explained_variance_ratio": rnd_all(fit.explained_variance_ratio),
                                 "n_pixels": int(fit.n_pixels)})
                    if st.name != m.last:
                        continue
                    maps = ctx.stage_maps(m.id, ids, st.name)
                    projs = [A.project(fit, fmap) for fmap in maps]
                    mlist = gmasks if masked else None
                    if whiten:  # one fixed colour mapping: joint over the group by construction
                        rgbs = [A.sigmoid_rgb(A.project(fit, fmap, whiten=True)) for fmap in maps]
                        if mlist is not None:
                            rgbs = [np.where(mk[..., None], rgb, np.nan).astype(np.float32)
                                    for rgb, mk in zip(rgbs, mlist)]
                    else:
                        rgbs = A.joint_rgb(projs, mlist)
                    panels = tuple(
                        Panel(ctx.writer.png(rgb_map(rgb)),
                              f"Across-image PCA ({'foreground' if masked else 'all pixels'}) of "
                              f"group {group}, {m.label} {st.name}, image {i}", i)
                        for i, rgb in zip(ids, rgbs))
                    (masked_rows if masked else naive_rows).append(Row(m.label, panels))
                    if masked:
                        for k in range(3):
                            comp = [p[k] for p in projs]
                            vmax = A.joint_scale(comp, mlist)
                            cpanels = tuple(
                                Panel(ctx.writer.png(signed_map(nan_outside(c, mk), vmax)),
                                      f"Across-image PC{k + 1} (foreground fit) of {m.label}, image {i}", i)
                                for i, c, mk in zip(ids, comp, mlist))
                            comp_rows.append(Row(f"{m.label} · PC{k + 1}", cpanels))
        photos = photo_row(ctx, ids)
        cols = tuple(ids)
        out.figures.append(Figure(
            id=slug("across-naive", group), kind="across_pca_naive", group=group,
            caption=(f"Across-image PCA of group '{group}', last stage, fitted once on all pixels of all "
                     f"{len(ids)} images; colours scaled jointly over the group"
                     f"{WHITENED if whiten else ''}. {ctx.provenance()}"),
            column_labels=cols, rows=(photos,) + tuple(naive_rows)))
        out.figures.append(Figure(
            id=slug("across-masked", group), kind="across_pca_masked", group=group,
            caption=(f"Across-image PCA of group '{group}', last stage, fitted on foreground pixels only "
                     f"({mask_source}); background grey; colours scaled jointly{WHITENED if whiten else ''}. "
                     f"{ctx.provenance()}"),
            column_labels=cols, rows=(photos,) + tuple(masked_rows)))
        out.figures.append(Figure(
            id=slug("across-components", group), kind="across_pca_components", group=group,
            caption=(f"The three foreground across-image components of group '{group}' one by one, signed, "
                     f"one symmetric scale per component and model. {ctx.provenance()}"),
            column_labels=cols, rows=tuple(comp_rows)))
    out.results["across_image_pca"] = rows
    tab = tuple((r["group"], ctx.label(r["model"]), r["stage"], "foreground" if r["masked"] else "all",
                 *r["explained_variance_ratio"], r["n_pixels"]) for r in rows)
    if tab:
        out.tables.append(Table(
            id="across-pca", kind="across_pca",
            caption="Explained variance of the across-image components per group, model and stage.",
            columns=("group", "model", "stage", "pixels used", "PC1", "PC2", "PC3", "n pixels"), rows=tab))
    return out
