"""Figure and table numbers: in the order the narrative first shows them, the rest in an
appendix; and the ``ref``/``refs`` links of the narrative, which become 'Figure N' once
every figure is numbered.

Markers carry the render's random token (:func:`new_token`), so no narrative, config or
manifest text can forge one.
"""
from __future__ import annotations

import html
import re
import secrets
from dataclasses import dataclass
from typing import Any, Callable

from markupsafe import Markup

from .analyses import figure_kinds
from .directives import Block, parse_args
from .page import Figure, ReportPage, Table

__all__ = ["Numbering", "Layout", "new_token", "lay_out", "resolve_refs", "unlinked", "figure_links"]


def new_token() -> str:
    """The token in this render's internal markers (directive blocks, ``ref`` links, the
    article's place in the page). Random, so no narrative, config or manifest text can contain
    it (it did not exist when they were written): text like ``@@REF:x@@`` or ``DRBLOCK00099``
    stays text. Letters and digits only, so Markdown passes the markers through unchanged.
    Every marker is replaced before a byte is written, so the pages do not depend on it."""
    return "dr" + secrets.token_hex(8)


class Numbering:
    """``fig[id]`` / ``tab[id]``: the number of each figure / table, 1, 2... in order of
    :meth:`number` calls."""

    def __init__(self) -> None:
        self.fig: dict[str, int] = {}
        self.tab: dict[str, int] = {}

    def number(self, obj: Figure | Table) -> tuple[int, bool]:
        """(its number, whether this is the first time it is numbered)."""
        d = self.fig if isinstance(obj, Figure) else self.tab
        if obj.id in d:
            return d[obj.id], False
        d[obj.id] = len(d) + 1
        return d[obj.id], True


@dataclass
class Layout:
    """The narrative laid out: the article body with placeholders for the directive blocks,
    their items numbered in order of first appearance, and what the narrative did not show."""

    body: str
    toc: list[dict]
    blocks: list[Block]
    block_items: list[list[tuple[str, Any, int, bool]]]  # per block: (kind, obj, number, first)
    extra: list[tuple[str, Any, int, bool]]  # the appendix "More figures and tables"
    numbering: Numbering
    token: str  # in every internal marker of this render (see new_token)


def lay_out(page: ReportPage, token: str, body: str, toc: list[dict], blocks: list[Block]) -> Layout:
    """Number figures and tables in order of first appearance; the rest go to an appendix."""
    numbering = Numbering()
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
    return Layout(body, toc, blocks, block_items, extra, numbering, token)


def _ref_html(numbering: Numbering, m: re.Match) -> str:
    """``ref(id)``: a link 'Figure N' / 'Table N' (``ref`` checked the id)."""
    oid = m.group(1)
    if oid in numbering.fig:
        return f'<a class="xref" href="#{html.escape(oid)}">Figure&nbsp;{numbering.fig[oid]}</a>'
    return f'<a class="xref" href="#{html.escape(oid)}">Table&nbsp;{numbering.tab[oid]}</a>'


def unlinked(link: str) -> str:
    """A ref link's text alone: the table of contents links each heading already."""
    return re.sub(r"<a\b[^>]*>|</a>", "", link)


def _refs_html(page: ReportPage, numbering: Numbering, m: re.Match) -> str:
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


def resolve_refs(page: ReportPage, layout: Layout) -> Callable[..., str]:
    """``refs(text, link=str)``: ``text`` with every ``ref``/``refs`` marker of this render
    replaced by its link, passed through ``link`` (:func:`unlinked` where a link cannot go)."""
    tok = layout.token
    ref_re, refs_re = re.compile(rf"@@{tok}REF:([a-z0-9-]+)@@"), re.compile(rf"@@{tok}REFS:([a-z0-9-]+)@@")

    def refs(text: str, link: Callable[[str], str] = str) -> str:
        text = ref_re.sub(lambda m: link(_ref_html(layout.numbering, m)), text)
        return refs_re.sub(lambda m: link(_refs_html(page, layout.numbering, m)), text)

    return refs


def figure_links(page: ReportPage, numbering: Numbering, cell: str) -> Markup:
    """A table cell naming figures (``kind=K group=G1,G2``, see TableKind.refs) as links to them."""
    _, kw = parse_args(str(cell))
    groups = [g for g in kw.get("group", "").split(",") if g]
    figs = [f for f in page.figures if f.kind == kw.get("kind") and (not groups or f.group in groups)]
    if not figs:
        return Markup("—")
    return Markup(", ").join(Markup(f'<a class="xref" href="#{html.escape(f.id)}">Figure&nbsp;{numbering.fig[f.id]}</a>')
                             for f in figs)
