"""The ``dinoreport`` command line: parses flags and calls the pipeline, nothing else."""
from __future__ import annotations

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


def _write_failure(e: OSError) -> str:
    """What to say when a build could not write: the cache and the site have different fixes."""
    from .images import cache_dir

    why, where = e.strerror or str(e), e.filename or ""
    root = cache_dir().expanduser().resolve()
    path = Path(where).expanduser().resolve() if where else None
    if path is not None and (path == root or root in path.parents):
        return (f"could not write the cache {root} ({why}: {where}); free some space there, or set "
                "DINOREPORT_CACHE to a writable folder with free space — the previous site is unchanged")
    return (f"could not write the report ({why}: {where}); "
            "check free disk space and permissions — the previous site is unchanged")


@contextmanager
def _build_errors(verbose: bool) -> Iterator[None]:
    """Map what a build raises to a one-line error and an exit code, as ``_fail`` does: 2 for
    what the user can fix in the inputs, 1 for an analysis that failed, 130 for Ctrl-C."""
    from .analyses import AnalysisLoadError
    from .config import ConfigError
    from .images import ImageError
    from .outdir import OutDirError
    from .pipeline import BuildError
    from .runner import AnalysisError, AnalysisTimeout
    from .weights import WeightsError

    def show(e: BaseException) -> None:
        if verbose:
            shown = e.original if isinstance(e, AnalysisError) and e.original is not None else e
            traceback.print_exception(shown, file=sys.stderr)

    try:
        yield
    except AnalysisError as e:
        show(e)
        hint = "" if verbose or isinstance(e, AnalysisTimeout) else " (--verbose shows the traceback)"
        _fail(f"{e}{hint}", code=1)
    except (ConfigError, ImageError, BuildError, OutDirError, WeightsError, AnalysisLoadError, ValueError) as e:
        show(e)
        _fail(str(e))
    except KeyboardInterrupt:
        # Daemon threads (an analysis still running) do not delay the exit: generator/runner.py.
        _fail("interrupted; the previous site (if any) is unchanged", code=130)
    except OSError as e:
        show(e)
        _fail(_write_failure(e))


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
    analysis_timeout: Optional[float] = TimeoutOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Build the report: site/index.html, site/report.html and site/data/*.json."""
    from .pipeline import BuildOptions
    from .pipeline import build as run_build

    cfg = _load(config, images)
    opts = BuildOptions(out=out, random_init=random_init, device=device, dtype=dtype, quiet=quiet,
                        keep_going=keep_going, fetch=fetch, discard_edits=discard_edits, jobs=jobs,
                        force=force, analysis_timeout_s=analysis_timeout)
    with _build_errors(verbose):
        summary = run_build(cfg, opts)
    if not quiet:
        typer.echo(summary.line(), err=True)


@images_app.command("list")
def images_list(config: Path = ConfigOpt,
                images: Optional[Path] = typer.Option(None, "--images", help="A folder instead of the manifest.")) -> None:
    """Each image: id, groups, license, and whether it is available offline."""
    from .images import ImageError, available
    from .pipeline import load_image_set

    cfg = _load(config, images)
    try:
        iset = load_image_set(cfg)
    except ImageError as e:
        _fail(str(e))
    for e in iset.entries:
        state = "ok" if available(e) else "not fetched"
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
    verbose: bool = VerboseOpt,
) -> None:
    """Build into a temporary folder, serve it on 127.0.0.1 and rebuild when site_src/ or the theme change."""
    from .serve import ServeError, serve_forever

    cfg = _load(config, images)
    with _build_errors(verbose):  # the first build's; a failed rebuild keeps serving the last good site
        try:
            serve_forever(cfg, port=port, random_init=random_init, images=images,
                          analysis_timeout_s=analysis_timeout)
        except ServeError as e:
            _fail(str(e))


@app.command()
def publish(
    site: Path = typer.Option(Path("site"), "--site", help="The built site to publish."),
    remote: str = typer.Option("origin", help="Git remote (name or URL) to push to."),
    branch: str = typer.Option("gh-pages", help="Branch to commit the site to."),
    message: str = typer.Option("Publish report", "--message", "-m", help="Commit message."),
) -> None:
    """Commit the built site to a gh-pages branch and push it."""
    from .publish import PublishError, publish_site

    try:
        sha = publish_site(site, remote=remote, branch=branch, message=message)
    except PublishError as e:
        _fail(str(e))
    typer.echo(f"published {site} as {sha[:12]} to {remote} {branch}")


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
    import shutil

    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        _fail(f"{folder} exists and is not empty; choose a new folder")
    shutil.copytree(SCAFFOLD, folder, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    typer.echo(f"created {folder}: report.toml, 01-report.md, images/manifest.toml, "
               f"analyses/feature_norms.py\nnext: cd {folder} && dinoreport build --random-init")


@app.command("analyses")
def analyses(config: Path = ConfigOpt) -> None:
    """The registered analyses in report order: built-in, plugins and the report's analyses/ folder."""
    from .analyses import AnalysisLoadError, list_analyses, load_user_analyses

    cfg = _load(config)
    try:
        load_user_analyses(cfg.root)
    except AnalysisLoadError as e:
        _fail(str(e))
    for name in list_analyses():
        typer.echo(name)


if __name__ == "__main__":  # pragma: no cover
    app()
