"""The variance spectrum per model and stage: how many directions carry the features' variance."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import analysis as A
from ..context import BuildContext
from ..figures import spectrum_figure
from ..options import option
from ..page import Figure, Panel, Row, Table
from ._common import rnd, rnd_all
from .registry import FigureKind, SectionOutput, TableKind, register_analysis

SHOWN = 64  # components drawn and kept in results.json


@dataclass(frozen=True)
class Options:
    # Early stages have tens of thousands of cells per image; a few hundred per image fix the
    # spectrum's shape and keep the (C x C) products cheap.
    spectrum_cells: int = option(512, "cells per image (seeded draw) in each stage's pooled covariance for "
                                      "the variance spectrum", min=16, max=1000000)


@register_analysis(
    "spectrum", order=52, thread_safe=True, options=Options,
    figures=(FigureKind("spectrum", "explained variance of the first 64 components per model and stage, log scale"),),
    tables=(TableKind("spectrum", "effective rank and participation ratio per model and stage",
                      percent=("PC1", f"first {SHOWN}")),),
)
def spectrum(ctx: BuildContext) -> SectionOutput:
    """Exact eigenvalues of each stage's covariance over cells of every image, pooled."""
    out = SectionOutput()
    opt = ctx.options
    rows: list[dict[str, Any]] = []
    curves: dict[str, dict[str, Any]] = {}
    ids = ctx.image_ids()
    for m in ctx.models:
        curves[m.label] = {}
        for st in m.stages:
            acc = A.CovarianceAccumulator(st.channels)
            for n, i in enumerate(ids):
                acc.update(A.subsample_cells(ctx.fmap(m.id, i, st.name), opt.spectrum_cells, ctx.cfg.seed + n))
            if acc.n < 2:
                continue
            s = A.spectrum(acc)
            evr = s.explained_variance_ratio
            curves[m.label][st.name] = evr[:SHOWN]
            rows.append({"model": m.id, "stage": st.name, "channels": st.channels,
                         "effective_rank": rnd(s.effective_rank), "participation_ratio": rnd(s.participation_ratio),
                         "effective_rank_share": rnd(s.effective_rank / st.channels),
                         "explained_variance_ratio": rnd_all(evr[:SHOWN]),
                         "first_shown_share": rnd(float(evr[:SHOWN].sum())), "n_cells": s.n_rows})
    out.results["spectrum"] = rows
    if not rows:
        return out
    out.figures.append(Figure(
        id="spectrum-curves", kind="spectrum",
        caption=(f"Share of the variance carried by each of the first {SHOWN} principal components, per "
                 f"model (colour) and stage (dash; the last stage solid), on a log scale: a PCA of each "
                 f"stage's covariance over up to {opt.spectrum_cells} cells of each of the {len(ids)} "
                 f"images pooled. A steep curve means a few directions carry the features; a flat one, many. "
                 f"{ctx.provenance()}"),
        rows=(Row("", (Panel(ctx.writer.plot(spectrum_figure(curves, title="Variance spectrum per stage"),
                                             tight=False),
                             f"Explained variance of the first {SHOWN} components of every model and stage, "
                             f"log scale", ""),)),)))
    out.tables.append(Table(
        id="spectrum", kind="spectrum",
        caption=("How many directions the features use, per model and stage: the effective rank (exp of the "
                 "entropy of the normalised eigenvalues) and the participation ratio ((sum of eigenvalues)² "
                 "over the sum of their squares) of the pooled covariance, the largest component's share and "
                 f"the share of the first {SHOWN}."),
        columns=("model", "stage", "channels", "effective rank", "participation ratio", "PC1", f"first {SHOWN}"),
        rows=tuple((ctx.label(r["model"]), r["stage"], r["channels"], r["effective_rank"],
                    r["participation_ratio"], r["explained_variance_ratio"][0], r["first_shown_share"])
                   for r in rows)))
    return out
