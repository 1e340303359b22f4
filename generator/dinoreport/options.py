"""Options of an analysis: a frozen dataclass beside its code, filled from ``[analysis]``.

Like MkDocs' ``BasePlugin[Config]``, an analysis declares its settings itself::

    @dataclass(frozen=True)
    class Options:
        k: int = option(4, "parts per group", min=2, max=9)
        groups: tuple[str, ...] = option(("dogs",), "groups it is measured on", check=known_groups)

    @register_analysis("parts", order=45, options=Options)
    def parts(ctx):
        ctx.options.k  # the value of report.toml's [analysis] k, else 4

``report.toml``'s ``[analysis]`` table stays flat: its keys are the options of every registered
analysis (built-in, plugins, the report's ``analyses/`` folder), read by :func:`resolve_options`
once they are loaded. One key may belong to several analyses (``mask_threshold`` does) when each
declares it identically (type, default, help, bounds); the registry refuses two different
declarations of one key. ``timeout_s`` is the build's, not an analysis's (see
:func:`dinoreport.runner.deadline`), and no analysis may declare it.

Supported types: ``bool``, ``int``, ``float`` (an int is accepted), ``str``, and tuples of
``int``, ``float`` or ``str`` (a TOML list). ``min``/``max`` bound a number or each item of a
tuple, ``choices`` lists allowed values (of each item), ``check(value, cfg)`` returns what is
wrong with a value given in report.toml against the rest of the config (see :func:`option`), or
None; defaults are not checked against the config.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Callable, Mapping

__all__ = ["option", "OptionSpec", "OptionsError", "option_specs", "make_options", "BUILD_KEYS"]

#: ``[analysis]`` keys of the build itself, not of any analysis.
BUILD_KEYS = frozenset({"timeout_s"})

_SCALARS = (bool, int, float, str)


class OptionsError(ValueError):
    """An options class that cannot be used (raised at registration), or a value that does not
    fit an option (``key`` is the dotted key below ``analysis``, e.g. ``sweep[1]``)."""

    def __init__(self, message: str, key: str = ""):
        super().__init__(message)
        self.key = key


def option(default: Any, help: str, *, min: float | None = None, max: float | None = None,
           choices: tuple | None = None, check: Callable[[Any, Any], Any] | None = None) -> Any:
    """A field of an options dataclass: its default, one line of help and what it allows.

    ``check(value, cfg)`` is called for a value given in report.toml, with the
    :class:`~dinoreport.config.ReportConfig`, for checks against the rest of the config (a group
    or model id that must exist); it returns None when the value is fine, else what is wrong
    (text), or ``(i, text)`` for item ``i`` of a tuple.
    """
    return dataclasses.field(default=default, metadata={
        "help": help, "min": min, "max": max, "choices": None if choices is None else tuple(choices),
        "check": check})


@dataclass(frozen=True)
class OptionSpec:
    """One option as declared: name, type (``int``, ``tuple[str, ...]``...), default and limits."""

    name: str
    type: Any
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    check: Callable | None = None

    @property
    def item_type(self) -> type:
        """The type of the value, or of each item of a tuple."""
        return typing.get_args(self.type)[0] if typing.get_origin(self.type) is tuple else self.type

    @property
    def is_tuple(self) -> bool:
        return typing.get_origin(self.type) is tuple

    def type_name(self) -> str:
        t = self.item_type.__name__
        return f"list of {t}" if self.is_tuple else t

    def allowed(self) -> str:
        """What it allows, in words: ``an int from 2 to 9``, ``one of 'a', 'b'``..."""
        t = {"int": "an int", "float": "a number", "str": "a string", "bool": "true or false"}[
            self.item_type.__name__]
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.min is not None and self.max is not None:
            return f"{t} from {self.min:g} to {self.max:g}"
        if self.min is not None:
            return f"{t} >= {self.min:g}"
        if self.max is not None:
            return f"{t} <= {self.max:g}"
        return t

    def limits(self) -> str:
        """Its type and limits for a listing: ``int from 2 to 9``, ``list of int, each from 14 to 2048``."""
        words = self.allowed()
        for art in ("an int", "a number", "a string", "true or false"):
            words = words.removeprefix(art).strip()
        if not words:
            return self.type_name()
        return f"{self.type_name()}, each {words}" if self.is_tuple else f"{self.type_name()} {words}"

    def same_as(self, other: "OptionSpec") -> bool:
        """Whether two analyses declare this key identically (so they may share it)."""
        return dataclasses.astuple(self) == dataclasses.astuple(other)

    def convert(self, value: Any, cfg: Any = None) -> Any:
        """``value`` from TOML as this option's type; raises :class:`OptionsError` naming the key
        (``name`` or ``name[i]``) and what is allowed."""
        if self.is_tuple:
            if not isinstance(value, (list, tuple)):
                raise OptionsError(f"must be a list, each item {self.allowed()}, got {value!r}", self.name)
            out = tuple(self._item(v, f"{self.name}[{i}]") for i, v in enumerate(value))
        else:
            out = self._item(value, self.name)
        where = self.name
        if cfg is not None and self.check is not None:
            problem = self.check(out, cfg)
            if isinstance(problem, tuple):  # (index of the item, what is wrong with it)
                raise OptionsError(problem[1], f"{self.name}[{problem[0]}]")
            if problem:
                raise OptionsError(problem, where)
        return out

    def _item(self, v: Any, key: str) -> Any:
        t = self.item_type
        # bool is an int in Python; a flag given as 1 (or a count as true) is a mistake worth naming.
        ok = (isinstance(v, bool) if t is bool else
              not isinstance(v, bool) and (isinstance(v, (int, float)) if t is float else isinstance(v, t)))
        if ok and self.choices is not None:
            ok = v in self.choices
        if ok and self.min is not None:
            ok = v >= self.min
        if ok and self.max is not None:
            ok = v <= self.max
        if not ok:
            raise OptionsError(f"must be {self.allowed()} ({self.help}), got {v!r}", key)
        return float(v) if t is float else v


def option_specs(cls: type, owner: str) -> tuple[OptionSpec, ...]:
    """The options of dataclass ``cls`` in declaration order; raises :class:`OptionsError`
    (naming ``owner``, the analysis) for a class that is not a frozen dataclass whose every
    field has a default within its limits and help text, of a supported type."""
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)) or not cls.__dataclass_params__.frozen:
        raise OptionsError(f"analysis {owner}: options must be a frozen dataclass "
                           "(@dataclass(frozen=True) class Options: ...), got {cls!r}")
    try:
        hints = typing.get_type_hints(cls)
    except Exception as e:  # noqa: BLE001 - an annotation naming what the module did not import
        raise OptionsError(f"analysis {owner}: options {cls.__qualname__}: cannot read the field types ({e})") from e
    specs = []
    for f in dataclasses.fields(cls):
        where = f"analysis {owner}: option {f.name}"
        if f.default is dataclasses.MISSING:
            raise OptionsError(f"{where}: needs a default (option(default, help, ...))")
        if not f.metadata.get("help"):
            raise OptionsError(f"{where}: needs help text (declare it with option(default, help, ...))")
        if f.name in BUILD_KEYS:
            raise OptionsError(f"{where}: {f.name} is the build's own [analysis] key; name the option otherwise")
        typ = hints[f.name]
        item = typing.get_args(typ) if typing.get_origin(typ) is tuple else (typ,)
        if typing.get_origin(typ) is tuple and (len(item) != 2 or item[1] is not Ellipsis):
            raise OptionsError(f"{where}: a tuple option is tuple[T, ...], got {typ}")
        if item[0] not in _SCALARS or (typing.get_origin(typ) is tuple and item[0] is bool):
            raise OptionsError(f"{where}: type {typ} is not one of bool, int, float, str, "
                               "tuple[int | float | str, ...]")
        m = f.metadata
        spec = OptionSpec(f.name, typ, f.default, m["help"], m.get("min"), m.get("max"), m.get("choices"),
                          m.get("check"))
        try:
            spec.convert(f.default)
        except OptionsError as e:
            raise OptionsError(f"{where}: its default {f.default!r} {e}") from None
        specs.append(spec)
    return tuple(specs)


def make_options(cls: type | None, specs: tuple[OptionSpec, ...], values: Mapping[str, Any],
                 cfg: Any = None) -> Any:
    """An instance of ``cls`` from ``values`` (keys of report.toml; the absent ones default),
    each converted and checked (:meth:`OptionSpec.convert`); None when ``cls`` is None."""
    if cls is None:
        return None
    return cls(**{s.name: s.convert(values[s.name], cfg) for s in specs if s.name in values})
