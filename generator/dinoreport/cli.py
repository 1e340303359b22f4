"""The ``dinoreport`` command line: parses flags and calls the pipeline, nothing else."""
from __future__ import annotations

import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer

from .pipeline import PROJECT_ROOT

app = typer.Typer(
    help="Build a blog-style report of what timm vision backbones see: PCA maps, channels, "
         "statistics and more, as a static site plus one self-contained HTML file.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
)
images_app = typer.Typer(help="List or download the images of the manifest.", no_args_is_help=True,
                         rich_markup_mode=None)
app.add_typer(images_app, name="images")

# ./report.toml when run inside a report folder (see `dinoreport new`), else the project's demo.
DEFAULT_CONFIG = (Path("report.toml") if Path("report.toml").is_file()
                  else PROJECT_ROOT / "site_src" / "report.toml")
ConfigOpt = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="The report config (TOML).")
SCAFFOLD = Path(__file__).with_name("scaffold")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="On an error, print its full traceback too "
                          "(for an analysis that failed: the traceback inside it).")
TimeoutOpt = typer.Option(None, "--analysis-timeout", min=0, metavar="SECONDS",
                          help="Seconds any one analysis may run before the build stops with an error "
                               "naming it; 0: no limit. Overrides analysis.timeout_s of report.toml and "
                               "what each analysis declares (default 1800).")


AnalysesOpt = typer.Option(None, "--analyses", metavar="NAME,...",
                           help="Run only these analyses (comma-separated; `dinoreport analyses` lists them) and "
                                "what they need, which is added with a note. Overrides `analyses` of report.toml.")
SkipOpt = typer.Option(None, "--skip", metavar="NAME,...",
                       help="Leave these analyses out (comma-separated), e.g. --skip resolution_sweep for the "
                            "extractions at ½× and 2× the resolution; an analysis another one needs is refused, named.")


def _names(value: Optional[str]) -> Optional[tuple[str, ...]]:
    """``a,b , c`` -> ("a", "b", "c"); None stays None (the flag was not given)."""
    if value is None:
        return None
    return tuple(n.strip() for n in value.split(",") if n.strip())


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", err=True, fg="red")
    raise typer.Exit(code)


def _load(config: Path, images: Optional[Path] = None):
    from .config import ConfigError, load_config

    try:
        cfg = load_config(config)
    except ConfigError as e:
        _fail(str(e))
    if images is not None:
        if not images.is_dir():
            _fail(f"--images {images}: not a folder")
        cfg = cfg.with_images_dir(images)
    return cfg


def _write_failure(e: OSError, previous: bool = True) -> str:
    """What to say when a build could not write: the cache and the site have different fixes.
    ``previous``: the build replaces a site at --out (serve builds into a fresh folder)."""
    from .images import cache_dir

    why, where = e.strerror or str(e), e.filename or ""
    root = cache_dir().expanduser().resolve()
    path = Path(where).expanduser().resolve() if where else None
    kept = " — the previous site is unchanged" if previous else ""
    if path is not None and (path == root or root in path.parents):
        return (f"could not write the cache {root} ({why}: {where}); free some space there, or set "
                f"DINOREPORT_CACHE to a writable folder with free space{kept}")
    return f"could not write the report ({why}: {where}); check free disk space and permissions{kept}"


@contextmanager
def _build_errors(verbose: bool, *, serving: bool = False) -> Iterator[None]:
    """Map what a build raises to a one-line error and an exit code, as ``_fail`` does: 2 for
    what the user can fix in the inputs, 1 for an analysis that failed, 130 for Ctrl-C.
    ``serving``: the first build of ``serve`` failed, so there is nothing to serve (exit 1)."""
    from .analyses import AnalysisLoadError
    from .config import ConfigError
    from .images import ImageError
    from .outdir import OutDirError
    from .pipeline import BuildError
    from .page import RenderError
    from .runner import AnalysisError, AnalysisTimeout
    from .weights import WeightsError

    after = "\nnothing to serve: fix it and run `dinoreport serve` again" if serving else ""

    def show(e: BaseException) -> None:
        if verbose:
            shown = e.original if isinstance(e, AnalysisError) and e.original is not None else e
            traceback.print_exception(shown, file=sys.stderr)

    try:
        yield
    except AnalysisError as e:
        show(e)
        hint = "" if verbose or isinstance(e, AnalysisTimeout) else " (--verbose shows the traceback)"
        _fail(f"{e}{hint}{after}", code=1)
    # ValueError last: the typed ones are ValueErrors too; it covers a model's own checks.
    except (ConfigError, ImageError, BuildError, OutDirError, WeightsError, AnalysisLoadError, RenderError,
            ValueError) as e:
        show(e)
        _fail(f"{e}{after}", code=1 if serving else 2)
    except KeyboardInterrupt:
        # Daemon threads (an analysis still running) do not delay the exit: generator/dinoreport/runner.py.
        _fail("interrupted; the previous site (if any) is unchanged", code=130)
    except OSError as e:
        show(e)
        _fail(_write_failure(e, previous=not serving) + after, code=1 if serving else 2)


