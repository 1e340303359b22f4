"""Arrays -> picture files. Maps with Pillow, histograms and heatmaps as hand-drawn SVG
(matplotlib only for its colormaps); no statistics here.

Every writer returns the file's path relative to the site root. File names are the sha256
of the bytes, so identical pictures are written once and builds are byte-identical.
"""
from __future__ import annotations

import hashlib
import io
import math
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PIL import Image

__all__ = [
    "FigureWriter",
    "rgb_map",
    "signed_map",
    "overlay",
    "mask_layer",
    "composite",
    "refmask_overlay",
    "colormap_lut",
    "hist_figure",
    "SvgFigure",
    "nice_ticks",
    "heatmap_figure",
    "fit_panel",
    "downscale_warnings",
    "page_size_warning",
    "MAX_PANEL_SIDE",
    "MAX_PANEL_PIXELS",
    "MAX_PAGE_BYTES",
]

NEUTRAL = np.array([0.5, 0.5, 0.5], dtype=np.float32)  # background in masked maps

# Bounds on what one analysis can put on the page. A 6000 x 6000 map is a 108 MB PNG, and
# report.html carries every picture again as base64: past these a browser opens the page
# slowly or not at all. The default report stays far below them (its largest picture is
# 711 x 240 px, 0.23 Mpx; its report.html 21 MB), so they change nothing there.
MAX_PANEL_SIDE = 4096  # px: a raster picture's long side; larger ones are shrunk to it
MAX_PANEL_PIXELS = 16_000_000  # px: a raster picture's width x height; larger ones are shrunk
MAX_PAGE_BYTES = 100 * 2**20  # bytes of report.html past which the build warns, naming the biggest analyses


@lru_cache(maxsize=16)
def colormap_lut(name: str, n: int = 256) -> np.ndarray:
    """(n, 3) uint8 lookup table of a matplotlib colormap (read-only, shared)."""
    from matplotlib import colormaps

    lut = (colormaps[name](np.linspace(0, 1, n))[:, :3] * 255).round().astype(np.uint8)
    lut.flags.writeable = False
    return lut


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


#: the tint of :func:`overlay` and :func:`mask_layer`: foreground colour and its opacity,
#: and the brightness kept by the background
TINT, TINT_ALPHA, BACKGROUND_KEPT = (255, 64, 32), 0.55, 0.35


def overlay(photo: np.ndarray, mask: np.ndarray, colour=TINT, alpha: float = TINT_ALPHA) -> Image.Image:
    """Photo (H, W, 3) uint8 with the mask (h, w) bool, upsampled, tinted and its background dimmed."""
    H, W = photo.shape[:2]
    m = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((W, H), Image.NEAREST)) > 127
    out = photo.astype(np.float32)
    out[~m] *= BACKGROUND_KEPT
    out[m] = (1 - alpha) * out[m] + alpha * np.array(colour, dtype=np.float32)
    return Image.fromarray(out.round().clip(0, 255).astype(np.uint8), "RGB")


