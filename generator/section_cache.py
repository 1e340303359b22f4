"""Reuse of a section's output (results, figures, tables) when none of its inputs changed.

A section's key is the sha256 of: its name, the source of the code that computes and draws
(analysis/, analyses/, figures.py, page.py, context.py), the feature cache keys it reads,
and every config value it can see. A hit restores the pickled :class:`SectionOutput` and
copies its picture files (stored content-addressed under the cache) into the new site.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import shutil
from functools import lru_cache
from pathlib import Path

from .atomic import atomic_write
from .context import BuildContext
from .analyses.registry import SectionOutput

__all__ = ["SectionCache", "section_key"]

_CODE = ("analysis", "analyses", "figures.py", "page.py", "context.py")


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    root = Path(__file__).parent
    h = hashlib.sha256()
    for name in _CODE:
        p = root / name
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            h.update(f.relative_to(root).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _file_sha(path: Path | None) -> str | None:
    return None if path is None or not path.is_file() else hashlib.sha256(path.read_bytes()).hexdigest()


def section_key(name: str, ctx: BuildContext) -> str:
    cfg = ctx.cfg
    blob = {
        "name": name,
        "code": code_fingerprint(),
        "resolution": cfg.resolution,
        "seed": cfg.seed,
        "analysis": dataclasses.asdict(cfg.analysis),
        "models": [dataclasses.asdict(m) | {"stages": [dataclasses.asdict(s) for s in m.stages]}
                   for m in ctx.models],
        "keys": ctx.keys,
        "highres": {str(r): v for r, v in ctx.extra_keys.items()},
        "featured": list(ctx.featured),
        "groups": {g: list(v) for g, v in sorted(ctx.groups.items())},
        "masks": {i: _file_sha(e.mask) for i, e in sorted(ctx.entries.items()) if i in ctx.images},
        "random_init": ctx.random_init,
        "dtype": ctx.dtype,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


class SectionCache:
    """``<root>/sections/<key>.pkl`` (output + file list) and ``<root>/figures/<name>`` (bytes)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.hits = 0
        self.computed = 0

    def _pkl(self, key: str) -> Path:
        return self.root / "sections" / f"{key}.pkl"

    def get(self, key: str, site: Path) -> tuple[SectionOutput, list[str]] | None:
        """The stored output with its files copied into ``site``, or None (absent or damaged)."""
        p = self._pkl(key)
        if not p.is_file():
            return None
        try:
            out, files = pickle.loads(p.read_bytes())
            for rel in files:
                src = self.root / "figures" / Path(rel).name
                dst = site / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
        except Exception:  # noqa: BLE001 - anything wrong with an entry means: compute again
            p.unlink(missing_ok=True)
            return None
        self.hits += 1
        return out, files

    def put(self, key: str, out: SectionOutput, files: list[str], site: Path) -> None:
        figs = self.root / "figures"
        figs.mkdir(parents=True, exist_ok=True)
        for rel in files:
            dst = figs / Path(rel).name
            if not dst.is_file():
                atomic_write(dst, (site / rel).read_bytes())
        atomic_write(self._pkl(key), pickle.dumps((out, sorted(files)), protocol=pickle.HIGHEST_PROTOCOL))
        self.computed += 1
