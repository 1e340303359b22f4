"""The narrative: ``site_src/*.md`` in file-name order, each rendered as a Jinja template, its
directive lines marked (:mod:`dinoreport.directives`), then read as Markdown.

A narrative template's context is ``page``, ``models``, ``results``, ``random_init`` and the
helpers of :func:`helpers`: the renderer's own, the data and wording helpers of
:mod:`dinoreport.wording` (whose numbers and words carry their source into the page) and those
the analyses contribute (``register_analysis(helpers=...)``).
"""
from __future__ import annotations

import difflib
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping

import jinja2
import markdown as md_lib
from markupsafe import Markup

from .analyses import figure_kinds, table_kinds
from .analyses.registry import NarrativeError, contributed_helpers
from .directives import Block, BlockDirective, mark_directives
from .modelmeta import ModelFacts
from .page import Figure, RenderError, ReportPage, Table
from .slugs import heading_ids
from .textfile import NotUTF8, read_utf8
from .wording import as_markup, compare, data_helpers, fact_helpers, join, num, pct

__all__ = ["narrative_sources", "helpers", "narrative_env", "narrative_html"]


def narrative_sources(site_src: Path) -> list[Path]:
    """The narrative's Markdown files, sorted by name."""
    return sorted(Path(site_src).glob("*.md"), key=lambda p: p.name)


def helpers(page: ReportPage, token: str) -> dict[str, Callable[..., Any]]:
    """The narrative's helper functions; ``ref``/``refs`` leave markers carrying ``token``
    (see :func:`dinoreport.numbering.new_token`) that the page replaces once figures are numbered."""
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
            raise NarrativeError(f"ref(): no figure or table with id {obj_id!r}"
                                 + (f" — did you mean {hint[0]!r}?" if hint else ""))
        return Markup(f"@@{token}REF:{obj_id}@@")

    def refs(kind: str) -> Markup:
        """Links to every figure (or table) of a kind: 'Figures 2–4' / 'Figure 2'."""
        if kind not in figure_kinds() and kind not in table_kinds():
            raise NarrativeError(f"refs(): unknown kind {kind!r}")
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
    except (jinja2.TemplateError, NarrativeError, Exception) as e:  # noqa: BLE001
        line = _template_line(sys.exc_info()[2], "<template>")
        where = f"{path.name}, line {line}" if line else path.name
        # A helper's message is written for the author; other errors keep their type as a clue.
        what = str(e) if isinstance(e, NarrativeError) else f"{type(e).__name__}: {e}"
        raise RenderError(f"{where}: {what}") from e


_narrative_value = as_markup  # what {{ x }} in the narrative prints (wording.as_markup)


def narrative_env() -> jinja2.Environment:
    """The Jinja environment of the narrative's templates."""
    # The narrative's own text is the author's Markdown/HTML; only the values it prints are escaped.
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=True,
                             finalize=_narrative_value, keep_trailing_newline=True)
    # `| e` must not hand back Markup that Markdown still reads as a link: same rule as printing.
    env.filters["e"] = env.filters["escape"] = _narrative_value
    return env


def narrative_html(page: ReportPage, site_src: Path, token: str, contributed: Mapping[str, BlockDirective],
                   reserved_ids: frozenset[str]) -> tuple[str, list[dict], list[Block]]:
    """The narrative files through Jinja, directives and Markdown: (body HTML, toc, blocks).

    Headings get ids that are none of ``reserved_ids`` (the page template's and the
    directives') nor a figure's or table's."""
    ctx = {"page": page, "models": page.models, "results": page.results,
           "random_init": page.random_init, **helpers(page, token)}
    nenv = narrative_env()
    blocks: list[Block] = []
    parts = []
    for path in narrative_sources(site_src):
        src = _read_source(path)
        text = _render_jinja(path, src, nenv, ctx)
        parts.append(mark_directives(path.name, src, text, page, blocks, token, contributed))
    body = md_lib.markdown("\n\n".join(parts),
                           extensions=["extra", "sane_lists", "smarty"], output_format="html")
    used = set(reserved_ids) | {f.id for f in page.figures} | {t.id for t in page.tables}
    body, toc = heading_ids(body, used, token)
    return body, toc, blocks
