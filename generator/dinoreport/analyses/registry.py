"""The analysis registry: each report section is one :class:`Analysis`, declared as data.

Like timm's ``models/_registry.py`` this module imports only data types, never an analysis:
the package ``__init__`` imports the built-in analysis modules, whose decorators file them
here. An analysis declares, besides the function that computes it,

- ``order``: its place in the report;
- ``needs``: what the pipeline must prepare for it (:class:`Needs`: feature maps at extra
  resolutions, reference masks, artifacts of earlier analyses);
- ``provides``: the artifact types it hands to later analyses (e.g. :class:`ForegroundMasks`);
- ``figures`` / ``tables``: the kinds it makes (:class:`FigureKind`, :class:`TableKind`), which
  the narrative's ``::: figures kind=...`` directives and the renderer look up by name.

The pipeline plans from these declarations; nothing outside an analysis module knows an
analysis by name.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Union

import numpy as np

from ..codehash import module_code_sha256
from ..page import Figure, Table

if TYPE_CHECKING:  # annotations only: the context imports features, figures and images
    from ..config import ReportConfig
    from ..context import BuildContext

__all__ = [
    "SectionOutput", "Needs", "FigureKind", "TableKind", "Analysis", "ForegroundMasks",
    "register_analysis", "list_analyses", "get_analysis", "figure_kinds", "table_kinds",
    "AnalysisLoadError", "DEFAULT_TIMEOUT_S", "defined_in", "NarrativeError", "contributed_helpers",
]

# Seconds an analysis may take before the build stops it (see generator/dinoreport/runner.py): far above
# what any built-in takes on the default set (under a minute on a 2-core CPU), yet a hung
# analysis ends the build within the hour.
DEFAULT_TIMEOUT_S = 1800.0


class AnalysisLoadError(RuntimeError):
    """A user analysis that cannot be imported or registered; the message names the file or
    entry point."""


class NarrativeError(ValueError):
    """A narrative helper used wrongly; the message is written for the author, and the renderer
    adds the .md file and line."""


@dataclass
class SectionOutput:
    """What one analysis returns.

    results : ``{results.json key: [row dicts]}``.
    figures, tables : in page order.
    explorer : the similarity explorer's data (see ``render.py`` for the format), or None.
    shared : ``{artifact key: value}`` for each type in the analysis' ``provides``; the pipeline
        wraps each value in its artifact type for later analyses (kept as plain values so the
        section cache can store them).
    """

    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    explorer: dict[str, Any] | None = None
    shared: dict[str, Any] = field(default_factory=dict)


# --- artifacts handed from one analysis to later ones ------------------------------------

@dataclass(frozen=True)
class ForegroundMasks:
    """Foreground masks from the first within-image component of the last stage.

    by_model : ``{model id: {image id: (h, w) bool}}`` at the last stage's grid of each model.
    """

    key: ClassVar[str] = "masks"
    by_model: Mapping[str, Mapping[str, np.ndarray]]


# --- declarations -------------------------------------------------------------------------

@dataclass(frozen=True)
class Needs:
    """What the pipeline prepares before an analysis runs.

    extra_resolutions : short sides (px) besides the build's own at which the featured images'
        features are extracted; read with ``ctx.fmap(..., resolution=r)``.
    extra_models : model ids extracted at those resolutions; empty means every model.
    reference_masks : load the manifest's reference masks into ``ctx.reference_masks``.
    artifacts : artifact types (e.g. :class:`ForegroundMasks`) that earlier analyses provide;
        read with ``ctx.artifact(T)``.
    controls : extract an untrained control of every model (its architecture as timm
        initialises it, ``analysis.control_seeds`` seeds, ``analysis.control_init`` recipe;
        models of one architecture share it) at the build's resolution, but only when the build
        has trained weights (never under ``--random-init``); read with ``ctx.control_fmap``.
    """

    extra_resolutions: tuple[int, ...] = ()
    extra_models: tuple[str, ...] = ()
    reference_masks: bool = False
    artifacts: tuple[type, ...] = ()
    controls: bool = False


@dataclass(frozen=True)
class FigureKind:
    """A kind of figure; ``description`` is shown when a narrative asks for one that is absent."""

    name: str
    description: str


@dataclass(frozen=True)
class TableKind:
    """A kind of table; ``percent`` names the columns holding ratios, shown as percentages;
    ``refs`` names the columns whose cells name figures as a ``figures`` directive's arguments
    (``kind=K``, optionally ``group=G1,G2``), shown as links to those figures' numbers."""

    name: str
    description: str
    percent: tuple[str, ...] = ()
    refs: tuple[str, ...] = ()


NeedsSpec = Union[Needs, Callable[["ReportConfig"], Needs]]


@dataclass(frozen=True)
class Analysis:
    """One registered analysis; see the module docstring."""

    name: str
    order: int
    run: Callable[["BuildContext"], SectionOutput]
    needs_spec: NeedsSpec = Needs()
    provides: tuple[type, ...] = ()
    figures: tuple[FigureKind, ...] = ()
    tables: tuple[TableKind, ...] = ()
    thread_safe: bool = False
    timeout_s: float | None = None  # None: DEFAULT_TIMEOUT_S (the build's settings override both)
    # factory(page, core helpers) -> {name: narrative helper}: see register_analysis
    helpers: Callable[..., Mapping[str, Callable[..., Any]]] | None = None

    def needs(self, cfg: "ReportConfig") -> Needs:
        """The needs under ``cfg`` (a declaration may depend on config, e.g. resolutions)."""
        return self.needs_spec(cfg) if callable(self.needs_spec) else self.needs_spec

    @property
    def source_sha256(self) -> str:
        """sha256 of the code ``run`` can use (:func:`dinoreport.codehash.module_code_sha256`):
        part of the analysis' cache key, so that editing an analysis, or any module beside it
        that it may import, or any module of this package, computes it again."""
        return module_code_sha256(inspect.getmodule(self.run))


