"""Where a report's theme comes from: the default theme, and a user's folder over it.

The default theme is the project's top-level ``templates/`` folder. A wheel ships it as the
data package ``dinoreport._theme`` (pyproject.toml maps that package to ``templates/``); run
from a checkout (``PYTHONPATH=generator``, or an editable install) it is read in place.

A user's theme folder (``--theme DIR``, ``theme = "..."`` in report.toml) overrides any subset
of the default's files, file by file, as MkDocs' ``custom_dir`` does: a template or static file
it does not have comes from the default. The contract a theme must keep is docs/themes.md.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import jinja2

__all__ = ["DEFAULT_THEME", "TEMPLATE_NAMES", "STATIC_NAMES", "ThemeError", "theme_folders",
           "theme_loader", "static_text"]

#: the templates the renderer asks a theme for (each may be overridden alone; docs/themes.md)
TEMPLATE_NAMES = ("page.html.j2", "figure.html.j2", "table.html.j2", "explorer.html.j2")
#: the static files the renderer reads from a theme's ``static/`` (written to the site's ``assets/``)
STATIC_NAMES = ("style.css", "report.js")


class ThemeError(ValueError):
    """A theme folder that cannot be used; the message names it and says what to do."""


def _default_theme() -> Path:
    """The installed ``dinoreport._theme`` data package, else the checkout's ``templates/``."""
    try:
        spec = importlib.util.find_spec("dinoreport._theme")
    except ImportError:  # no dinoreport package on the path (this module loaded another way)
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    # generator/dinoreport/theme.py -> the checkout's top level
    return Path(__file__).resolve().parents[2] / "templates"


DEFAULT_THEME = _default_theme()


def theme_folders(theme: Path | None) -> tuple[Path, ...]:
    """The folders to look in, first match wins: ``theme`` (if given), then the default.

    Raises
    ------
    ThemeError
        ``theme`` is not a folder (the message names it), or the default theme is missing
        (a broken install).
    """
    if not (DEFAULT_THEME / "page.html.j2").is_file():
        raise ThemeError(f"the default theme is missing from {DEFAULT_THEME} (a broken install?): "
                         "reinstall dinoreport")
    if theme is None:
        return (DEFAULT_THEME,)
    folder = Path(theme).expanduser().resolve()
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ThemeError(f"theme folder {folder} {what}: pass --theme or set `theme` in report.toml to a "
                         "folder holding the templates and static files it overrides (see docs/themes.md)")
    return (folder, DEFAULT_THEME) if folder != DEFAULT_THEME.resolve() else (DEFAULT_THEME,)


def theme_loader(folders: tuple[Path, ...]) -> jinja2.BaseLoader:
    """A loader that takes each template from the first of ``folders`` holding it."""
    return jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(f)) for f in folders])


def static_text(folders: tuple[Path, ...], name: str) -> str:
    """The text of ``static/<name>`` from the first of ``folders`` holding it (UTF-8)."""
    for f in folders:
        p = f / "static" / name
        if p.is_file():
            return p.read_text(encoding="utf-8")
    raise ThemeError(f"static/{name} is in none of the theme folders {', '.join(map(str, folders))}")
