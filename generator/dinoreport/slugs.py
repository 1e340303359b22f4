"""HTML ids of the narrative's headings, and the table of contents they make."""
from __future__ import annotations

import html
import re

from markupsafe import Markup

__all__ = ["slug", "unique", "heading_ids"]


def slug(text: str) -> str:
    """An HTML id from a heading's HTML: tags and punctuation dropped, lower case, words
    joined by ``-`` ('section' when nothing is left)."""
    text = re.sub(r"<[^>]+>", "", text)
    text = html.unescape(text).lower()
    text = re.sub(r"[^\w\s-]", "", text, flags=re.ASCII)
    text = re.sub(r"[\s_-]+", "-", text).strip("-")
    return text or "section"


def unique(base: str, used: set[str]) -> str:
    """``base``, else ``base-2``, ``base-3``... whichever is not in ``used``; added to it."""
    cand, n = base, 2
    while cand in used:
        cand = f"{base}-{n}"
        n += 1
    used.add(cand)
    return cand


_HEADING = re.compile(r"<h([1-6])>(.*?)</h\1>", re.S)


def heading_ids(body: str, used: set[str], token: str) -> tuple[str, list[dict]]:
    """``body`` with an id on every heading (none in ``used``), and the table of contents:
    ``[{"level": 2 or 3, "id", "html"}]``. ``token`` is the render's marker token
    (:func:`dinoreport.numbering.new_token`): a ``ref()`` marker in a heading is not in its id."""
    toc: list[dict] = []
    marker = re.compile(rf"@@{token}REFS?:[a-z0-9-]+@@")

    def sub(m: re.Match) -> str:
        level, inner = int(m.group(1)), m.group(2)
        # A ref() in a heading is not in its id: the marker's token changes from render to render.
        hid = unique(slug(marker.sub("", inner)), used)
        if level in (2, 3):
            toc.append({"level": level, "id": hid, "html": Markup(re.sub(r"<a\b[^>]*>|</a>", "", inner))})
        return f'<h{level} id="{hid}">{inner}</h{level}>'

    return _HEADING.sub(sub, body), toc
