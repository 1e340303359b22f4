"""dinoreport: what do vision backbones see? A report of timm models' feature maps.

The public API (docs/api.md); names are imported on first use, so ``import dinoreport`` (and the
command line's start-up) does not pay for torch, timm or the analyses:

- :func:`extract` -> :class:`FeatureMaps`: one model's feature maps for a set of photos, through
  the same preprocessing, crop rule, stages and feature cache as a build;
- :func:`build` -> :class:`BuildSummary`: a whole report (``dinoreport build`` / ``compare``);
- :mod:`dinoreport.metrics`: the pure analysis functions the report uses;
- :mod:`dinoreport.show`: the report's pictures, inline in Jupyter (``pca_rgb``, ``components``,
  ``histogram``);
- :func:`load_config` -> :class:`ReportConfig`; :func:`choose_analyses`, :func:`list_analyses`.
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ["extract", "FeatureMaps", "build", "BuildSummary", "compare_config", "load_config", "ReportConfig",
           "choose_analyses", "list_analyses", "metrics", "show"]

_WHERE = {
    "extract": "api", "FeatureMaps": "api", "build": "api", "compare_config": "api",
    "BuildSummary": "pipeline", "choose_analyses": "pipeline",
    "load_config": "config", "ReportConfig": "config",
    "list_analyses": "analyses",
}


def __getattr__(name: str) -> Any:
    if name in ("metrics", "show"):
        return importlib.import_module(f"{__name__}.{name}")
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value  # once imported, a plain attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