def mask_layer(mask: np.ndarray) -> Image.Image:
    """The tint of :func:`overlay` as a picture of its own, for the page to draw over the photo.

    Parameters
    ----------
    mask : (h, w) bool
        Foreground cells, one pixel per cell (the page stretches it over the photo, crisply).

    Returns
    -------
    PIL.Image.Image
        (w, h) two-colour palette picture (a 1-bit PNG of a few hundred bytes): :data:`TINT`
        at opacity :data:`TINT_ALPHA` on foreground cells, black at opacity
        ``1 - BACKGROUND_KEPT`` elsewhere. Drawn over the photo (source-over, what
        :func:`composite` does) it gives :func:`overlay`'s pixels within 1 level in 255.
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"mask_layer: expected an (h, w) mask, got shape {m.shape}")
    img = Image.fromarray(m.astype(np.uint8), "P")
    img.putpalette([0, 0, 0, *TINT])
    img.info["transparency"] = bytes([round((1 - BACKGROUND_KEPT) * 255), round(TINT_ALPHA * 255)])
    return img


def composite(photo: Image.Image, layer: Image.Image) -> Image.Image:
    """``layer`` stretched to ``photo``'s size by nearest neighbour and drawn over it (what the
    page shows for a :class:`~dinoreport.page.Panel` with a layer), RGB of ``photo``'s size."""
    top = layer.convert("RGBA").resize(photo.size, Image.NEAREST)
    return Image.alpha_composite(photo.convert("RGBA"), top).convert("RGB")


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
        RGB. The fill is the mask the analyses use (:func:`dinoreport.refmasks.rasterize`,
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


#: Pillow's AVIF options for photographic panels (see :meth:`FigureWriter.photographic`)
PHOTO_ENCODING = {"quality": 74, "speed": 8, "max_threads": 1}

FIGURE_EXTS = ("png", "avif", "svg")
"""The picture formats :class:`FigureWriter` writes (and the only ones a page may embed)."""

_FIGURE_PATH = re.compile(r"assets/fig/[0-9a-f]{20}\.(?:" + "|".join(FIGURE_EXTS) + r")")


def is_figure_path(rel: object) -> bool:
    """Whether ``rel`` is a site-relative path :class:`FigureWriter` hands out
    (``assets/fig/<20 hex digits>.<ext>``): the only pictures a page may show."""
    return isinstance(rel, str) and _FIGURE_PATH.fullmatch(rel) is not None


def content_name(data: bytes, ext: str) -> str:
    """A figure's file name: the first 20 hex digits of the sha256 of its bytes, then ``ext``."""
    return hashlib.sha256(data).hexdigest()[:20] + "." + ext


def matches_name(name: str, data: bytes) -> bool:
    """True when ``data`` is what the content-hash file name ``name`` promises."""
    stem, dot, ext = name.rpartition(".")
    return bool(dot) and content_name(data, ext) == name


def fit_panel(size: tuple[int, int]) -> tuple[int, int] | None:
    """The (W, H) in px a raster picture of ``size`` = (W, H) is shrunk to so that it keeps
    within :data:`MAX_PANEL_SIDE` and :data:`MAX_PANEL_PIXELS` (aspect kept, sides rounded
    down, at least 1 px); None when it is within them already."""
    w, h = size
    scale = min(1.0, MAX_PANEL_SIDE / max(w, h, 1), math.sqrt(MAX_PANEL_PIXELS / max(w * h, 1)))
    if scale >= 1.0:
        return None
    return max(1, math.floor(w * scale)), max(1, math.floor(h * scale))


class FigureWriter:
    """Writes pictures under ``<site>/assets/fig/`` by content hash.

    Analyses may run at the same time in threads: each gets its own writer from :meth:`fork`
    (its own ``log``, the files it handed out), all sharing one set of written files.

    A raster picture larger than :data:`MAX_PANEL_SIDE` / :data:`MAX_PANEL_PIXELS` is shrunk
    before it is written; ``downscaled`` (shared by the forks) maps its file to
    ``((W, H) asked for, (W, H) written)``, for :func:`downscale_warnings`.
    """

    def __init__(self, site: Path):
        self.site = Path(site)
        self.folder = self.site / "assets" / "fig"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.written: set[str] = set()
        self.downscaled: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {}
        self.log: list[str] = []  # every file handed out, in order (a section's files = a slice)
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def fork(self) -> "FigureWriter":
        """A writer into the same folder with an empty log, sharing the written set (thread-safe)."""
        child = object.__new__(FigureWriter)
        child.site, child.folder, child.written, child._lock = self.site, self.folder, self.written, self._lock
        child.downscaled = self.downscaled
        child._closed = self._closed
        child.log = []
        return child

    def _bounded(self, img: Image.Image, resample: int) -> tuple[Image.Image, tuple | None]:
        """``img`` shrunk to :func:`fit_panel`'s size, and ``(asked, written)`` sizes if it was."""
        fit = fit_panel(img.size)
        if fit is None:
            return img, None
        if img.mode not in ("RGB", "RGBA", "L", "LA"):  # palette or 1-bit: resize would use nearest
            img = img.convert("RGBA" if "transparency" in img.info or "A" in img.getbands() else "RGB")
        return img.resize(fit, resample), (img.size, fit)

    def _note(self, rel: str, sizes: tuple | None) -> str:
        if sizes is not None:
            with self._lock:
                self.downscaled[rel] = sizes
        return rel

    def close(self) -> None:
        """Refuse every later write of this writer and its forks (they raise ``RuntimeError``).

        A build that stops while an analysis still runs in its thread (a timeout, Ctrl-C)
        closes the writer before it removes the folder: a write under way finishes first (the
        lock), and none starts after, so nothing reappears in the removed folder.
        """
        with self._lock:
            self._closed.set()

    def _write(self, data: bytes, ext: str) -> str:
        name = content_name(data, ext)
        rel = f"assets/fig/{name}"
        with self._lock:
            if self._closed.is_set():
                raise RuntimeError("the build has stopped: this analysis's figures are no longer written")
            if rel not in self.written:
                (self.folder / name).write_bytes(data)
                self.written.add(rel)
        self.log.append(rel)
        return rel

    def png(self, img: Image.Image) -> str:
        # Box filter: each written pixel is the mean of the cells it covers, no ringing at cell edges.
        img, sizes = self._bounded(img, Image.BOX)
        buf = io.BytesIO()
        img.save(buf, format="PNG", compress_level=6)
        return self._note(self._write(buf.getvalue(), "png"), sizes)

    def photographic(self, img: Image.Image) -> str:
        """Photographic content (photos, tinted overlays, photos with lines) as lossy AVIF.

        :data:`PHOTO_ENCODING` was chosen by ``bench/photo_encoding.py``: the lightest setting
        whose SSIM and PSNR against the exact pixels are at least those of the JPEG quality 88
        written before, on photos and on overlays alike (about a third fewer bytes). One
        encoder thread: libaom's output depends on the thread count, the files are named by
        their content."""
        img, sizes = self._bounded(img, Image.BICUBIC)
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="AVIF", **PHOTO_ENCODING)
        return self._note(self._write(buf.getvalue(), "avif"), sizes)

    def photo(self, rgb: np.ndarray, max_side: int = 0) -> str:
        """A preprocessed (H, W, 3) uint8 photo (:meth:`photographic`), optionally shrunk to ``max_side``."""
        img = Image.fromarray(rgb, "RGB")
        if max_side and max(img.size) > max_side:
            s = max_side / max(img.size)
            img = img.resize((round(img.width * s), round(img.height * s)), Image.BICUBIC)
        return self.photographic(img)

    def plot(self, fig, tight: bool = True) -> str:
        """A matplotlib figure (or a finished :class:`SvgFigure`) as SVG without dates or random ids (deterministic bytes).

        tight : crop to the drawn content (costs a second draw; figures with a fixed layout
            pass False).
        """
        if isinstance(fig, SvgFigure):
            return self._write(fig.svg.encode(), "svg")
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        with plt.rc_context({"svg.hashsalt": "dinoreport", "svg.fonttype": "none"}):
            fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None},
                        bbox_inches="tight" if tight else None)
        plt.close(fig)
        return self._write(buf.getvalue(), "svg")


