"""An example analysis: how long the feature vectors are, and where the unusually long ones sit.

Any ``*.py`` in a report's ``analyses/`` folder is imported at build time; its
``@register_analysis`` adds a section to the report. Edit it, or add your own beside it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dinoreport.analyses import FigureKind, SectionOutput, TableKind, option, register_analysis
from dinoreport.figures import signed_map
from dinoreport.page import Figure, Panel, Row, Table


@dataclass(frozen=True)
class Options:
    """Set in report.toml's [analysis] table (`dinoreport analyses` lists every analysis's)."""

    high_norm_factor: float = option(3.0, "a position is high-norm when its norm exceeds this many times "
                                     "the image's median norm", min=1.0, max=100.0)


@register_analysis(
    # thread_safe: it reads only ctx and writes through ctx.writer, so it may run beside other
    # analyses (leave it out for code that uses pyplot or other global state).
    "feature_norms", order=100, thread_safe=True, options=Options,
    figures=(FigureKind("norm_map", "length of each last-stage feature vector, featured images"),),
    tables=(TableKind("feature_norms", "mean feature-vector length and share of high-norm positions",
                      percent=("high-norm share",)),),
)
def feature_norms(ctx) -> SectionOutput:
    """Per model and stage: mean L2 norm of the feature vectors and the share of high-norm ones."""
    high = ctx.options.high_norm_factor
    out = SectionOutput()
    rows, tab = [], []
    for m in ctx.models:
        for st in m.stages:
            norms = [np.linalg.norm(ctx.fmap(m.id, i, st.name), axis=0) for i in ctx.image_ids()]
            mean = float(np.mean([n.mean() for n in norms]))
            share = float(np.mean(np.concatenate([(n > high * np.median(n)).ravel() for n in norms])))
            rows.append({"model": m.id, "stage": st.name, "mean_norm": mean, "high_norm_share": share})
            tab.append((m.label, st.name, mean, share))
    out.results["feature_norms"] = rows
    out.tables.append(Table(
        id="feature-norms", kind="feature_norms",
        caption=f"Mean length of the feature vectors, and the share of positions longer than {high:g}× "
                "the image's median, per model and stage.",
        columns=("model", "stage", "mean norm", "high-norm share"), rows=tuple(tab)))
    for image in ctx.featured:
        panels = []
        for m in ctx.models:
            n = np.linalg.norm(ctx.fmap(m.id, image, m.last), axis=0)
            centred = n - np.median(n)
            vmax = float(np.abs(centred).max()) or 1.0
            panels.append(Panel(ctx.writer.png(signed_map(centred, vmax)),
                                f"Feature norm minus its median, {m.label} {m.last}, image {image}", m.label))
        out.figures.append(Figure(
            id=f"norm-map-{image.replace('_', '-').lower()}", kind="norm_map", image=image,
            caption=f"Length of each {', '.join(sorted({m.last for m in ctx.models}))} feature vector of "
                    f"image {image}, minus the median (red: longer). {ctx.provenance()}",
            column_labels=tuple(m.label for m in ctx.models), rows=(Row("", tuple(panels)),)))
    return out
