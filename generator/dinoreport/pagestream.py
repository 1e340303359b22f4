"""Writing one page (index.html or report.html) from the theme's templates, piece by piece.

The page template renders around placeholders for the article and the appendix; then each
figure or table of the article's blocks and of the appendix is rendered and written as it
comes, so memory holds one figure, not the whole page (a block of one figure per image grows
with the images). What each template receives is listed in docs/themes.md.
"""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import jinja2
from markupsafe import Markup

from .assets import Assets, ImgAttrs
from .cells import format_cell, table_columns
from .csp import CSP_SITE, csp_single
from .directives import BlockDirective, PageOutput
from .downloads import download_link
from .numbering import Layout, figure_links, resolve_refs, unlinked
from .page import ReportPage
from .theme import theme_loader

__all__ = ["DINOV3_LICENSE_URL", "theme_env", "page_output", "write_page"]

DINOV3_LICENSE_URL = "https://ai.meta.com/resources/models-and-libraries/dinov3-license/"


def theme_env(folders: tuple[Path, ...]) -> jinja2.Environment:
    """The Jinja environment of the theme's templates (first folder holding a file wins)."""
    return jinja2.Environment(
        loader=theme_loader(folders),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _render_item(env: jinja2.Environment, common: dict, kind: str, obj: Any, num: int, first: bool) -> str:
    """A figure or table in full where first shown, else a pointer to it."""
    if not first:
        label = "Figure" if kind == "figure" else "Table"
        return f'<p class="see-also">(See <a href="#{html.escape(obj.id)}">{label} {num}</a>.)</p>'
    t = env.get_template("figure.html.j2" if kind == "figure" else "table.html.j2")
    return t.render(obj=obj, num=num, **common)


def _items_html(env: jinja2.Environment, common: dict, items: list[tuple[str, Any, int, bool]]) -> Iterator[str]:
    """Figures and tables one at a time, separated by newlines."""
    for k, it in enumerate(items):
        yield ("\n" if k else "") + _render_item(env, common, *it)


def _block_html(layout: Layout, out: PageOutput,
                contributed: Mapping[str, BlockDirective]) -> Callable[[int], Iterator[str]]:
    """``block(i)``: the HTML of directive block i in pieces, each rendered when asked for.
    A contributed directive writes its own blocks, told whether each is its first."""
    first_of: dict[str, int] = {}
    for i, b in enumerate(layout.blocks):
        first_of.setdefault(b.kind, i)

    def block(i: int) -> Iterator[str]:
        b, items = layout.blocks[i], layout.block_items[i]
        if b.kind in contributed:
            yield from contributed[b.kind].html(b, i == first_of[b.kind], out)
        elif not items:
            yield f'<p class="no-figure"><em>{html.escape(b.note)}</em></p>'
        else:
            yield from _items_html(out.env, out.common, items)

    return block


def write_page(path: Path, page: ReportPage, layout: Layout, out: PageOutput, css: str, js: str,
               contributed: Mapping[str, BlockDirective]) -> None:
    """index.html (``out.inline`` False: files beside it) or report.html (everything inline)
    into ``path``: the page around the article, then each figure or table of the article's
    blocks and of the appendix as it is rendered, then the directives' data."""
    env, common, inline = out.env, out.common, out.inline
    refs = resolve_refs(page, layout)
    tok = layout.token
    article, appendix = f"\x00{tok}-article\x00", f"\x00{tok}-appendix\x00"
    # A directive's data follows the article: made when the tail is written, it may name the
    # pictures the article already carries instead of a second copy (report.html).
    data_at: dict[str, str] = {}
    scripts = []
    for name, d in contributed.items():
        sid = d.data_script([b for b in layout.blocks if b.kind == name])
        if sid is not None:
            data_at[name] = f"\x00{tok}-data-{name}\x00"
            scripts.append({"id": sid, "json": Markup(data_at[name])})

    dinov3 = [m for m in page.models
              if m.license and "dinov3" in m.license.lower() and not m.random_init]
    script = "\n" + js.replace("</script", "<\\/script") + "\n"  # exactly what the CSP hash covers
    frame = env.get_template("page.html.j2").render(
        article=Markup(article), appendix=Markup(appendix) if layout.extra else Markup(""), toc=layout.toc,
        csp=csp_single(script) if inline else CSP_SITE,
        css=Markup(css.replace("</style", "<\\/style")) if inline else None,
        js=Markup(script) if inline else None,
        data_scripts=scripts, dinov3=dinov3, dinov3_url=DINOV3_LICENSE_URL,
        share_alike=[c for c in page.credits if c.share_alike],
        has_data=(not inline) and page.data_files, **common,
    )
    # A heading's ref() reaches the table of contents in the frame: as text, not a link in a link.
    frame = refs(frame, unlinked)
    head, rest = frame.split(article, 1)
    middle, tail = rest.split(appendix, 1) if layout.extra else (rest, "")
    block = _block_html(layout, out, contributed)

    def with_data(text: str) -> str:
        for name, marker in data_at.items():
            if marker in text:
                text = text.replace(marker, contributed[name].data(
                    [b for b in layout.blocks if b.kind == name], out))
        return text

    with path.open("w", encoding="utf-8") as f:
        f.write(head)
        # The narrative with its directive markers; each marker is replaced by its block.
        for k, piece in enumerate(re.split(rf"<p>{tok}BLOCK(\d{{5}})</p>", layout.body)):
            if k % 2 == 0:
                f.write(refs(piece))
            else:
                for html_piece in block(int(piece)):
                    f.write(refs(html_piece))
        f.write(with_data(middle))
        for html_piece in _items_html(env, common, layout.extra):
            f.write(html_piece)
        f.write(with_data(tail))


def page_output(site: Path, inline: bool, env: jinja2.Environment, page: ReportPage, layout: Layout,
                sizes: dict[str, tuple[int, int] | None]) -> PageOutput:
    """The page being written and the context every figure and table template gets."""
    assets = Assets(site, inline)
    img_attrs = ImgAttrs(assets, sizes)
    common = {"page": page, "img_attrs": img_attrs, "fmt": format_cell,
              "table_columns": table_columns, "inline": inline,
              "download": (lambda _id: None) if inline else download_link(site),
              "figure_links": lambda cell: figure_links(page, layout.numbering, cell)}
    return PageOutput(site, inline, assets, img_attrs, env, common)
