"""Render a :class:`~dinoreport.page.ReportPage` into a static site.

``render_site`` writes ``index.html`` (multi-file, for GitHub Pages), ``report.html`` (the same
page, self-contained: inline CSS/JS, every image as a data: URI), ``assets/style.css``,
``assets/report.js`` and ``.nojekyll``. Output depends only on the inputs (no dates, no clocks).

The narrative is ``site_src/*.md`` in file-name order. Each file is first rendered as a Jinja
template (context: ``page``, ``models``, ``results``, ``random_init`` and the helpers in
:func:`_helpers`; the data and wording helpers, whose numbers and words carry their source
into the page, are :mod:`dinoreport.wording`), then read as Markdown with block directives on
their own line::

    ::: figures kind=within_pca          every figure of that kind, in page order
    ::: figures kind=across_pca_masked group=dogs   (optional image=/group= filters;
                                                     image=featured: the featured images)
    ::: figure <figure id>
    ::: tables kind=feature_stats
    ::: table <table id>
    ::: explorer                          the similarity explorer widget

Figures and tables are numbered in the order they are first shown; any the narrative does not
show are appended under "More figures and tables". ``page.explorer`` format::

    {"models": [{"id", "label", "stages": [stage names]}],
     "images": [{"id", "photo" (site-relative path), "width", "height"}],
     "groups": [{"id", "images": [image ids]}],
     "features": {model id: {stage: {group id: {image id: {"h", "w", "d", "q": base64 int8, (y, x, d)}}}}},
     "error": {model id: {stage: {group id: {"dims", "max_abs", "mean_abs"}}}},
     "stage": {model id: last stage}, "budget_bytes": int}

It is embedded as JSON in ``<script type="application/json" id="explorer-data">`` (both pages),
which the theme's report.js parses, without the codes themselves: index.html points to one
compressed file per (model, stage, group) under ``assets/codes/`` that report.js fetches
when the explorer is first used (``connect-src 'self'``), report.html carries the same bytes
inline as base64 (see :func:`explorer_blobs`).
"""
from __future__ import annotations

import base64
import difflib
import hashlib
import html
import json
import math
import os
import re
import secrets
import sys
import traceback
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import jinja2
import numpy as np
import markdown as md_lib
import markupsafe
from markupsafe import Markup

from .analyses import figure_kinds, get_analysis, list_analyses, table_kinds
from .analyses.registry import NarrativeError, contributed_helpers
from .analysis.explorer import requantize
from .downloads import download_link
from .figures import is_figure_path
from .modelmeta import ModelFacts
from .page import Figure, ReportPage, Table
from .theme import static_text, theme_folders, theme_loader
from .textfile import NotUTF8, read_utf8
from .wording import as_markup, compare, data_helpers, fact_helpers, format_num, join, num, pct

__all__ = ["RenderError", "render_site", "narrative_sources", "format_cell"]

DINOV3_LICENSE_URL = "https://ai.meta.com/resources/models-and-libraries/dinov3-license/"

# No inline script runs: index.html loads assets/report.js, report.html allows exactly its own
# script by hash (see _csp_single). Page data travels in <script type="application/json">
# blocks, which never execute. Styles keep 'unsafe-inline' for the figures' style="--cols: N"
# attributes (a hash would switch 'unsafe-inline' off).
CSP_SITE = (
    "default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'"
)


def _csp_single(script: str) -> str:
    """report.html's policy: only the inline script whose text is ``script`` may run."""
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
            f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'")

# ids the page template uses itself; headings never take these
RESERVED_IDS = frozenset({
    "top", "contents", "article", "more-figures", "about-models", "skipped-images",
    "image-credits", "notices", "lightbox", "lightbox-img", "lightbox-layer", "lightbox-caption",
    "lightbox-close", "explorer-data", "colophon", "similarity-explorer", "explorer-caption",
})

_DIRECTIVE = re.compile(r"^\s*:::\s*(\S+)\s*(.*?)\s*$")
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".avif": "image/avif",
         ".webp": "image/webp", ".gif": "image/gif", ".svg": "image/svg+xml"}


class RenderError(ValueError):
    """A problem in the narrative or the page; the message names the .md file and line."""


def narrative_sources(site_src: Path) -> list[Path]:
    """The narrative's Markdown files, sorted by name."""
    return sorted(Path(site_src).glob("*.md"), key=lambda p: p.name)


# --------------------------------------------------------------------------- formatting

_sig = format_num  # one number format for tables, labels and text (wording.format_num)


