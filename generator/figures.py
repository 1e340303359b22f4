"""Arrays -> picture files. Maps with Pillow, plots with matplotlib; no statistics here.

Every writer returns the file's path relative to the site root. File names are the sha256
of the bytes, so identical pictures are written once and builds are byte-identical.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

__all__ = [
    "FigureWriter",
    "rgb_map",
    "signed_map",
    "overlay",
    "refmask_overlay",
    "colormap_lut",
    "hist_figure",
    "heatmap_figure",
]

NEUTRAL = np.array([0.5, 0.5, 0.5], dtype=np.float32)  # background in masked maps


def colormap_lut(name: str, n: int = 256) -> np.ndarray:
    """(n, 3) uint8 lookup table of a matplotlib colormap."""
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0, 1, n))[:, :3] * 255).round().astype(np.uint8)


def _upsample(img: Image.Image, size: tuple[int, int] | None) -> Image.Image:
    # Nearest: each feature cell stays a visible block, so C5's 1/32 grid is not dressed up.
    # The site stores maps at one pixel per cell (size None) and lets the browser enlarge them.
    return img if size is None or img.size == size else img.resize(size, Image.NEAREST)


def rgb_map(rgb: np.ndarray, size: tuple[int, int] | None = None) -> Image.Image:
    """(h, w, 3) float in [0, 1] (NaN = masked out, shown neutral grey) -> RGB image.

    size : (W, H) to enlarge to (nearest neighbour); None keeps one pixel per cell.
    """
    a = np.asarray(rgb, dtype=np.float32).copy()
    nan = np.isnan(a).any(axis=-1)
    a[nan] = NEUTRAL
    a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    return _upsample(Image.fromarray(a, "RGB"), size)


def signed_map(x: np.ndarray, vmax: float, size: tuple[int, int] | None = None,
               cmap: str = "RdBu_r") -> Image.Image:
    """(h, w) signed values -> diverging colours centred at 0, symmetric scale ``[-vmax, vmax]``.

    NaN (masked out) is shown neutral grey.
    """
    x = np.asarray(x, dtype=np.float64)
    vmax = float(vmax) if vmax > 0 and np.isfinite(vmax) else 1.0
    lut = colormap_lut(cmap)
    nan = np.isnan(x)
    idx = np.clip(((np.nan_to_num(x) / vmax + 1) / 2 * 255).round(), 0, 255).astype(np.uint8)
    out = lut[idx]
    out[nan] = (NEUTRAL * 255).astype(np.uint8)
    return _upsample(Image.fromarray(out, "RGB"), size)


def overlay(photo: np.ndarray, mask: np.ndarray, colour=(255, 64, 32), alpha: float = 0.55) -> Image.Image:
    """Photo (H, W, 3) uint8 with the mask (h, w) bool, upsampled, tinted and its background dimmed."""
    H, W = photo.shape[:2]
    m = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((W, H), Image.NEAREST)) > 127
    out = photo.astype(np.float32)
    out[~m] *= 0.35
    out[m] = (1 - alpha) * out[m] + alpha * np.array(colour, dtype=np.float32)
    return Image.fromarray(out.round().clip(0, 255).astype(np.uint8), "RGB")


def refmask_overlay(photo: np.ndarray, polygons: Sequence[Sequence[Sequence[float]]], *,
                    colour: tuple[int, int, int] = (255, 64, 32), alpha: float = 0.4,
                    max_side: int = 640, line_width: int = 2) -> Image.Image:
    """A photo with its reference-mask polygons: translucent fill and an outline, for checking.

    Parameters
    ----------
    photo : (H, W, 3) uint8
        The whole decoded photo (before the model's crop), so every vertex is on the picture.
    polygons : sequence of polygons of (x, y)
        Normalised coordinates (fractions of W and H), as in the manifest's ``mask_polygons``.
    colour : RGB
        Fill and outline colour.
    alpha : float
        Opacity of the fill in [0, 1].
    max_side : int
        The picture is shrunk (bicubic) so its long side is at most this many pixels; 0 keeps it.
    line_width : int
        Outline width in pixels of the output.

    Returns
    -------
    PIL.Image.Image
        RGB. The fill is the mask the analyses use (:func:`generator.refmasks.rasterize`,
        pixel centres, even-odd within a polygon, union across polygons).
    """
    from PIL import ImageDraw

    from .refmasks import rasterize

    img = Image.fromarray(np.asarray(photo, dtype=np.uint8), "RGB")
    if max_side and max(img.size) > max_side:
        s = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.BICUBIC)
    w, h = img.size
    inside = rasterize(polygons, (h, w))
    out = np.asarray(img, dtype=np.float32).copy()
    out[inside] = (1 - alpha) * out[inside] + alpha * np.asarray(colour, dtype=np.float32)
    img = Image.fromarray(out.round().clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for poly in polygons:
        pts = [(x * w, y * h) for x, y in poly]
        draw.line(pts + pts[:1], fill=tuple(colour), width=line_width, joint="curve")
    return img


def content_name(data: bytes, ext: str) -> str:
    """A figure's file name: the first 20 hex digits of the sha256 of its bytes, then ``ext``."""
    return hashlib.sha256(data).hexdigest()[:20] + "." + ext


def matches_name(name: str, data: bytes) -> bool:
    """True when ``data`` is what the content-hash file name ``name`` promises."""
    stem, dot, ext = name.rpartition(".")
    return bool(dot) and content_name(data, ext) == name


class FigureWriter:
    """Writes pictures under ``<site>/assets/fig/`` by content hash."""

    def __init__(self, site: Path):
        self.site = Path(site)
        self.folder = self.site / "assets" / "fig"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.written: set[str] = set()
        self.log: list[str] = []  # every file handed out, in order (a section's files = a slice)

    def _write(self, data: bytes, ext: str) -> str:
        name = content_name(data, ext)
        rel = f"assets/fig/{name}"
        if rel not in self.written:
            (self.folder / name).write_bytes(data)
            self.written.add(rel)
        self.log.append(rel)
        return rel

    def png(self, img: Image.Image) -> str:
        buf = io.BytesIO()
        img.save(buf, format="PNG", compress_level=6)
        return self._write(buf.getvalue(), "png")

    def jpeg(self, img: Image.Image, quality: int = 88) -> str:
        """Photographic content (photos, overlays): JPEG is ~5x smaller than PNG for these."""
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="JPEG", quality=quality, optimize=True)
        return self._write(buf.getvalue(), "jpg")

    def photo(self, rgb: np.ndarray, max_side: int = 0) -> str:
        """A preprocessed (H, W, 3) uint8 photo as JPEG, optionally shrunk to ``max_side``."""
        img = Image.fromarray(rgb, "RGB")
        if max_side and max(img.size) > max_side:
            s = max_side / max(img.size)
            img = img.resize((round(img.width * s), round(img.height * s)), Image.BICUBIC)
        return self.jpeg(img)

    def plot(self, fig, tight: bool = True) -> str:
        """A matplotlib figure as SVG without dates or random ids (deterministic bytes).

        tight : crop to the drawn content (costs a second draw; figures with a fixed layout
            pass False).
        """
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        with plt.rc_context({"svg.hashsalt": "dinoreport", "svg.fonttype": "none"}):
            fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None},
                        bbox_inches="tight" if tight else None)
        plt.close(fig)
        return self._write(buf.getvalue(), "svg")


