"""The analysis registry: each report section is one :class:`Analysis`, declared as data.

Like timm's ``models/_registry.py`` this module imports only data types, never an analysis:
the package ``__init__`` imports the built-in analysis modules, whose decorators file them
here. An analysis declares, besides the function that computes it,

- ``order``: its place in the report;
- ``needs``: what the pipeline must prepare for it (:class:`Needs`: feature maps at extra
  resolutions, reference masks, artifacts of earlier analyses);
- ``provides``: the artifact types it hands to later analyses (e.g. :class:`ForegroundMasks`);
- ``figures`` / ``tables``: the kinds it makes (:class:`FigureKind`, :class:`TableKind`), which
  the narrative's ``::: figures kind=...`` directives and the renderer look up by name; a figure
  or table of a kind it does not declare stops the build naming the analysis;
- ``options``: a frozen dataclass of its settings, each field declared with
  :func:`~dinoreport.options.option` (default, help, bounds). ``report.toml``'s ``[analysis]``
  keys fill it (:func:`resolve_options`); the analysis reads its own as ``ctx.options``, and a
  callable ``needs`` receives them as a second argument: ``needs=lambda cfg, opts: Needs(...)``.
  Its options, not the other analyses', are in its cache key.

The pipeline plans from these declarations; nothing outside an analysis module knows an
analysis by name.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Mapping, Union

import numpy as np

from ..codehash import module_code_sha256
from ..config import ConfigError
from ..options import BUILD_KEYS, OptionSpec, OptionsError, make_options, option_specs
from ..page import Figure, Table
from ..suggest import did_you_mean

if TYPE_CHECKING:  # annotations only: the context imports features, figures and images
    from ..config import ReportConfig
    from ..context import BuildContext

__all__ = [
    "SectionOutput", "Needs", "FigureKind", "TableKind", "Analysis", "ForegroundMasks", "ProbeMasks",
    "register_analysis", "list_analyses", "get_analysis", "figure_kinds", "table_kinds",
    "AnalysisLoadError", "DEFAULT_TIMEOUT_S", "defined_in", "resolve_options", "option_owners",
    "NarrativeError", "contributed_helpers", "contributed_directives", "RENDERER_DIRECTIVES",
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
    explorer : the similarity explorer's data (the format: dinoreport.analyses.explorer_page), or None.
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


@dataclass(frozen=True)
class ProbeMasks:
    """Foreground masks from the linear foreground probe of the last stage (``fg_probe``).

    by_model : ``{model id: {image id: (h, w) bool}}`` at the last stage's grid of each model:
        for an image with a reference mask, from a probe that was not trained on it; for the
        others, from the probe trained on every image with one. Empty for a model when no
        image has a reference mask (nothing to train on).
    """

    key: ClassVar[str] = "probe_masks"
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
    controls : how many seeds of an untrained control of every model to extract (its
        architecture as timm initialises it; ``control_init``: "timm" or "every-block";
        models of one architecture share it) at the build's resolution, but only when the build
        has trained weights (never under ``--random-init``); read with ``ctx.control_fmap``.
    """

    extra_resolutions: tuple[int, ...] = ()
    extra_models: tuple[str, ...] = ()
    reference_masks: bool = False
    artifacts: tuple[type, ...] = ()
    controls: int = 0
    control_init: str = "timm"


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