def _pct(x: float | None, digits: int = 3) -> str:
    """A ratio as a percentage with ``digits`` significant digits: 0.4321 -> '43.2%'."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return _sig(100.0 * float(x), digits) + "%"


def _table_columns(table: Table) -> list[dict]:
    """Per column: name, whether it is shown as a percentage (the table kind's declared
    ``percent`` columns), whether it is numeric."""
    kind = table_kinds().get(table.kind)
    percent = set(kind.percent) if kind else set()
    refs = set(kind.refs) if kind else set()
    cols = []
    for i, name in enumerate(table.columns):
        vals = [r[i] for r in table.rows if i < len(r) and r[i] is not None]
        numeric = bool(vals) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)
        cols.append({"name": name, "percent": name in percent, "numeric": numeric, "refs": name in refs})
    return cols


def format_cell(value: Any, *, percent: bool = False) -> tuple[str, bool]:
    """(text, is_numeric) for a table cell: floats to 3 significant digits or a percentage."""
    if isinstance(value, bool):
        return ("yes" if value else "no"), False
    if isinstance(value, int):
        return f"{value:,}".replace("-", "−"), True
    if isinstance(value, float):
        if percent and not math.isnan(value) and -1.0 <= value <= 1.0:
            return _pct(value), True
        return _sig(value), True
    if value is None:
        return "—", False
    return str(value), False


# --------------------------------------------------------------------------- slugs

def _slug(text: str) -> str:
    text = re.sub(r"<[^>]+>", "", text)
    text = html.unescape(text).lower()
    text = re.sub(r"[^\w\s-]", "", text, flags=re.ASCII)
    text = re.sub(r"[\s_-]+", "-", text).strip("-")
    return text or "section"


def _unique(base: str, used: set[str]) -> str:
    cand, n = base, 2
    while cand in used:
        cand = f"{base}-{n}"
        n += 1
    used.add(cand)
    return cand


# --------------------------------------------------------------------------- narrative

@dataclass
class _Block:
    """A directive found in the narrative, to be replaced by HTML once numbers are known."""

    kind: str  # figures | figure | tables | table | explorer
    items: list[Any]
    note: str = ""


class _Numbering:
    def __init__(self) -> None:
        self.fig: dict[str, int] = {}
        self.tab: dict[str, int] = {}

    def number(self, obj: Figure | Table) -> tuple[int, bool]:
        d = self.fig if isinstance(obj, Figure) else self.tab
        if obj.id in d:
            return d[obj.id], False
        d[obj.id] = len(d) + 1
        return d[obj.id], True


_HelperError = NarrativeError  # a helper's message is written for the author


def _helpers(page: ReportPage, token: str) -> dict[str, Callable[..., Any]]:
    """The narrative's helper functions; ``ref``/``refs`` leave markers carrying ``token``
    (see :func:`_token`) that the page replaces once figures are numbered."""
    by_id = {m.id: m for m in page.models}
    fig_ids = {f.id for f in page.figures}
    tab_ids = {t.id for t in page.tables}

    def label(model_id: str) -> str:
        m = by_id.get(model_id)
        return m.label if m else model_id

    def model(model_id: str) -> ModelFacts | None:
        return by_id.get(model_id)

    def has_model(*ids: str) -> bool:
        return all(i in by_id for i in ids)

    def stages(model_id: str) -> tuple[str, ...]:
        m = by_id.get(model_id)
        return m.stage_names if m else ()

    def first_stage(model_id: str) -> str | None:
        s = stages(model_id)
        return s[0] if s else None

    def last_stage(model_id: str) -> str | None:
        s = stages(model_id)
        return s[-1] if s else None

    def figures(kind: str) -> list[Figure]:
        return [f for f in page.figures if f.kind == kind]

    def tables(kind: str) -> list[Table]:
        return [t for t in page.tables if t.kind == kind]

    def has_figures(kind: str) -> bool:
        return bool(figures(kind))

    def ref(obj_id: str) -> Markup:
        """A link 'Figure N' / 'Table N' to a figure or table (numbered once all are placed)."""
        if obj_id not in fig_ids and obj_id not in tab_ids:
            hint = difflib.get_close_matches(str(obj_id), sorted(fig_ids | tab_ids), n=1)
            raise _HelperError(f"ref(): no figure or table with id {obj_id!r}"
                               + (f" — did you mean {hint[0]!r}?" if hint else ""))
        return Markup(f"@@{token}REF:{obj_id}@@")

    def refs(kind: str) -> Markup:
        """Links to every figure (or table) of a kind: 'Figures 2–4' / 'Figure 2'."""
        if kind not in figure_kinds() and kind not in table_kinds():
            raise _HelperError(f"refs(): unknown kind {kind!r}")
        return Markup(f"@@{token}REFS:{kind.replace('_', '-')}@@")

    core = {
        **data_helpers(page.results), **fact_helpers(page.models),
        "label": label, "model": model, "has_model": has_model, "stages": stages,
        "first_stage": first_stage, "last_stage": last_stage, "figures": figures,
        "tables": tables, "has_figures": has_figures, "ref": ref, "refs": refs,
        "pct": pct, "num": num, "compare": compare, "join": join,
    }
    return {**core, **contributed_helpers(page, core)}


def _template_line(tb, filename: str) -> int | None:
    line = None
    for frame, lineno in traceback.walk_tb(tb):
        if frame.f_code.co_filename == filename:
            line = lineno
    return line


def _read_source(path: Path) -> str:
    """A narrative file's text (UTF-8, a byte order mark dropped: else its first line, often a
    directive, would not start with ``:::``)."""
    try:
        return read_utf8(path)
    except NotUTF8 as e:
        raise RenderError(f"{path.name}: not UTF-8 text ({e}); save it as UTF-8") from None
    except OSError as e:
        raise RenderError(f"{path.name}: cannot read it ({e.strerror or e})") from None


def _render_jinja(path: Path, src: str, env: jinja2.Environment, ctx: dict) -> str:
    try:
        tmpl = env.from_string(src)
        # give the compiled template the file's name so tracebacks carry it
        return tmpl.render(ctx)
    except jinja2.TemplateSyntaxError as e:
        raise RenderError(f"{path.name}, line {e.lineno}: {e.message}") from e
    except (jinja2.TemplateError, _HelperError, Exception) as e:  # noqa: BLE001
        line = _template_line(sys.exc_info()[2], "<template>")
        where = f"{path.name}, line {line}" if line else path.name
        # A helper's message is written for the author; other errors keep their type as a clue.
        what = str(e) if isinstance(e, _HelperError) else f"{type(e).__name__}: {e}"
        raise RenderError(f"{where}: {what}") from e


def _parse_args(text: str) -> tuple[list[str], dict[str, str]]:
    pos, kw = [], {}
    for tok in text.split():
        if "=" in tok:
            k, _, v = tok.partition("=")
            kw[k.strip()] = v.strip().strip("\"'")
        else:
            pos.append(tok.strip("\"'"))
    return pos, kw


def _directive(name: str, args: str, page: ReportPage, where: str) -> _Block:
    pos, kw = _parse_args(args)
    figs = {f.id: f for f in page.figures}
    tabs = {t.id: t for t in page.tables}
    if name in ("figure", "table"):
        if len(pos) != 1 or kw:
            raise RenderError(f"{where}: '::: {name}' takes exactly one id, got {args!r}")
        pool = figs if name == "figure" else tabs
        if pos[0] not in pool:
            raise RenderError(f"{where}: unknown {name} id {pos[0]!r}")
        return _Block(name, [pool[pos[0]]])
    if name in ("figures", "tables"):
        kinds = {k: v.description for k, v in (figure_kinds() if name == "figures" else table_kinds()).items()}
        kind = kw.pop("kind", None)
        if pos or kind is None:
            raise RenderError(f"{where}: '::: {name}' needs kind=<kind>, got {args!r}")
        if kind not in kinds:
            raise RenderError(
                f"{where}: unknown {name[:-1]} kind {kind!r} (known: {', '.join(sorted(kinds))})")
        bad = set(kw) - {"image", "group"}
        if bad:
            raise RenderError(f"{where}: unknown filter(s) {sorted(bad)} in '::: {name}'")
        pool_list = page.figures if name == "figures" else page.tables
        items = [o for o in pool_list if o.kind == kind]
        for k, v in kw.items():
            if k == "image" and v == "featured":  # the build's featured images, whatever they are
                items = [o for o in items if getattr(o, "image", None) in page.featured]
            else:
                items = [o for o in items if getattr(o, k, None) == v]
        what = "figures" if name == "figures" else "tables"
        owner = kind_owner(kind)
        if page.analyses is not None and owner is not None and owner not in page.analyses:
            note = (f"Not in this build: the {owner} analysis, which makes these {what} ({kinds[kind]}), "
                    "was not run (left out by --analyses, --skip or `analyses` in report.toml).")
        else:
            note = f"No {what} of this kind in this build ({kinds[kind]})."
        return _Block(name, items, note)
    if name == "explorer":
        if pos or kw:
            raise RenderError(f"{where}: '::: explorer' takes no arguments")
        return _Block("explorer", [], "The similarity explorer was not built for this report.")
    raise RenderError(f"{where}: unknown directive '::: {name}'")


def kind_owner(kind: str) -> str | None:
    """The registered analysis that declares figure or table kind ``kind``, or None."""
    for n in list_analyses():
        a = get_analysis(n)
        if any(k.name == kind for k in (*a.figures, *a.tables)):
            return n
    return None


def _source_line(src_lines: list[str], line_text: str, fallback: int) -> int:
    stripped = line_text.strip()
    for i, s in enumerate(src_lines, 1):
        if s.strip() == stripped:
            return i
    return fallback


def _process_file(path: Path, env: jinja2.Environment, ctx: dict, page: ReportPage,
                  blocks: list[_Block], token: str) -> str:
    src = _read_source(path)
    text = _render_jinja(path, src, env, ctx)
    src_lines = src.splitlines()
    out: list[str] = []
    in_fence = False
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        m = None if in_fence else _DIRECTIVE.match(line)
        if m:
            where = f"{path.name}, line {_source_line(src_lines, line, n)}"
            blocks.append(_directive(m.group(1), m.group(2), page, where))
            out.extend(["", f"{token}BLOCK{len(blocks) - 1:05d}", ""])
        else:
            out.append(line)
    return "\n".join(out)


_HEADING = re.compile(r"<h([1-6])>(.*?)</h\1>", re.S)


def _add_heading_ids(body: str, used: set[str], token: str) -> tuple[str, list[dict]]:
    toc: list[dict] = []
    marker = re.compile(rf"@@{token}REFS?:[a-z0-9-]+@@")

    def sub(m: re.Match) -> str:
        level, inner = int(m.group(1)), m.group(2)
        # A ref() in a heading is not in its id: the marker's token changes from render to render.
        hid = _unique(_slug(marker.sub("", inner)), used)
        if level in (2, 3):
            toc.append({"level": level, "id": hid, "html": Markup(re.sub(r"<a\b[^>]*>|</a>", "", inner))})
        return f'<h{level} id="{hid}">{inner}</h{level}>'

    return _HEADING.sub(sub, body), toc


# --------------------------------------------------------------------------- assets

class _Assets:
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
    mime = _MIME.get(suffix, "application/octet-stream")
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


def _image_size(path: Path) -> tuple[int, int] | None:
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


# --------------------------------------------------------------------------- render

def _env(folders: tuple[Path, ...]) -> jinja2.Environment:
    return jinja2.Environment(
        loader=theme_loader(folders),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


_narrative_value = as_markup  # what {{ x }} in the narrative prints (wording.as_markup)


def _narrative_env() -> jinja2.Environment:
    # The narrative's own text is the author's Markdown/HTML; only the values it prints are escaped.
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=True,
                             finalize=_narrative_value, keep_trailing_newline=True)
    # `| e` must not hand back Markup that Markdown still reads as a link: same rule as printing.
    env.filters["e"] = env.filters["escape"] = _narrative_value
    return env


def _json_for_script(obj: Any) -> Markup:
    """``obj`` as JSON that is safe inside ``<script type="application/json">``: ``< > &`` as
    ``\\u`` escapes, so no ``</script>`` or ``<!--`` can end or bend the block; JSON.parse
    reads it back unchanged."""
    s = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return Markup(s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


@dataclass
class _Layout:
    """The narrative laid out: the article body with placeholders for the directive blocks,
    their items numbered in order of first appearance, and what the narrative did not show."""

    body: str
    toc: list[dict]
    blocks: list[_Block]
    block_items: list[list[tuple[str, Any, int, bool]]]  # per block: (kind, obj, number, first)
    extra: list[tuple[str, Any, int, bool]]  # the appendix "More figures and tables"
    numbering: _Numbering
    token: str  # in every internal marker of this render (see _token)


def _token() -> str:
    """The token in this render's internal markers (directive blocks, ``ref`` links, the
    article's place in the page). Random, so no narrative, config or manifest text can contain
    it (it did not exist when they were written): text like ``@@REF:x@@`` or ``DRBLOCK00099``
    stays text. Letters and digits only, so Markdown passes the markers through unchanged.
    Every marker is replaced before a byte is written, so the pages do not depend on it."""
    return "dr" + secrets.token_hex(8)


def render_site(page: ReportPage, *, site_src: Path, out: Path, theme: Path | None = None) -> None:
    """Render ``page`` with the narrative in ``site_src`` and the theme into ``out``.

    ``theme``: a folder whose templates and static files replace the default theme's, file by
    file (None: the default theme alone; see dinoreport.theme and docs/themes.md). ``out``
    already holds the panel files (``Panel.file`` is relative to it). Writes ``index.html``,
    ``report.html``, ``assets/style.css``, ``assets/report.js``, ``.nojekyll``.
    """
    site_src, out = Path(site_src), Path(out)
    folders = theme_folders(theme)
    css, js = static_text(folders, "style.css"), static_text(folders, "report.js")
    token = _token()
    layout = _number(page, token, *_narrative(page, site_src, token))
    env = _env(folders)
    sizes: dict[str, tuple[int, int] | None] = {}  # read each picture's header once for both outputs
    # Each page is streamed to a file beside its final name (the self-contained one carries
    # every picture) and both are renamed only when done (serve renders into a live site).
    parts = []
    blobs: set[str] = set()
    try:
        for name, inline in (("index.html", False), ("report.html", True)):
            part = out / f".{name}.part-{os.getpid()}"
            parts.append((part, out / name))
            _write_page(part, page, layout, env, out, inline, sizes, css, js,
                        None if inline else _blob_writer(out, blobs))
        for part, final in parts:
            os.replace(part, final)
    finally:
        for part, _ in parts:
            part.unlink(missing_ok=True)
    _prune_blobs(out, blobs)
    (out / "assets").mkdir(parents=True, exist_ok=True)
    (out / "assets" / "style.css").write_text(css, encoding="utf-8")
    (out / "assets" / "report.js").write_text(js, encoding="utf-8")
    (out / ".nojekyll").write_text("", encoding="utf-8")


def _narrative(page: ReportPage, site_src: Path, token: str) -> tuple[str, list[dict], list[_Block]]:
    """The narrative files through Jinja, directives and Markdown: (body HTML, toc, blocks)."""
    ctx = {"page": page, "models": page.models, "results": page.results,
           "random_init": page.random_init, **_helpers(page, token)}
    nenv = _narrative_env()
    blocks: list[_Block] = []
    parts = [_process_file(p, nenv, ctx, page, blocks, token) for p in narrative_sources(site_src)]
    body = md_lib.markdown("\n\n".join(parts),
                           extensions=["extra", "sane_lists", "smarty"], output_format="html")
    used = set(RESERVED_IDS) | {f.id for f in page.figures} | {t.id for t in page.tables}
    body, toc = _add_heading_ids(body, used, token)
    return body, toc, blocks


def _number(page: ReportPage, token: str, body: str, toc: list[dict], blocks: list[_Block]) -> _Layout:
    """Number figures and tables in order of first appearance; the rest go to an appendix."""
    numbering = _Numbering()
    block_items = []
    for b in blocks:
        items = []
        for obj in b.items:
            num, first = numbering.number(obj)
            items.append(("figure" if isinstance(obj, Figure) else "table", obj, num, first))
        block_items.append(items)
    extra = []
    for obj in list(page.figures) + list(page.tables):
        d = numbering.fig if isinstance(obj, Figure) else numbering.tab
        if obj.id not in d:
            num, _ = numbering.number(obj)
            extra.append(("figure" if isinstance(obj, Figure) else "table", obj, num, True))
    return _Layout(body, toc, blocks, block_items, extra, numbering, token)


#: pictures of a page loaded at once (the first figures, on the first screen); the rest are
#: fetched as the reader nears them (``loading="lazy"``)
EAGER_IMAGES = 12


class _ImgAttrs:
    """The template helper ``img_attrs(rel)``: src, width/height, ``class="px"`` for maps,
    and ``loading``: eager for the page's first :data:`EAGER_IMAGES` pictures, lazy after.

    In report.html (``assets.inline``) a picture is encoded once: its first ``<img>`` carries
    the data: URI and ``data-pic="k"``, every later one only ``data-same="k"``, which
    report.js points at the first one's picture (a photo is shown in several figures).
    ``first_use[rel]`` is that ``k``; the explorer's photos name it too (its data comes after
    the article)."""

    def __init__(self, assets: _Assets, sizes: dict[str, tuple[int, int] | None]) -> None:
        self.assets, self.sizes = assets, sizes
        self.shown = 0
        self.first_use: dict[str, int] = {}

    def __call__(self, rel: str) -> Markup:
        assets, sizes = self.assets, self.sizes
        if rel not in sizes:
            sizes[rel] = _image_size(assets.path(rel))
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


def _render_item(env: jinja2.Environment, common: dict, kind: str, obj: Any, num: int, first: bool) -> str:
    """A figure or table in full where first shown, else a pointer to it."""
    if not first:
        label = "Figure" if kind == "figure" else "Table"
        return f'<p class="see-also">(See <a href="#{html.escape(obj.id)}">{label} {num}</a>.)</p>'
    t = env.get_template("figure.html.j2" if kind == "figure" else "table.html.j2")
    return t.render(obj=obj, num=num, **common)


def _block_html(page: ReportPage, layout: _Layout, env: jinja2.Environment,
                common: dict) -> Callable[[int], Iterator[str]]:
    """``block(i)``: the HTML of directive block i in pieces, each rendered when asked for (a
    block of one figure per image grows with the images; a page holds one figure at a time).
    The first explorer block holds the explorer, later ones point to it."""
    first_explorer = next((i for i, b in enumerate(layout.blocks) if b.kind == "explorer"), None)

    def block(i: int) -> Iterator[str]:
        b, items = layout.blocks[i], layout.block_items[i]
        if b.kind == "explorer":
            if i != first_explorer and page.explorer:
                yield ('<p class="see-also">(See the '
                       '<a href="#similarity-explorer">explorer</a> above.)</p>')
            else:
                yield env.get_template("explorer.html.j2").render(explorer=page.explorer, note=b.note, **common)
        elif not items:
            yield f'<p class="no-figure"><em>{html.escape(b.note)}</em></p>'
        else:
            yield from _items_html(env, common, items)

    return block


def _items_html(env: jinja2.Environment, common: dict, items: list[tuple[str, Any, int, bool]]) -> Iterator[str]:
    """Figures and tables one at a time, separated by newlines."""
    for k, it in enumerate(items):
        yield ("\n" if k else "") + _render_item(env, common, *it)


def _ref_html(numbering: _Numbering, m: re.Match) -> str:
    """``ref(id)``: a link 'Figure N' / 'Table N' (``ref`` checked the id)."""
    oid = m.group(1)
    if oid in numbering.fig:
        return f'<a class="xref" href="#{html.escape(oid)}">Figure&nbsp;{numbering.fig[oid]}</a>'
    return f'<a class="xref" href="#{html.escape(oid)}">Table&nbsp;{numbering.tab[oid]}</a>'


def _unlinked(link: str) -> str:
    """A ref link's text alone: the table of contents links each heading already."""
    return re.sub(r"<a\b[^>]*>|</a>", "", link)


