"""What the pipeline must know about a timm model before (or instead of) running it.

Stages, normalisation, license and hub id come from timm, but importing timm (and torch)
costs seconds. A rebuild whose features are all cached needs none of that, so these facts
are kept in the cache as small JSON files, keyed by the timm name and the installed timm
version, and timm is imported only on a miss.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .atomic import atomic_write

__all__ = ["StageInfo", "ModelMeta", "model_meta", "timm_names", "library_versions"]


@dataclass(frozen=True)
class StageInfo:
    """name: ``C2``..``C5`` or ``B3``..``B12``; channels; stride in input pixels."""

    name: str
    channels: int
    stride: int


@dataclass(frozen=True)
class ModelMeta:
    """A model's stages, normalisation (from its pretrained_cfg), license and hub repo."""

    timm: str
    stages: tuple[StageInfo, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    license: str | None
    is_vit: bool
    hf_hub_id: str | None


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


def _meta_from(data, name: str) -> ModelMeta | None:
    """The ModelMeta a cached JSON describes, or None if it has another shape (recompute)."""
    try:
        if data["timm"] != name:
            return None
        return ModelMeta(
            timm=data["timm"], stages=tuple(StageInfo(str(s["name"]), int(s["channels"]), int(s["stride"]))
                                            for s in data["stages"]),
            mean=tuple(float(v) for v in data["mean"]), std=tuple(float(v) for v in data["std"]),
            license=data["license"] if isinstance(data["license"], (str, type(None))) else None,
            is_vit=bool(data["is_vit"]),
            hf_hub_id=data["hf_hub_id"] if isinstance(data["hf_hub_id"], (str, type(None))) else None,
        )
    except (KeyError, TypeError, ValueError):
        return None


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def model_meta(name: str) -> ModelMeta:
    """The facts of timm model ``name`` (builds only its structure, on torch's meta device)."""
    path = _root() / f"meta-{_key(name, library_versions()['timm'])}.json"
    meta = _meta_from(_read(path), name)
    if meta is None:
        import timm
        import torch

        from .backbones import is_vit, stage_infos

        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False, num_classes=0)
        cfg = model.pretrained_cfg
        data = {
            "timm": name,
            "stages": [asdict(s) for s in stage_infos(model)],
            "mean": list(cfg.get("mean", (0.485, 0.456, 0.406))),
            "std": list(cfg.get("std", (0.229, 0.224, 0.225))),
            "license": cfg.get("license"),
            "is_vit": is_vit(model),
            "hf_hub_id": cfg.get("hf_hub_id"),
        }
        _write(path, data)
        meta = _meta_from(data, name)
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
