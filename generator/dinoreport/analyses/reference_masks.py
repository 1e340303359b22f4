"""The reference masks drawn on their photos, so a reader can check the outlines the claims use."""
from __future__ import annotations

from ..context import BuildContext
from ..figures import overlay, refmask_overlay
from ..images.decoding import decode
from ..images.fetching import image_bytes
from ..page import Figure, Panel, Row
from .registry import FigureKind, Needs, SectionOutput, register_analysis

PER_ROW = 4
MAX_SIDE = 480  # px, long side of each panel


@register_analysis(
    "reference_masks", order=95, thread_safe=True, needs=Needs(reference_masks=True),
    figures=(FigureKind("reference_mask", "every photo with its reference mask drawn on it "
                                          "(photos without a reference mask are left out)"),),
)
def reference_masks(ctx: BuildContext) -> SectionOutput:
    """One figure: each photo with a reference mask, outline and fill over the photo."""
    out = SectionOutput()
    panels = []
    for i in sorted(ctx.reference_masks):
        e = ctx.entries[i]
        if e.mask_polygons is not None:
            # The whole photo, not the model's crop: every drawn vertex is on the picture.
            photo = decode(image_bytes(e), name=f"{i} ({e.origin})", max_pixels=ctx.cfg.images.max_pixels)
            img = refmask_overlay(photo, e.mask_polygons, max_side=MAX_SIDE)
            how = f"its {len(e.mask_polygons)} drawn outline{'s' if len(e.mask_polygons) != 1 else ''}"
        else:
            img = overlay(ctx.images[i], ctx.reference_masks[i])
            how = "its mask file, on the photo as cropped for the models"
        panels.append(Panel(ctx.writer.photographic(img), f"Photo {i} with {how} filled in orange", i))
    if panels:
        rows = tuple(Row("", tuple(panels[k:k + PER_ROW])) for k in range(0, len(panels), PER_ROW))
        out.figures.append(Figure(
            id="reference-masks", kind="reference_mask", rows=rows,
            caption=(f"The reference masks of the {len(panels)} photos that have one, filled in orange "
                     "over the photo: outlines drawn by hand from the manifest's mask_polygons. The "
                     "subject-mask claims compare each model's PC1 mask with these, so a misdrawn "
                     "outline would show here.")))
    return out