def _refs_html(page: ReportPage, numbering: _Numbering, m: re.Match) -> str:
    """``refs(kind)``: a link to every figure (or table) of a kind: 'Figures 2–4'."""
    kind = m.group(1).replace("-", "_")
    objs = [f for f in page.figures if f.kind == kind] if kind in figure_kinds() else []
    word, d = "Figure", numbering.fig
    if not objs:
        objs = [t for t in page.tables if t.kind == kind]
        word, d = "Table", numbering.tab
    if not objs:
        return f"(no {html.escape(kind.replace('_', ' '))} {word.lower()}s)"
    nums = sorted(d[o.id] for o in objs)
    first = objs[[d[o.id] for o in objs].index(nums[0])]
    if len(nums) == 1:
        return f'<a class="xref" href="#{html.escape(first.id)}">{word}&nbsp;{nums[0]}</a>'
    contiguous = nums == list(range(nums[0], nums[-1] + 1))
    rng = f"{nums[0]}–{nums[-1]}" if contiguous else ", ".join(map(str, nums))
    return f'<a class="xref" href="#{html.escape(first.id)}">{word}s&nbsp;{rng}</a>'


def _figure_links(page: ReportPage, numbering: _Numbering, cell: str) -> Markup:
    """A table cell naming figures (``kind=K group=G1,G2``, see TableKind.refs) as links to them."""
    _, kw = _parse_args(str(cell))
    groups = [g for g in kw.get("group", "").split(",") if g]
    figs = [f for f in page.figures if f.kind == kw.get("kind") and (not groups or f.group in groups)]
    if not figs:
        return Markup("—")
    return Markup(", ").join(Markup(f'<a class="xref" href="#{html.escape(f.id)}">Figure&nbsp;{numbering.fig[f.id]}</a>')
                             for f in figs)


