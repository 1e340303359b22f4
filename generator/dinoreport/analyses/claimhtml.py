"""The claims on the page: each claim's box and the narrative helpers that place it.

The claims analysis (:mod:`dinoreport.analyses.claims`) contributes these helpers to the
narrative through the registry (``register_analysis(..., helpers=narrative_helpers)``), so the
renderer knows no claim by name. A row comes from ``results["claims"]``; everything in it is
escaped here. Figure links are the renderer's own ``ref(id)`` markers, which become
'Figure N' once figures are numbered.
"""
from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from .registry import NarrativeError

if TYPE_CHECKING:
    from ..page import ReportPage

__all__ = ["VERDICTS", "claim_anchor", "claim_html", "verdict_class", "number", "narrative_helpers"]

VERDICTS = ("supported", "not supported", "cannot tell")


def verdict_class(verdict: str) -> str:
    """CSS class of a verdict: ``verdict-supported``, ``verdict-not-supported``, ``verdict-cannot-tell``."""
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}; expected one of {VERDICTS}")
    return "verdict-" + verdict.replace(" ", "-")


def claim_anchor(claim_id: str) -> str:
    """The HTML id of a claim's box: ``pc1_subject`` -> ``claim-pc1-subject``."""
    return "claim-" + html.escape(claim_id).replace("_", "-")


def number(x: float) -> str:
    """A claim number to 3 significant digits with a true minus sign (U+2212), as the claims
    table and the rules write it too; an em dash when it is not finite."""
    x = float(x)
    return "—" if not math.isfinite(x) else f"{x:.3g}".replace("-", "−")


def _metric_html(metric: str, d: Mapping[str, Any], label: Callable[[str], str], gloss: str) -> str:
    e = html.escape
    per = []
    for mid, v in d.get("values", {}).items():
        ctrl = [f"{e(name.replace('_', ' '))} {number(c[mid])}" for name, c in d.get("controls", {}).items()
                if mid in c]
        per.append(f"{e(label(mid))} {number(float(v))}" + (f" ({', '.join(ctrl)})" if ctrl else ""))
    return (f'<span class="claim-values"><code>{e(metric)}</code>'
            + (f" ({e(gloss)})" if gloss else "")
            + f", mean per model{' (controls in brackets)' if any('(' in p for p in per) else ''}: "
            + ("; ".join(per) or "no values") + ".</span>")


def claim_html(row: Mapping[str, Any], label: Callable[[str], str], figure_ref: str,
               gloss: Mapping[str, str] | None = None) -> Markup:
    """One claim as a single-line ``<div>`` block (Markdown passes it through untouched).

    Parameters
    ----------
    row : a ``results["claims"]`` row (``metrics`` optional: without it, ``metric`` and ``values``)
    label : model id -> model label
    figure_ref : HTML of the links to the figures the claim rests on (already safe)
    gloss : {metric: a short explanation}, shown after each metric's name
    """
    e = html.escape
    gloss = gloss or {}
    metrics = row.get("metrics") or {row["metric"]: {"values": row["values"], "controls": {}}}
    values = " ".join(_metric_html(m, d, label, gloss.get(m, "")) for m, d in metrics.items())
    return Markup(
        f'<div class="claim {verdict_class(row["verdict"])}" id="{claim_anchor(row["id"])}">'
        f'<p class="claim-statement"><span class="verdict">{e(row["verdict"])}</span> '
        f'<span class="claim-id">Claim <code>{e(row["id"])}</code>:</span> {e(row["statement"])}</p>'
        f'<p class="claim-detail">{values} <span class="claim-rule">Rule: {e(row["rule"])}</span> '
        f'<span class="claim-reason">Why this verdict: {e(row["reason"])}.</span> '
        f'<span class="claim-figure">See {figure_ref}.</span></p></div>')


def narrative_helpers(page: "ReportPage", core: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """``claim_row``, ``claim``, ``claim_ref``, ``verdict`` and ``tie`` for the narrative.

    ``core`` holds the renderer's own helpers (``ref``, ``figures``, ``label``).
    """
    from ..analysis.claims import CLAIMS, METRIC_GLOSS

    known = {c.id for c in CLAIMS}
    by_id = {m.id: m for m in page.models}

    def claim_row(claim_id: str) -> dict | None:
        """The ``results["claims"]`` row of a catalogue claim; None when claims were not run."""
        if claim_id not in known:
            raise NarrativeError(f"claim(): unknown claim {claim_id!r}; known: "
                                 f"{', '.join(c.id for c in CLAIMS)}")
        return next((r for r in page.results.get("claims", []) if r["id"] == claim_id), None)

    def figure_links(row: Mapping[str, Any]) -> Markup:
        """Links to the figures of the row's kind (of its groups, when it names groups)."""
        groups = row.get("groups") or []
        figs = [f for f in core["figures"](row["figure"]) if not groups or f.group in groups]
        if not figs:
            return Markup(f"(no {html.escape(row['figure'].replace('_', ' '))} figures)")
        return Markup(", ").join(core["ref"](f.id) for f in figs)

    def claim(claim_id: str) -> Markup:
        """The claim as a block: statement, verdict, per-model numbers and controls, rule,
        reason, figure links."""
        row = claim_row(claim_id)
        if row is None:
            return Markup(f'<p class="no-figure"><em>Claim {html.escape(claim_id)} was not evaluated '
                          "in this build (the claims analysis did not run).</em></p>")
        order = [m.id for m in page.models] + sorted(set(row["values"]) - set(by_id))
        row = {**row, "values": {m: row["values"][m] for m in order if m in row["values"]}}
        return claim_html(row, core["label"], figure_links(row), METRIC_GLOSS)

    def claim_ref(claim_id: str) -> Markup:
        """'<claim id>: <verdict>', linked to the claim's box when the claim was evaluated."""
        row = claim_row(claim_id)
        cid = html.escape(claim_id)
        if row is None:
            return Markup(f"<code>{cid}</code>: <em>not evaluated</em>")
        return Markup(f'<a class="xref" href="#{claim_anchor(claim_id)}"><code>{cid}</code></a>: '
                      f'<em>{html.escape(row["verdict"])}</em>')

    def verdict(claim_id: str) -> str:
        """The verdict of a claim ("not evaluated" when claims were not run)."""
        row = claim_row(claim_id)
        return row["verdict"] if row else "not evaluated"

    def tie(a: float, b: float) -> bool:
        """Whether two numbers are a tie under the claims' rule (within REL_TOL relative)."""
        from ..analysis.claims import REL_TOL

        return abs(a - b) <= REL_TOL * max(abs(a), abs(b))

    return {"claim_row": claim_row, "claim": claim, "claim_ref": claim_ref, "verdict": verdict, "tie": tie}