NeedsSpec = Union[Needs, Callable[["ReportConfig"], Needs], Callable[["ReportConfig", Any], Needs]]


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
    options: type | None = None  # its options dataclass (see the module docstring)
    option_specs: tuple[OptionSpec, ...] = ()
    # factory(page, core helpers) -> {name: narrative helper}: see register_analysis
    helpers: Callable[..., Mapping[str, Callable[..., Any]]] | None = None
    # factory(page) -> {name: BlockDirective}: see register_analysis
    directives: Callable[..., Mapping[str, Any]] | None = None

    def needs(self, cfg: "ReportConfig", options: Any = None) -> Needs:
        """The needs under ``cfg`` (a declaration may depend on config, e.g. resolutions); a
        callable declaration of an analysis with options gets them (default ones when
        ``options`` is None) as its second argument."""
        if not callable(self.needs_spec):
            return self.needs_spec
        if self.options is None:
            return self.needs_spec(cfg)
        return self.needs_spec(cfg, self.options() if options is None else options)

    def undeclared_kinds(self, sec: SectionOutput) -> str | None:
        """What is wrong when ``sec`` holds a figure or table of a kind this analysis does not
        declare (the narrative places figures by kind, so such a figure could never be shown);
        None when every kind is declared."""
        for what, items, declared, cls in (("figure", sec.figures, self.figures, "FigureKind"),
                                           ("table", sec.tables, self.tables, "TableKind")):
            names = {k.name for k in declared}
            for item in items:
                if item.kind not in names:
                    listed = ", ".join(sorted(names)) or "none"
                    return (f"analysis {self.name} ({defined_in(self.run)}) returned {what} {item.id!r} of kind "
                            f"{item.kind!r}, which it does not declare (its {what} kinds: {listed}); add "
                            f"{cls}({item.kind!r}, \"...\") to {what}s= of its register_analysis, or fix the kind")
        return None

    def description(self) -> str:
        """One line: the first sentence of its function's docstring (else its first kind's)."""
        doc = (inspect.getdoc(inspect.unwrap(self.run)) or "").strip()
        para = " ".join(doc.split("\n\n")[0].split()).replace("``", "")
        if para:
            return para.split(". ")[0].rstrip(".") + "."
        kinds = self.figures + self.tables
        return kinds[0].description if kinds else ""

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
                      timeout_s: float | None = None, options: type | None = None,
                      helpers: Callable[..., Mapping[str, Callable[..., Any]]] | None = None,
                      directives: Callable[..., Mapping[str, Any]] | None = None,
                      ) -> Callable[[Callable], Callable]:
    """File ``fn(ctx) -> SectionOutput`` as analysis ``name`` with its declarations.

    ``thread_safe``: the analysis may run while other analyses run in other threads (it reads
    only ``ctx`` and touches no global state: no pyplot, no module-level caches it writes).
    Analyses that do not say so run one at a time among themselves.

    ``timeout_s``: seconds the analysis may run before the build stops with an error naming it
    (default :data:`DEFAULT_TIMEOUT_S`); ``analysis.timeout_s`` in report.toml and
    ``--analysis-timeout`` override it for a whole build.

    ``options``: its options dataclass (see the module docstring); ``ctx.options`` is an
    instance of it. Its keys share report.toml's flat ``[analysis]`` table with every other
    analysis: a key another analysis declares too must be declared identically (that is how
    ``mask_threshold`` serves within_pca, resolution_sweep and claims), else this raises
    :class:`AnalysisLoadError` naming both.

    ``helpers``: ``factory(page, core) -> {name: function}``, narrative helpers the analysis
    contributes (e.g. the claims' ``claim(id)``); ``page`` is the ReportPage being rendered,
    ``core`` the renderer's own helpers (``ref``, ``figures``, ``label``...). A helper raises
    :class:`NarrativeError` for a mistake of the author's.

    ``directives``: ``factory(page) -> {name: BlockDirective}``, block directives the analysis
    contributes (``::: name args`` on a line of the narrative; see :mod:`dinoreport.directives`),
    e.g. the explorer's ``::: explorer``. The factory is called once per render.

    Names are unique across the built-in analyses, plugins and a report's ``analyses/`` folder:
    a second registration of a name raises :class:`AnalysisLoadError` naming both files (one
    from the same function of the same file, a module imported again, replaces the first).
    """
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
                                  or not timeout_s > 0):
        raise AnalysisLoadError(f"analysis {name}: timeout_s must be a number of seconds > 0, got {timeout_s!r}")
    try:
        specs = () if options is None else option_specs(options, name)
    except OptionsError as e:
        raise AnalysisLoadError(str(e)) from None

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
        for spec in specs:
            for other, theirs in option_owners(exclude=name).get(spec.name, ()):
                if not spec.same_as(theirs):
                    raise AnalysisLoadError(
                        f"option {spec.name!r} of analysis {name} ({_where(fn)}) is declared differently "
                        f"by analysis {other} ({_where(_REGISTRY[other].run)}): one [analysis] key has one "
                        "meaning — declare it identically (type, default, help, bounds) or rename it")
        _REGISTRY[name] = Analysis(name, order, fn, needs, tuple(provides), tuple(figures), tuple(tables),
                                   bool(thread_safe), None if timeout_s is None else float(timeout_s),
                                   options, specs, helpers, directives)
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


