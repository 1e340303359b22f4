"""Reuse of a section's output (results, figures, tables) when none of its inputs changed.

A section's key is the sha256 of: its name, the code it can use (every module of this
package, and for an analysis from outside it every module of its folder or package:
:mod:`dinoreport.codehash`), the feature cache keys it reads, its own options, the keys of the
sections whose artifacts it reads, and the other config values it can see. A hit restores the :class:`SectionOutput` and copies its picture files (stored
content-addressed under the cache) into the new site.

Entries are data, never pickles: ``sections/<key>.json`` holds the output as a JSON tree
(dataclasses by their fields, tagged with their class name from a fixed list) and
``sections/<key>.npz`` its arrays (read with ``allow_pickle=False``). A file in the cache
therefore cannot run code, whatever it contains.

A cache folder may be shared, so an entry is checked before anything of it is used: its
``sha256`` over the output, the file list and the arrays' digest must match (an edited number
or panel is refused), and every picture path in it must be a content-hash name of the build's
own figure store (``assets/fig/<sha256[:20]>.<ext>``) listed among its files, whose stored
bytes match that name. A refused entry is removed and the section computed again.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write
from .codehash import package_sha256
from .figures import is_figure_path, matches_name
from .context import BuildContext
from .analyses.registry import SectionOutput
from .page import Figure, Panel, Row, Table

__all__ = ["SectionCache", "section_key", "encode", "decode", "EntryError"]


def _file_sha(path: Path | None) -> str | None:
    return None if path is None or not path.is_file() else hashlib.sha256(path.read_bytes()).hexdigest()


def section_key(name: str, ctx: BuildContext, options: Any = None, upstream: list[str] | tuple[str, ...] = ()) -> str:
    """The key of section ``name`` (with its code digest) under ``ctx``; ``options``: the
    analysis's own options (a dataclass, or None); ``upstream``: the keys of the sections whose
    artifacts it reads, so that what changes them changes it too. The other analyses' options
    and ``analysis.timeout_s`` (how long it may take, not what it computes) are not in it."""
    cfg = ctx.cfg
    blob = {
        "name": name,
        "code": package_sha256(),
        "resolution": cfg.resolution,
        "seed": cfg.seed,
        "options": None if options is None else dataclasses.asdict(options),
        "upstream": list(upstream),
        "models": [dataclasses.asdict(m) | {"stages": [dataclasses.asdict(s) for s in m.stages]}
                   for m in ctx.models],
        "keys": ctx.keys,
        "highres": {str(r): v for r, v in ctx.extra_keys.items()},
        "featured": list(ctx.featured),
        "groups": {g: list(v) for g, v in sorted(ctx.groups.items())},
        "masks": {i: [_file_sha(e.mask), e.mask_polygons] for i, e in sorted(ctx.entries.items())
                  if i in ctx.images},
        "random_init": ctx.random_init,
        "dtype": ctx.dtype,
    }
    if ctx.control_keys:  # absent otherwise, so builds without controls keep their keys
        blob["controls"] = list(ctx.control_keys)
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


_FORMAT = "dinoreport-section-2"
# The only classes an entry may name; each is rebuilt from its fields (added fields with
# defaults round-trip; an entry naming an unknown class or field is damaged).
_CLASSES: dict[str, type] = {c.__name__: c for c in (SectionOutput, Figure, Row, Panel, Table)}


class EntryError(ValueError):
    """A cache entry that cannot be stored or read back as data."""


def encode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` as a JSON tree; arrays (and numpy scalars) go to ``arrays`` by name."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.ndarray, np.generic)):
        name = f"a{len(arrays)}"
        arr = np.asarray(value)
        if arr.dtype == object:
            raise EntryError("object arrays cannot be cached")
        arrays[name] = arr
        return {"__array__": name, "scalar": isinstance(value, np.generic)}
    if dataclasses.is_dataclass(value) and type(value).__name__ in _CLASSES:
        return {"__class__": type(value).__name__,
                "fields": {f.name: encode(getattr(value, f.name), arrays) for f in dataclasses.fields(value)}}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, arrays) for v in value]}
    if isinstance(value, list):
        return [encode(v, arrays) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and not any(k.startswith("__") for k in value):
            return {k: encode(v, arrays) for k, v in value.items()}
        return {"__items__": [[encode(k, arrays), encode(v, arrays)] for k, v in value.items()]}
    raise EntryError(f"cannot cache a value of type {type(value).__name__}")


def decode(tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The inverse of :func:`encode`; raises EntryError for anything it did not write."""
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    if isinstance(tree, list):
        return [decode(v, arrays) for v in tree]
    if not isinstance(tree, dict):
        raise EntryError(f"unexpected {type(tree).__name__}")
    if "__array__" in tree:
        arr = arrays.get(tree["__array__"]) if isinstance(tree["__array__"], str) else None
        if arr is None:
            raise EntryError("an array named in the entry is missing")
        return arr[()] if tree.get("scalar") else arr
    if "__class__" in tree:
        cls = _CLASSES.get(tree["__class__"]) if isinstance(tree["__class__"], str) else None
        fields = tree.get("fields")
        if cls is None or not isinstance(fields, dict):
            raise EntryError(f"unknown class {tree['__class__']!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        if not set(fields) <= names:
            raise EntryError(f"{cls.__name__} has no fields {sorted(set(fields) - names)}")
        try:
            return cls(**{k: decode(v, arrays) for k, v in fields.items()})
        except TypeError as e:
            raise EntryError(str(e)) from None
    if "__tuple__" in tree:
        items = tree["__tuple__"]
        if not isinstance(items, list):
            raise EntryError("bad tuple")
        return tuple(decode(v, arrays) for v in items)
    if "__items__" in tree:
        items = tree["__items__"]
        if not isinstance(items, list) or not all(isinstance(p, list) and len(p) == 2 for p in items):
            raise EntryError("bad mapping")
        return {_hashable(decode(k, arrays)): decode(v, arrays) for k, v in items}
    return {k: decode(v, arrays) for k, v in tree.items()}


def _hashable(key: Any) -> Any:
    try:
        hash(key)
    except TypeError:
        raise EntryError("unhashable mapping key") from None
    return key


def _picture_paths(out: SectionOutput) -> list[Any]:
    """Every picture path of an output that can reach a page: panels and explorer photos."""
    paths = [q for f in out.figures for r in f.rows for p in r.panels for q in (p.file, p.layer) if q]
    images = out.explorer.get("images", []) if isinstance(out.explorer, dict) else []
    return paths + [im.get("photo") for im in images if isinstance(im, dict) and im.get("photo")]


def _entry_sha256(output: Any, files: Any, npz_sha: Any) -> str:
    """Digest of an entry's own content, over its canonical JSON (the order of dict keys kept:
    sections iterate their dicts in that order)."""
    blob = json.dumps({"files": files, "npz_sha256": npz_sha, "output": output},
                      separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class SectionCache:
    """``<root>/sections/<key>.json`` (+ ``.npz`` arrays) and ``<root>/figures/<name>`` (bytes)."""

    def __init__(self, root: Path, *, read: bool = True):
        self.root = Path(root)
        self.read = read  # False: every section is computed again (and its entry rewritten)
        self.hits = 0
        self.computed = 0

    def _json(self, key: str) -> Path:
        return self.root / "sections" / f"{key}.json"

    def _npz(self, key: str) -> Path:
        return self.root / "sections" / f"{key}.npz"

    def _read(self, key: str) -> tuple[SectionOutput, list[str]]:
        meta = json.loads(self._json(key).read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise EntryError("not a section entry")
        files = meta.get("files")
        if not isinstance(files, list) or not all(is_figure_path(f) for f in files):
            raise EntryError("bad file list")
        if meta.get("sha256") != _entry_sha256(meta.get("output"), files, meta.get("npz_sha256")):
            raise EntryError("the entry does not match its sha256")
        arrays: dict[str, np.ndarray] = {}
        if meta.get("npz_sha256") is not None:
            raw = self._npz(key).read_bytes()
            if hashlib.sha256(raw).hexdigest() != meta["npz_sha256"]:
                raise EntryError("arrays do not match the entry")
            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                arrays = {n: z[n] for n in z.files}
        out = decode(meta.get("output"), arrays)
        if not isinstance(out, SectionOutput):
            raise EntryError("not a section output")
        if not set(_picture_paths(out)) <= set(files):
            raise EntryError("a panel names a picture that is not among the entry's files")
        return out, files

    def get(self, key: str, site: Path) -> tuple[SectionOutput, list[str]] | None:
        """The stored output with its files copied into ``site``, or None (absent or damaged)."""
        if not self.read or not self._json(key).is_file():
            return None
        try:
            out, files = self._read(key)
            figures = {}
            for rel in files:  # all checked before any is published
                data = (self.root / "figures" / Path(rel).name).read_bytes()
                if not matches_name(Path(rel).name, data):
                    raise EntryError(f"figure {rel} does not match its content hash")
                figures[rel] = data
            for rel, data in figures.items():
                dst = site / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(data)
        except (OSError, ValueError, KeyError, EntryError):  # anything wrong with an entry: compute again
            self._json(key).unlink(missing_ok=True)
            self._npz(key).unlink(missing_ok=True)
            return None
        self.hits += 1
        return out, files

    def put(self, key: str, out: SectionOutput, files: list[str], site: Path) -> None:
        """Store ``out``; an output that is not plain data is simply not cached."""
        self.computed += 1
        arrays: dict[str, np.ndarray] = {}
        try:
            tree = encode(out, arrays)
        except EntryError:
            return
        if not all(is_figure_path(f) for f in files) or not set(_picture_paths(out)) <= set(files):
            return  # pictures from outside the figure store: published this once, never cached
        figs = self.root / "figures"
        figs.mkdir(parents=True, exist_ok=True)
        for rel in files:
            dst = figs / Path(rel).name
            if not (dst.is_file() and matches_name(dst.name, dst.read_bytes())):
                atomic_write(dst, (site / rel).read_bytes())
        npz_sha = None
        if arrays:
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            atomic_write(self._npz(key), buf.getvalue())
            npz_sha = hashlib.sha256(buf.getvalue()).hexdigest()
        # The JSON goes last: its presence means the entry is complete.
        files = sorted(files)
        meta = {"format": _FORMAT, "files": files, "npz_sha256": npz_sha, "output": tree,
                "sha256": _entry_sha256(tree, files, npz_sha)}
        # Insertion order is kept (not sorted): sections iterate their dicts in that order.
        atomic_write(self._json(key), json.dumps(meta).encode("utf-8"))
