"""Small helpers the built-in analyses share: rounding for JSON, figure-id slugs, the photo row."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ..options import option


def mask_threshold_option() -> Any:
    """The ``mask_threshold`` option, declared alike (one [analysis] key) by every analysis
    that cuts PC1 into a foreground mask: within_pca, resolution_sweep and claims."""
    return option(0.0, "PC1 score above which a cell is foreground (the PC1 masks' cut)")


def whiten_option() -> Any:
    """The ``whiten`` option, declared alike by within_pca and across_pca (one [analysis] key)."""
    return option(False, "whiten the PCA pictures: each component scaled to unit variance and coloured "
                         "sigmoid(2 z), as Meta's DINOv3 PCA notebook does, instead of a min-max per channel")


# Caption words for a whitened PCA picture.
WHITENED = " (whitened: each component scaled to unit variance, colour = sigmoid(2 z) as in Meta's DINOv3 notebook)"


def rnd(x: float) -> float:
    """Round for JSON: 6 significant digits keep results readable and diffable."""
    return float(f"{float(x):.6g}")


def rnd_all(v: Iterable[float]) -> list[float]:
    return [rnd(x) for x in v]


def slug(*parts: str) -> str:
    """A figure id from parts: ``slug("across-naive", "dogs")`` -> ``across-naive-dogs``."""
    return "-".join(p.replace("_", "-").lower() for p in parts if p)


def nan_outside(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``x`` with NaN outside ``mask`` (drawn grey), or ``x`` itself when there is no mask."""
    if mask is None:
        return x
    return np.where(mask, x, np.nan)


def photo_row(ctx, ids, side: int = 240):
    """The "Photo" row of a group figure: each image of ``ids`` as a photo panel (long side ``side`` px)."""
    from ..page import Panel, Row

    return Row("Photo", tuple(Panel(ctx.writer.photo(ctx.images[i], side), f"Photo {i}", i) for i in ids))
