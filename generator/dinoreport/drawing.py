"""Pictures for the dense analyses: part maps, correspondence lines, norm maps. Pillow only.

Like :mod:`.figures`, these turn arrays into pictures and compute no statistics; the
analyses hand them labels, matched grid positions and norms.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .figures import colormap_lut

__all__ = ["PART_COLOURS", "PART_COLOUR_NAMES", "part_rgb", "match_canvas", "norm_image", "OUTLIER_COLOUR"]

# tab10 without its grey (grey is the background): one distinct colour per part.
PART_COLOURS = np.array([
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207),
], dtype=np.uint8)
PART_COLOUR_NAMES = ("blue", "orange", "green", "red", "purple", "brown", "pink", "olive", "cyan")

# Outlier cells in norm maps: pure red, absent from viridis (blue-green-yellow).
OUTLIER_COLOUR = (230, 0, 0)


def part_rgb(labels: np.ndarray) -> np.ndarray:
    """(h, w) part labels (-1 = background) -> (h, w, 3) float in [0, 1], NaN for background.

    Part p gets ``PART_COLOURS[p]`` in every image, so one part has one colour across a
    group. For :func:`.figures.rgb_map`, which draws NaN neutral grey.
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels must be (h, w), got shape {lab.shape}")
    if lab.size and lab.max() >= len(PART_COLOURS):
        raise ValueError(f"at most {len(PART_COLOURS)} parts have colours, got label {int(lab.max())}")
    out = np.full(lab.shape + (3,), np.nan, dtype=np.float32)
    fg = lab >= 0
    out[fg] = PART_COLOURS[lab[fg]] / 255.0
    return out


def _photo(rgb: np.ndarray, height: int) -> Image.Image:
    img = Image.fromarray(np.asarray(rgb, dtype=np.uint8), "RGB")
    w = max(1, round(img.width * height / img.height))
    return img.resize((w, height), Image.BICUBIC)


def match_canvas(photo_a: np.ndarray, photo_b: np.ndarray, grid_a: tuple[int, int], grid_b: tuple[int, int],
                 pos_a: np.ndarray, pos_b: np.ndarray, *, height: int = 240, gap: int = 8,
                 dim: float = 0.6) -> Image.Image:
    """Two photos side by side with a line from each matched cell of A to its cell in B.

    Parameters
    ----------
    photo_a, photo_b : (H, W, 3) uint8
        The preprocessed photos the maps were computed on.
    grid_a, grid_b : (h, w)
        The feature grids; a cell's line ends at its centre.
    pos_a, pos_b : (M, 2) int
        ``(row, col)`` of each match on each grid.
    height : int
        Both photos are scaled to this height (px).
    gap : int
        White space between them (px).
    dim : float in (0, 1]
        Photos are darkened to this brightness so the lines stand out.

    Returns
    -------
    PIL.Image.Image
        RGB. Line i has colour ``PART_COLOURS[i % 9]``, with a dot at each end.
    """
    a, b = _photo(photo_a, height), _photo(photo_b, height)
    canvas = Image.new("RGB", (a.width + gap + b.width, height), (255, 255, 255))
    canvas.paste(Image.eval(a, lambda v: int(v * dim)), (0, 0))
    canvas.paste(Image.eval(b, lambda v: int(v * dim)), (a.width + gap, 0))
    draw = ImageDraw.Draw(canvas)

    def centre(pos: np.ndarray, grid: tuple[int, int], size: tuple[int, int], x0: int) -> tuple[float, float]:
        return x0 + (pos[1] + 0.5) * size[0] / grid[1], (pos[0] + 0.5) * size[1] / grid[0]

    r = max(2, height // 60)
    for i, (pa, pb) in enumerate(zip(np.asarray(pos_a), np.asarray(pos_b))):
        colour = tuple(int(c) for c in PART_COLOURS[i % len(PART_COLOURS)])
        xa, ya = centre(pa, grid_a, a.size, 0)
        xb, yb = centre(pb, grid_b, b.size, a.width + gap)
        draw.line([(xa, ya), (xb, yb)], fill=colour, width=max(1, height // 80))
        for x, y in ((xa, ya), (xb, yb)):
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour, outline=(255, 255, 255))
    return canvas


def norm_image(norms: np.ndarray, vmin: float, vmax: float, outliers: np.ndarray | None = None,
               cmap: str = "viridis") -> Image.Image:
    """(h, w) feature norms -> one pixel per cell, ``cmap`` on ``[vmin, vmax]`` (clipped),
    cells where ``outliers`` is True in :data:`OUTLIER_COLOUR`.

    A constant map (``vmax <= vmin``) is drawn in the colormap's middle colour.
    """
    x = np.asarray(norms, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"norms must be (h, w), got shape {x.shape}")
    lut = colormap_lut(cmap)
    if vmax > vmin:
        idx = np.clip(np.round((x - vmin) / (vmax - vmin) * 255), 0, 255).astype(np.uint8)
    else:
        idx = np.full(x.shape, 128, dtype=np.uint8)
    out = lut[idx]
    if outliers is not None:
        out[np.asarray(outliers, dtype=bool)] = OUTLIER_COLOUR
    return Image.fromarray(out, "RGB")

