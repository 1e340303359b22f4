"""The analysis registry: each report section is a function filed under its own name.

Like timm's ``@register_model``: ``@register_analysis`` files a section function, and
``list_analyses()`` feeds the CLI, the pipeline and the tests. A section takes the build
context (features, images, config) and returns a :class:`SectionOutput`; it computes with the
pure functions of ``generator.analysis`` and draws with ``generator.figures``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from .page import Figure, Table

__all__ = ["SectionOutput", "register_analysis", "list_analyses", "get_analysis"]


@dataclass
class SectionOutput:
    """results: ``{results.json key: [row dicts]}``; figures and tables in page order;
    shared: values handed to later sections through ``ctx.extras`` (e.g. the PC1 masks)."""

    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    explorer: dict[str, Any] | None = None
    shared: dict[str, Any] = field(default_factory=dict)  # values later sections read (ctx.extras)


_REGISTRY: dict[str, tuple[int, Callable]] = {}


def register_analysis(name: str, order: int) -> Callable[[Callable], Callable]:
    """File a section function under ``name``; ``order`` places it in the report."""

    def wrap(fn: Callable) -> Callable:
        if name in _REGISTRY:
            warnings.warn(f"Overwriting analysis {name} in registry", stacklevel=2)
        _REGISTRY[name] = (order, fn)
        return fn

    return wrap


def list_analyses() -> list[str]:
    """Registered analyses in report order."""
    from . import sections  # noqa: F401  (importing registers them)

    return [n for n, _ in sorted(_REGISTRY.items(), key=lambda kv: (kv[1][0], kv[0]))]


def get_analysis(name: str) -> Callable:
    list_analyses()
    if name not in _REGISTRY:
        raise KeyError(f"unknown analysis {name!r}; known: {', '.join(list_analyses())}")
    return _REGISTRY[name][1]