def _explorer_shown(page: ReportPage, layout: _Layout) -> bool:
    return bool(any(b.kind == "explorer" for b in layout.blocks) and page.explorer)


#: where the multi-file site keeps the explorer's codes, one file per (model, stage, group)
EXPLORER_DIR = "assets/codes"


def explorer_blobs(explorer: dict, single_file: bool = False) -> Iterator[tuple[str, str, str, bytes]]:
    """The explorer's codes as one byte string per (model, stage, group), sorted by key.

    Parameters
    ----------
    explorer : ``page.explorer`` (see the module docstring); ``features[m][st][g][img]["q"]``
        is base64 of an (h, w, d) int8 array.
    single_file : the lighter codes of report.html: each group's codes cut to
        ``single_file[m][st][g]["dims"]`` dimensions and rounded to its ``"bits"`` by
        :func:`~dinoreport.analysis.requantize`, exactly what the explorer analysis measured the
        error of (all dimensions at 8 bits where it has no entry).

    Yields
    ------
    (model, stage, group, blob) : blob is zlib-compressed (``DecompressionStream("deflate")``
        undoes it) int8 codes of the group's images in group order, each laid out (d, h, w):
        one plane per code dimension, which deflate packs about 5% tighter than (h, w, d)
        because each plane's values share one spread.
    """
    groups = {g["id"]: g["images"] for g in explorer.get("groups", [])}
    for mid in sorted(explorer.get("features", {})):
        for st in sorted(explorer["features"][mid]):
            for g in sorted(explorer["features"][mid][st]):
                per = explorer["features"][mid][st][g]
                bits, dims = 8, None
                if single_file:
                    lite = (explorer.get("single_file") or {}).get(mid, {}).get(st, {}).get(g) or {}
                    bits, dims = int(lite.get("bits", 8)), lite.get("dims")
                planes = []
                for img in groups.get(g, sorted(per)):
                    f = per[img]
                    raw = base64.b64decode(f["q"])
                    if len(raw) != f["h"] * f["w"] * f["d"]:
                        raise RenderError(f"explorer codes of {mid}/{st}/{g}/{img}: {len(raw)} bytes, "
                                          f"expected {f['h']}x{f['w']}x{f['d']}; rebuild with --force")
                    d = f["d"]
                    if bits < 8 or (dims is not None and dims < d):
                        raw = requantize(np.frombuffer(raw, np.int8).reshape(-1, d), bits, dims).tobytes()
                        d = min(d, dims) if dims is not None else d
                    # (h*w, d) -> (d, h*w): plane j is every d-th byte from j
                    planes.append(b"".join(raw[j::d] for j in range(d)) if d > 1 else raw)
                yield mid, st, g, zlib.compress(b"".join(planes), 9)


