"""The one place that wires the phases: resolve -> decode -> extract -> analyse -> render -> write out.

Like MkDocs, everything is gathered first and written last: the site is built in a temporary
folder beside the output and swapped in only when complete, so a failed or interrupted build
leaves the previous site intact.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .config import ConfigError, ReportConfig
from .analyses import Analysis, SectionOutput, get_analysis, list_analyses, load_user_analyses, resolve_options
from .analysis._threads import one_blas_thread
from .context import BuildContext
from .features import DamagedEntry, FeatureCache, check_device, extract_all, give_back_freed_memory, model_identity
from .modelmeta import BackboneError, CropRule, ModelFacts, ModelMeta, library_versions, model_meta
from .figures import FigureWriter, downscale_warnings, page_size_warning
from .images import (ImageEntry, ImageError, ImageSet, ImageStore, available, cache_dir, fetch, file_problem,
                     load_image, load_manifest, load_mask, scan_folder)
from .page import Credit, Figure, ReportPage, Table
from .progress import Progress
from .runner import AnalysisError, AnalysisRunner, deadline
from . import outdir
from .cachedir import sweep_parts
from .section_cache import SectionCache, section_key
from .weights import resolve_all
from .fingerprint import inputs_fingerprint
from .theme import theme_folders
from .suggest import closest

__all__ = ["BuildOptions", "BuildSummary", "build", "load_image_set", "BuildError", "PROJECT_ROOT",
           "choose_analyses"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the checkout: generator/dinoreport/pipeline.py


NOT_FETCHED = "not fetched yet: run `dinoreport images fetch` (needs internet)"


class BuildError(RuntimeError):
    """A build that cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class BuildOptions:
    out: Path
    random_init: bool = False
    device: str = "auto"
    dtype: str = "fp32"
    quiet: bool = False
    keep_going: bool = False
    fetch: bool = False  # download URL images that are not cached yet (after the weights check)
    site_src: Path | None = None  # default: the config file's folder
    theme: Path | None = None  # --theme: overrides report.toml's `theme`; default: the default theme (templates/)
    analyses: tuple[str, ...] | None = None  # default: report.toml's `analyses`, else all registered
    skip: tuple[str, ...] = ()  # analyses left out (--skip); what another needs is refused, named
    jobs: int = 0  # analyses at once; 0: one per core (at most 4), see analysis_jobs
    force: bool = False  # rebuild even when nothing changed since the site was built
    no_cache: bool = False  # compute every feature and analysis again; the new entries replace the old
    discard_edits: bool = False  # replace files of the old site that the user edited
    analysis_timeout_s: float | None = None  # --analysis-timeout: every analysis's (0: none); None: see runner.deadline


@dataclass
class BuildSummary:
    out: Path
    seconds: dict[str, float] = field(default_factory=dict)
    analysis_seconds: dict[str, float] = field(default_factory=dict)  # computed analyses only, wall
    peak_rss_mib: dict[str, float] = field(default_factory=dict)  # the process's peak at each phase's end
    up_to_date: bool = False  # nothing changed since the site was built: nothing was written
    inputs_sha256: str = ""  # dinoreport.fingerprint of this build's inputs (in build.json)
    computed: int = 0
    reused: int = 0
    damaged: int = 0
    figures: int = 0
    sections_computed: int = 0
    sections_reused: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    not_finite: list[str] = field(default_factory=list)  # "analysis: key path" written as null
    page: ReportPage | None = None  # what was rendered (serve re-renders it when prose changes)

    @property
    def index(self) -> Path:
        """The multi-file report, ``<out>/index.html``."""
        return self.out / "index.html"

    @property
    def report(self) -> Path:
        """The self-contained report, ``<out>/report.html``."""
        return self.out / "report.html"

    @property
    def results_path(self) -> Path:
        """``<out>/data/results.json``: every number the report shows."""
        return self.out / "data" / "results.json"

    @property
    def results(self) -> dict[str, Any]:
        """``data/results.json`` loaded (read on each access: the site is the record)."""
        return json.loads(self.results_path.read_text(encoding="utf-8"))

    def line(self) -> str:
        if self.up_to_date:
            return (f"{self.out} is up to date: nothing it was built from has changed, so nothing was "
                    "written (--force rebuilds it anyway).")
        total = sum(self.seconds.values())
        s = (f"Built {self.out} in {total:.1f} s: features computed for {self.computed} model×image pairs, "
             f"reused {self.reused} from the cache")
        if self.damaged:
            s += f" ({self.damaged} damaged cache entries recomputed)"
        s += (f"; analyses computed {self.sections_computed}, reused {self.sections_reused}; "
              f"{self.figures} picture files")
        if self.skipped:
            s += f"; {len(self.skipped)} images skipped"
        s += "."
        if self.not_finite:
            shown = "; ".join(self.not_finite[:8]) + (f"; and {len(self.not_finite) - 8} more"
                                                       if len(self.not_finite) > 8 else "")
            s += (f"\n{len(self.not_finite)} results were not finite numbers (NaN or infinite) and are "
                  f"null in data/results.json: {shown}")
        return s


def load_image_set(cfg: ReportConfig) -> ImageSet:
    if cfg.images.dir is not None:
        if not cfg.images.dir.is_dir():
            raise ConfigError(f"{cfg.path}: images.dir: folder not found: {cfg.images.dir}")
        iset = scan_folder(cfg.images.dir)
    else:
        iset = load_manifest(cfg.images.manifest)
    if len(iset.entries) > cfg.images.max_images:
        raise ConfigError(f"{iset.source}: {len(iset.entries)} images, more than images.max_images = "
                          f"{cfg.images.max_images} of {cfg.path} (time, results and the page grow with every image); "
                          "build from fewer images, or raise images.max_images if you mean to build that many")
    return iset


