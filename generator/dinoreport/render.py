"""Render a :class:`~dinoreport.page.ReportPage` into a static site.

``render_site`` writes ``index.html`` (multi-file, for GitHub Pages), ``report.html`` (the same
page, self-contained: inline CSS/JS, every image as a data: URI), ``assets/style.css``,
``assets/report.js`` and ``.nojekyll``. Output depends only on the inputs (no dates, no clocks).

The steps, one module each: the narrative through Jinja and Markdown
(:mod:`dinoreport.narrative`), its directives (:mod:`dinoreport.directives`; analyses contribute
their own, e.g. the explorer's), heading ids (:mod:`dinoreport.slugs`), figure and table numbers
(:mod:`dinoreport.numbering`), each page streamed from the theme's templates
(:mod:`dinoreport.pagestream`) with its pictures (:mod:`dinoreport.assets`), table cells
(:mod:`dinoreport.cells`) and policy (:mod:`dinoreport.csp`). The theme's contract is
docs/themes.md.
"""
from __future__ import annotations

import os
from pathlib import Path

from .analyses.registry import contributed_directives
from .narrative import narrative_html
from .numbering import lay_out, new_token
from .page import ReportPage
from .pagestream import page_output, theme_env, write_page
from .theme import static_text, theme_folders

__all__ = ["render_site", "RESERVED_IDS"]

#: ids the page template uses itself; headings never take these (nor a directive's own ids)
RESERVED_IDS = frozenset({
    "top", "contents", "article", "more-figures", "about-models", "skipped-images",
    "image-credits", "notices", "lightbox", "lightbox-img", "lightbox-layer", "lightbox-caption",
    "lightbox-close", "colophon",
})


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
    token = new_token()
    contributed = contributed_directives(page)
    reserved = RESERVED_IDS.union(*(d.reserved_ids for d in contributed.values()))
    layout = lay_out(page, token, *narrative_html(page, site_src, token, contributed, reserved))
    env = theme_env(folders)
    sizes: dict[str, tuple[int, int] | None] = {}  # read each picture's header once for both outputs
    # Each page is streamed to a file beside its final name (the self-contained one carries
    # every picture) and both are renamed only when done (serve renders into a live site).
    parts = []
    try:
        for name, inline in (("index.html", False), ("report.html", True)):
            part = out / f".{name}.part-{os.getpid()}"
            parts.append((part, out / name))
            write_page(part, page, layout, page_output(out, inline, env, page, layout, sizes), css, js,
                       contributed)
        for part, final in parts:
            os.replace(part, final)
    finally:
        for part, _ in parts:
            part.unlink(missing_ok=True)
    for d in contributed.values():
        d.finish(out)
    (out / "assets").mkdir(parents=True, exist_ok=True)
    (out / "assets" / "style.css").write_text(css, encoding="utf-8")
    (out / "assets" / "report.js").write_text(js, encoding="utf-8")
    (out / ".nojekyll").write_text("", encoding="utf-8")