def _explorer_payload(page: ReportPage, layout: _Layout, assets: _Assets,
                      blob_url: Callable[[str, str, str, bytes], str] | None,
                      shown: dict[str, int] | None = None) -> Markup | None:
    """The explorer's data for the page, photos as URLs of this output; None when not shown.

    The codes leave the JSON: ``features[m][st][g]`` becomes ``{"d": code length, "hw": [h, w
    of each image of the group, in group order, flat]}`` and ``blobs[m][st][g]`` says where
    the group's codes are (:func:`explorer_blobs`): ``url`` of
    a file that report.js fetches when the explorer is first used (``blob_url`` writes it; the
    multi-file site), or ``b64`` inline (report.html, ``blob_url`` None); ``bytes`` is the
    compressed size, ``raw`` the decompressed one. In report.html a photo that the page
    already carries (``shown[rel]`` is its ``data-pic`` number) is named by ``"pic": k``
    instead of a second copy; the multi-file site gives every photo's URL.
    """
    if not _explorer_shown(page, layout):
        return None
    ex = json.loads(json.dumps(page.explorer))
    for im in ex.get("images", []):
        if im.get("photo") and assets.inline and im["photo"] in (shown or {}):
            im["pic"] = str(shown[im.pop("photo")])
        elif im.get("photo"):
            im["photo"] = assets.url(im["photo"])
    groups = {g["id"]: g["images"] for g in ex.get("groups", [])}
    blobs: dict[str, Any] = {}
    lite = ex.pop("single_file", None) if blob_url is None else None
    if lite:
        # the status line of report.html gives the length and error of the codes it carries
        ex["error"] = lite
    ex.pop("single_file", None)
    for mid, st, g, blob in explorer_blobs(page.explorer, single_file=blob_url is None):
        per = ex["features"][mid][st][g]
        raw = sum(f["h"] * f["w"] * f["d"] for f in per.values())
        d = per[next(iter(per))]["d"] if per else 0
        if lite and "dims" in lite.get(mid, {}).get(st, {}).get(g, {}):
            d = min(d, int(lite[mid][st][g]["dims"]))
            raw = sum(f["h"] * f["w"] * d for f in per.values())
        entry: dict[str, Any] = {"bytes": len(blob), "raw": raw}
        if blob_url is None:
            entry["b64"] = base64.b64encode(blob).decode("ascii")
        else:
            entry["url"] = blob_url(mid, st, g, blob)
        blobs.setdefault(mid, {}).setdefault(st, {})[g] = entry
        # index.html keeps this JSON inline: per image only its grid, the length once per group
        order = groups.get(g, sorted(per))
        ex["features"][mid][st][g] = {"d": d if order else 0,
                                      "hw": [v for i in order for v in (per[i]["h"], per[i]["w"])]}
    ex["blobs"] = blobs
    return _json_for_script(ex)