def _mpx(size: tuple[int, int]) -> str:
    return f"{size[0]}\u00d7{size[1]} px ({size[0] * size[1] / 1e6:.1f} Mpx)"


def downscale_warnings(sections: Sequence[tuple[str, Sequence]],
                       downscaled: dict[str, tuple[tuple[int, int], tuple[int, int]]]) -> list[str]:
    """One line per picture :class:`FigureWriter` shrank, naming the analysis and the figure.

    sections : ``(analysis name, its figures)`` in report order (figures: :class:`~dinoreport.page.Figure`).
    downscaled : :attr:`FigureWriter.downscaled`.
    """
    lines, seen = [], set()
    for name, figures in sections:
        for f in figures:
            for r in f.rows:
                for p in r.panels:
                    if p.file in downscaled and (name, f.id, p.file) not in seen:
                        seen.add((name, f.id, p.file))
                        asked, got = downscaled[p.file]
                        lines.append(
                            f"warning: analysis {name}, figure {f.id}: a picture of {_mpx(asked)} was shrunk "
                            f"to {_mpx(got)}, the most one picture may have ({MAX_PANEL_SIDE} px on the long "
                            f"side, {MAX_PANEL_PIXELS / 1e6:g} Mpx; generator/dinoreport/figures.py MAX_PANEL_SIDE, "
                            "MAX_PANEL_PIXELS); draw it smaller (a map needs one pixel per feature cell: "
                            "the browser enlarges it)")
    return lines