def _groups(cfg: ReportConfig, iset: ImageSet) -> dict[str, tuple[str, ...]]:
    """Config groups if given (each id checked), else the image set's own groups."""
    known = {e.id for e in iset.entries}
    if not cfg.groups:
        return dict(iset.groups)
    for g, ids in cfg.groups.items():
        for n, i in enumerate(ids):
            if i not in known:
                hint = closest(i, sorted(known))
                raise ConfigError(f"{cfg.path}: groups.{g}[{n}]: no image '{i}' in {iset.source}"
                                  + (f" — did you mean '{hint[0]}'?" if hint else ""))
    return {g: tuple(sorted(ids)) for g, ids in cfg.groups.items()}


def _inputs(cfg: ReportConfig) -> list[Path]:
    """Folders a build reads from: an output folder must not be or contain any of them."""
    inputs = [cfg.root]
    if cfg.images.dir:
        inputs.append(cfg.images.dir)
    if cfg.images.manifest:
        inputs.append(cfg.images.manifest.parent)
    return inputs


def _json_dump(obj: Any, path: Path) -> None:
    """Strict JSON (``NaN`` and ``Infinity`` are not JSON: see :func:`finite_json`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n",
                    encoding="utf-8")


def finite_json(obj: Any, where: str = "", found: list[str] | None = None) -> Any:
    """``obj`` with every float that is NaN or infinite replaced by None (JSON ``null``); the
    path of each (``key[3].field``) is appended to ``found``."""
    if isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):
            if found is not None:
                found.append(where)
            return None
        return obj
    if isinstance(obj, dict):
        return {k: finite_json(v, f"{where}.{k}" if where else str(k), found) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v, f"{where}[{i}]", found) for i, v in enumerate(obj)]
    return obj


def _model_loader(spec, weights, seed: int):
    """A factory that builds the model at most once, and only when called (it imports torch)."""
    made = []

    def get():
        if not made:
            from .backbones import create_backbone

            made.append(create_backbone(spec, weights, seed=seed))
        return made[0]

    return get


# --------------------------------------------------------------------------- phase artifacts

@dataclass(frozen=True)
class Plan:
    """What ``resolve`` settles before any work: the analyses in report order, their joint
    needs, the image set and groups, and the weights of each model (absent under random-init)."""

    analyses: tuple[Analysis, ...]
    extra: dict[int, tuple[str, ...]]  # short side -> model ids to extract there (featured images)
    reference_masks: bool
    iset: ImageSet
    groups: dict[str, tuple[str, ...]]
    weights: dict[str, Any]
    metas: dict[str, ModelMeta]  # model id -> timm facts with the stages the config asks for
    crop: CropRule  # image sides are multiples of crop.multiple (the lcm over the models)
    options: dict[str, Any] = field(default_factory=dict)  # analysis name -> its options (ctx.options)
    fetch_failed: dict[str, str] = field(default_factory=dict)  # image id -> why --fetch could not get it
    notes: tuple[str, ...] = ()  # analyses added because a chosen one needs them (choose_analyses)
    # Untrained controls to extract: seeds per architecture and init recipe (0 when no analysis
    # asks for them, or the weights are random: a random-init build judges nothing).
    control_seeds: int = 0
    control_init: str = "timm"


@dataclass(frozen=True)
class Decoded:
    """Images preprocessed at the build's resolution (and at each extra one, featured only),
    held on disk and read when used (:class:`ImageStore`)."""

    images: ImageStore
    extra_images: dict[int, ImageStore]
    entries: dict[str, ImageEntry]
    groups: dict[str, tuple[str, ...]]
    featured: tuple[str, ...]
    reference_masks: dict[str, np.ndarray]


@dataclass(frozen=True)
class Extracted:
    """Model facts and the feature cache keys of every model and image."""

    models: tuple[ModelFacts, ...]
    keys: dict[str, dict[str, str]]
    extra_keys: dict[int, dict[str, dict[str, str]]]
    cache: FeatureCache
    control_keys: tuple[dict[str, dict[str, str]], ...] = ()  # per control seed: {model id: {image id: key}}


@dataclass(frozen=True)
class Analysed:
    """Everything the analyses produced, in report order; picture files are already written."""

    results: dict[str, Any]
    figures: tuple[Figure, ...]
    tables: tuple[Table, ...]
    explorer: dict[str, Any] | None
    files: int  # picture files in the site
    owners: dict[str, str]  # results key -> the analysis that wrote it
    computed: int
    reused: int
    seconds: dict[str, float] = field(default_factory=dict)  # wall seconds of each computed analysis


@dataclass(frozen=True)
class Assembled:
    """The phases' results once the analyses are done, and the folder the site is assembled
    in: what :func:`render` and :func:`write_out` read (``summary`` is filled in as they go)."""

    cfg: ReportConfig
    opts: BuildOptions
    plan: Plan
    decoded: Decoded
    extracted: Extracted
    analysed: Analysed
    summary: BuildSummary
    site: Path


# --------------------------------------------------------------------------- the build

def report_theme(cfg: ReportConfig, opts: BuildOptions) -> Path | None:
    """The theme folder over the default one: ``--theme``, else report.toml's ``theme``, else
    None (the default theme alone)."""
    return opts.theme if opts.theme is not None else cfg.theme


def build(cfg: ReportConfig, opts: BuildOptions) -> BuildSummary:
    """Build the whole report into ``opts.out`` in named phases (see docs/DESIGN.md for what is
    written): resolve, decode, extract, analyse, render, write out. The site is assembled in a
    fresh folder beside ``opts.out`` and swapped in only when complete."""
    summary = BuildSummary(out=opts.out.resolve())
    for line in outdir.recover(opts.out):
        if not opts.quiet:
            print(line, file=sys.stderr)
    out = outdir.check_out(opts.out, _inputs(cfg), discard_edits=opts.discard_edits)
    sweep_parts(cache_dir())
    timings = summary.seconds
    with _timed(timings, "resolve"):
        theme_folders(report_theme(cfg, opts))  # a missing theme folder fails now, not after the analyses
        plan = resolve(cfg, opts)
        if not opts.quiet:
            for line in plan.notes:
                print(line, file=sys.stderr)
        fingerprint = inputs_fingerprint(cfg, opts, plan, library_versions(),
                                         skip=(out, cache_dir().resolve()))
    if not (opts.force or opts.no_cache) and _up_to_date(out, fingerprint):
        summary.up_to_date = True
        return summary
    summary.inputs_sha256 = fingerprint
    # The preprocessed images live in the scratch folder until the build ends, whatever the end.
    with Progress(opts.quiet) as progress, outdir.scratch(out) as scratch:
        with _timed(timings, "decode", summary.peak_rss_mib):
            decoded = decode(cfg, opts, plan, progress, summary.skipped, scratch)
        cache = FeatureCache(cache_dir() / "features", read=not opts.no_cache)
        for attempt in range(2):
            t = time.perf_counter()
            extracted = extract(cfg, opts, plan, decoded, progress, cache)
            timings["load_models"] = extracted.cache.load_seconds
            timings["extract"] = timings.get("extract", 0.0) + time.perf_counter() - t - cache.load_seconds
            summary.peak_rss_mib["extract"] = _peak_rss_mib()
            tmp = outdir.make_tmp(out)
            try:
                with _timed(timings, "analyse_and_figures", summary.peak_rss_mib):
                    analysed = analyse(cfg, opts, plan, decoded, extracted, tmp, progress)
                break
            except BaseException as e:
                shutil.rmtree(tmp, ignore_errors=True)
                damaged = _damaged_entry(e)
                if damaged is None:
                    raise
                if attempt:
                    raise BuildError(f"{damaged} — and again after it was computed anew: the disk under "
                                     f"{cache.root} may be failing; check it, or set DINOREPORT_CACHE to "
                                     "another folder") from None
                # One entry changed in place: check every entry of this build before trusting any
                # again (a restored backup changes many); extraction then fills in what was
                # removed, and the sections computed meanwhile stay cached.
                progress.log(f"{damaged}; checking this build's other entries")
                for key in sorted(_all_keys(extracted)):
                    cache.get(key)
                cache.stats.hits = 0  # the second pass counts every sound entry again
        try:
            # The data files first: the page links data/results.json only when it is there.
            summary.not_finite = write_data(analysed, tmp)
            assembled = Assembled(cfg, opts, plan, decoded, extracted, analysed, summary, tmp)
            with _timed(timings, "render", summary.peak_rss_mib):
                summary.page = render(assembled)
            _warn_page_size(plan, analysed, tmp, progress)
            summary.computed, summary.reused, summary.damaged = (
                extracted.cache.stats.computed, extracted.cache.stats.hits, extracted.cache.stats.damaged)
            summary.figures = analysed.files
            summary.sections_computed, summary.sections_reused = analysed.computed, analysed.reused
            summary.analysis_seconds = analysed.seconds
            write_out(assembled)
            outdir.swap_in(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return summary


def _all_keys(extracted: Extracted) -> set[str]:
    keys = {k for per in extracted.keys.values() for k in per.values()}
    keys |= {k for seed in extracted.control_keys for per in seed.values() for k in per.values()}
    return keys | {k for res in extracted.extra_keys.values() for per in res.values() for k in per.values()}


def _damaged_entry(e: BaseException) -> DamagedEntry | None:
    """The damaged feature entry behind ``e`` (an analysis's error may wrap it), if any."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, DamagedEntry):
            return e
        seen.add(id(e))
        e = getattr(e, "original", None) or e.__cause__ or e.__context__
    return None


def _up_to_date(out: Path, fingerprint: str) -> bool:
    """Whether the site at ``out`` was built from exactly these inputs and is still as written."""
    try:
        built = json.loads((out / "data" / "build.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(built, dict) and built.get("inputs_sha256") == fingerprint and outdir.intact(out)


@contextmanager
def _timed(timings: dict[str, float], name: str, peaks: dict[str, float] | None = None) -> Iterator[None]:
    """Wall seconds of a phase into ``timings``; the process's peak RSS so far (MiB) into ``peaks``."""
    t = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - t
    if peaks is not None:
        peaks[name] = _peak_rss_mib()


def _peak_rss_mib() -> float:
    try:
        import resource
    except ImportError:  # not on Unix
        return float("nan")
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20  # macOS reports bytes


def resolve(cfg: ReportConfig, opts: BuildOptions) -> Plan:
    """Check the options, load the analyses and the image set, find the weights (a build that
    cannot get them stops before any work) and fetch missing images if asked."""
    if opts.dtype not in ("fp32", "bf16"):
        raise BuildError(f"--dtype must be fp32 or bf16, got {opts.dtype!r}")
    check_device(opts.device)
    load_user_analyses(opts.site_src or cfg.root)
    options = resolve_options(cfg)
    names, notes = choose_analyses(cfg, opts.analyses, opts.skip, options)
    analyses = _plan_analyses(names, cfg, options)
    extra: dict[int, set[str]] = {}
    all_models = tuple(m.id for m in cfg.models)
    for a in analyses:
        needs = a.needs(cfg, options[a.name])
        for res in needs.extra_resolutions:
            if res != cfg.resolution:
                extra.setdefault(res, set()).update(needs.extra_models or all_models)
    metas = _model_metas(cfg)
    crop = _check_crop(cfg, metas, _resolution_keys(cfg, analyses, options, extra))
    iset = load_image_set(cfg)
    groups = _groups(cfg, iset)
    # Weights first: a build that cannot get them stops before any work.
    weights = {} if opts.random_init else resolve_all(cfg.models, config_path=cfg.path)
    fetch_failed: dict[str, str] = {}
    if opts.fetch:
        missing = [e for e in iset.entries if e.url is not None and not available(e)]  # local files: nothing to fetch
        if missing:
            for iid, status in fetch(missing, max_pixels=cfg.images.max_pixels):
                if status.startswith("failed: "):
                    fetch_failed[iid] = "could not fetch: " + status.removeprefix("failed: ")
                    if not opts.quiet:
                        print(f"could not fetch image {iid}: {status}", file=sys.stderr)
    return Plan(analyses=analyses, extra={r: tuple(sorted(m)) for r, m in sorted(extra.items())},
                reference_masks=any(a.needs(cfg, options[a.name]).reference_masks for a in analyses),
                iset=iset, groups=groups, weights=weights, metas=metas, crop=crop,
                options=options, fetch_failed=fetch_failed, notes=notes,
                **_controls(analyses, cfg, options, opts.random_init))


def choose_analyses(cfg: ReportConfig, only: tuple[str, ...] | None = None,
                    skip: tuple[str, ...] = (), options: dict[str, Any] | None = None,
                    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The analyses a build runs and a note for each one added because another needs it.

    Parameters
    ----------
    cfg : the config; its ``analyses`` apply when ``only`` is None (empty: every registered one).
    only : ``--analyses``: run these (and what they need).
    skip : ``--skip``: leave these out. An analysis left out this way is never added back: a
        chosen analysis that needs its artifact is refused, naming both.

    Returns
    -------
    (names in report order, notes such as "added within_pca: across_pca needs its ForegroundMasks")

    Raises
    ------
    BuildError
        An unknown name (with the closest known one), or a dependency that ``skip`` removes.
    """
    known = list_analyses()
    only = tuple(only) if only is not None else (cfg.analyses or None)
    where = "--analyses" if only is not None and only != cfg.analyses else f"analyses of {cfg.path}"
    for source, names in ((where, only or ()), ("--skip", skip)):
        for n in names:
            if n not in known:
                hint = closest(n, known, n=1)
                raise BuildError(f"{source}: unknown analysis {n!r}"
                                 + (f" — did you mean {hint[0]!r}?" if hint else "")
                                 + f" (`dinoreport analyses` lists them: {', '.join(known)})")
    chosen = set(only or known) - set(skip)
    notes: list[str] = []
    changed = True
    while changed:  # a dependency may have dependencies of its own
        changed = False
        for n in [k for k in known if k in chosen]:
            for kind in get_analysis(n).needs(cfg, (options or {}).get(n)).artifacts:
                if any(kind in get_analysis(c).provides for c in chosen):
                    continue
                makers = [m for m in known if kind in get_analysis(m).provides]
                usable = [m for m in makers if m not in skip]
                if not usable:
                    raise BuildError(
                        f"analysis {n} needs the {kind.__name__} of {' or '.join(makers) or 'no analysis'}, "
                        f"which --skip leaves out: skip {n} too, or keep {makers[0] if makers else 'it'}")
                chosen.add(usable[0])
                notes.append(f"added analysis {usable[0]}: {n} needs its {kind.__name__}")
                changed = True
    return tuple(k for k in known if k in chosen), tuple(notes)


def _controls(analyses: tuple[Analysis, ...], cfg: ReportConfig, options: dict[str, Any],
              random_init: bool) -> dict[str, Any]:
    """The Plan's control fields: the most seeds any analysis asks for, in the recipe of the first
    one asking (a random-init build judges nothing against a control, so it extracts none)."""
    asking = [n for a in analyses if (n := a.needs(cfg, options[a.name])).controls]
    if random_init or not asking:
        return {"control_seeds": 0}
    return {"control_seeds": max(n.controls for n in asking), "control_init": asking[0].control_init}


def _plan_analyses(names: tuple[str, ...], cfg: ReportConfig,
                   options: dict[str, Any] | None = None) -> tuple[Analysis, ...]:
    """The named analyses in report order; each artifact an analysis needs (under ``options``,
    ``{name: its options}``; default: the defaults) must come from an earlier one."""
    options = options or {}
    try:
        chosen = sorted((get_analysis(n) for n in names), key=lambda a: (a.order, a.name))
    except KeyError as e:
        raise BuildError(e.args[0]) from e
    provided: set[type] = set()
    for a in chosen:
        for kind in a.needs(cfg, options.get(a.name)).artifacts:
            if kind not in provided:
                makers = [n for n in list_analyses() if kind in get_analysis(n).provides]
                raise BuildError(f"analysis {a.name} needs {kind.__name__}, which "
                                 f"{' or '.join(makers) or 'no analysis'} provides earlier in the report; "
                                 "include it")
        provided.update(a.provides)
    return tuple(chosen)


def decode(cfg: ReportConfig, opts: BuildOptions, plan: Plan, progress: Progress,
           skipped: list[tuple[str, str]], folder: Path) -> Decoded:
    """Preprocess every available image (skipping undecodable ones under --keep-going, each
    noted in ``skipped``), the featured ones at each extra resolution, and reference masks.

    The images go to stores in ``folder``, one subfolder per resolution, one image in memory
    at a time; the caller removes ``folder`` once the stores are no longer used."""
    iset = plan.iset
    images = ImageStore(folder / str(cfg.resolution))
    with progress.phase("decode images", len(iset.entries)) as advance:
        for e in iset.entries:
            # Only a URL image can be "not fetched yet"; a local file that is not there is an error.
            problem = file_problem(e.file) if e.file is not None else None
            if e.url is not None and not available(e):
                skipped.append((e.id, plan.fetch_failed.get(e.id, NOT_FETCHED)))
            elif problem is not None:
                if not opts.keep_going:
                    raise ImageError(_local_file_message(iset, e, problem))
                skipped.append((e.id, f"{_manifest_relative(iset, e.file)}: {problem}"))
            else:
                try:
                    images.add(e.id, load_image(e, cfg.resolution, multiple=plan.crop.multiple,
                                                max_pixels=cfg.images.max_pixels))
                except ImageError as err:
                    if not opts.keep_going:
                        raise
                    # The reason goes into a page that may be published: no local folders in it.
                    why = str(err).replace(str(e.file.parent) + os.sep, "") if e.file else str(err)
                    skipped.append((e.id, why))
            advance(1)
    if not images:
        raise BuildError(f"no usable images in {iset.source}"
                         + ("".join(f"\n  {i}: {why}" for i, why in skipped)))
    unfetched = [i for i, why in skipped if why.startswith(NOT_FETCHED)]
    if unfetched:
        progress.log(f"{len(unfetched)} images left out, {NOT_FETCHED}: {', '.join(unfetched)}")
    for i, why in skipped:
        if i not in unfetched:
            progress.log(f"skipped image {i}: {why}")
    groups = {g: tuple(i for i in ids if i in images) for g, ids in plan.groups.items()}
    featured = tuple(i for i in cfg.images.featured if i in images) or tuple(sorted(images))[:2]
    entries = {e.id: e for e in iset.entries}
    extra_images = {}
    for res in plan.extra:
        extra_images[res] = ImageStore(folder / str(res))
        for i in featured:
            extra_images[res].add(i, load_image(entries[i], res, multiple=plan.crop.multiple,
                                                max_pixels=cfg.images.max_pixels))
    reference: dict[str, np.ndarray] = {}
    if plan.reference_masks:
        for i in sorted(images):
            mask = load_mask(entries[i], images.shape(i)[:2], resolution=cfg.resolution, multiple=plan.crop.multiple)
            if mask is not None:  # neither a mask file nor mask_polygons in the manifest
                reference[i] = mask
    return Decoded(images=images, extra_images=extra_images, entries=entries, groups=groups,
                   featured=featured, reference_masks=reference)


def _manifest_relative(iset: ImageSet, path: Path) -> str:
    """``path`` relative to the manifest's folder (the image folder for a scanned folder), as
    the manifest gives it: a skipped image's reason goes into a page that may be published."""
    source = Path(iset.source)
    root = (source if source.is_dir() else source.parent).resolve()
    return os.path.relpath(path, root) if root in (path, *path.parents) else path.name


def _local_file_message(iset: ImageSet, e: ImageEntry, problem: str) -> str:
    """The error for a local image file that cannot be read: where it is listed, what to do."""
    fix = ("put the file there or correct the path" if problem == "file not found"
           else "point it at an image file")
    return (f"{iset.source}: images.{e.id}.file {_manifest_relative(iset, e.file)!r} ({e.file}): {problem}; "
            f"{fix} (it is a local file: there is nothing to fetch), or pass --keep-going to build without it")


def extract(cfg: ReportConfig, opts: BuildOptions, plan: Plan, decoded: Decoded,
            progress: Progress, cache: FeatureCache) -> Extracted:
    """Features of every model and image through ``cache``; a model is built only if some of
    its features are not cached."""
    facts, keys = [], {}
    extra_keys: dict[int, dict[str, dict[str, str]]] = {r: {} for r in plan.extra}
    n_controls = plan.control_seeds
    n_work = len(cfg.models) * len(decoded.images) * (1 + n_controls) + sum(
        len(decoded.extra_images[r]) * len(ms) for r, ms in plan.extra.items())
    with progress.phase("extract features", n_work) as advance:
        for spec in cfg.models:
            meta = plan.metas[spec.id]
            w = plan.weights.get(spec.id)
            identity = model_identity(spec, meta, w.sha256 if w else None, cfg.seed, opts.dtype)
            run = dict(cache=cache, make_backbone=_model_loader(spec, w, cfg.seed), device=opts.device,
                       dtype=opts.dtype, advance=advance)
            keys[spec.id] = extract_all(identity, decoded.images, batch_size=cfg.batch_size, **run)
            for res, models in plan.extra.items():
                if spec.id in models:
                    # One image per pass: at twice the resolution a batch would multiply peak memory.
                    extra_keys[res][spec.id] = extract_all(identity, decoded.extra_images[res], batch_size=1, **run)
            facts.append(ModelFacts.of(spec, meta, w))
        control_keys = tuple(_extract_controls(cfg, opts, plan, decoded, cache, k, advance)
                             for k in range(n_controls))
    return Extracted(models=tuple(facts), keys=keys, extra_keys=extra_keys, cache=cache,
                     control_keys=control_keys)


def _extract_controls(cfg: ReportConfig, opts: BuildOptions, plan: Plan, decoded: Decoded,
                      cache: FeatureCache, k: int, advance) -> dict[str, dict[str, str]]:
    """Cache keys ``{model id: {image id: key}}`` of control ``k`` of every model: its
    architecture untrained (:func:`dinoreport.backbones.create_control`). Models of one
    architecture, stages and normalisation have one identity, so the second finds the first's
    entries in the cache: one forward pass per image and architecture."""
    from .backbones import control_seed
    from .features import control_identity

    init = plan.control_init
    out: dict[str, dict[str, str]] = {}
    for spec in cfg.models:
        seed = control_seed(spec.timm.split(".", 1)[0], cfg.seed, k)
        identity = control_identity(spec, plan.metas[spec.id], seed, init, opts.dtype)
        out[spec.id] = extract_all(identity, decoded.images, cache=cache,
                                   make_backbone=_control_loader(spec, seed, init), device=opts.device,
                                   dtype=opts.dtype, advance=advance, batch_size=cfg.batch_size)
    return out


def _control_loader(spec, seed: int, init: str):
    """Like :func:`_model_loader`, for an untrained control."""
    def get():
        from .backbones import create_control

        return create_control(spec, seed, init)

    return get


def analyse(cfg: ReportConfig, opts: BuildOptions, plan: Plan, decoded: Decoded, extracted: Extracted,
            site: Path, progress: Progress) -> Analysed:
    """Run the analyses in report order, each from the section cache when its inputs are
    unchanged; their picture files go into ``site``."""
    ctx = BuildContext(cfg=cfg, images=decoded.images, entries=decoded.entries, models=extracted.models,
                       keys=extracted.keys, cache=extracted.cache, writer=FigureWriter(site),
                       groups=decoded.groups, featured=decoded.featured, random_init=opts.random_init,
                       dtype=opts.dtype, extra_keys=extracted.extra_keys,
                       reference_masks=decoded.reference_masks, control_keys=extracted.control_keys,
                       crop=plan.crop)
    sections = SectionCache(cache_dir(), read=not opts.no_cache)
    seconds: dict[str, float] = {}
    done = _run_analyses(plan.analyses, ctx, sections, site, progress, jobs=analysis_jobs(opts.jobs),
                         seconds=seconds, timeout_s=opts.analysis_timeout_s, options=plan.options)
    results: dict[str, Any] = {}
    figures: list[Figure] = []
    tables: list[Table] = []
    explorer = None
    owners: dict[str, str] = {}
    for line in downscale_warnings([(a.name, done[a.name].figures) for a in plan.analyses], ctx.writer.downscaled):
        progress.log(line)
    for a in plan.analyses:  # merged in report order, however they were scheduled
        sec = done[a.name]
        results.update(sec.results)
        owners.update(dict.fromkeys(sec.results, a.name))
        figures += sec.figures
        tables += sec.tables
        explorer = sec.explorer or explorer
    return Analysed(results=results, figures=tuple(figures), tables=tuple(tables), explorer=explorer,
                    files=len(ctx.writer.written), owners=owners, computed=sections.computed, reused=sections.hits,
                    seconds={a.name: seconds[a.name] for a in plan.analyses if a.name in seconds})


def _warn_page_size(plan: Plan, analysed: Analysed, site: Path, progress: Progress) -> None:
    """Warn when report.html outgrows figures.MAX_PAGE_BYTES, naming the analyses whose
    pictures weigh most on it (base64: 4/3 of each file, once per time it is shown)."""
    analysis_of = {k.name: a.name for a in plan.analyses for k in a.figures}
    sizes: dict[str, int] = {}
    by_analysis: dict[str, int] = {}
    for f in analysed.figures:
        name = analysis_of.get(f.kind, f.kind)
        for r in f.rows:
            for rel in (q for p in r.panels for q in (p.file, p.layer) if q):
                if rel not in sizes:
                    sizes[rel] = (site / rel).stat().st_size
                by_analysis[name] = by_analysis.get(name, 0) + sizes[rel] * 4 // 3
    line = page_size_warning("report.html", (site / "report.html").stat().st_size, by_analysis)
    if line:
        progress.log(line)


def analysis_jobs(jobs: int) -> int:
    """How many analyses run at once: ``jobs`` if positive, else the cores this process may use
    (at most 4: each running analysis holds its own maps, so memory grows with the count)."""
    if jobs > 0:
        return jobs
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


def _run_analyses(analyses: tuple[Analysis, ...], ctx: BuildContext, sections: SectionCache, site: Path,
                  progress: Progress, *, jobs: int, seconds: dict[str, float],
                  timeout_s: float | None = None, options: dict[str, Any] | None = None) -> dict[str, SectionOutput]:
    """Every analysis's output, from the section cache or computed, ``jobs`` at a time.

    ``options``: ``{analysis name: its options}`` (:func:`resolve_options`; default: the
    defaults), each analysis's ``ctx.options`` and part of its key, with the keys of the
    analyses whose artifacts it reads (an option of within_pca changes what cosegmentation sees).

    An analysis starts once the artifacts it declares in its needs have been provided by the
    analyses that make them; it works on its own copy of the context (its own figure writer,
    the artifacts present when it started), so outputs do not depend on the schedule. Dense
    linear algebra stays on one BLAS thread per analysis: the parallelism is across analyses.
    ``seconds`` receives each computed analysis's wall time.

    Each runs in a daemon thread with a deadline (:mod:`dinoreport.runner`; ``timeout_s`` is
    ``--analysis-timeout``). What an analysis raises stops the build as
    :class:`~dinoreport.runner.AnalysisError`, a deadline passed as ``AnalysisTimeout``; then,
    as on Ctrl-C, the figure writer is closed so that an analysis still running writes nothing
    more, and its thread is abandoned.
    """
    done: dict[str, SectionOutput] = {}
    keys = {}
    todo: list[Analysis] = []
    options = {a.name: a.options() if a.options is not None else None for a in analyses} | (options or {})
    needs = {a.name: a.needs(ctx.cfg, options[a.name]) for a in analyses}
    provider: dict[type, str] = {}  # artifact type -> the latest analysis (in report order) providing it

    def provide(a: Analysis, sec: SectionOutput) -> None:
        for kind in a.provides:
            ctx.artifacts[kind] = kind(sec.shared[kind.key])

    with progress.phase("analyses and figures", len(analyses)) as advance, one_blas_thread():
        for a in analyses:
            # The module's source is in the key: an edited user analysis is computed again.
            keys[a.name] = section_key(f"{a.name}:{a.source_sha256}", ctx, options[a.name],
                                       sorted(keys[provider[k]] for k in needs[a.name].artifacts if k in provider))
            provider.update(dict.fromkeys(a.provides, a.name))
            hit = sections.get(keys[a.name], site)
            if hit is None:
                todo.append(a)
                continue
            sec, files = hit
            ctx.writer.written.update(files)
            provide(a, sec)
            done[a.name] = sec
            advance(1)

        def run(a: Analysis, own: BuildContext) -> tuple[SectionOutput, list[str]]:
            t = time.perf_counter()
            sec = a.run(own)
            seconds[a.name] = time.perf_counter() - t
            return sec, sorted(set(own.writer.log))

        runner = AnalysisRunner()
        try:
            while todo or runner.running:
                ready = [a for a in todo if all(k in ctx.artifacts for k in needs[a.name].artifacts)]
                for a in ready:
                    if len(runner.running) >= max(1, jobs):
                        break
                    if not a.thread_safe and any(not r.thread_safe for r in runner.running):
                        continue  # not declared thread-safe: one such analysis at a time
                    todo.remove(a)
                    own = replace(ctx, writer=ctx.writer.fork(), artifacts=dict(ctx.artifacts),
                                  options=options[a.name])
                    runner.start(a, lambda a=a, own=own: run(a, own),
                                 deadline(a, ctx.cfg.analysis.timeout_s, timeout_s))
                if not runner.running:  # _plan_analyses checked the order, so this cannot happen
                    raise BuildError("analyses wait for artifacts no analysis provides: "
                                     + ", ".join(a.name for a in todo))
                a, (sec, files) = runner.next()
                wrong = a.undeclared_kinds(sec)
                if wrong:
                    raise AnalysisError(wrong, a.name)
                sections.put(keys[a.name], sec, files, site)
                provide(a, sec)
                done[a.name] = sec
                give_back_freed_memory()  # its maps are gone; the next one starts lean
                advance(1)
        except BaseException:
            ctx.writer.close()  # an analysis still running must not write into the folder removed next
            raise
    return done


def render(built: Assembled) -> ReportPage:
    """The page (figures, tables, facts, credits) rendered with the narrative into ``built.site``,
    where :func:`write_data` wrote the data files already."""
    from .render import render_site

    cfg, opts, plan, decoded, analysed = built.cfg, built.opts, built.plan, built.decoded, built.analysed
    facts = built.extracted.models
    page = ReportPage(
        title=cfg.title, author=cfg.author, random_init=opts.random_init, resolution=cfg.resolution,
        multiple=plan.crop.multiple, models=facts,
        figures=analysed.figures, tables=analysed.tables, results=analysed.results,
        credits=tuple(Credit(e.id, e.subject, e.author, e.license, e.license_url, e.source_url,
                             e.share_alike, e.modified, e.original_url)
                      for e in plan.iset.entries if e.id in decoded.images),
        skipped=tuple(built.summary.skipped), explorer=analysed.explorer, featured=decoded.featured,
        analyses=tuple(a.name for a in plan.analyses), data_files=True,
        notes=tuple(f"{m.label}: C5 is {'layer-normed per position (head norm)' if m.c5_norm else 'raw (no norm)'}"
                    for m in facts if any(s.name == "C5" for s in m.stages)),
    )
    render_site(page, site_src=opts.site_src or cfg.root, theme=report_theme(cfg, opts), out=built.site)
    return page


def write_data(analysed: Analysed, site: Path) -> list[str]:
    """The data files the page links to: results, figure index and each figure's ZIP
    (:mod:`dinoreport.downloads`). Returns where the results
    held a value that is not a finite number (written as ``null``), as "analysis: key path"."""
    found: list[str] = []
    results = finite_json(analysed.results, found=found)
    _json_dump(results, site / "data" / "results.json")
    _json_dump(finite_json(_figures_json(analysed.figures)), site / "data" / "figures.json")
    from .downloads import write_downloads
    from .directives import kind_owner

    write_downloads(site, analysed.figures, results, analysed.owners, kind_owner)
    owner = analysed.owners
    return [f"{owner.get(p.split('.')[0].split('[')[0], '?')}: {p}" for p in found]


def write_out(built: Assembled) -> None:
    """The build facts beside the page (the results went out before rendering, see
    :func:`write_data`)."""
    (built.site / ".nojekyll").touch()
    _json_dump(_build_json(built.cfg, built.opts, built.extracted.cache, built.extracted.models, built.summary,
                           built.decoded.featured, built.decoded.groups, crop=built.plan.crop),
               built.site / "data" / "build.json")


def _model_metas(cfg: ReportConfig) -> dict[str, ModelMeta]:
    """Each model's facts, before any work: a model the report cannot show stops the build here."""
    metas = {}
    for spec in cfg.models:
        try:
            metas[spec.id] = model_meta(spec.timm, spec.stages)
        except BackboneError as e:
            raise ConfigError(f"{cfg.path}: models.{spec.id}: {e}") from None
    return metas


def _resolution_keys(cfg: ReportConfig, analyses: tuple[Analysis, ...], options: dict[str, Any],
                     extra: dict[int, set[str]]) -> list[tuple[str, int]]:
    """``[(key to name in a message, short side px)]``: the build's resolution, then each extra
    resolution as the first option (in report order) of an analysis needing it that holds it
    (``analysis.sweep[1]``), else as an analysis's."""
    res = [("resolution", cfg.resolution)]
    for r in sorted(extra):
        key = f"an extra resolution of analysis " + ", ".join(
            a.name for a in analyses if r in a.needs(cfg, options[a.name]).extra_resolutions)
        for a in analyses:
            if r not in a.needs(cfg, options[a.name]).extra_resolutions:
                continue
            held = [(f"analysis.{s.name}" + (f"[{i}]" if s.is_tuple else ""), v)
                    for s in a.option_specs if s.item_type is int
                    for i, v in enumerate(getattr(options[a.name], s.name) if s.is_tuple
                                          else (getattr(options[a.name], s.name),))]
            hit = next((k for k, v in held if v == r), None)
            if hit is not None:
                key = hit
                break
        res.append((key, r))
    return res


def _check_crop(cfg: ReportConfig, metas: dict[str, ModelMeta], res: list[tuple[str, int]]) -> CropRule:
    """The build's crop rule (:class:`CropRule`); the build's resolution and every extra
    resolution an analysis asks for (``res``: see :func:`_resolution_keys`) must be multiples of
    its multiple."""
    crop = CropRule.of({spec.timm: metas[spec.id].multiple for spec in cfg.models})
    need, multiple = crop.needs, crop.multiple
    for key, r in res:
        if r % multiple:
            why = ", ".join(f"{n} needs {m}" for n, m in sorted(need.items()))
            lo, hi = r // multiple * multiple, (r // multiple + 1) * multiple
            ok = " or ".join(str(v) for v in (lo, hi) if v > 0)
            raise ConfigError(
                f"{cfg.path}: {key}: {r} px is not a multiple of {multiple} px, the least common "
                f"multiple of what the models need ({why}). Every image is cropped to multiples of "
                f"{multiple} so that all models see the same pixels on whole cells; use {ok}.")
    return crop


def _figures_json(figures) -> list[dict[str, Any]]:
    """One entry per picture file, with the figure it belongs to."""
    rows = []
    for f in figures:
        for r in f.rows:
            for p in r.panels:
                rows.append({"id": f"{f.id}/{len(rows)}", "figure": f.id, "kind": f.kind, "file": p.file,
                             **({"layer": p.layer} if p.layer else {}),
                             "row": r.label, "label": p.label, "alt": p.alt, "caption": f.caption,
                             "image": f.image, "group": f.group})
    return rows


def _shown_path(path: Path) -> str:
    """``path`` as published: relative to the working folder when below it, else its name only
    (an absolute path would publish the user's folders)."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.name


def _build_json(cfg, opts, cache, facts, summary, featured, groups, crop) -> dict[str, Any]:
    return {
        "config": _shown_path(cfg.path),
        "device": cache.device or "none (every feature came from the cache)",
        "dtype": opts.dtype,
        "random_init": opts.random_init,
        "resolution": cfg.resolution,
        "crop": crop.as_json(),
        "seed": cfg.seed,
        "models": [{"id": m.id, "timm": m.timm, "weights_source": m.weights_source,
                    "weights_sha256": m.weights_sha256, "stages": [s.name for s in m.stages],
                    "channels": [s.channels for s in m.stages],
                    "c5_norm": m.c5_norm} for m in facts],
        "featured": list(featured),
        "groups": {g: list(ids) for g, ids in groups.items()},
        "inputs_sha256": summary.inputs_sha256,
        "seconds": {k: round(v, 3) for k, v in summary.seconds.items()},
        "analysis_seconds": {k: round(v, 3) for k, v in summary.analysis_seconds.items()},
        "peak_rss_mib": {k: round(v) for k, v in summary.peak_rss_mib.items() if v == v},
        "cache": {"computed": summary.computed, "reused": summary.reused, "damaged": summary.damaged,
                  "analyses_computed": summary.sections_computed, "analyses_reused": summary.sections_reused},
        "skipped": [list(s) for s in summary.skipped],
        "not_finite_results": list(summary.not_finite),
        "versions": {"python": platform.python_version(), **library_versions()},
    }
