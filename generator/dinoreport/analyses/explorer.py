"""Every stage's features of every image of each group, compact, for the similarity explorer."""
from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import analysis as A
from ..context import BuildContext
from ..options import option
from ._common import rnd
from .explorer_page import directives
from .registry import SectionOutput, register_analysis

#: position pairs drawn per (model, stage, group) to measure the codes' cosine error
ERROR_PAIRS = 4000

#: report.html (one file, to be mailed) carries the codes rounded to the fewest bits whose
#: measured mean and max cosine errors are each at most this factor times those of the 8-bit
#: codes (1.25 on the mean alone let 3-bit speckle show in the maps; 1.05 on both does not)
SINGLE_FILE_ERROR_FACTOR = 1.05
SINGLE_FILE_BITS = (3, 4, 5, 6, 7)

#: report.html's codes keep this share of each stage's dimensions (at least one), so that they
#: take about that share of the web page's bytes and the pictures and codes stay mailable; every
#: stage keeps its leading directions (cutting the finest grids first, as the web page's budget
#: does, left whole stages at one dimension)
SINGLE_FILE_DIMS_SHARE = 0.25


def _single_file_codes(maps: list, codes: list, dims: int, seed: int) -> tuple[int, float, float]:
    """(bits, max_abs, mean_abs) of the lightest :func:`~dinoreport.analysis.requantize` of
    ``codes`` cut to ``dims`` dimensions whose errors are within
    :data:`SINGLE_FILE_ERROR_FACTOR` of the 8-bit codes of the same length, measured against the
    exact ``maps`` on the same pairs; 8 bits (and their errors) when no fewer bits are."""
    max8, mean8 = A.cosine_error(maps, [A.requantize(c, 8, dims) for c in codes], pairs=ERROR_PAIRS, seed=seed)
    for bits in SINGLE_FILE_BITS:
        q = [A.requantize(c, bits, dims) for c in codes]
        mx, mean = A.cosine_error(maps, q, pairs=ERROR_PAIRS, seed=seed)
        if mean <= SINGLE_FILE_ERROR_FACTOR * mean8 and mx <= SINGLE_FILE_ERROR_FACTOR * max8:
            return bits, mx, mean
    return 8, max8, mean8


@dataclass(frozen=True)
class Options:
    explorer_dims: int = option(64, "longest code per position and stage (PCA components kept)", min=1, max=1024)
    explorer_kb: int = option(250, "explorer data per image and model, all stages (kB of base64 text)",
                              min=16, max=1500)
    explorer_images: int = option(16, "images per group in the explorer (the first by id): bounds page "
                                  "size and memory", min=1, max=200)


def _groups(ctx: BuildContext) -> list[tuple[str, list[str]]]:
    """The config's groups in name order (each cut to its first ``explorer_images`` images by
    id), then each featured image that is in none, alone."""
    cap = ctx.options.explorer_images
    groups = [(g, sorted(ids)[:cap]) for g, ids in sorted(ctx.groups.items()) if ids]
    grouped = {i for _, ids in groups for i in ids}
    groups += [(i, [i]) for i in ctx.featured if i not in grouped]
    return groups


@register_analysis("explorer", order=80, thread_safe=True, options=Options, directives=directives)
def explorer(ctx: BuildContext) -> SectionOutput:
    """int8 codes of every stage of every model for every image of each group, within
    ``explorer_kb`` per image and model (base64 text, all stages together), and the
    measured error of the cosines they give against the exact features."""
    out = SectionOutput()
    groups = _groups(ctx)
    if not groups:
        return out
    budget = ctx.options.explorer_kb * 1000
    feats: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    single: dict[str, Any] = {}  # report.html's lighter codes: bits and measured error
    rows: list[dict[str, Any]] = []
    for m in ctx.models:
        feats[m.id], errors[m.id], single[m.id] = {}, {}, {}
        for g, ids in groups:
            # Grid sizes from the images (every model's stage s has a stride), maps one stage at a time.
            positions = [max(math.prod(ctx.grid(i, st.stride)) for i in ids) for st in m.stages]
            channels = [st.channels for st in m.stages]
            dims = A.stage_dims(positions, channels, ctx.options.explorer_dims, budget)
            single_dims = [max(1, math.ceil(d * SINGLE_FILE_DIMS_SHARE)) for d in dims]
            per_image = {i: 0 for i in ids}
            for st, d, sd in zip(m.stages, dims, single_dims):
                maps = [ctx.fmap(m.id, i, st.name) for i in ids]
                codes = A.explorer_int8(maps, dims=d)
                mx, mean = A.cosine_error(maps, codes, pairs=ERROR_PAIRS, seed=ctx.cfg.seed)
                sd = min(sd, codes[0].shape[2])
                bits, smx, smean = _single_file_codes(maps, codes, sd, ctx.cfg.seed)
                del maps
                stage_feats = feats[m.id].setdefault(st.name, {}).setdefault(g, {})
                for i, c in zip(ids, codes):
                    b64 = base64.b64encode(c.tobytes()).decode("ascii")
                    per_image[i] += len(b64)
                    stage_feats[i] = {"h": c.shape[0], "w": c.shape[1], "d": c.shape[2], "q": b64}
                errors[m.id].setdefault(st.name, {})[g] = {"dims": codes[0].shape[2], "max_abs": rnd(mx),
                                                           "mean_abs": rnd(mean)}
                single[m.id].setdefault(st.name, {})[g] = {"dims": sd, "bits": bits,
                                                           "max_abs": rnd(smx), "mean_abs": rnd(smean)}
                rows.append({"model": m.id, "stage": st.name, "group": g, "dims": int(codes[0].shape[2]),
                             "pairs": ERROR_PAIRS, "max_abs_error": rnd(mx), "mean_abs_error": rnd(mean)})
            rows_size = {"model": m.id, "group": g, "bytes_per_image_max": max(per_image.values()),
                         "bytes_per_image_mean": rnd(float(np.mean(list(per_image.values()))))}
            out.results.setdefault("explorer_size", []).append(rows_size)
    out.results["explorer_error"] = rows
    shown = sorted({i for _, ids in groups for i in ids})
    images = []
    for i in shown:
        w, h = ctx.size(i)
        images.append({"id": i, "photo": ctx.writer.photo(ctx.images[i], 448), "width": w, "height": h})
    out.explorer = {
        "models": [{"id": m.id, "label": m.label, "stages": [st.name for st in m.stages]} for m in ctx.models],
        "images": images, "groups": [{"id": g, "images": ids} for g, ids in groups],
        "features": feats, "error": errors, "single_file": single,
        "single_file_factor": SINGLE_FILE_ERROR_FACTOR, "single_file_share": SINGLE_FILE_DIMS_SHARE, "stage": {m.id: m.last for m in ctx.models},
        "budget_bytes": budget,
    }
    return out