def page_size_warning(name: str, size: int, by_analysis: dict[str, int], top: int = 3) -> str | None:
    """The warning for a self-contained page of ``size`` bytes over :data:`MAX_PAGE_BYTES`, or None.

    by_analysis : ``{analysis name: bytes of its pictures on the page}``; the ``top`` largest are named.
    """
    if size <= MAX_PAGE_BYTES:
        return None
    mb = 2**20
    big = sorted(((b, n) for n, b in by_analysis.items() if b > 0), reverse=True)[:top]
    named = ", ".join(f"{n} {b / mb:.1f} MB" for b, n in big) or "none of the analyses' pictures"
    return (f"warning: {name} is {size / mb:.1f} MB, more than {MAX_PAGE_BYTES / mb:g} MB "
            "(generator/dinoreport/figures.py MAX_PAGE_BYTES): browsers open it slowly or not at all. Its largest "
            f"pictures come from {named}; build from fewer images, or leave out or shrink those "
            "analyses' pictures (index.html, with the pictures as separate files, is not affected)")


# matplotlib's default colour cycle (C0..C9), so models keep the colours they had in the plots.
MODEL_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


@dataclass(frozen=True)
class SvgFigure:
    """A finished SVG picture (text); :meth:`FigureWriter.plot` writes it as it is."""

    svg: str


@lru_cache(maxsize=1)
def _svg_env():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "figure_templates")),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _num(v: float) -> str:
    """A tick label: plain digits, typographic minus, no ``-0``."""
    s = f"{v:g}" if abs(v) >= 1e-4 or v == 0 else f"{v:.0e}"
    return "0" if s in ("-0", "0") else s.replace("-", "\u2212")


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """At most ``n + 1`` round tick values (steps 1, 2, 2.5, 5 x 10^k) inside ``[lo, hi]``."""
    span = hi - lo
    if not span > 0:
        return [lo]
    mag = 10.0 ** math.floor(math.log10(span / n))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if span / (m * mag) <= n)
    first = math.ceil(lo / step - 1e-9)
    ticks = []
    k = first
    while k * step <= hi + 1e-9 * span:
        # Rounding to the step's decimals keeps labels like 0.30000000000000004 out.
        ticks.append(round(k * step, max(0, 2 - int(math.floor(math.log10(step))))))
        k += 1
    return ticks


def _stairs_path(edges_px: np.ndarray, ys: np.ndarray, base: float) -> str:
    """SVG path of a step curve from its bin edges (x pixels) and heights (y pixels)."""
    parts = [f"M{edges_px[0]:.1f} {base:.1f}"]
    cur = base
    for i, y in enumerate(ys):
        if y != cur:
            if i:
                parts.append(f"H{edges_px[i]:.1f}")
            parts.append(f"V{y:.1f}")
            cur = y
    parts.append(f"H{edges_px[-1]:.1f}")
    if cur != base:
        parts.append(f"V{base:.1f}")
    return "".join(parts)


