"""How a table cell is written: numbers to 3 significant digits, ratios as percentages.

One number format serves tables, labels and text (:func:`dinoreport.wording.format_num`); a
table kind declares which of its columns hold ratios (``TableKind.percent``) and which name
figures (``TableKind.refs``).
"""
from __future__ import annotations

import math
from typing import Any

from .analyses import table_kinds
from .page import Table
from .wording import format_num

__all__ = ["percent_text", "table_columns", "format_cell"]


def percent_text(x: float | None, digits: int = 3) -> str:
    """A ratio as a percentage with ``digits`` significant digits: 0.4321 -> '43.2%'."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return format_num(100.0 * float(x), digits) + "%"


def table_columns(table: Table) -> list[dict]:
    """Per column: name, whether it is shown as a percentage (the table kind's declared
    ``percent`` columns), whether it is numeric, whether its cells name figures (``refs``)."""
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
            return percent_text(value), True
        return format_num(value), True
    if value is None:
        return "—", False
    return str(value), False
