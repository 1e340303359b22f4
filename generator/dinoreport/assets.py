"""The pictures of a page: where each file is (a URL of the site, or a data: URI in report.html)
and the attributes of its ``<img>`` (size, crisp enlargement of maps, lazy loading).

Only files of the build's own figure store (``assets/fig/<content hash>``) reach a page
(:func:`dinoreport.figures.is_figure_path`).
"""
from __future__ import annotations

import base64
import html
import re
from collections import OrderedDict
from pathlib import Path

from markupsafe import Markup

from .figures import is_figure_path
from .page import RenderError

__all__ = ["Assets", "ImgAttrs", "lightest_encoding", "svg_size", "image_size", "EAGER_IMAGES",
           "PIXELATED_BELOW", "MIME"]

MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".avif": "image/avif",
        ".webp": "image/webp", ".gif": "image/gif", ".svg": "image/svg+xml"}


class Assets:
    """Resolves site-relative files to URLs (site) or data: URIs (single file)."""

    #: data: URIs kept for reuse (a photo shown in several figures), in characters; beyond it
    #: the oldest go, so the single-file page never holds all its pictures at once.
    CACHE_CHARS = 32_000_000

    def __init__(self, out: Path, inline: bool) -> None:
        self.out, self.inline = out, inline
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._chars = 0

    def path(self, rel: str) -> Path:
        """The file of a picture of this site; anything but a content-hash name of the build's
        own figure store (a path out of the site, a link, another file) is refused."""
        if not is_figure_path(rel):
            raise RenderError(f"picture path {rel!r} is not a file of the build's figure store "
                              "(assets/fig/<content hash>); an analysis must write its pictures "
                              "through ctx.writer")
        p = self.out / rel
        if p.is_symlink() or not p.is_file():
            raise RenderError(f"image file missing: {rel} (expected under {self.out})")
        return p

    def url(self, rel: str) -> str:
        p = self.path(rel)
        if not self.inline:
            return rel
        if rel in self._cache:
            self._cache.move_to_end(rel)
            return self._cache[rel]
        mime, data = lightest_encoding(p.suffix.lower(), p.read_bytes())
        uri = f"data:{mime};base64," + base64.b64encode(data).decode()
        self._cache[rel] = uri
        self._chars += len(uri)
        while self._chars > self.CACHE_CHARS and len(self._cache) > 1:
            self._chars -= len(self._cache.popitem(last=False)[1])
        return uri


def lightest_encoding(suffix: str, data: bytes) -> tuple[str, bytes]:
    """(MIME type, bytes) of the smallest lossless encoding of a picture for report.html.

    A PNG (the maps, at one pixel per cell) is re-encoded as lossless WebP when that is
    smaller (on the default demo 1.06 MB instead of 2.05 MB, the same pixels; every browser of
    the last years decodes it); anything else is kept as it is: re-encoding a JPEG as WebP
    saves about a tenth at 40 dB PSNR against the JPEG, which costs a second JPEG generation
    and 20 s of render time, so the photos stay JPEG."""
    mime = MIME.get(suffix, "application/octet-stream")
    if suffix != ".png":
        return mime, data
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode not in ("RGB", "RGBA", "L", "LA"):
                return mime, data
            buf = io.BytesIO()
            im.save(buf, format="WEBP", lossless=True, method=4, exact=True)
    except Exception:  # noqa: BLE001  (an unreadable or odd picture stays as it is)
        return mime, data
    webp = buf.getvalue()
    return ("image/webp", webp) if len(webp) < len(data) else (mime, data)


PIXELATED_BELOW = 200  # px: smaller pictures are feature maps at one pixel per cell


_SVG_LENGTH = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*(px|pt|)\s*$")
_SVG_ROOT = re.compile(r"<svg\b[^>]*>", re.S)


def svg_size(text: str) -> tuple[int, int] | None:
    """The CSS pixel size an SVG picture is drawn at by itself: the root's ``width`` and
    ``height`` (px, or pt as matplotlib writes them, 1 pt = 4/3 px), else its ``viewBox``;
    None when it has neither (or percentages), so the page gives it no size attributes."""
    m = _SVG_ROOT.search(text[:4096])
    if not m:
        return None
    tag = m.group(0)

    def attr(name: str) -> str | None:
        a = re.search(rf'\s{name}\s*=\s*"([^"]*)"', tag) or re.search(rf"\s{name}\s*=\s*'([^']*)'", tag)
        return a.group(1) if a else None

    w, h = attr("width"), attr("height")
    if w and h:
        mw, mh = _SVG_LENGTH.match(w), _SVG_LENGTH.match(h)
        if mw and mh:
            scale = {"pt": 4 / 3}
            return (round(float(mw.group(1)) * scale.get(mw.group(2), 1)),
                    round(float(mh.group(1)) * scale.get(mh.group(2), 1)))
    vb = (attr("viewBox") or "").replace(",", " ").split()
    if len(vb) == 4:
        try:
            return round(float(vb[2])), round(float(vb[3]))
        except ValueError:
            return None
    return None


def image_size(path: Path) -> tuple[int, int] | None:
    """The CSS pixel size a picture file is drawn at (an SVG's by :func:`svg_size`, others'
    by Pillow); None when it cannot be read, so the page gives it no size attributes."""
    if path.suffix.lower() == ".svg":
        try:
            return svg_size(path.read_text(encoding="utf-8", errors="replace")[:4096])
        except OSError:
            return None
    try:
        from PIL import Image

        with Image.open(path) as im:
            return im.size
    except Exception:  # noqa: BLE001  (unreadable: no size attributes)
        return None


#: pictures of a page loaded at once (the first figures, on the first screen); the rest are
#: fetched as the reader nears them (``loading="lazy"``)
EAGER_IMAGES = 12


class ImgAttrs:
    """The template helper ``img_attrs(rel)``: src, width/height, ``class="px"`` for maps,
    and ``loading``: eager for the page's first :data:`EAGER_IMAGES` pictures, lazy after.

    In report.html (``assets.inline``) a picture is encoded once: its first ``<img>`` carries
    the data: URI and ``data-pic="k"``, every later one only ``data-same="k"``, which
    report.js points at the first one's picture (a photo is shown in several figures).
    ``first_use[rel]`` is that ``k``; the explorer's photos name it too (its data comes after
    the article)."""

    def __init__(self, assets: Assets, sizes: dict[str, tuple[int, int] | None]) -> None:
        self.assets, self.sizes = assets, sizes
        self.shown = 0
        self.first_use: dict[str, int] = {}

    def __call__(self, rel: str) -> Markup:
        assets, sizes = self.assets, self.sizes
        if rel not in sizes:
            sizes[rel] = image_size(assets.path(rel))
        size = sizes[rel]
        wh = f' width="{size[0]}" height="{size[1]}"' if size else ""
        # Feature maps are stored one pixel per cell; the browser enlarges them crisply.
        px = ' class="px"' if size and max(size) < PIXELATED_BELOW and not rel.endswith(".svg") else ""
        self.shown += 1
        loading = "eager" if self.shown <= EAGER_IMAGES else "lazy"
        if not assets.inline:
            return Markup(f'src="{html.escape(assets.url(rel), quote=True)}"{wh}{px} loading="{loading}"')
        if rel in self.first_use:
            return Markup(f'data-same="{self.first_use[rel]}"{wh}{px} loading="{loading}"')
        k = self.first_use[rel] = len(self.first_use)
        return Markup(f'src="{html.escape(assets.url(rel), quote=True)}" data-pic="{k}"{wh}{px} '
                      f'loading="{loading}"')