def hist_figure(
    full_edges: np.ndarray, full: dict[str, np.ndarray], crop_edges: np.ndarray, crop: dict[str, np.ndarray],
    *, title: str, xlabel: str = "feature value",
) -> SvgFigure:
    """Three views of one distribution side by side: linear, log y, and the 1st-99th percentile
    range. ``full``/``crop``: ``{legend label: (nbins,) int counts}`` on the given shared edges.
    Bars show the share of values per bin, so models with different counts compare.

    Drawn directly as a small SVG (``figure_templates/hist.svg.j2``): step curves in the
    models' colours (matplotlib's C0, C1, ...), axes with round ticks, decades on the log
    axis, legend in the first view. Same layout as the former matplotlib figure, 960 x 260 px.
    """
    width, height = 960, 260
    left, right, gap, top, bottom = 62, 12, 56, 30, height - 42
    pw = (width - left - right - 2 * gap) / 3
    views = ((full_edges, full, "linear", False), (full_edges, full, "log y", True),
             (crop_edges, crop, "1st-99th percentile", False))
    panels = []
    for j, (edges, counts, name, log) in enumerate(views):
        e = np.asarray(edges, dtype=np.float64)
        shares = {label: np.asarray(c, dtype=np.float64) / max(int(np.sum(c)), 1) for label, c in counts.items()}
        pad = 0.02 * (e[-1] - e[0])
        x_lo, x_hi = e[0] - pad, e[-1] + pad

        def xpx(v, x_lo=x_lo, x_hi=x_hi):
            return (np.asarray(v, dtype=np.float64) - x_lo) / (x_hi - x_lo) * pw

        top_share = max([float(s.max()) for s in shares.values() if s.size] + [0.0])
        yticks = []
        if log:
            pos = [float(s[s > 0].min()) for s in shares.values() if np.any(s > 0)]
            d_lo = math.floor(math.log10(min(pos))) if pos else -3
            d_hi = max(math.ceil(math.log10(top_share)) if top_share > 0 else 0, d_lo + 1)
            lo_v, hi_v = float(d_lo), float(d_hi)

            def ypx(v, lo_v=lo_v, hi_v=hi_v):
                v = np.asarray(v, dtype=np.float64)
                lv = np.log10(np.where(v > 0, v, 10.0 ** lo_v))
                return bottom - (np.clip(lv, lo_v, hi_v) - lo_v) / (hi_v - lo_v) * (bottom - top)

            stride = max(1, math.ceil((d_hi - d_lo) / 6))
            for d in range(d_lo, d_hi + 1, stride):
                yticks.append({"pos": f"{float(ypx(10.0 ** d)):.1f}", "label": "10",
                               "sup": str(d).replace("-", "\u2212")})
        else:
            hi_v = top_share * 1.05 if top_share > 0 else 1.0

            def ypx(v, hi_v=hi_v):
                return bottom - np.asarray(v, dtype=np.float64) / hi_v * (bottom - top)

            yticks = [{"pos": f"{float(ypx(t)):.1f}", "label": _num(t), "sup": ""}
                      for t in nice_ticks(0.0, hi_v, 4)]
        xticks = [{"pos": f"{float(xpx(t)):.1f}", "label": _num(t)} for t in nice_ticks(x_lo, x_hi, 5)]
        ex = xpx(e)
        series = [{"label": label, "colour": MODEL_COLOURS[i % len(MODEL_COLOURS)],
                   "d": _stairs_path(ex, np.round(ypx(s), 1), float(bottom))}
                  for i, (label, s) in enumerate(shares.items())]
        panels.append({"x0": f"{left + j * (pw + gap):.1f}", "w": round(pw, 1), "title": f"{title} \u00b7 {name}",
                       "xticks": xticks, "yticks": yticks, "series": series,
                       # legend backdrop: about 5.8 px per character at font size 9.5
                       "legend_w": round(34 + 5.8 * max((len(x["label"]) for x in series), default=0), 1)})
    svg = _svg_env().get_template("hist.svg.j2").render(
        width=width, height=height, left=left, top=top, bottom=bottom, panels=panels, xlabel=xlabel,
        ylabel="share of values", title=f"Histograms of {title}")
    return SvgFigure(svg)


