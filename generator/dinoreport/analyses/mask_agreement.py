"""Agreement of the PC1 foreground masks between models, and with reference masks."""
from __future__ import annotations

from itertools import combinations

import numpy as np

from .. import analysis as A
from ..context import BuildContext
from ..page import Table
from ._common import rnd
from .registry import ForegroundMasks, Needs, SectionOutput, TableKind, register_analysis


@register_analysis(
    "mask_agreement", order=70, thread_safe=True, needs=Needs(artifacts=(ForegroundMasks,), reference_masks=True),
    tables=(TableKind("mask_iou", "agreement of PC1 foreground masks between models"),),
)
def mask_agreement(ctx: BuildContext) -> SectionOutput:
    """How much the models' PC1 foreground masks agree with each other and with reference masks."""
    out = SectionOutput()
    masks = ctx.artifact(ForegroundMasks).by_model
    rows, gt_rows, tab = [], [], []
    for a, b in combinations(ctx.models, 2):
        ious = []
        for i in ctx.image_ids():
            iou = A.mask_iou(masks[a.id][i], masks[b.id][i])
            ious.append(iou)
            rows.append({"image": i, "model_a": a.id, "model_b": b.id, "iou": rnd(iou)})
        tab.append((a.label, b.label, rnd(float(np.mean(ious))), rnd(float(np.min(ious))), len(ious)))
    for i, gt in sorted(ctx.reference_masks.items()):
        for m in ctx.models:
            gt_rows.append({"image": i, "model": m.id, "iou": rnd(A.mask_iou(masks[m.id][i], gt))})
    out.results["mask_iou"] = rows
    out.results["mask_iou_gt"] = gt_rows
    if tab:
        out.tables.append(Table(
            id="mask-iou", kind="mask_iou",
            caption="Agreement (IoU) of the PC1 foreground masks between models: mean and worst image.",
            columns=("model", "other model", "mean IoU", "min IoU", "images"), rows=tuple(tab)))
    return out
