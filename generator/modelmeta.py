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
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .atomic import atomic_write

__all__ = ["StageInfo", "ModelMeta", "ModelFacts", "model_meta", "timm_names", "library_versions",
           "stage_infos", "is_vit", "vit_blocks", "RANDOM_INIT"]

RANDOM_INIT = "random-init"  # the weights source of a model built with seeded random weights


@dataclass(frozen=True)
class StageInfo:
    """name: ``C2``..``C5`` or ``B3``..``B12``; channels; stride in input pixels."""

    name: str
    channels: int
    stride: int

    def __str__(self) -> str:  # pages and narratives show a stage by its name
        return self.name


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


@dataclass(frozen=True)
class ModelFacts:
    """Everything the build knows about one model of the config, built once by the pipeline:
    the config's id/label/timm name and C5 choice, timm's facts (stages, license, ViT or not)
    and where the weights came from (``RANDOM_INIT``, "file", "hf-cache" or "hub")."""

    id: str
    label: str
    timm: str
    stages: tuple[StageInfo, ...]
    weights_source: str
    weights_sha256: str | None
    license: str | None
    is_vit: bool
    c5_norm: bool

    @classmethod
    def of(cls, spec: Any, meta: ModelMeta, weights: Any | None) -> "ModelFacts":
        """From a config ``ModelSpec``, its :class:`ModelMeta` and its ``ResolvedWeights``
        (None: random init)."""
        return cls(id=spec.id, label=spec.label, timm=spec.timm, stages=meta.stages,
                   weights_source=RANDOM_INIT if weights is None else weights.source,
                   weights_sha256=None if weights is None else weights.sha256,
                   license=meta.license, is_vit=meta.is_vit, c5_norm=spec.convnext_c5_norm)

    @property
    def random_init(self) -> bool:
        return self.weights_source == RANDOM_INIT

    @property
    def last(self) -> str:
        return self.stages[-1].name

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def stage(self, name: str) -> StageInfo:
        return next(s for s in self.stages if s.name == name)


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
    atomic_write(path, json.dumps(data, sort_keys=True).encode())


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def model_meta(name: str) -> ModelMeta:
    """The facts of timm model ``name`` (builds only its structure, on torch's meta device)."""
    path = _root() / f"meta-{_key(name, library_versions()['timm'])}.json"
    data = _read(path)
    if data is None or data.get("timm") != name:
        import timm
        import torch

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
    return ModelMeta(
        timm=data["timm"], stages=tuple(StageInfo(**s) for s in data["stages"]),
        mean=tuple(data["mean"]), std=tuple(data["std"]), license=data["license"],
        is_vit=bool(data["is_vit"]), hf_hub_id=data["hf_hub_id"],
    )


def timm_names() -> tuple[frozenset[str], frozenset[str]]:
    """(architectures, names with a pretrained tag) that the installed timm knows."""
    path = _root() / f"names-{_key(library_versions()['timm'])}.json"
    data = _read(path)
    if data is None:
        import timm

        data = {"archs": sorted(timm.list_models()), "pretrained": sorted(timm.list_models(pretrained=True))}
        _write(path, data)
    return frozenset(data["archs"]), frozenset(data["pretrained"])


def vit_blocks(depth: int) -> list[int]:
    """1-based block numbers at 1/4, 1/2, 3/4 and the end of depth (ViT-S: 3, 6, 9, 12)."""
    return sorted({max(1, math.ceil(depth * q / 4)) for q in (1, 2, 3, 4)})


def is_vit(model: Any) -> bool:
    """A plain ViT (token blocks over patches) rather than a model with feature_info stages."""
    return hasattr(model, "blocks") and hasattr(model, "patch_embed")


def stage_infos(model: Any) -> tuple[StageInfo, ...]:
    """The stages a model gives, from its own metadata (no forward pass)."""
    if is_vit(model):
        patch = model.patch_embed.patch_size
        stride = patch[0] if isinstance(patch, (tuple, list)) else int(patch)
        return tuple(StageInfo(f"B{b}", model.embed_dim, stride) for b in vit_blocks(len(model.blocks)))
    info = getattr(model, "feature_info", None)
    if not info:
        raise ValueError(
            f"{type(model).__name__} has no feature_info: it gives no spatial feature maps; "
            "pick a timm model with feature_info (ConvNeXt, ResNet, ...) or a ViT"
        )
    out = []
    for entry in info:
        stride = int(entry["reduction"])
        out.append(StageInfo(f"C{int(math.log2(stride))}", int(entry["num_chs"]), stride))
    return tuple(out)
