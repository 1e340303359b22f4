"""The report's pictures in a notebook: each function returns an object that Jupyter shows
inline (``_repr_png_`` / ``_repr_svg_``) and that ``.save(path)`` writes to a file.

They are drawn by the same functions as the report's figures: :func:`pca_rgb` and
:func:`components` by ``within_pca``'s (:func:`dinoreport.analyses.within_pca.pc_pictures`),
:func:`histogram` by ``feature_stats``'s (:func:`dinoreport.analyses.feature_stats.hist_svg`).
"""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["Picture", "SvgPicture", "pca_rgb", "components", "histogram", "DISPLAY_SIDE"]

DISPLAY_SIDE = 320
"""Default long side (px) a map is enlarged to for display, by nearest neighbour (cells stay blocks)."""


@dataclass(frozen=True)
class Picture:
    """A raster picture: shown inline by Jupyter, written by :meth:`save`.

    Attributes
    ----------
    image : PIL.Image.Image
        RGB.
    """

    image: Image.Image

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.image.save(buf, format="PNG")
        return buf.getvalue()

    def save(self, path: str | Path) -> Path:
        """Write the picture (format from the suffix: .png, .jpg, ...); returns the path."""
        path = Path(path)
        self.image.save(path)
        return path


@dataclass(frozen=True)
class SvgPicture:
    """A vector picture (SVG text): shown inline by Jupyter, written by :meth:`save`."""

    svg: str

    def _repr_svg_(self) -> str:
        return self.svg

    def save(self, path: str | Path) -> Path:
        """Write the SVG text (UTF-8); returns the path."""
        path = Path(path)
        path.write_text(self.svg, encoding="utf-8")
        return path


def _enlarge(img: Image.Image, side: int | None) -> Image.Image:
    if not side:
        return img
    s = max(1, side // max(img.size))
    return img.resize((img.width * s, img.height * s), Image.NEAREST) if s > 1 else img


def pca_rgb(fmap: np.ndarray, *, side: int | None = DISPLAY_SIDE) -> Picture:
    """The first three within-image principal components of a feature map as RGB.

    Parameters
    ----------
    fmap : (C, H, W) array
        One stage of one image (``FeatureMaps[image][stage]``).
    side : int or None
        Enlarge by a whole factor (nearest neighbour) to at most this long side; None: one
        pixel per cell, as the site stores it.

    Returns
    -------
    Picture
        (H, W) cells; per-channel min-max of PC1..PC3 over the image, as in the report.
    """
    from . import analysis as A
    from .analyses.within_pca import pc_pictures

    return Picture(_enlarge(pc_pictures(A.pca_within(fmap, k=3), k=0)[0][0], side))


def components(fmap: np.ndarray, k: int = 3, *, side: int | None = DISPLAY_SIDE, gap: int = 4) -> Picture:
    """RGB of PC1..PC3, then PC1..PCk each alone (blue negative, red positive), side by side.

    Parameters
    ----------
    fmap : (C, H, W) array
    k : int
        Components shown one by one (at most the map's channels).
    side : int or None
        As for :func:`pca_rgb`, per panel.
    gap : int
        White pixels between panels.

    Returns
    -------
    Picture
        The panels of a row of the report's within-image PCA figure, left to right.
    """
    from . import analysis as A
    from .analyses.within_pca import pc_pictures

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    res = A.pca_within(fmap, k=max(3, k))
    panels = [_enlarge(p, side) for p, _, _ in pc_pictures(res, k=k)]
    w = sum(p.width for p in panels) + gap * (len(panels) - 1)
    out = Image.new("RGB", (w, panels[0].height), (255, 255, 255))
    x = 0
    for p in panels:
        out.paste(p, (x, 0))
        x += p.width + gap
    return Picture(out)


def histogram(maps: np.ndarray | Mapping[str, np.ndarray | Sequence[np.ndarray]], *, bins: int = 100,
              title: str = "features") -> SvgPicture:
    """Histograms of feature values (linear, log y, 1st-99th percentile), series overlaid on
    shared bin edges, as the report's feature-statistics figures.

    Parameters
    ----------
    maps : array, or mapping of legend label to array or to a sequence of arrays
        The values of each series (any shapes; a sequence of maps, e.g. one stage over all
        images, is pooled).
    bins : int
        Bins per view.
    title : str
        Shown above each view.

    Returns
    -------
    SvgPicture
    """
    from . import analysis as A
    from .analyses.feature_stats import hist_svg

    if not isinstance(maps, Mapping):
        maps = {title: maps}
    series = {}
    for label, values in maps.items():
        arrays = [np.asarray(values)] if isinstance(values, np.ndarray) else [np.asarray(v) for v in values]

        def chunks(arrays=arrays):
            return iter(arrays)

        series[str(label)] = (chunks, A.feature_stats(chunks))
    if not series:
        raise ValueError("histogram(): no maps given")
    return SvgPicture(hist_svg(series, bins, title).svg)
