"""The featured images' last-stage PCA at several resolutions, side by side."""
from __future__ import annotations



from .. import analysis as A
from ..config import ReportConfig
from ..context import BuildContext
from ..figures import rgb_map
from ..page import Figure, Panel, Row
from ._common import slug
from .registry import FigureKind, Needs, SectionOutput, register_analysis


def _needs(cfg: ReportConfig) -> Needs:
    """Features of the featured images at each gallery resolution other than the build's own."""
    return Needs(extra_resolutions=tuple(sorted(set(cfg.analysis.highres) - {cfg.resolution})),
                 extra_models=tuple(cfg.analysis.highres_models))


@register_analysis(
    "highres", order=90, thread_safe=True, needs=_needs,
    figures=(FigureKind("highres", "the featured images at several resolutions"),),
)
def highres(ctx: BuildContext) -> SectionOutput:
    """Last-stage PCA of the featured images at several resolutions, side by side."""
    out = SectionOutput()
    resolutions = sorted(set(ctx.cfg.analysis.highres) | {ctx.cfg.resolution})
    if len(resolutions) < 2:
        return out
    wanted = set(ctx.cfg.analysis.highres_models) or {m.id for m in ctx.models}
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
