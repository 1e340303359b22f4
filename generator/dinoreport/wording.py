"""Numbers and comparison words for the narrative, each bound to the data it states.

The narrative's data helpers (:func:`data_helpers`: ``rows``, ``values``, ``mean``, ``max``,
``min``, ``best``, ``count``) hand back numbers that remember where they came from
(:class:`Sourced`, :class:`SourcedInt`): a row and field of ``results.json``, or an aggregate
over matching rows, or a model fact recorded in ``build.json``. The wording helpers
(:func:`num`, :func:`pct`, :func:`compare`) print such a number, or the word comparing two,
inside a ``<span class="bound" data-bound="...">`` whose JSON says how to recompute it::

    {"src": SOURCE, "as": "num" | "pct" | "int"}             a number as printed
    {"compare": [SOURCE, SOURCE], "tol": 0.01,
     "words": [greater, tie, less]}                           a word comparing two numbers

    SOURCE = {"key": k, "row": i, "field": f, "index": j}     results[k][i][f] (element j)
           | {"key": k, "field": f, "index": j, "how": "mean" | "max" | "min",
              "where": {field: value or [values]}}            over results[k]'s matching rows
           | {"key": k, "how": "count", "fields": [f, ...], "where": {...}}
                                                              distinct (f, ...) among them
           | {"facts": "channels", "model": id, "stage": s}   build.json models[].channels
           | {"facts": "models"}                              len(build.json models)
           | {"const": x}                                     a number the text fixes itself

so a reader (or a test) can check every stated number and comparison against the data files.
A number with no source prints as plain text. Arithmetic on a sourced number gives a plain
float: a derived number the text states needs its own field in the results.
"""
from __future__ import annotations

import html
import json
import math
from typing import Any, Callable, Iterable, Mapping

import markupsafe
from markupsafe import Markup

__all__ = ["Sourced", "SourcedInt", "source_of", "format_num", "num", "pct", "compare", "join",
           "as_markup", "data_helpers", "fact_helpers", "match_row", "MAX_DIGITS"]

#: the most significant digits :func:`num` and :func:`pct` use to tell two values apart
MAX_DIGITS = 6


class Sourced(float):
    """A float that remembers how it was read from the data (``src``, see the module doc)."""

    src: dict

    def __new__(cls, value: float, src: dict) -> "Sourced":
        self = super().__new__(cls, value)
        self.src = src
        return self


class SourcedInt(int):
    """An int that remembers how it was read from the data (``src``, see the module doc)."""

    src: dict

    def __new__(cls, value: int, src: dict) -> "SourcedInt":
        self = super().__new__(cls, value)
        self.src = src
        return self


def source_of(x: Any) -> dict | None:
    """The source record of a sourced number; None for anything else."""
    return getattr(x, "src", None) if isinstance(x, (Sourced, SourcedInt)) else None


def _sourced(value: Any, src: dict) -> Any:
    """``value`` carrying ``src`` when it is a number (bools and None stay as they are)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return SourcedInt(value, src)
    if isinstance(value, float):
        return Sourced(value, src)
    return value


# --------------------------------------------------------------------------- formatting

def format_num(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` significant digits, thousands separated, a true minus sign;
    exponent notation outside [1e-3, 1e6). None -> 'n/a', NaN -> '—'."""
    if x is None:
        return "n/a"
    x = float(x)
    if math.isnan(x):
        return "—"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x == 0:
        return "0"
    ax = abs(x)
    if 1e-3 <= ax < 1e6:
        exp = math.floor(math.log10(ax))
        decimals = max(digits - 1 - exp, 0)
        s = f"{round(x, digits - 1 - exp):,.{decimals}f}"
        if s.lstrip("-").replace(",", "").replace(".", "").strip("0") == "":
            s = f"{x:.{digits}g}"
    else:
        mant, _, e = f"{x:.{digits - 1}e}".partition("e")
        s = f"{mant}e{int(e)}"
    return s.replace("-", "−")


def _digits_apart(x: float, against: Iterable[Any], digits: int, scale: float) -> int:
    """The fewest significant digits, at least ``digits``, at which ``x`` reads differently
    from every value of ``against`` that differs from it (at most :data:`MAX_DIGITS`)."""
    others = [float(y) * scale for y in against
              if y is not None and not (isinstance(y, float) and math.isnan(y)) and float(y) != float(x)]
    d = digits
    while d < MAX_DIGITS and any(format_num(float(x) * scale, d) == format_num(y, d) for y in others):
        d += 1
    return d