def option_owners(exclude: str | None = None) -> dict[str, list[tuple[str, OptionSpec]]]:
    """``{[analysis] key: [(analysis, its declaration), ...]}`` over the registered analyses
    (in report order), leaving out analysis ``exclude``."""
    owners: dict[str, list[tuple[str, OptionSpec]]] = {}
    for n in list_analyses():
        if n != exclude:
            for spec in _REGISTRY[n].option_specs:
                owners.setdefault(spec.name, []).append((n, spec))
    return owners


def resolve_options(cfg: "ReportConfig") -> dict[str, Any]:
    """``{analysis name: its options}`` (None for one without) from ``cfg``'s ``[analysis]``
    table, for every registered analysis: load the user's analyses first.

    Raises
    ------
    ConfigError
        Naming the file, the key (``analysis.coseg_k``, ``analysis.sweep[1]``), the analyses
        it belongs to and what it allows; an unknown key with the closest known one.
    """
    owners = option_owners()
    values = cfg.analysis.values
    for key in sorted(values):
        if key not in owners:
            raise ConfigError(f"{cfg.path}: analysis.{key}: unknown key" + did_you_mean(key, set(owners) | BUILD_KEYS)
                              + " (`dinoreport analyses` lists the options of every analysis)")
    out: dict[str, Any] = {}
    for n in list_analyses():
        a = _REGISTRY[n]
        try:
            out[n] = make_options(a.options, a.option_specs, values, cfg)
        except OptionsError as e:
            names = [o for o, _ in owners[e.key.split("[")[0]]]
            whose = f"analysis {names[0]}" if len(names) == 1 else f"analyses {', '.join(names)}"
            raise ConfigError(f"{cfg.path}: analysis.{e.key}: {e} — an option of {whose}") from None
    return out


def contributed_helpers(page: Any, core: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """The narrative helpers every registered analysis contributes, in report order; a name
    that is already taken (by the renderer or another analysis) is an AnalysisLoadError."""
    return _contributions(core, lambda a: a.helpers and a.helpers(page, core),
                          lambda name: f"the narrative helper {name!r}")


def _contributions(reserved: Iterable[str], contribute: Callable[[Analysis], Mapping[str, Any] | None],
                   what: Callable[[str], str]) -> dict[str, Any]:
    """Every registered analysis's contributions (``contribute(analysis)``: name -> value, or
    None), in report order; a name in ``reserved`` (the renderer's) or contributed twice is an
    AnalysisLoadError naming both owners and ``what(name)``."""
    out: dict[str, Any] = {}
    owner = dict.fromkeys(reserved, "the renderer")
    for n in list_analyses():
        a = _REGISTRY[n]
        for name, value in (contribute(a) or {}).items():
            if name in owner:
                raise AnalysisLoadError(f"analysis {n} ({defined_in(a.run)}) contributes {what(name)}, "
                                        f"which {owner[name]} has already; rename it")
            owner[name] = f"analysis {n}"
            out[name] = value
    return out



#: the renderer's own directives (dinoreport.directives.directive): no analysis contributes these names
RENDERER_DIRECTIVES = ("figure", "figures", "table", "tables")


def contributed_directives(page: Any) -> dict[str, Any]:
    """The block directives every registered analysis contributes for rendering ``page``, in
    report order; a name that is already taken (by the renderer or another analysis) is an
    AnalysisLoadError."""
    return _contributions(RENDERER_DIRECTIVES, lambda a: a.directives and a.directives(page),
                          lambda name: f"the directive '::: {name}'")
