"""An analysis with two options: quantiles of the feature vectors' lengths.

Drop this file into a report's ``site_src/analyses/`` and ``20-norm-quantiles.md`` beside the
other ``*.md`` files; set its options in report.toml if the defaults do not suit::

    [analysis]
    norm_quantiles = [0.5, 0.99]
    norm_stages = "all"

``dinoreport analyses`` lists both options with their defaults and limits, and a value out of
bounds stops the build with a message naming the key, this analysis and what is allowed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dinoreport.analyses import SectionOutput, TableKind, option, register_analysis
from dinoreport.page import Table


@dataclass(frozen=True)
class Options:
    norm_quantiles: tuple[float, ...] = option((0.5, 0.9, 0.99), "quantiles of the feature-vector lengths",
                                               min=0.0, max=1.0)
    norm_stages: str = option("last", "the stages measured: the last one of each model, or all",
                              choices=("last", "all"))


@register_analysis(
    "norm_quantiles", order=100, thread_safe=True, options=Options,
    tables=(TableKind("norm_quantiles", "quantiles of the feature-vector lengths per model and stage"),),
)
def norm_quantiles(ctx) -> SectionOutput:
    """Quantiles of the L2 norms of the feature vectors of every image, per model and stage."""
    opts: Options = ctx.options
    out = SectionOutput()
    rows, tab = [], []
    for m in ctx.models:
        stages = [st.name for st in m.stages] if opts.norm_stages == "all" else [m.last]
        for stage in stages:
            norms = np.concatenate([np.linalg.norm(ctx.fmap(m.id, i, stage), axis=0).ravel()
                                    for i in ctx.image_ids()])
            q = [float(v) for v in np.quantile(norms, opts.norm_quantiles)]
            rows.append({"model": m.id, "stage": stage, "quantiles": list(opts.norm_quantiles), "norms": q})
            tab.append((m.label, stage, *q))
    out.results["norm_quantiles"] = rows
    out.tables.append(Table(
        id="norm-quantiles", kind="norm_quantiles",
        caption="Quantiles of the feature vectors' lengths over every position of every image.",
        columns=("model", "stage", *(f"q{p:g}" for p in opts.norm_quantiles)), rows=tuple(tab)))
    return out
