"""The featured images' last-stage PCA at several resolutions, side by side."""
from __future__ import annotations

from dataclasses import dataclass

from .. import analysis as A
from ..config import ReportConfig
from ..context import BuildContext
from ..figures import rgb_map
from ..page import Figure, Panel, Row
from ..options import option
from ..suggest import did_you_mean
from ._common import slug
from .registry import FigureKind, Needs, SectionOutput, register_analysis


def _known_models(ids: tuple[str, ...], cfg: ReportConfig) -> tuple[int, str] | None:
    """The first id of ``ids`` that is no model of ``cfg``, with what is wrong."""
    known = {m.id for m in cfg.models}
    for i, mid in enumerate(ids):
        if mid not in known:
            return i, f"unknown model id '{mid}'" + did_you_mean(mid, known)
    return None


@dataclass(frozen=True)
class Options:
    highres: tuple[int, ...] = option((448, 896), "short sides (px) of the featured images' gallery",
                                      min=14, max=2048)
    highres_models: tuple[str, ...] = option((), "model ids shown in the gallery (empty: every model)",
                                             check=_known_models)


def _needs(cfg: ReportConfig, opts: Options) -> Needs:
    """Features of the featured images at each gallery resolution other than the build's own."""
    return Needs(extra_resolutions=tuple(sorted(set(opts.highres) - {cfg.resolution})),
                 extra_models=tuple(opts.highres_models))


@register_analysis(
    "highres", order=90, thread_safe=True, needs=_needs, options=Options,
    figures=(FigureKind("highres", "the featured images at several resolutions"),),
)
def highres(ctx: BuildContext) -> SectionOutput:
    """Last-stage PCA of the featured images at several resolutions, side by side."""
    out = SectionOutput()
    resolutions = sorted(set(ctx.options.highres) | {ctx.cfg.resolution})
    if len(resolutions) < 2:
        return out
    wanted = set(ctx.options.highres_models) or {m.id for m in ctx.models}
    for image in ctx.featured:
        rows = []
        for m in (m for m in ctx.models if m.id in wanted):
            panels = []
            for res in resolutions:
                if res == ctx.cfg.resolution:
                    fmap = ctx.fmap(m.id, image, m.last)
                elif ctx.has_resolution(res, m.id):
                    fmap = ctx.fmap(m.id, image, m.last, resolution=res)
                else:
                    continue
                res_pca = A.pca_within(fmap, k=3)
                h, w = fmap.shape[1:]
                panels.append(Panel(ctx.writer.png(rgb_map(A.to_rgb(res_pca.proj))),
                                    f"Within-image PCA as RGB of {m.label} {m.last} for image {image} "
                                    f"at short side {res} px ({h}×{w} cells)", f"{res} px · {h}×{w}"))
            rows.append(Row(m.label, tuple(panels)))
        out.figures.append(Figure(
            id=slug("highres", image), kind="highres", image=image,
            caption=(f"The last stage's within-image PCA of image {image} at short sides "
                     f"{', '.join(map(str, resolutions))} px: more cells, finer maps. {ctx.provenance()}"),
            column_labels=tuple(f"{r} px" for r in resolutions), rows=tuple(rows)))
    return out
