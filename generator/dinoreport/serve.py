"""``dinoreport serve``: build into a temporary folder, serve it on 127.0.0.1, rebuild on change.

Watched: the report's folder (``site_src/``: the config, the narrative, ``analyses/*.py``) and
the theme's folders (``--theme`` or report.toml's ``theme``, and the default theme). A change to
the narrative or the theme only re-renders the pages from the last build's computed page; a
change to a ``.toml`` file or to a report analysis (``analyses/*.py``) rebuilds (features come
from the cache). A failed rebuild keeps the last good site up.
"""
from __future__ import annotations

import functools
import http.server
import shutil
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

from .config import ReportConfig, load_config
from .analyses import forget_user_analyses
from .pipeline import BuildOptions, build, report_theme
from .render import render_site
from .theme import theme_folders

__all__ = ["serve_forever", "snapshot", "Handler", "make_server", "HOST", "ServeError"]

HOST = "127.0.0.1"  # never all interfaces: the preview is for this machine only


def snapshot(folders: list[Path]) -> dict[str, float]:
    """``{path: mtime}`` of every file below ``folders`` (sorted walk)."""
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                out[str(p)] = p.stat().st_mtime
    return out


class ServeError(RuntimeError):
    """The preview server cannot start; the message says why and what to do."""


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves only files below its directory: ``..`` is refused by the base class; a symlink
    that points outside, a folder without index.html and a NUL in the path are refused here.
    Quiet log."""

    def send_head(self):
        if "\0" in urllib.parse.unquote(self.path):
            self.send_error(400, "NUL in path")
            return None
        path = Path(self.translate_path(self.path))
        root = Path(self.directory).resolve()
        try:
            real = path.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            real = None
        if real is None or not (real == root or root in real.parents):
            self.send_error(404, "File not found")
            return None
        return super().send_head()

    def list_directory(self, path):
        self.send_error(404, "File not found")  # no folder listings
        return None

    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


def make_server(site: Path, port: int = 8000) -> http.server.ThreadingHTTPServer:
    """An HTTP server for the files below ``site`` on 127.0.0.1:``port`` (0: any free port).

    Raises
    ------
    ServeError
        The port is taken (or not allowed); the message names it and the way out.
    """
    handler = functools.partial(Handler, directory=str(site))
    try:
        return http.server.ThreadingHTTPServer((HOST, port), handler)
    except OSError as e:
        raise ServeError(f"cannot listen on {HOST}:{port} ({e.strerror or e}); another program "
                         "(maybe another `dinoreport serve`) uses it — pass --port with another number, "
                         "or --port 0 for any free port") from None


def _watched(cfg: ReportConfig, opts: BuildOptions) -> list[Path]:
    """The folders serve watches: the report's (config, narrative, analyses/) and the theme's."""
    return [cfg.root, *theme_folders(report_theme(cfg, opts))]


def _rebuild_reason(cfg: ReportConfig, changed: set[str]) -> str | None:
    """What in ``changed`` (paths) needs a whole rebuild rather than a re-render: "config" (a
    ``.toml`` file) or "analysis" (``<report folder>/analyses/*.py``); None: re-rendering suffices."""
    if any(p.endswith(".toml") for p in changed):
        return "config"
    analyses = (cfg.root / "analyses").resolve()
    if any(p.endswith(".py") and Path(p).resolve().parent == analyses for p in changed):
        return "analysis"
    return None


def serve_forever(cfg: ReportConfig, *, port: int = 8000, random_init: bool = False,
                  poll: float = 1.0, images: Path | None = None, analysis_timeout_s: float | None = None,
                  analyses: tuple[str, ...] | None = None, skip: tuple[str, ...] = (),
                  theme: Path | None = None) -> None:
    """Build, serve on 127.0.0.1:``port`` and watch; ``images`` is ``--images`` and ``theme``
    ``--theme`` (both kept on reloads),
    ``analysis_timeout_s`` is ``--analysis-timeout``; ``analyses`` and ``skip`` are ``--analyses``
    and ``--skip`` (see :func:`dinoreport.pipeline.choose_analyses`).

    A failing first build raises its error (there is no site to serve yet); a failing rebuild
    is printed and the last good site stays up. The temporary folder is removed whatever the end.
    """
    site_root = Path(tempfile.mkdtemp(prefix="dinoreport-serve-"))
    try:
        _serve(cfg, site_root / "site", port=port, random_init=random_init, poll=poll, images=images,
               analysis_timeout_s=analysis_timeout_s, analyses=analyses, skip=skip, theme=theme)
    finally:
        shutil.rmtree(site_root, ignore_errors=True)


def _serve(cfg: ReportConfig, site: Path, *, port: int, random_init: bool, poll: float,
           images: Path | None, analysis_timeout_s: float | None,
           analyses: tuple[str, ...] | None = None, skip: tuple[str, ...] = (), theme: Path | None = None) -> None:
    opts = BuildOptions(out=site, random_init=random_init, quiet=False, force=True,  # needs the page to re-render
                        analysis_timeout_s=analysis_timeout_s, analyses=analyses, skip=tuple(skip), theme=theme)
    server = make_server(site, port)  # before the build: a taken port fails in a second, not minutes
    serving = False
    try:
        summary = build(cfg, opts)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        serving = True
        print(f"serving http://{HOST}:{server.server_address[1]}/ (Ctrl-C to stop)", flush=True)
        seen = snapshot(_watched(cfg, opts))
        while True:
            time.sleep(poll)
            now = snapshot(_watched(cfg, opts))
            if now == seen:
                continue
            changed = {p for p in set(now) | set(seen) if now.get(p) != seen.get(p)}
            seen = now
            try:
                why = _rebuild_reason(cfg, changed)
                if why is not None:
                    forget_user_analyses(cfg.root)  # an edited analysis is imported again
                    cfg = load_config(cfg.path)
                    if images is not None:
                        cfg = cfg.with_images_dir(images)
                    summary = build(cfg, opts)
                    seen = snapshot(_watched(cfg, opts))  # the config may name another theme
                    print(f"rebuilt ({why} changed)", flush=True)
                else:
                    t = time.perf_counter()
                    render_site(summary.page, site_src=cfg.root, theme=report_theme(cfg, opts), out=site)
                    print(f"re-rendered in {time.perf_counter() - t:.2f} s", flush=True)
            except Exception as e:  # noqa: BLE001 - keep serving the last good site
                print(f"rebuild failed, still serving the last good site: {e}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        if serving:  # shutdown() waits for serve_forever's loop: only when it runs
            server.shutdown()
        server.server_close()
