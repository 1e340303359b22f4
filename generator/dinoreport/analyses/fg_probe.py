"""A linear foreground probe per model and stage: at which stage is the subject linearly separable?

Meta's DINOv3 foreground recipe (``foreground_segmentation.ipynb``) trains a logistic regression
on patch features against hand-drawn masks. Here every stage is probed on the last stage's grid
(earlier stages averaged over its cells), so all stages are scored on the same cells and labels;
each image is scored by a probe trained on other images only, with the regularisation chosen by a
cross-validation inside that probe's own training images.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .. import analysis as A
from ..context import BuildContext
from ..drawing import norm_image
from ..figures import mask_layer
from ..options import option
from ..page import Figure, Panel, Row, Table
from ._common import rnd, slug
from .registry import FigureKind, Needs, ProbeMasks, SectionOutput, TableKind, register_analysis


def _folds_check(value: int, cfg) -> str | None:
    return "1 fold would train on the images it scores; use 0 (one image per fold) or >= 2" if value == 1 else None


@dataclass(frozen=True)
class Options:
    # Leave-one-image-out costs about six times 5 folds on the default set (27 outlined photos).
    probe_folds: int = option(5, "outer folds over the outlined images (round robin by id) for the linear "
                                 "probe; 0: leave-one-image-out", min=0, check=_folds_check)
    probe_cells: int = option(32, "training cells drawn per training image for the linear probe "
                                  "(stratified, seeded); every held-out cell is scored", min=2, max=100000)
THRESHOLD = 0.5  # P(subject) at which a cell joins the probe's mask


def _cells(ctx: BuildContext, model: str, image: str, stage: str, grid: tuple[int, int]) -> np.ndarray:
    """(h * w, C) cells of a stage on the last stage's grid of the image."""
    return A.pixels(A.resize_map(ctx.fmap(model, image, stage), grid))


@register_analysis(
    "fg_probe", order=35, thread_safe=True, needs=Needs(reference_masks=True), provides=(ProbeMasks,),
    options=Options,
    figures=(FigureKind("fg_probe", "the linear probe's subject probability per stage for a featured image"),),
    tables=(TableKind("fg_probe", "held-out average precision and IoU of the linear foreground probe "
                                  "per model and stage"),),
)
def fg_probe(ctx: BuildContext) -> SectionOutput:
    """Held-out logistic-regression probe of the reference masks at every stage, all stages on the
    last stage's grid; the last stage's probe masks for the masked across-image PCA."""
    out = SectionOutput()
    opt = ctx.options
    labelled = [i for i in ctx.image_ids() if i in ctx.reference_masks]
    rows: list[dict[str, Any]] = []
    image_rows: list[dict[str, Any]] = []
    masks: dict[str, dict[str, np.ndarray]] = {m.id: {} for m in ctx.models}
    shown = [i for i in ctx.featured if i in ctx.reference_masks]
    fig_rows: dict[str, list[Row]] = {i: [] for i in shown}
    for m in ctx.models:
        if len(labelled) < 2:
            break
        last = m.stages[-1]
        grids = {i: ctx.grid(i, last.stride) for i in ctx.image_ids()}
        labels = [A.pool_mean(ctx.reference_masks[i], grids[i]).reshape(-1) >= 0.5 for i in labelled]
        pooled = np.concatenate(labels)
        if pooled.all() or not pooled.any():
            continue  # one class only: nothing to separate
        panels: dict[str, list[Panel]] = {i: [] for i in shown}
        for st in m.stages:
            feats = [_cells(ctx, m.id, i, st.name, grids[i]) for i in labelled]
            res = A.probe_images(feats, labels, folds=opt.probe_folds, cells_per_image=opt.probe_cells,
                                 seed=ctx.cfg.seed)
            rows.append({"model": m.id, "stage": st.name, "average_precision": rnd(res.average_precision),
                         "mean_iou": rnd(float(res.iou.mean())), "base_rate": rnd(res.base_rate),
                         "n_images": len(labelled), "n_cells": int(pooled.size),
                         "folds": int(res.chosen_c.size), "median_c": rnd(float(np.median(res.chosen_c)))})
            for i, p, iou in zip(labelled, res.proba, res.iou):
                image_rows.append({"model": m.id, "stage": st.name, "image": i, "iou": rnd(iou)})
                pmap = p.reshape(grids[i])
                if st.name == last.name:
                    masks[m.id][i] = pmap >= THRESHOLD
                if i in panels:
                    panels[i].append(Panel(
                        ctx.writer.png(norm_image(pmap, 0.0, 1.0, cmap="magma")),
                        f"Probability of subject from the linear probe on {m.label} {st.name} for image "
                        f"{i} (magma, 0 dark to 1 light), from a probe not trained on this image",
                        f"{st.name} · IoU {iou:.2f}"))
            if st.name == last.name:
                rest = [i for i in ctx.image_ids() if i not in ctx.reference_masks]
                if rest:
                    x, y, g = A.stack_training(feats, labels, np.arange(len(labelled)), opt.probe_cells,
                                               np.random.default_rng(ctx.cfg.seed))
                    model, _ = A.train_probe(x, y, g)
                    for i in rest:
                        p = model.predict_proba(_cells(ctx, m.id, i, st.name, grids[i]))[:, 1]
                        masks[m.id][i] = p.reshape(grids[i]) >= THRESHOLD
        for i, ps in panels.items():
            fig_rows[i].append(Row(m.label, tuple(ps)))
    out.shared[ProbeMasks.key] = masks
    out.results["fg_probe"] = rows
    out.results["fg_probe_images"] = image_rows
    for i in shown:
        if not fig_rows[i]:
            continue
        # The photo of the image's other figures, the mask drawn over it by the page.
        ref = np.asarray(Image.fromarray(ctx.reference_masks[i]).resize(ctx.panel_size(i, 448), Image.NEAREST))
        head = Panel(ctx.writer.photo(ctx.images[i], 448), f"Photo {i} with its reference mask tinted", "",
                     layer=ctx.writer.png(mask_layer(ref)))
        out.figures.append(Figure(
            id=slug("fg-probe", i), kind="fg_probe", image=i,
            caption=(f"The linear foreground probe on image {i}: per stage, the probability that a cell "
                     f"is subject, from a logistic regression trained on the reference masks of the other "
                     f"images only (earlier stages averaged onto the last stage's grid); the label gives "
                     f"the IoU of the cells above {THRESHOLD:g} with the reference mask. {ctx.provenance()}"),
            rows=(Row("Photo", (head,)),) + tuple(fig_rows[i])))
    if rows:
        out.tables.append(Table(
            id="fg-probe", kind="fg_probe",
            caption=(f"Linear foreground probe per model and stage over the {len(labelled)} images with a "
                     f"reference mask: average precision of the held-out probabilities of all cells pooled "
                     f"(a random score gets the base rate), mean IoU of the cells above {THRESHOLD:g}, and "
                     f"the median inverse regularisation C the training folds chose."),
            columns=("model", "stage", "average precision", "mean IoU", "base rate", "median C"),
            rows=tuple((ctx.label(r["model"]), r["stage"], r["average_precision"], r["mean_iou"],
                        r["base_rate"], r["median_c"]) for r in rows)))
    return out