def _blob_writer(out: Path, written: set[str]) -> Callable[[str, str, str, bytes], str]:
    """``blob_url(model, stage, group, blob)``: writes the blob under :data:`EXPLORER_DIR` by
    content hash (stable URLs that caches may keep) and returns its site-relative URL."""
    folder = out / EXPLORER_DIR

    def blob_url(mid: str, st: str, g: str, blob: bytes) -> str:
        name = hashlib.sha256(blob).hexdigest()[:20] + ".bin"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / name
        if not (target.is_file() and target.read_bytes() == blob):
            tmp = folder / f".{name}.part-{os.getpid()}"
            tmp.write_bytes(blob)
            os.replace(tmp, target)
        written.add(name)
        return f"{EXPLORER_DIR}/{name}"

    return blob_url


def _prune_blobs(out: Path, written: set[str]) -> None:
    """Remove codes files of earlier renders into the same folder (``serve``)."""
    folder = out / EXPLORER_DIR
    if folder.is_dir():
        for p in sorted(folder.glob("*.bin")):
            if p.name not in written:
                p.unlink()


def _write_page(path: Path, page: ReportPage, layout: _Layout, env: jinja2.Environment, out: Path, inline: bool,
                sizes: dict[str, tuple[int, int] | None], css: str, js: str,
                blob_url: Callable[[str, str, str, bytes], str] | None = None) -> None:
    """index.html (``inline`` False: files beside it) or report.html (everything inline),
    written piece by piece: the page around the article, then each figure or table of the
    article's blocks and of the appendix as it is rendered, so memory holds one figure, not the
    whole page."""
    assets = _Assets(out, inline)
    img_attrs = _ImgAttrs(assets, sizes)
    common = {"page": page, "img_attrs": img_attrs, "fmt": format_cell,
              "table_columns": _table_columns, "inline": inline,
              "download": (lambda _id: None) if inline else download_link(out),
              "figure_links": lambda cell: _figure_links(page, layout.numbering, cell)}

    tok = layout.token
    ref_re, refs_re = re.compile(rf"@@{tok}REF:([a-z0-9-]+)@@"), re.compile(rf"@@{tok}REFS:([a-z0-9-]+)@@")

    def refs(text: str, link: Callable[[str], str] = str) -> str:
        text = ref_re.sub(lambda m: link(_ref_html(layout.numbering, m)), text)
        return refs_re.sub(lambda m: link(_refs_html(page, layout.numbering, m)), text)

    article, appendix = f"\x00{tok}-article\x00", f"\x00{tok}-appendix\x00"
    # The explorer's data follows the article: made when the tail is written, it names the
    # pictures the article already carries instead of a second copy (report.html).
    explorer_at = f"\x00{tok}-explorer\x00"

    dinov3 = [m for m in page.models
              if m.license and "dinov3" in m.license.lower() and not m.random_init]
    script = "\n" + js.replace("</script", "<\\/script") + "\n"  # exactly what the CSP hash covers
    frame = env.get_template("page.html.j2").render(
        article=Markup(article), appendix=Markup(appendix) if layout.extra else Markup(""), toc=layout.toc,
        csp=_csp_single(script) if inline else CSP_SITE,
        css=Markup(css.replace("</style", "<\\/style")) if inline else None,
        js=Markup(script) if inline else None,
        explorer_json=Markup(explorer_at) if _explorer_shown(page, layout) else None, dinov3=dinov3, dinov3_url=DINOV3_LICENSE_URL,
        share_alike=[c for c in page.credits if c.share_alike],
        has_data=(not inline) and (out / "data" / "results.json").is_file(), **common,
    )
    # A heading's ref() reaches the table of contents in the frame: as text, not a link in a link.
    frame = refs(frame, _unlinked)
    head, rest = frame.split(article, 1)
    middle, tail = rest.split(appendix, 1) if layout.extra else (rest, "")
    block = _block_html(page, layout, env, common)

    def with_explorer(text: str) -> str:
        if explorer_at not in text:
            return text
        return text.replace(explorer_at, _explorer_payload(page, layout, assets, blob_url, img_attrs.first_use))

    with path.open("w", encoding="utf-8") as f:
        f.write(head)
        # The narrative with its directive markers; each marker is replaced by its block.
        for k, piece in enumerate(re.split(rf"<p>{tok}BLOCK(\d{{5}})</p>", layout.body)):
            if k % 2 == 0:
                f.write(refs(piece))
            else:
                for html_piece in block(int(piece)):
                    f.write(refs(html_piece))
        f.write(with_explorer(middle))
        for html_piece in _items_html(env, common, layout.extra):
            f.write(html_piece)
        f.write(with_explorer(tail))
