"""Within-image PCA as RGB at every stage for the featured images."""
from __future__ import annotations



from .. import analysis as A
from ..context import BuildContext
from ..figures import rgb_map
from ..page import Figure, Panel, Row
from ._common import slug
from .registry import FigureKind, SectionOutput, register_analysis


@register_analysis(
    "stage_pca", order=20, thread_safe=True,
    figures=(FigureKind("stage_pca", "within-image PCA as RGB at every stage, models as rows"),),
)
def stage_pca(ctx: BuildContext) -> SectionOutput:
    """Within-image PCA as RGB at every stage of every model, for the featured images."""
    out = SectionOutput()
    n_cols = max(len(m.stages) for m in ctx.models)
    for image in ctx.featured:
        rows = []
        for m in ctx.models:
            panels = []
            for st in m.stages:
                res = A.pca_within(ctx.fmap(m.id, image, st.name), k=3)
                panels.append(Panel(
                    ctx.writer.png(rgb_map(A.to_rgb(res.proj))),
                    f"Within-image PCA as RGB, {m.label}, stage {st.name} (stride {st.stride}), image {image}",
                    f"{st.name} · 1/{st.stride}"))
            rows.append(Row(m.label, tuple(panels)))
        out.figures.append(Figure(
            id=slug("stage-pca", image), kind="stage_pca", image=image,
            caption=(f"Within-image PCA as RGB at every stage for image {image}; each map is drawn at "
                     f"the image size, one block per feature cell. {ctx.provenance()}"),
            column_labels=tuple(f"stage {i + 1}" for i in range(n_cols)), rows=tuple(rows)))
    return out
