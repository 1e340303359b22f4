"""A claim with its verdict as HTML for the narrative (the ``claim(id)`` helper of render.py).

The row comes from ``results["claims"]`` (:mod:`dinoreport.analyses.claims`); everything in it is
escaped here. The figure link is the renderer's ``refs(kind)`` marker (``figure_ref``), which becomes
'Figures N–M' once figures are numbered.
"""
from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping
from typing import Any

from markupsafe import Markup

__all__ = ["VERDICTS", "claim_anchor", "claim_html", "verdict_class"]

VERDICTS = ("supported", "not supported", "cannot tell")


def verdict_class(verdict: str) -> str:
    """CSS class of a verdict: ``verdict-supported``, ``verdict-not-supported``, ``verdict-cannot-tell``."""
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}; expected one of {VERDICTS}")
    return "verdict-" + verdict.replace(" ", "-")


def claim_anchor(claim_id: str) -> str:
    """The HTML id of a claim's box: ``pc1_subject`` -> ``claim-pc1-subject``."""
    return "claim-" + html.escape(claim_id).replace("_", "-")


def _num(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x:.3g}".replace("-", "−")


def claim_html(row: Mapping[str, Any], label: Callable[[str], str], figure_ref: str) -> Markup:
    """One claim as a single-line ``<div>`` block (Markdown passes it through untouched).

    Parameters
    ----------
    row : a ``results["claims"]`` row
    label : model id -> model label
    figure_ref : HTML of the link to the figures the claim rests on (already safe)
    """
    e = html.escape
    values = "; ".join(f"{e(label(m))} {_num(float(v))}" for m, v in row["values"].items()) or "no values"
    return Markup(
        f'<div class="claim {verdict_class(row["verdict"])}" id="{claim_anchor(row["id"])}">'
        f'<p class="claim-statement"><span class="verdict">{e(row["verdict"])}</span> '
        f'<span class="claim-id">Claim <code>{e(row["id"])}</code>:</span> {e(row["statement"])}</p>'
        f'<p class="claim-detail"><span class="claim-values"><code>{e(row["metric"])}</code>, mean per model: '
        f'{values}.</span> <span class="claim-rule">Rule: {e(row["rule"])}</span> '
        f'<span class="claim-reason">Why this verdict: {e(row["reason"])}.</span> '
        f'<span class="claim-figure">See {figure_ref}.</span></p></div>')