def heatmap_figure(values: np.ndarray, rows: Sequence[str], cols: Sequence[str], *, title: str,
                   xlabel: str, ylabel: str) -> SvgFigure:
    """A labelled heatmap of values in [0, 1] (viridis) with each cell's value written in it.

    values : (len(rows), len(cols)) array of floats in [0, 1] (clipped for the colour only).
    Drawn directly as SVG (``figure_templates/heatmap.svg.j2``): 62 x 34 px cells, light text on
    dark cells, each cell's row, column and value as its tooltip.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.shape != (len(rows), len(cols)):
        raise ValueError(f"values must be {len(rows)}x{len(cols)} (rows x cols), got shape {v.shape}")
    lut = colormap_lut("viridis")
    cell_w, cell_h = 62, 34
    longest = max((len(str(r)) for r in rows), default=0)
    left = 40 + round(6.5 * longest)
    top, bottom, right = 34, 44, 14
    grid_w, grid_h = cell_w * len(cols), cell_h * len(rows)
    cells = []
    for (i, j), x in np.ndenumerate(v):
        rgb = lut[int(round(float(np.clip(x, 0.0, 1.0)) * (len(lut) - 1)))]
        cells.append({"x": j * cell_w, "y": i * cell_h, "fill": "#%02x%02x%02x" % tuple(int(c) for c in rgb),
                      "ink": "#ffffff" if x < 0.6 else "#000000", "label": f"{x:.2f}",
                      "tip": f"{rows[i]} \u00d7 {cols[j]}: {x:.3f}"})
    # About 7 px per character of the 12 px title: the picture is widened so it never clips.
    width = max(left + grid_w + right, round(7 * len(title)) + 20)
    svg = _svg_env().get_template("heatmap.svg.j2").render(
        width=width, height=top + grid_h + bottom, left=left, top=top, grid_w=grid_w,
        grid_h=grid_h, cell_w=cell_w, cell_h=cell_h, cells=cells, title=title, xlabel=xlabel, ylabel=ylabel,
        rows=[{"pos": (i + 0.5) * cell_h, "label": r} for i, r in enumerate(rows)],
        cols=[{"pos": (j + 0.5) * cell_w, "label": c} for j, c in enumerate(cols)])
    return SvgFigure(svg)


# Line styles of successive stages in a spectrum plot: the last stage solid, earlier ones dashed.
STAGE_DASHES = ("2 3", "5 3", "9 3", "")


def spectrum_figure(curves: Mapping[str, Mapping[str, np.ndarray]], *, title: str,
                    xlabel: str = "component", ylabel: str = "share of variance") -> SvgFigure:
    """Explained-variance curves on one log-y plot: one colour per model, one dash per stage.

    curves : ``{model label: {stage name: (k,) shares > 0 (zeros are left out)}}``, stages in
        order (the last drawn solid, earlier ones dashed, as :data:`STAGE_DASHES` from the end).
    Drawn directly as SVG (``figure_templates/spectrum.svg.j2``): 640 x 300 px plot plus legend,
    decades on the y axis, each line's model and stage as its tooltip.
    """
    plot_w, left, top, bottom, height = 560, 62, 30, 258, 300
    vals = [np.asarray(v, dtype=np.float64) for st in curves.values() for v in st.values()]
    k = max((v.size for v in vals), default=1)
    pos = [float(v[v > 0].min()) for v in vals if np.any(v > 0)]
    top_v = max([float(v.max()) for v in vals if v.size] + [1e-3])
    d_lo = math.floor(math.log10(min(pos))) if pos else -3
    d_hi = max(math.ceil(math.log10(top_v)), d_lo + 1)

    def xpx(i):
        return (i - 1) / max(k - 1, 1) * plot_w

    def ypx(v):
        return bottom - (math.log10(v) - d_lo) / (d_hi - d_lo) * (bottom - top)

    n_stages = max((len(st) for st in curves.values()), default=0)
    dashes = STAGE_DASHES[-n_stages:] if 0 < n_stages <= len(STAGE_DASHES) else ("",) * n_stages
    series, colours, stage_names = [], [], []
    for ci, (label, stages) in enumerate(curves.items()):
        colour = MODEL_COLOURS[ci % len(MODEL_COLOURS)]
        colours.append({"label": label, "colour": colour})
        for si, (stage, v) in enumerate(stages.items()):
            v = np.asarray(v, dtype=np.float64)
            pts = [f"{xpx(i + 1):.1f} {ypx(x):.1f}" for i, x in enumerate(v) if x > 0]
            if pts:
                series.append({"label": f"{label} {stage}", "colour": colour, "dash": dashes[si],
                               "d": "M" + " L".join(pts)})
            if si >= len(stage_names):
                stage_names.append([])
            if stage not in stage_names[si]:
                stage_names[si].append(stage)
    stride = max(1, math.ceil((d_hi - d_lo) / 6))
    yticks = [{"pos": f"{ypx(10.0 ** d):.1f}", "sup": str(d).replace("-", "\u2212")}
              for d in range(d_lo, d_hi + 1, stride)]
    xticks = [{"pos": f"{xpx(t):.1f}", "label": _num(t)} for t in nice_ticks(1, k, 6) if t >= 1]
    stage_labels = [" / ".join(names) for names in stage_names]
    legend_w = 40 + round(5.8 * max([len(c["label"]) for c in colours] + [len(s) for s in stage_labels] + [0]))
    svg = _svg_env().get_template("spectrum.svg.j2").render(
        width=left + plot_w + 16 + legend_w, height=height, left=left, top=top, bottom=bottom, plot_w=plot_w,
        series=series, xticks=xticks, yticks=yticks, title=title, xlabel=xlabel, ylabel=ylabel,
        colours=colours, dashes=[{"label": s, "dash": dashes[i]} for i, s in enumerate(stage_labels)])
    return SvgFigure(svg)