_REGISTRY: dict[str, Analysis] = {}


def defined_in(fn: Callable) -> str:
    """The source file of ``fn`` (a decorated function's own), or ``"?"`` when it has none."""
    fn = inspect.unwrap(fn)
    code = getattr(fn, "__code__", None)
    if code is not None:
        return code.co_filename
    try:
        return inspect.getsourcefile(fn) or "?"
    except TypeError:  # a callable object, a builtin
        return "?"


def _where(fn: Callable) -> str:
    fn = inspect.unwrap(fn)
    code = getattr(fn, "__code__", None)
    return f"{defined_in(fn)}, line {code.co_firstlineno}" if code is not None else defined_in(fn)


def register_analysis(name: str, order: int, *, needs: NeedsSpec = Needs(),
                      provides: tuple[type, ...] = (), figures: tuple[FigureKind, ...] = (),
                      tables: tuple[TableKind, ...] = (), thread_safe: bool = False,
                      timeout_s: float | None = None,
                      helpers: Callable[..., Mapping[str, Callable[..., Any]]] | None = None
                      ) -> Callable[[Callable], Callable]:
    """File ``fn(ctx) -> SectionOutput`` as analysis ``name`` with its declarations.

    ``thread_safe``: the analysis may run while other analyses run in other threads (it reads
    only ``ctx`` and touches no global state: no pyplot, no module-level caches it writes).
    Analyses that do not say so run one at a time among themselves.

    ``timeout_s``: seconds the analysis may run before the build stops with an error naming it
    (default :data:`DEFAULT_TIMEOUT_S`); ``analysis.timeout_s`` in report.toml and
    ``--analysis-timeout`` override it for a whole build.

    ``helpers``: ``factory(page, core) -> {name: function}``, narrative helpers the analysis
    contributes (e.g. the claims' ``claim(id)``); ``page`` is the ReportPage being rendered,
    ``core`` the renderer's own helpers (``ref``, ``figures``, ``label``...). A helper raises
    :class:`NarrativeError` for a mistake of the author's.

    Names are unique across the built-in analyses, plugins and a report's ``analyses/`` folder:
    a second registration of a name raises :class:`AnalysisLoadError` naming both files (one
    from the same function of the same file, a module imported again, replaces the first).
    """
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
                                  or not timeout_s > 0):
        raise AnalysisLoadError(f"analysis {name}: timeout_s must be a number of seconds > 0, got {timeout_s!r}")

    def wrap(fn: Callable) -> Callable:
        old = _REGISTRY.get(name)
        if old is not None and (defined_in(old.run), getattr(old.run, "__qualname__", None)) != (
                defined_in(fn), getattr(fn, "__qualname__", None)):
            # Replacing it would drop what the first declares (e.g. within_pca's ForegroundMasks)
            # and fail later with a message about that instead.
            raise AnalysisLoadError(
                f"analysis name {name!r} is registered twice: by {_where(old.run)} and by {_where(fn)}; "
                "names are unique across the built-in analyses, plugins and the report's analyses/ "
                "folder (`dinoreport analyses` lists them) — rename one of them")
        _REGISTRY[name] = Analysis(name, order, fn, needs, tuple(provides), tuple(figures), tuple(tables),
                                   bool(thread_safe), None if timeout_s is None else float(timeout_s),
                                   helpers)
        return fn

    return wrap


def list_analyses() -> list[str]:
    """Registered analyses in report order (then by name)."""
    return [a.name for a in sorted(_REGISTRY.values(), key=lambda a: (a.order, a.name))]


def get_analysis(name: str) -> Analysis:
    if name not in _REGISTRY:
        raise KeyError(f"unknown analysis {name!r}; known: {', '.join(list_analyses())}")
    return _REGISTRY[name]


def figure_kinds() -> dict[str, FigureKind]:
    """Every figure kind any registered analysis declares, by name."""
    return {k.name: k for n in list_analyses() for k in _REGISTRY[n].figures}


def table_kinds() -> dict[str, TableKind]:
    """Every table kind any registered analysis declares, by name."""
    return {k.name: k for n in list_analyses() for k in _REGISTRY[n].tables}


def contributed_helpers(page: Any, core: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """The narrative helpers every registered analysis contributes, in report order; a name
    that is already taken (by the renderer or another analysis) is an AnalysisLoadError."""
    out: dict[str, Callable[..., Any]] = {}
    owner = dict.fromkeys(core, "the renderer")
    for n in list_analyses():
        a = _REGISTRY[n]
        if a.helpers is None:
            continue
        for name, fn in a.helpers(page, core).items():
            if name in owner:
                raise AnalysisLoadError(f"analysis {n} ({defined_in(a.run)}) contributes the narrative "
                                        f"helper {name!r}, which {owner[name]} has already; rename it")
            owner[name] = f"analysis {n}"
            out[name] = fn
    return out

