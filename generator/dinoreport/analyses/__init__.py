"""The registered analyses: the built-in ones, then the user's.

Importing this package imports each built-in analysis module, whose ``@register_analysis``
files it in :mod:`.registry` (the registry itself imports no analysis, so there is no cycle).
:func:`load_user_analyses` adds analyses from outside the package: every ``*.py`` in a report's
``analyses/`` folder and every entry point of the group ``dinoreport.analyses``.
"""
from __future__ import annotations

import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path

from . import (  # noqa: F401  (importing registers them)
    across_pca, cka, claims, correspondences, cosegmentation, explorer, feature_stats, fg_probe, highres,
    mask_agreement, norm_maps, position_bias, random_channels, reference_masks, resolution_sweep, spectrum,
    stage_pca, within_pca,
)
from .registry import (
    DEFAULT_TIMEOUT_S, Analysis, AnalysisLoadError, FigureKind, ForegroundMasks, Needs, ProbeMasks, SectionOutput,
    TableKind, figure_kinds, get_analysis, list_analyses, register_analysis, resolve_options, table_kinds,
)
from ..options import option

__all__ = [
    "Analysis", "FigureKind", "ForegroundMasks", "Needs", "ProbeMasks", "SectionOutput", "TableKind", "figure_kinds",
    "get_analysis", "list_analyses", "register_analysis", "table_kinds", "load_user_analyses", "forget_user_analyses",
    "ENTRY_POINT_GROUP", "AnalysisLoadError", "DEFAULT_TIMEOUT_S", "option", "resolve_options",
]

ENTRY_POINT_GROUP = "dinoreport.analyses"


def _why(e: BaseException) -> str:
    """What went wrong importing an analysis module; the package's old name is pointed out."""
    name = getattr(e, "name", None) or ""
    if isinstance(e, ImportError) and (name == "generator" or name.startswith("generator.")):
        return (f"it imports {name!r}, the package's old name: the package is now called dinoreport; "
                "write dinoreport where the import says generator (e.g. `from dinoreport.analyses "
                "import register_analysis`)")
    return f"{type(e).__name__}: {e}"


def load_user_analyses(site_src: Path | None) -> list[str]:
    """Import the analyses of installed plugins and of ``<site_src>/analyses/*.py``.

    Each module registers its analyses with ``@register_analysis`` when imported; a module
    is imported once per process. Returns the modules imported, for messages.
    """
    loaded = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            ep.load()
        except (KeyboardInterrupt, AnalysisLoadError):  # the latter names the files already
            raise
        except BaseException as e:  # noqa: BLE001 - any failure in a plugin (sys.exit too) is reported the same way
            raise AnalysisLoadError(f"entry point {ep.name} = {ep.value} ({ENTRY_POINT_GROUP}): "
                                    f"{_why(e)}") from e
        loaded.append(ep.value)
    folder = Path(site_src) / "analyses" if site_src is not None else None
    if folder is None or not folder.is_dir():
        return loaded
    for path in sorted(folder.glob("*.py")):
        name = f"dinoreport_site_analyses.{path.stem}"
        if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
            continue
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except (KeyboardInterrupt, AnalysisLoadError):  # the latter names the files already
            del sys.modules[name]
            raise
        except BaseException as e:  # noqa: BLE001 - sys.exit() at import too
            del sys.modules[name]
            raise AnalysisLoadError(f"{path}: {_why(e)}") from e
        loaded.append(str(path))
    return loaded


def forget_user_analyses(site_src: Path) -> None:
    """Let the next :func:`load_user_analyses` import ``<site_src>/analyses/*.py`` again (``serve``
    after an edit: a module is otherwise imported once per process). Each re-import replaces
    its registrations."""
    for path in sorted((Path(site_src) / "analyses").glob("*.py")):
        sys.modules.pop(f"dinoreport_site_analyses.{path.stem}", None)