def _bound(text: str, record: dict) -> Markup:
    attr = html.escape(json.dumps(record, sort_keys=True, separators=(",", ":")), quote=True)
    # Markdown reads [..] as a link even inside an attribute; entities keep it out.
    attr = attr.replace("[", "&#91;").replace("]", "&#93;")
    return Markup(f'<span class="bound" data-bound="{attr}">{markupsafe.escape(text)}</span>')


def num(x: float | None, digits: int = 3, against: Iterable[Any] = ()) -> Markup | str:
    """A number for the text: an int in full (``451,584``), a float to ``digits`` significant
    digits, more where needed so it reads differently from each value of ``against`` it
    differs from. A sourced number is wrapped in its ``data-bound`` span."""
    if x is None:
        return "n/a"
    if isinstance(x, int) and not isinstance(x, bool):
        text, kind = f"{x:,}".replace("-", "−"), "int"
    else:
        text, kind = format_num(x, _digits_apart(x, against, digits, 1.0)), "num"
    src = source_of(x)
    return _bound(text, {"src": src, "as": kind}) if src else text


def pct(x: float | None, digits: int = 3, against: Iterable[Any] = ()) -> Markup | str:
    """A ratio as a percentage (0.4321 -> '43.2%'), with :func:`num`'s digits rule."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    text = format_num(100.0 * float(x), _digits_apart(x, against, digits, 100.0)) + "%"
    src = source_of(x)
    return _bound(text, {"src": src, "as": "pct"}) if src else text


def compare(a: float, b: float, tol: float | None = None,
            words: tuple[str, str, str] = ("above", "at", "below")) -> Markup:
    """The word saying how ``a`` stands to ``b``: ``words[0]`` when a is greater, ``words[2]``
    when smaller, ``words[1]`` when they are within ``tol`` relative of the larger magnitude
    (default: the claims' tie tolerance, ``REL_TOL``). Always a ``data-bound`` span; a plain
    number enters as ``{"const": x}``."""
    if tol is None:
        from .analysis.claims import REL_TOL

        tol = REL_TOL
    if a is None or b is None:
        raise ValueError("compare() needs two numbers, got None")
    fa, fb = float(a), float(b)
    if abs(fa - fb) <= tol * max(abs(fa), abs(fb)):
        word = words[1]
    else:
        word = words[0] if fa > fb else words[2]
    srcs = [source_of(v) or {"const": float(v)} for v in (a, b)]
    return _bound(word, {"compare": srcs, "tol": tol, "words": list(words)})


def as_markup(value: Any) -> Markup:
    """What the narrative prints: Markup as it is, anything else escaped for HTML and with
    ``[ ]`` as entities, so that text from the config or manifest can be neither HTML nor a
    Markdown link once Markdown runs."""
    if isinstance(value, Markup):
        return value
    return Markup(str(markupsafe.escape(value)).replace("[", "&#91;").replace("]", "&#93;"))


def join(items: Iterable[Any], last: str = "and") -> Markup:
    """'a', 'a and b', 'a, b, and c'; bound numbers inside the items keep their spans."""
    items = [as_markup(i) for i in items]
    if len(items) <= 1:
        return Markup("").join(items)
    if len(items) == 2:
        return items[0] + Markup(f" {markupsafe.escape(last)} ") + items[1]
    return Markup(", ").join(items[:-1]) + Markup(f", {markupsafe.escape(last)} ") + items[-1]


# --------------------------------------------------------------------------- data helpers

def match_row(row: Mapping, where: Mapping) -> bool:
    """Whether ``row`` has every field of ``where`` (a list, tuple or set means 'one of')."""
    for k, v in where.items():
        rv = row.get(k)
        if isinstance(v, (list, tuple, set, frozenset)):
            if rv not in v:
                return False
        elif rv != v:
            return False
    return True


def _plain_where(where: Mapping) -> dict:
    """``where`` as JSON: sets and tuples as sorted lists (a filter's order does not matter)."""
    out = {}
    for k, v in sorted(where.items()):
        if isinstance(v, (list, tuple, set, frozenset)):
            v = sorted(v, key=repr)
        out[k] = v
    return out


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


def _wrap_row(key: str, i: int, row: Mapping) -> dict:
    """A copy of results[key][i] whose numbers (also inside lists and dicts) are sourced."""
    out = {}
    for f, v in row.items():
        base = {"key": key, "row": i, "field": f}
        if isinstance(v, list):
            out[f] = [_sourced(x, {**base, "index": j}) for j, x in enumerate(v)]
        elif isinstance(v, dict):
            out[f] = {j: _sourced(x, {**base, "index": j}) for j, x in v.items()}
        else:
            out[f] = _sourced(v, base)
    return out


def _field(row: Mapping, field: str, index: int | str | None) -> Any:
    v = row.get(field)
    if index is None or v is None:
        return v
    if isinstance(v, dict):
        return v.get(index)
    return v[index] if isinstance(index, int) and -len(v) <= index < len(v) else None


def data_helpers(results: Mapping[str, list]) -> dict[str, Callable[..., Any]]:
    """The narrative's readers of ``results`` (the content of results.json); every number they
    return is sourced, so :func:`num`, :func:`pct` and :func:`compare` can bind it."""

    def _rows(key: str, where: Mapping) -> list[tuple[int, Mapping]]:
        return [(i, r) for i, r in enumerate(results.get(key, [])) if match_row(r, where)]

    def rows(key: str, **where: Any) -> list[dict]:
        """Rows of results[key] matching every filter (a list value means 'one of')."""
        return [_wrap_row(key, i, r) for i, r in _rows(key, where)]

    def values(key: str, field: str, index: int | str | None = None, **where: Any) -> list[float]:
        """Every number results[key][..][field] (element ``index``) of the matching rows."""
        out = []
        for i, r in _rows(key, where):
            v = _field(r, field, index)
            if _number(v):
                src = {"key": key, "row": i, "field": field, **({"index": index} if index is not None else {})}
                out.append(Sourced(float(v), src))
        return out

    def _agg(how: str, fn: Callable[[list[float]], float]):
        def agg(key: str, field: str, index: int | str | None = None, **where: Any) -> Sourced | None:
            v = values(key, field, index, **where)
            if not v:
                return None
            return Sourced(fn([float(x) for x in v]), {"key": key, "field": field, "index": index,
                                                       "how": how, "where": _plain_where(where)})
        agg.__doc__ = f"The {how} of results[key][field] (element ``index``) over matching rows; None if none."
        return agg

    def best(key: str, field: str, **where: Any) -> dict | None:
        """The matching row with the largest number in ``field`` (None when no row matches)."""
        rs = [(i, r) for i, r in _rows(key, where) if _number(r.get(field))]
        if not rs:
            return None
        i, r = max(rs, key=lambda ir: ir[1][field])
        return _wrap_row(key, i, r)

    def count(key: str, *fields: str, **where: Any) -> SourcedInt:
        """How many matching rows, or distinct tuples of ``fields`` among them."""
        rs = [r for _, r in _rows(key, where)]
        n = len({tuple(json.dumps(r.get(f), sort_keys=True) for f in fields) for r in rs}) if fields else len(rs)
        return SourcedInt(n, {"key": key, "how": "count", "fields": list(fields), "where": _plain_where(where)})

    return {"rows": rows, "values": values, "mean": _agg("mean", lambda v: sum(v) / len(v)),
            "max": _agg("max", max), "min": _agg("min", min), "best": best, "count": count}


def fact_helpers(models: Iterable[Any]) -> dict[str, Callable[..., Any]]:
    """Model facts for the text, sourced to build.json: ``channels(model_id, stage=None)``
    (one stage's width, or the list of every stage's) and ``model_count()``."""
    models = list(models)
    by_id = {m.id: m for m in models}

    def channels(model_id: str, stage: str | None = None) -> Any:
        m = by_id.get(model_id)
        if m is None:
            return None if stage is not None else []
        widths = [SourcedInt(s.channels, {"facts": "channels", "model": m.id, "stage": s.name})
                  for s in m.stages]
        if stage is None:
            return widths
        return next((w for w, s in zip(widths, m.stages) if s.name == str(stage)), None)

    def model_count() -> SourcedInt:
        return SourcedInt(len(models), {"facts": "models"})

    return {"channels": channels, "model_count": model_count}
