"""The one place that wires the steps: config -> images -> features -> analyses -> figures -> render.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import ConfigError, ReportConfig, closest
from .context import BuildContext, ModelFacts
from .features import FeatureCache, check_device, extract_all, model_identity
from .modelmeta import BackboneError, ModelMeta, crop_multiple, library_versions, model_meta
from .figures import FigureWriter
from .images import ImageError, ImageSet, available, cache_dir, fetch, load_image, load_manifest, scan_folder
from .page import Credit, ModelInfo, ReportPage
from . import outdir
from .cachedir import sweep_parts
from .progress import Progress, say
from .registry import get_analysis, list_analyses
from .section_cache import SectionCache, section_key
from .weights import resolve_all

__all__ = ["BuildOptions", "BuildSummary", "build", "load_image_set", "BuildError", "PROJECT_ROOT"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]


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
    templates: Path | None = None  # default: <project>/templates
    analyses: tuple[str, ...] | None = None  # default: all registered
    discard_edits: bool = False  # replace files of the old site that the user edited


@dataclass
class BuildSummary:
    out: Path
    seconds: dict[str, float] = field(default_factory=dict)
    computed: int = 0
    reused: int = 0
    damaged: int = 0
    figures: int = 0
    sections_computed: int = 0
    sections_reused: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    page: ReportPage | None = None  # what was rendered (serve re-renders it when prose changes)

    def line(self) -> str:
        total = sum(self.seconds.values())
        s = (f"Built {self.out} in {total:.1f} s: features computed for {self.computed} model×image pairs, "
             f"reused {self.reused} from the cache")
        if self.damaged:
            s += f" ({self.damaged} damaged cache entries recomputed)"
        s += (f"; analyses computed {self.sections_computed}, reused {self.sections_reused}; "
              f"{self.figures} picture files")
        if self.skipped:
            s += f"; {len(self.skipped)} images skipped"
        return s + "."


def load_image_set(cfg: ReportConfig) -> ImageSet:
    if cfg.images.dir is not None:
        if not cfg.images.dir.is_dir():
            raise ConfigError(f"{cfg.path}: images.dir: folder not found: {cfg.images.dir}")
        iset = scan_folder(cfg.images.dir)
    else:
        iset = load_manifest(cfg.images.manifest)
    if len(iset.entries) > cfg.images.max_images:
        raise ConfigError(f"{iset.source}: {len(iset.entries)} images, more than images.max_images = "
                          f"{cfg.images.max_images} of {cfg.path} (a build holds every image in memory); "
                          "build from fewer images, or raise images.max_images if this machine has the memory")
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
    inputs = [cfg.root, PROJECT_ROOT / "templates"]
    if cfg.images.dir:
        inputs.append(cfg.images.dir)
    if cfg.images.manifest:
        inputs.append(cfg.images.manifest.parent)
    return inputs


def _json_dump(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def _model_loader(spec, weights, seed: int):
    """A factory that builds the model at most once, and only when called (it imports torch)."""
    made = []

    def get():
        if not made:
            from .backbones import create_backbone

            made.append(create_backbone(spec, weights, seed=seed))
        return made[0]

    return get


def build(cfg: ReportConfig, opts: BuildOptions) -> BuildSummary:
    """Build the whole report into ``opts.out``; see DESIGN.md for what is written."""
    from .render import render_site

    t0 = time.perf_counter()
    summary = BuildSummary(out=opts.out.resolve())
    for line in outdir.recover(opts.out):
        say(line, opts.quiet)
    out = outdir.check_out(opts.out, _inputs(cfg), discard_edits=opts.discard_edits)
    sweep_parts(cache_dir())
    if opts.dtype not in ("fp32", "bf16"):
        raise BuildError(f"--dtype must be fp32 or bf16, got {opts.dtype!r}")
    check_device(opts.device)
    names = opts.analyses or tuple(list_analyses())
    iset = load_image_set(cfg)
    groups = _groups(cfg, iset)
    # Weights first: a build that cannot get them stops before any work.
    weights = {} if opts.random_init else resolve_all(cfg.models, config_path=cfg.path)
    if opts.fetch:
        missing = [e for e in iset.entries if not available(e)]
        if missing:
            for iid, status in fetch(missing):
                if status != "fetched" and not opts.quiet:
                    print(f"could not fetch image {iid}: {status}", file=sys.stderr)
    metas = _model_metas(cfg)
    multiple = _check_crop(cfg, metas, names)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    timings["resolve"] = t - t0

    with Progress(opts.quiet) as progress:
        # Decode images.
        images: dict[str, np.ndarray] = {}
        with progress.phase("decode images", len(iset.entries)) as advance:
            for e in iset.entries:
                if not available(e):
                    summary.skipped.append((e.id, NOT_FETCHED))
                else:
                    try:
                        images[e.id] = load_image(e, cfg.resolution, multiple=multiple,
                                                  max_pixels=cfg.images.max_pixels)
                    except ImageError as err:
                        if not opts.keep_going:
                            raise
                        # The reason goes into a page that may be published: no local folders in it.
                        why = str(err).replace(str(e.file.parent) + os.sep, "") if e.file else str(err)
                        summary.skipped.append((e.id, why))
                advance(1)
        if not images:
            raise BuildError(f"no usable images in {iset.source}"
                             + ("".join(f"\n  {i}: {why}" for i, why in summary.skipped)))
        unfetched = [i for i, why in summary.skipped if why.startswith(NOT_FETCHED)]
        if unfetched:
            progress.log(f"{len(unfetched)} images left out, {NOT_FETCHED}: {', '.join(unfetched)}")
        for i, why in summary.skipped:
            if i not in unfetched:
                progress.log(f"skipped image {i}: {why}")
        groups = {g: tuple(i for i in ids if i in images) for g, ids in groups.items()}
        featured = tuple(i for i in cfg.images.featured if i in images) or tuple(sorted(images))[:2]
        timings["decode"] = time.perf_counter() - t

        # Models and features: a model is built only if some of its features are not cached.
        t = time.perf_counter()
        cache = FeatureCache(cache_dir() / "features")
        facts, keys = [], {}
        entries = {e.id: e for e in iset.entries}
        hr = _highres_plan(cfg, featured, entries, names, multiple)
        hr_keys: dict[int, dict[str, dict[str, str]]] = {r: {} for r in hr}
        n_work = len(cfg.models) * len(images) + sum(len(v) for v in hr.values()) * len(_highres_models(cfg))
        with progress.phase("extract features", n_work) as advance:
            for spec in cfg.models:
                meta = metas[spec.id]
                w = weights.get(spec.id)
                identity = model_identity(spec, meta, w.sha256 if w else None, cfg.seed, opts.dtype)
                run = dict(cache=cache, make_backbone=_model_loader(spec, w, cfg.seed), device=opts.device,
                           dtype=opts.dtype, advance=advance)
                keys[spec.id] = extract_all(identity, images, batch_size=cfg.batch_size, **run)
                if spec.id in _highres_models(cfg):
                    for res, imgs in hr.items():
                        # One image per pass: at twice the resolution a batch would multiply peak memory.
                        hr_keys[res][spec.id] = extract_all(identity, imgs, batch_size=1, **run)
                facts.append(ModelFacts(spec.id, spec.label, spec.timm, meta.stages,
                                        "random-init" if w is None else w.source, w.sha256 if w else None,
                                        meta.license, meta.is_vit, spec.convnext_c5_norm))
        timings["load_models"] = cache.load_seconds
        timings["extract"] = time.perf_counter() - t - cache.load_seconds

        # Analyses and figures, into a fresh folder beside the output.
        tmp = outdir.make_tmp(out)
        try:
            t = time.perf_counter()
            ctx = BuildContext(cfg=cfg, images=images, entries=entries,
                               models=tuple(facts), keys=keys, cache=cache, writer=FigureWriter(tmp),
                               groups=groups, featured=featured, random_init=opts.random_init, dtype=opts.dtype,
                               extras={"highres": (hr, hr_keys)},
                               crop=(multiple, {m.timm: metas[m.id].multiple for m in cfg.models}))
            results: dict[str, Any] = {}
            figures, tables, explorer = [], [], None
            sections = SectionCache(cache_dir())
            with progress.phase("analyses and figures", len(names)) as advance:
                for name in names:
                    key = section_key(name, ctx)
                    hit = sections.get(key, tmp)
                    if hit is not None:
                        sec, files = hit
                        ctx.writer.written.update(files)
                    else:
                        start = len(ctx.writer.log)
                        sec = get_analysis(name)(ctx)
                        sections.put(key, sec, sorted(set(ctx.writer.log[start:])), tmp)
                    ctx.extras.update(sec.shared)
                    results.update(sec.results)
                    figures += sec.figures
                    tables += sec.tables
                    explorer = sec.explorer or explorer
                    advance(1)
            timings["analyse_and_figures"] = time.perf_counter() - t

            t = time.perf_counter()
            page = ReportPage(
                title=cfg.title, author=cfg.author, random_init=opts.random_init, resolution=cfg.resolution,
                multiple=multiple,
                models=tuple(ModelInfo(m.id, m.label, m.timm, m.weights_source, m.weights_sha256, m.license,
                                       tuple(s.name for s in m.stages)) for m in facts),
                figures=tuple(figures), tables=tuple(tables), results=results,
                credits=tuple(Credit(e.id, e.subject, e.author, e.license, e.license_url, e.source_url,
                                     e.share_alike, e.modified, e.original_url)
                                for e in iset.entries if e.id in images),
                skipped=tuple(summary.skipped), explorer=explorer, featured=featured,
                notes=tuple(f"{m.label}: C5 is {'layer-normed per position (head norm)' if m.c5_norm else 'raw (no norm)'}"
                            for m in facts if any(s.name == "C5" for s in m.stages)),
            )
            render_site(page, site_src=opts.site_src or cfg.root,
                        templates=opts.templates or PROJECT_ROOT / "templates", out=tmp)
            _json_dump(results, tmp / "data" / "results.json")
            _json_dump(_figures_json(figures), tmp / "data" / "figures.json")
            (tmp / ".nojekyll").touch()
            timings["render"] = time.perf_counter() - t
            summary.seconds = timings
            summary.computed, summary.reused, summary.damaged = (
                cache.stats.computed, cache.stats.hits, cache.stats.damaged)
            summary.figures = len(ctx.writer.written)
            summary.sections_computed, summary.sections_reused = sections.computed, sections.hits
            _json_dump(_build_json(cfg, opts, cache, facts, summary, featured, groups, ctx.crop), tmp / "data" / "build.json")
            summary.page = page
            outdir.swap_in(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return summary


def _model_metas(cfg: ReportConfig) -> dict[str, ModelMeta]:
    """Each model's facts, before any work: a model the report cannot show stops the build here."""
    metas = {}
    for spec in cfg.models:
        try:
            metas[spec.id] = model_meta(spec.timm, spec.stages)
        except BackboneError as e:
            raise ConfigError(f"{cfg.path}: models.{spec.id}: {e}") from None
    return metas


