"""timm adapters: one interface, ``{stage name: NCHW float32 tensor}``.

Hierarchical models (ConvNeXt and any timm model with ``feature_info``) give one stage per
``feature_info`` entry, named C2, C3, ... by stride (stride 4 -> C2). ViTs give patch tokens
of four blocks at 1/4, 1/2, 3/4 and the end of depth, named B3, B6, ... (1-based block
number); the last one after the model's final norm, prefix (class/register) tokens dropped.

We build the *full* timm model (``num_classes=0``) rather than ``features_only``: it keeps
``head.norm`` for ``convnext_c5_norm`` and loads checkpoints with their own key names; its
``forward_intermediates`` returns exactly the ``features_only`` maps.
"""
from __future__ import annotations

import zlib

import torch

from .config import ModelSpec
from .modelmeta import StageInfo, is_vit, stage_infos, vit_blocks
from .weights import ResolvedWeights

__all__ = ["Backbone", "create_backbone"]


class Backbone:
    """A timm model with a stage-dict forward. Build with :func:`create_backbone`."""

    def __init__(self, spec: ModelSpec, model: torch.nn.Module, weights_source: str,
                 weights_sha256: str | None):
        self.spec = spec
        self.model = model.eval()
        self.weights_source = weights_source
        self.weights_sha256 = weights_sha256
        self.is_vit = is_vit(model)
        self.stages = stage_infos(model)
        if self.is_vit:
            depth = len(model.blocks)
            self._indices = [b - 1 for b in vit_blocks(depth)]
        else:
            self._indices = list(range(len(self.stages)))
        cfg = model.pretrained_cfg
        self.mean = torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1)
        self.license = cfg.get("license")

    @property
    def multiple(self) -> int:
        """Input sides must be a multiple of this (largest stride)."""
        return max(s.stride for s in self.stages)

    def to(self, device: torch.device) -> "Backbone":
        self.model.to(device)
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) normalised with the model's mean/std."""
        x = images.permute(0, 3, 1, 2).float().div_(255.0)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, 3, H, W) normalised -> ``{stage: (N, C, H/stride, W/stride) float32}``."""
        m = self.model
        if self.is_vit:
            maps = m.forward_intermediates(
                x, indices=self._indices, norm=False, output_fmt="NCHW", intermediates_only=True
            )
            # Only the last block goes through the final norm (what the model itself outputs).
            last = maps[-1]
            maps[-1] = m.norm(last.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        else:
            maps = m.forward_intermediates(x, indices=self._indices, intermediates_only=True)
            if self.spec.convnext_c5_norm:
                maps[-1] = m.head.norm(maps[-1])
        return {s.name: t.float() for s, t in zip(self.stages, maps)}


def _seed_for(spec: ModelSpec, seed: int) -> int:
    return (seed * 1_000_003 + zlib.crc32(spec.id.encode())) % (2**31)


def create_backbone(spec: ModelSpec, weights: ResolvedWeights | None, *, seed: int = 0) -> Backbone:
    """Build the model of ``spec`` with ``weights`` (None: seeded random init)."""
    import timm

    if weights is None:
        torch.manual_seed(_seed_for(spec, seed))
        model = timm.create_model(spec.timm, pretrained=False, num_classes=0)
        return Backbone(spec, model, "random-init", None)
    model = timm.create_model(
        spec.timm, pretrained=True, num_classes=0,
        pretrained_cfg_overlay={"file": str(weights.path), "hf_hub_id": None, "url": None},
    )
    return Backbone(spec, model, weights.source, weights.sha256)
