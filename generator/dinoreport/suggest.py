"""Names that look like a mistyped one, for "did you mean" in error messages.

A leaf module (it imports nothing of the package), so config, model facts, the image manifest
and the analysis options can all use it without importing each other.
"""
from __future__ import annotations

import difflib
from typing import Iterable

__all__ = ["closest", "did_you_mean"]


def closest(name: str, candidates: Iterable[str], n: int = 3, cutoff: float = 0.5) -> list[str]:
    """Names from ``candidates`` that look like ``name`` (best first, at most ``n``)."""
    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=cutoff)


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` — did you mean 'x'?`` for the closest of ``candidates``, else ``(valid keys: ...)``."""
    candidates = sorted(candidates)
    hits = closest(name, candidates, n=1)
    return f" — did you mean '{hits[0]}'?" if hits else f" (valid keys: {', '.join(candidates)})"
