"""What the pipeline must know about a timm model before (or instead of) running it.

Stages, normalisation, license and hub id come from timm, but importing timm (and torch)
costs seconds. A rebuild whose features are all cached needs none of that, so these facts
are kept in the cache as small JSON files, keyed by the timm name and the installed timm
version, and timm is imported only on a miss.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .atomic import atomic_write

__all__ = ["StageInfo", "ModelMeta", "BackboneError", "model_meta", "select_stages", "crop_multiple",
           "timm_names", "library_versions"]

# Bump when the facts stored per model change shape or meaning.
_FORMAT = "2"


class BackboneError(ValueError):
    """A model the report cannot show; the message is one paragraph naming the model,
    what is missing and what to try."""


@dataclass(frozen=True)
class StageInfo:
    """name: ``C2``..``C5`` or ``B3``..``B12``; channels; stride in input pixels."""

    name: str
    channels: int
    stride: int


@dataclass(frozen=True)
class ModelMeta:
    """A model's stages, normalisation (from its pretrained_cfg), license and hub repo.

    stages : the stages the report shows (the family default or ``[[models]] stages``).
    available : every stage the model offers (all blocks of a ViT, all feature_info entries).
    multiple : input sides must be a multiple of this many pixels (patch size or last stride).
    """

    timm: str
    stages: tuple[StageInfo, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    license: str | None
    is_vit: bool
    hf_hub_id: str | None
    multiple: int = 32
    available: tuple[StageInfo, ...] = ()


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries the numbers depend on (no imports)."""
    out = {}
    for name in ("torch", "timm", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def _root() -> Path:
    from .images import cache_dir

    return cache_dir() / "models"


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write(path: Path, data: dict) -> None:
    """Keep ``data`` for next time; a cache that cannot be written (read-only, full) only
    means it is computed again, so that is not an error here."""
    try:
        atomic_write(path, json.dumps(data, sort_keys=True).encode())
    except OSError:
        pass


def _cached_meta(name: str, data, wanted: tuple[str, ...]) -> ModelMeta | None:
    """The ModelMeta that cached facts describe, or None when they are missing or of another
    shape (then they are recomputed). A stage the model lacks is still an error."""
    if not isinstance(data, dict) or data.get("timm") != name:
        return None
    try:
        return meta_from_facts(name, data, wanted)
    except BackboneError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def select_stages(name: str, available: tuple[StageInfo, ...], default: tuple[str, ...],
                  wanted: tuple[str, ...]) -> tuple[StageInfo, ...]:
    """The stages to show: ``wanted`` (in the model's own order) or else ``default``.

    Raises
    ------
    BackboneError
        A wanted name is not a stage of the model.
    """
    names = [s.name for s in available]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise BackboneError(
            f"Model '{name}' has no stage {', '.join(unknown)}: its stages are {', '.join(names)}. "
            "Fix `stages` of this model in report.toml, or remove it to get the default "
            f"({', '.join(default)}).")
    pick = set(wanted or default)
    return tuple(s for s in available if s.name in pick)


def crop_multiple(multiples: dict[str, int]) -> int:
    """The one crop rule of a build: image sides are multiples of the least common multiple
    of what every model needs (``{timm name: multiple}``, e.g. ViT-S/14 14, ViT-S/16 16,
    ConvNeXt 32 -> 224).

    Every model then sees the *same* pixels and every stage of every model has a whole number
    of cells that tile the image exactly, so maps, masks and CKA compare position by position.
    The price is a coarser crop when patch sizes share few factors: with 14 and 32 the long side
    loses up to 223 px at short side 448 (a 4:3 photo becomes 448×448); models that share
    factors (16 and 32 -> 32) lose at most 31 px.
    """
    return math.lcm(*sorted(set(multiples.values()))) if multiples else 1


def meta_from_facts(name: str, facts: dict, wanted: tuple[str, ...] = ()) -> ModelMeta:
    """ModelMeta from the stored facts (see :func:`model_meta`) and the stages asked for."""
    available = tuple(StageInfo(**s) for s in facts["available"])
    return ModelMeta(
        timm=facts["timm"], stages=select_stages(name, available, tuple(facts["default"]), tuple(wanted)),
        mean=tuple(facts["mean"]), std=tuple(facts["std"]), license=facts["license"],
        is_vit=bool(facts["is_vit"]), hf_hub_id=facts["hf_hub_id"], multiple=int(facts["multiple"]),
        available=available,
    )


def model_meta(name: str, stages: tuple[str, ...] = ()) -> ModelMeta:
    """The facts of timm model ``name`` (builds only its structure, on torch's meta device).

    ``stages``: the stage names to show (empty: the family default, see :mod:`generator.backbones`).

    Raises
    ------
    BackboneError
        The model cannot be shown (unknown, no spatial features, fixed size, unknown stage).
    """
    path = _root() / f"meta-{_key(name, library_versions()['timm'], _FORMAT)}.json"
    data = _read(path)
    meta = _cached_meta(name, data, stages)
    if meta is None:
        import torch

        from .backbones import create_model, model_facts

        with torch.device("meta"):
            model = create_model(name)
        cfg = model.pretrained_cfg
        data = {
            "timm": name,
            **model_facts(model, name),
            "mean": list(cfg.get("mean", (0.485, 0.456, 0.406))),
            "std": list(cfg.get("std", (0.229, 0.224, 0.225))),
            "license": cfg.get("license"),
            "hf_hub_id": cfg.get("hf_hub_id"),
        }
        _write(path, data)
        meta = meta_from_facts(name, data, stages)
    return meta


def timm_names() -> tuple[frozenset[str], frozenset[str]]:
    """(architectures, names with a pretrained tag) that the installed timm knows."""
    path = _root() / f"names-{_key(library_versions()['timm'])}.json"
    data = _read(path)
    ok = isinstance(data, dict) and all(
        isinstance(data.get(k), list) and all(isinstance(n, str) for n in data[k]) for k in ("archs", "pretrained"))
    if not ok:
        import timm

        data = {"archs": sorted(timm.list_models()), "pretrained": sorted(timm.list_models(pretrained=True))}
        _write(path, data)
    return frozenset(data["archs"]), frozenset(data["pretrained"])
