"""Statistics and histograms of all feature values and of one random channel per stage."""
from __future__ import annotations



from dataclasses import dataclass

from .. import analysis as A
from ..context import BuildContext, ModelFacts
from ..figures import hist_figure
from ..page import Figure, Panel, Row, Table
from ..options import option
from ._common import rnd
from .registry import FigureKind, SectionOutput, TableKind, register_analysis


_STAT_FIELDS = ("mean", "std", "min", "max", "p1", "p99", "skew", "kurtosis", "outlier_fraction")


def _stats_row(s: A.FeatureStats) -> dict[str, float]:
    return {f: rnd(getattr(s, f)) for f in _STAT_FIELDS}


def _hist_panel(ctx: BuildContext, stage: str, models: list[ModelFacts], chunks, stats, what: str) -> Panel:
    """Linear, log-y and 1st-99th percentile histograms, models overlaid on shared edges."""
    nb = ctx.options.hist_bins
    full = A.shared_bin_edges(min(stats[m.id].min for m in models), max(stats[m.id].max for m in models), nb)
    crop = A.shared_bin_edges(min(stats[m.id].p1 for m in models), max(stats[m.id].p99 for m in models), nb)
    both = {m.label: A.histograms(chunks[m.id], (full, crop)) for m in models}  # one walk per model
    cf = {label: h[0] for label, h in both.items()}
    cc = {label: h[1] for label, h in both.items()}
    names = " vs ".join(m.label for m in models)
    return Panel(ctx.writer.plot(hist_figure(full, cf, crop, cc, title=stage), tight=False),
                 f"Histograms of {what} at stage {stage} (linear, log y, 1st-99th percentile): {names}", "")


@dataclass(frozen=True)
class Options:
    hist_bins: int = option(100, "bins of each histogram", min=2, max=1000)


@register_analysis(
    "feature_stats", order=50, thread_safe=True, options=Options,
    figures=(FigureKind("feature_hist", "feature-value histograms per stage (linear, log, cropped)"),
             FigureKind("channel_hist", "one random channel's histograms per stage")),
    tables=(TableKind("feature_stats", "statistics of all feature values per model and stage",
                      percent=("outlier_fraction",)),
            TableKind("channel_stats", "statistics of one random channel per model and stage",
                      percent=("outlier_fraction",))),
)
def feature_stats(ctx: BuildContext) -> SectionOutput:
    """Statistics and histograms of the feature values per model and stage, and of one random channel."""
    out = SectionOutput()
    ids = ctx.image_ids()
    # Stages in model order (C2..C5 of the first ConvNeXt, then B3.. of a ViT), each once.
    stage_names = list(dict.fromkeys(s.name for m in ctx.models for s in m.stages))
    all_rows, ch_rows = [], []
    fig_rows, ch_fig_rows = [], []
    for stage in stage_names:
        models = [m for m in ctx.models if any(s.name == stage for s in m.stages)]
        chunks, ch_chunks, stats, ch_stats, chans = {}, {}, {}, {}, {}
        for m in models:
            st = m.stage(stage)
            c = A.pick_channels(st.channels, 1, ctx.cfg.seed, f"channel-stats:{stage}:{st.channels}")[0]
            chans[m.id] = c
            chunks[m.id] = (lambda mid=m.id, st=stage: (ctx.fmap(mid, i, st) for i in ids))
            ch_chunks[m.id] = (lambda mid=m.id, st=stage, c=c: (ctx.fmap(mid, i, st, channel=c) for i in ids))
            stats[m.id] = A.feature_stats(chunks[m.id])
            ch_stats[m.id] = A.feature_stats(ch_chunks[m.id])
            all_rows.append({"model": m.id, "stage": stage, **_stats_row(stats[m.id])})
            ch_rows.append({"model": m.id, "stage": stage, "channel": int(c), "positions": ch_stats[m.id].count,
                            **_stats_row(ch_stats[m.id])})
        fig_rows.append(Row(stage, (_hist_panel(ctx, stage, models, chunks, stats, "all feature values"),)))
        ch_fig_rows.append(Row(f"{stage} · ch {chans[models[0].id]}",
                               (_hist_panel(ctx, stage, models, ch_chunks, ch_stats, "one random channel"),)))
    out.results["feature_stats"] = all_rows
    out.results["channel_stats"] = ch_rows
    cols = ("linear · log y · 1st-99th percentile",)
    out.figures.append(Figure(
        id="feature-hist", kind="feature_hist",
        caption=(f"Distribution of all feature values (every image, channel and position) per stage; "
                 f"models with the same stage share bin edges; share of values per bin. {ctx.provenance()}"),
        column_labels=cols, rows=tuple(fig_rows)))
    out.figures.append(Figure(
        id="channel-hist", kind="channel_hist",
        caption=(f"The same for one seeded random channel per stage (index in the row label, seed "
                 f"{ctx.cfg.seed}). {ctx.provenance()}"),
        column_labels=cols, rows=tuple(ch_fig_rows)))
    heads = ("model", "stage") + _STAT_FIELDS
    out.tables.append(Table(
        id="feature-stats", kind="feature_stats",
        caption="Statistics of all feature values per model and stage (std: population; kurtosis: excess; "
                "outlier_fraction: share beyond 6 std).",
        columns=heads, rows=tuple((ctx.label(r["model"]), r["stage"], *(r[f] for f in _STAT_FIELDS))
                                  for r in all_rows)))
    out.tables.append(Table(
        id="channel-stats", kind="channel_stats",
        caption="Statistics of one seeded random channel per model and stage.",
        columns=("model", "stage", "channel") + _STAT_FIELDS,
        rows=tuple((ctx.label(r["model"]), r["stage"], r["channel"], *(r[f] for f in _STAT_FIELDS))
                   for r in ch_rows)))
    return out