ThemeOpt = typer.Option(None, "--theme", metavar="DIR",
                        help="A theme folder whose templates and static files replace the default theme's, file by "
                             "file (docs/themes.md). Overrides `theme` of report.toml.")


@app.command()
def build(
    config: Path = ConfigOpt,
    out: Path = typer.Option(Path("site"), "--out", "-o", help="Output folder; replaced atomically."),
    images: Optional[Path] = typer.Option(None, "--images", help="Build from this folder of images "
                                          "instead of the images of the config (file names are ids; "
                                          "the part before the first '_' is the group)."),
    random_init: bool = typer.Option(False, "--random-init", help="Seeded random weights instead of "
                                     "pretrained ones: works offline, every page says so."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32, or bf16 (autocast): faster extraction on a GPU, "
                             "and on a CPU with bf16 instructions (AVX512-BF16, AMX); the numbers drift slightly "
                             "(python bench/build.py --gpu-table prints how much)."),
    fetch: bool = typer.Option(False, "--fetch", help="Download the manifest's URL images that are not "
                               "cached yet (after the weights are found; needs internet)."),
    keep_going: bool = typer.Option(False, "--keep-going", help="Skip images that cannot be decoded "
                                    "(listed in the terminal and the report) instead of stopping."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary."),
    discard_edits: bool = typer.Option(False, "--discard-edits", help="Replace files of the old site "
                                       "that were edited since it was built (files you added are always kept)."),
    jobs: int = typer.Option(0, "--jobs", "-j", min=0, help="Analyses computed at once (threads); 0: one "
                             "per CPU core, at most 4. Each holds its own maps, so memory grows with it."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when nothing changed since the site at --out "
                               "was built (otherwise such a build checks its inputs and writes nothing)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Compute every feature and every analysis again "
                                  "instead of reusing the cache's entries (they are replaced by the new ones; "
                                  "the cache is kept). For changes no cache key can see, such as a module your "
                                  "analysis imports from outside site_src/analyses/."),
    analysis_timeout: Optional[float] = TimeoutOpt,
    analyses: Optional[str] = AnalysesOpt,
    skip: Optional[str] = SkipOpt,
    theme: Optional[Path] = ThemeOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Build the report: site/index.html, site/report.html and site/data/*.json.

    The resolution sweep extracts the featured images again at ½× and 2× the resolution
    (analysis.sweep in report.toml changes them); --skip resolution_sweep leaves it out.
    """
    from .pipeline import BuildOptions
    from .pipeline import build as run_build

    cfg = _load(config, images)
    opts = BuildOptions(out=out, random_init=random_init, device=device, dtype=dtype, quiet=quiet,
                        keep_going=keep_going, fetch=fetch, discard_edits=discard_edits, jobs=jobs,
                        force=force, no_cache=no_cache, analysis_timeout_s=analysis_timeout,
                        analyses=_names(analyses), skip=_names(skip) or (), theme=theme)
    with _build_errors(verbose):
        summary = run_build(cfg, opts)
    if not quiet:
        typer.echo(summary.line(), err=True)


@app.command()
def compare(
    models: list[str] = typer.Argument(..., metavar="TIMM_NAME...", help="2 to 8 timm model names."),
    images: Optional[Path] = typer.Option(None, "--images", help="A folder of photos (file names are ids); "
                                          "default: the three scikit-image photos of `dinoreport new`."),
    out: Path = typer.Option(Path("site"), "--out", "-o", help="Output folder; replaced atomically."),
    weights: list[str] = typer.Option([], "--weights", metavar="NAME=FILE",
                                      help="A local weights file for the model NAME (its timm name); repeat per model."),
    random_init: bool = typer.Option(False, "--random-init", help="As for build: seeded random weights, offline."),
    resolution: Optional[int] = typer.Option(None, "--resolution", min=14, help="Short side in px; default 448 "
                                             "snapped to the models' crop rule."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32 or bf16, as for build."),
    jobs: int = typer.Option(0, "--jobs", "-j", min=0, help="As for build."),
    force: bool = typer.Option(False, "--force", help="As for build."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary."),
    analysis_timeout: Optional[float] = TimeoutOpt,
    analyses: Optional[str] = AnalysesOpt,
    skip: Optional[str] = SkipOpt,
    theme: Optional[Path] = ThemeOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """A report comparing any timm models on any photos, without writing a config.

    Labels are the timm names, stages each model's own (the family default), and the narrative
    a generic one shipped with dinoreport (dinoreport/compare/); every analysis but the DINOv3
    study's claims runs. Example: dinoreport compare convnext_tiny.fb_in1k resnet50.a1_in1k --images photos/
    """
    from .api import compare_config
    from .config import ConfigError
    from .pipeline import BuildOptions
    from .pipeline import build as run_build

    files = {}
    for item in weights:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            _fail(f"--weights {item}: write NAME=FILE (the model's timm name, then the weights file)")
        files[name] = file
    if images is not None and not images.is_dir():
        _fail(f"--images {images}: not a folder")
    try:
        cfg = compare_config(models, images=images, weights=files, resolution=resolution)
    except ConfigError as e:
        _fail(str(e))
    opts = BuildOptions(out=out, random_init=random_init, device=device, dtype=dtype, quiet=quiet, jobs=jobs,
                        force=force, analysis_timeout_s=analysis_timeout, analyses=_names(analyses),
                        skip=_names(skip) or (), theme=theme)
    with _build_errors(verbose):
        summary = run_build(cfg, opts)
    if not quiet:
        typer.echo(summary.line(), err=True)


@images_app.command("list")
def images_list(config: Path = ConfigOpt,
                images: Optional[Path] = typer.Option(None, "--images", help="A folder instead of the manifest.")) -> None:
    """Each image: id, groups, license, and whether it is available offline."""
    from .images import ImageError, available, file_problem
    from .pipeline import load_image_set

    cfg = _load(config, images)
    try:
        iset = load_image_set(cfg)
    except ImageError as e:
        _fail(str(e))
    for e in iset.entries:
        if available(e):
            state = "ok"
        elif e.url is not None:
            state = "not fetched"
        else:  # a local file or package data: fetching would not help
            problem = file_problem(e.file) if e.file is not None else "package data not found"
            state = f"{'missing' if problem.endswith('not found') else 'not usable'}: {problem}"
        typer.echo(f"{e.id:<22} {','.join(e.groups) or '-':<12} {e.license:<16} {state}")


@images_app.command("fetch")
def images_fetch(config: Path = ConfigOpt, timeout: float = typer.Option(20.0, help="Seconds per download.")) -> None:
    """Download the manifest's URL images into the cache (sha256 verified when known)."""
    from .images import ImageError, fetch
    from .pipeline import load_image_set

    cfg = _load(config)
    try:
        iset = load_image_set(cfg)
    except ImageError as e:
        _fail(str(e))
    results = fetch(iset.entries, timeout=timeout, max_pixels=cfg.images.max_pixels,
                    progress=lambda s: typer.echo(s, err=True))
    failed = [(i, s) for i, s in results if s.startswith("failed")]
    for i, s in results:
        typer.echo(f"{i:<22} {s}")
    if failed:
        _fail(f"{len(failed)} image(s) could not be fetched (see above)", code=1)


@app.command()
def models(config: Path = ConfigOpt) -> None:
    """Each model of the config: its stages and whether its weights are available here."""
    from .modelmeta import BackboneError, model_meta
    from .weights import check_weights_file, resolve_weights

    cfg = _load(config)
    for spec in cfg.models:
        try:
            meta = model_meta(spec.timm, spec.stages)
        except BackboneError as e:
            _fail(f"{cfg.path}: models.{spec.id}: {e}")
        stages = ", ".join(f"{s.name}({s.channels}ch/{s.stride})" for s in meta.stages)
        others = ", ".join(s.name for s in meta.available if s not in meta.stages)
        w = resolve_weights(spec, online=False)
        problem = check_weights_file(w.path) if w else None
        if problem:
            where = f"not usable: {problem}"
        else:
            where = f"{w.source} {w.path}" if w else "not available offline (needs internet once, a local file, or --random-init)"
        typer.echo(f"{spec.id}\n  timm:    {spec.timm}\n  label:   {spec.label}\n  stages:  {stages}"
                   + (f"\n  also:    {others}" if others else "")
                   + f"\n  input:   sides a multiple of {meta.multiple} px\n  weights: {where}")


@app.command()
def serve(
    config: Path = ConfigOpt,
    port: int = typer.Option(8000, help="Port on 127.0.0.1."),
    random_init: bool = typer.Option(False, "--random-init", help="As for build."),
    images: Optional[Path] = typer.Option(None, "--images", help="As for build."),
    analysis_timeout: Optional[float] = TimeoutOpt,
    analyses: Optional[str] = AnalysesOpt,
    skip: Optional[str] = SkipOpt,
    theme: Optional[Path] = ThemeOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Build into a temporary folder, serve it on 127.0.0.1 and rebuild when site_src/ or the theme change."""
    from .serve import ServeError, serve_forever

    cfg = _load(config, images)
    try:
        with _build_errors(verbose, serving=True):  # the first build's; a failed rebuild keeps serving
            serve_forever(cfg, port=port, random_init=random_init, images=images,
                          analysis_timeout_s=analysis_timeout, analyses=_names(analyses), skip=_names(skip) or (),
                          theme=theme)
    except ServeError as e:  # raised from inside: SystemExit from _fail passes through
        _fail(str(e))


@app.command()
def publish(
    site: Path = typer.Option(Path("site"), "--site", help="The built site to publish."),
    remote: str = typer.Option("origin", help="Git remote (name or URL) to push to."),
    branch: str = typer.Option("gh-pages", help="Branch to commit the site to."),
    message: str = typer.Option("Publish report", "--message", "-m", help="Commit message."),
    replace: bool = typer.Option(
        False, "--replace",
        help="Publish the site as the whole branch: also remove or overwrite files on it that "
             "dinoreport did not write (CNAME included; they stay in the branch's history)."),
) -> None:
    """Commit the built site to a gh-pages branch and push it (needs git).

    Files committed on the branch by other means (a CNAME holding the custom domain, a
    hand-written page) are kept when the site does not contain them, and listed; files an
    earlier publish wrote that are gone from the site are removed. When the site would replace
    such a file with a different one, nothing is pushed unless --replace. Symbolic links in the
    site are refused, each named: remove them first. The branch records what publish wrote in
    data/.dinoreport-published.json.
    """
    from .publish import PublishError, publish_site

    try:
        res = publish_site(site, remote=remote, branch=branch, message=message, replace=replace)
    except PublishError as e:
        _fail(str(e))
    typer.echo(f"published {site} as {res.sha[:12]} to {remote} {branch}")
    if res.kept:
        typer.echo(f"kept on {branch}, not written by dinoreport (--replace removes them): " + ", ".join(res.kept))
    if res.replaced:
        typer.echo(f"removed or replaced on {branch} (--replace), not written by dinoreport: " + ", ".join(res.replaced))


@app.command()
def clean(yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask (needed when not at a terminal).")) -> None:
    """Delete the cache's own files (features, analyses, figures, fetched images); nothing else."""
    from .cachedir import cache_files, clean_cache
    from .images import cache_dir

    root = cache_dir()
    files = cache_files(root) if root.is_dir() else []
    if not files:
        typer.echo(f"nothing to clean: no dinoreport cache files in {root}")
        return
    if not yes:
        if not sys.stdin.isatty():
            _fail(f"not at a terminal: pass --yes to delete {len(files)} cache files under {root}")
        if not typer.confirm(f"Delete {len(files)} cache files under {root}?"):
            raise typer.Exit(1)
    n, left = clean_cache(root)
    typer.echo(f"removed {n} cache files under {root}"
               + (f"; kept {len(left)} entries that are not the cache's" if left else ""))


@app.command()
def new(folder: Path = typer.Argument(..., help="The report folder to create (must not exist or be empty).")) -> None:
    """Start a report: report.toml, a narrative, an image manifest and an example analysis."""
    if folder.exists() and not folder.is_dir():
        _fail(f"{folder} exists and is a file, not a folder; choose a new folder")
    if folder.is_dir() and any(folder.iterdir()):
        _fail(f"{folder} exists and is not empty; choose a new folder")
    problem = _new_folder_problem(folder)
    if problem:
        _fail(problem, code=1)
    try:
        _copy_scaffold(folder)
    except OSError as e:
        _fail(f"cannot create {folder} ({_first_os_error(e)}); nothing was written — "
              "choose a folder you can write to, or fix the permissions", code=1)
    typer.echo(f"created {folder}: report.toml, 01-report.md, images/manifest.toml, "
               f"analyses/feature_norms.py\nnext: cd {folder} && dinoreport build --random-init")


def _new_folder_problem(folder: Path) -> Optional[str]:
    """Why ``dinoreport new`` cannot create ``folder`` (checked before writing), or None."""
    if folder.is_symlink() and not folder.exists():
        return (f"{folder} is a symbolic link to {os.readlink(folder)}, which does not exist; "
                "remove the link or choose another folder")
    for parent in folder.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is a file, not a folder, so {folder} cannot be made under it; choose another path"
            break
        if parent.is_symlink():
            return (f"{parent} is a symbolic link to {os.readlink(parent)}, which does not exist; "
                    f"remove the link or choose another path for {folder}")
    return None


def _first_os_error(e: OSError) -> str:
    """``strerror: path`` of an OSError; copytree gathers its failures into one shutil.Error."""
    import shutil

    if isinstance(e, shutil.Error) and e.args and isinstance(e.args[0], list) and e.args[0]:
        return str(e.args[0][0][2])  # (src, dst, why) of the first failure
    return f"{e.strerror or e}: {e.filename}" if e.filename else str(e.strerror or e)


def _copy_scaffold(folder: Path) -> None:
    """Copy the scaffold to ``folder`` (absent, or an empty folder) whole or not at all.

    An absent folder is assembled beside its place and renamed into it; into an empty folder the
    files are copied and, on failure, removed again. Missing parent folders are made, and removed
    again on failure.
    """
    import shutil
    import tempfile

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    if folder.is_dir():  # exists and is empty (checked by the caller)
        try:
            shutil.copytree(SCAFFOLD, folder, dirs_exist_ok=True, ignore=ignore)
        except BaseException:
            for child in folder.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            raise
        return
    made = []  # parent folders this call creates, outermost first
    for parent in reversed(folder.absolute().parents):
        if not parent.exists():
            made.append(parent)
    try:
        for parent in made:
            parent.mkdir()
        stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.new-", dir=folder.absolute().parent))
        try:
            shutil.copytree(SCAFFOLD, stage / "report", ignore=ignore)
            os.rename(stage / "report", folder)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    except BaseException:
        for parent in reversed(made):
            try:
                parent.rmdir()
            except OSError:
                pass
        raise


@app.command("analyses")
def analyses(config: Path = ConfigOpt) -> None:
    """The registered analyses in report order (built-in, plugins and the report's analyses/
    folder): each with its description, its options ([analysis] keys of report.toml) with their
    defaults and limits, and the figure and table kinds it makes."""
    from .analyses import AnalysisLoadError, get_analysis, list_analyses, load_user_analyses, resolve_options
    from .config import ConfigError

    cfg = _load(config)
    try:
        load_user_analyses(cfg.root)
        resolve_options(cfg)
    except (AnalysisLoadError, ConfigError) as e:
        _fail(str(e))
    for name in list_analyses():
        typer.echo("\n".join(analysis_lines(get_analysis(name))))


def analysis_lines(a) -> list[str]:
    """What ``dinoreport analyses`` says about analysis ``a``."""
    import json

    lines = [f"{a.name}: {a.description()}" if a.description() else a.name]
    for s in a.option_specs:
        default = json.dumps(list(s.default) if s.is_tuple else s.default)
        lines.append(f"  option {s.name} = {default} ({s.limits()}): {s.help}")
    lines += [f"  figure {k.name}: {k.description}" for k in a.figures]
    lines += [f"  table {k.name}: {k.description}" for k in a.tables]
    return lines


if __name__ == "__main__":  # pragma: no cover
    app()