def hist_figure(
    full_edges: np.ndarray, full: dict[str, np.ndarray], crop_edges: np.ndarray, crop: dict[str, np.ndarray],
    *, title: str, xlabel: str = "feature value",
):
    """Three views of one distribution side by side: linear, log y, and the 1st-99th percentile
    range. ``full``/``crop``: ``{legend label: (nbins,) int counts}`` on the given shared edges.
    Bars show the share of values per bin, so models with different counts compare."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(9.6, 2.6), dpi=100)
    # A fixed layout: one draw per save (tight/constrained layouts draw several times).
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.19, top=0.88, wspace=0.28)
    views = ((full_edges, full, "linear", False), (full_edges, full, "log y", True),
             (crop_edges, crop, "1st-99th percentile", False))
    for ax, (edges, counts, name, log) in zip(axes, views):
        for i, (label, c) in enumerate(counts.items()):
            ax.stairs(c / max(int(c.sum()), 1), edges, label=label, color=f"C{i}", linewidth=1.3)
        if log:
            ax.set_yscale("log")
        ax.set_title(f"{title} · {name}", fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_ylabel("share of values", fontsize=8)
    axes[0].legend(fontsize=7, frameon=False, loc="upper left")
    return fig


def heatmap_figure(values: np.ndarray, rows: Sequence[str], cols: Sequence[str], *, title: str,
                   xlabel: str, ylabel: str):
    """A labelled heatmap of values in [0, 1] with each cell's value written in it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(0.7 * len(cols) + 1.8, 0.55 * len(rows) + 1.4), dpi=100)
    ax.imshow(values, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(cols)), cols, fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 else "black")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    return fig
