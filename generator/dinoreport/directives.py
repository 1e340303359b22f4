"""The narrative's block directives: a line ``::: name args`` becomes a block of the page.

The renderer's own directives place figures and tables::

    ::: figures kind=within_pca          every figure of that kind, in page order
    ::: figures kind=across_pca_masked group=dogs   (optional image=/group= filters;
                                                     image=featured: the featured images)
    ::: figure <figure id>
    ::: tables kind=feature_stats
    ::: table <table id>

An analysis may contribute others (``register_analysis(directives=factory)``,
``factory(page) -> {name: BlockDirective}``; the explorer's ``::: explorer`` is one, see
:mod:`dinoreport.analyses.explorer_page`). A :class:`BlockDirective` parses its arguments
into a :class:`Block`, writes the block's HTML into each page (:class:`PageOutput`), and may
embed data after the article (a ``<script type="application/json">`` block of its own id).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from markupsafe import Markup

from .analyses.registry import figure_kinds, get_analysis, list_analyses, table_kinds
from .page import ReportPage, RenderError

if TYPE_CHECKING:
    import jinja2

    from .assets import Assets, ImgAttrs

__all__ = ["Block", "BlockDirective", "PageOutput", "parse_args", "directive",
           "kind_owner", "mark_directives"]

_DIRECTIVE = re.compile(r"^\s*:::\s*(\S+)\s*(.*?)\s*$")


@dataclass
class Block:
    """A directive found in the narrative, to be replaced by HTML once numbers are known.

    kind : the directive's name (figures | figure | tables | table | a contributed one).
    items : the figures and tables it shows, in order (a contributed directive may show none).
    note : shown instead when there is nothing to show.
    """

    kind: str
    items: list[Any]
    note: str = ""


@dataclass
class PageOutput:
    """One page being written (index.html or report.html), as a directive sees it.

    site : the site folder (files a block refers to are written below it).
    inline : True for report.html (everything inline), False for index.html (files beside it).
    assets : site-relative picture path -> URL or data: URI of this page.
    img_attrs : the ``img_attrs(rel)`` template helper; ``first_use[rel]`` is the ``data-pic``
        number of a picture report.html already carries.
    env : the theme's templates.
    common : the context every figure and table template gets (see docs/themes.md).
    """

    site: Path
    inline: bool
    assets: "Assets"
    img_attrs: "ImgAttrs"
    env: "jinja2.Environment"
    common: dict[str, Any]


class BlockDirective:
    """A block directive an analysis contributes; one instance serves one render (both pages).

    Subclasses define :meth:`parse` and :meth:`html`; the others are optional.
    """

    #: HTML ids its blocks and data use; no heading of the narrative takes them
    reserved_ids: frozenset[str] = frozenset()

    def parse(self, pos: list[str], kw: dict[str, str], where: str) -> Block:
        """The block of ``::: name pos... key=value...``; a mistake raises RenderError naming
        ``where`` (the .md file and line)."""
        raise NotImplementedError

    def html(self, block: Block, first: bool, out: PageOutput) -> Iterator[str]:
        """The block's HTML in pieces; ``first``: it is the first block of this directive on the page."""
        raise NotImplementedError

    def data_script(self, blocks: list[Block]) -> str | None:
        """The id of the JSON block this directive embeds after the article, given its blocks
        on the page (empty when the narrative uses none); None: it embeds nothing."""
        return None

    def data(self, blocks: list[Block], out: PageOutput) -> Markup:
        """The JSON of that block (:func:`dinoreport.csp.json_for_script`), made once the
        article is written (so it may name the pictures the page already carries)."""
        raise NotImplementedError

    def finish(self, site: Path) -> None:
        """Both pages are in place in ``site`` (e.g. remove files of earlier renders)."""


def parse_args(text: str) -> tuple[list[str], dict[str, str]]:
    """A directive's arguments: (positional words, {key: value}), quotes stripped."""
    pos, kw = [], {}
    for tok in text.split():
        if "=" in tok:
            k, _, v = tok.partition("=")
            kw[k.strip()] = v.strip().strip("\"'")
        else:
            pos.append(tok.strip("\"'"))
    return pos, kw


def kind_owner(kind: str) -> str | None:
    """The registered analysis that declares figure or table kind ``kind``, or None."""
    for n in list_analyses():
        a = get_analysis(n)
        if any(k.name == kind for k in (*a.figures, *a.tables)):
            return n
    return None


def directive(name: str, args: str, page: ReportPage, where: str,
              contributed: Mapping[str, BlockDirective]) -> Block:
    """The block of directive ``::: name args`` at ``where`` (file and line, for messages)."""
    pos, kw = parse_args(args)
    figs = {f.id: f for f in page.figures}
    tabs = {t.id: t for t in page.tables}
    if name in ("figure", "table"):
        if len(pos) != 1 or kw:
            raise RenderError(f"{where}: '::: {name}' takes exactly one id, got {args!r}")
        pool = figs if name == "figure" else tabs
        if pos[0] not in pool:
            raise RenderError(f"{where}: unknown {name} id {pos[0]!r}")
        return Block(name, [pool[pos[0]]])
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
        return Block(name, items, note)
    if name in contributed:
        return contributed[name].parse(pos, kw, where)
    raise RenderError(f"{where}: unknown directive '::: {name}'")


def _source_line(src_lines: list[str], line_text: str, fallback: int) -> int:
    """The line of the narrative file (before Jinja) that reads ``line_text``, else ``fallback``."""
    stripped = line_text.strip()
    for i, s in enumerate(src_lines, 1):
        if s.strip() == stripped:
            return i
    return fallback


def mark_directives(name: str, src: str, text: str, page: ReportPage, blocks: list[Block], token: str,
                    contributed: Mapping[str, BlockDirective]) -> str:
    """``text`` (file ``name`` after Jinja; ``src`` before) with each directive line outside a
    code fence replaced by the marker ``<token>BLOCK<5 digits>`` of its block, appended to
    ``blocks``."""
    src_lines = src.splitlines()
    out: list[str] = []
    in_fence = False
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        m = None if in_fence else _DIRECTIVE.match(line)
        if m:
            where = f"{name}, line {_source_line(src_lines, line, n)}"
            blocks.append(directive(m.group(1), m.group(2), page, where, contributed))
            out.extend(["", f"{token}BLOCK{len(blocks) - 1:05d}", ""])
        else:
            out.append(line)
    return "\n".join(out)