def _check_crop(cfg: ReportConfig, metas: dict[str, ModelMeta], names) -> int:
    """The build's crop multiple (:func:`crop_multiple`); every resolution must be a multiple of it."""
    need = {spec.timm: metas[spec.id].multiple for spec in cfg.models}
    multiple = crop_multiple(need)
    res = [("resolution", cfg.resolution)]
    if "highres" in names:
        res += [(f"analysis.highres[{i}]", r) for i, r in enumerate(cfg.analysis.highres)]
    for key, r in res:
        if r % multiple:
            why = ", ".join(f"{n} needs {m}" for n, m in sorted(need.items()))
            lo, hi = r // multiple * multiple, (r // multiple + 1) * multiple
            ok = " or ".join(str(v) for v in (lo, hi) if v > 0)
            raise ConfigError(
                f"{cfg.path}: {key}: {r} px is not a multiple of {multiple} px, the least common "
                f"multiple of what the models need ({why}). Every image is cropped to multiples of "
                f"{multiple} so that all models see the same pixels on whole cells; use {ok}.")
    return multiple


def _highres_models(cfg: ReportConfig) -> tuple[str, ...]:
    return cfg.analysis.highres_models or tuple(m.id for m in cfg.models)


def _highres_plan(cfg: ReportConfig, featured, entries, names,
                  multiple: int) -> dict[int, dict[str, np.ndarray]]:
    """Featured images preprocessed at each gallery resolution other than the build's own."""
    if "highres" not in names:
        return {}
    plan: dict[int, dict[str, np.ndarray]] = {}
    for res in sorted(set(cfg.analysis.highres) - {cfg.resolution}):
        plan[res] = {i: load_image(entries[i], res, multiple=multiple, max_pixels=cfg.images.max_pixels)
                     for i in featured}
    return plan


def _figures_json(figures) -> list[dict[str, Any]]:
    """One entry per picture file, with the figure it belongs to."""
    rows = []
    for f in figures:
        for r in f.rows:
            for p in r.panels:
                rows.append({"id": f"{f.id}/{len(rows)}", "figure": f.id, "kind": f.kind, "file": p.file,
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
        "crop": {"multiple": crop[0], "needs": dict(sorted(crop[1].items()))},
        "seed": cfg.seed,
        "models": [{"id": m.id, "timm": m.timm, "weights_source": m.weights_source,
                    "weights_sha256": m.weights_sha256, "stages": [s.name for s in m.stages],
                    "c5_norm": m.c5_norm} for m in facts],
        "featured": list(featured),
        "groups": {g: list(ids) for g, ids in groups.items()},
        "seconds": {k: round(v, 3) for k, v in summary.seconds.items()},
        "cache": {"computed": summary.computed, "reused": summary.reused, "damaged": summary.damaged,
                  "analyses_computed": summary.sections_computed, "analyses_reused": summary.sections_reused},
        "skipped": [list(s) for s in summary.skipped],
        "versions": {"python": platform.python_version(), **library_versions()},
    }
