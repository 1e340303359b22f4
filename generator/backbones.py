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

import math
import zlib

import torch

from .config import ModelSpec
from .modelmeta import StageInfo
from .weights import ResolvedWeights, WeightsError, mismatch_message, mismatched_keys, read_state_dict

__all__ = ["StageInfo", "Backbone", "create_backbone", "exercise_every_block", "stage_infos", "is_vit"]


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
            self._indices = [b - 1 for b in _vit_blocks(depth)]
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


def _vit_blocks(depth: int) -> list[int]:
    """1-based block numbers at 1/4, 1/2, 3/4 and the end of depth (ViT-S: 3, 6, 9, 12)."""
    return sorted({max(1, math.ceil(depth * q / 4)) for q in (1, 2, 3, 4)})


def is_vit(model: torch.nn.Module) -> bool:
    """A plain ViT (token blocks over patches) rather than a model with feature_info stages."""
    return hasattr(model, "blocks") and hasattr(model, "patch_embed")


def stage_infos(model: torch.nn.Module) -> tuple[StageInfo, ...]:
    """The stages a model gives, from its own metadata (no forward pass)."""
    if is_vit(model):
        patch = model.patch_embed.patch_size
        stride = patch[0] if isinstance(patch, (tuple, list)) else int(patch)
        return tuple(StageInfo(f"B{b}", model.embed_dim, stride) for b in _vit_blocks(len(model.blocks)))
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


def _seed_for(spec: ModelSpec, seed: int) -> int:
    """The random-init seed of one model: the config seed mixed with the model id, so two
    models of the same architecture (the two ConvNeXt-T) get different weights."""
    return (seed * 1_000_003 + zlib.crc32(spec.id.encode())) % (2**31)


LAYER_SCALE_RANGE = (0.5, 1.0)
"""Random-init layer-scale values are drawn uniformly from this range."""


def _is_layer_scale(param: torch.Tensor) -> bool:
    """A constant, nonzero, near-zero tensor: a layer-scale gamma as timm initialises it
    (ConvNeXt ``gamma`` 1e-6, DINOv3 ViT ``gamma_1``/``gamma_2`` 1e-5). Zero biases are not."""
    flat = param.detach().flatten()
    if flat.numel() == 0:
        return False
    first = float(flat[0])
    return 0.0 < abs(first) < 1e-3 and bool(torch.all(flat == flat[0]))


@torch.no_grad()
def exercise_every_block(model: torch.nn.Module) -> None:
    """Re-initialise a freshly created random model so that every residual block changes its input.

    timm initialises layer scale near zero (1e-6, 1e-5) and block weights with std 0.02, which
    is right for training but makes a random network a chain of near-identities: stages of one
    model, and two models of one architecture, then give the same statistics and a pipeline
    that returned one block three times would go unnoticed. Here every layer-scale tensor is
    drawn from U(LAYER_SCALE_RANGE) and every weight (ndim >= 2) inside a block gets
    variance-preserving std 1/sqrt(fan_in), so each block adds an update about as large as its
    input (0.3-1.3 of the input norm for ConvNeXt-T and ViT-S/16). Uses torch's global
    generator: call it right after ``torch.manual_seed``.
    """
    for name, param in sorted(model.named_parameters()):
        if _is_layer_scale(param):
            param.uniform_(*LAYER_SCALE_RANGE)
        elif param.ndim >= 2 and "blocks." in name:
            fan_in = param[0].numel()
            param.normal_(0.0, 1.0 / math.sqrt(fan_in))


def create_backbone(spec: ModelSpec, weights: ResolvedWeights | None, *, seed: int = 0) -> Backbone:
    """Build the model of ``spec`` with ``weights``.

    ``weights=None`` gives a random init seeded by ``seed`` and the model id (:func:`_seed_for`)
    in which every block contributes (:func:`exercise_every_block`).
    """
    import timm

    if weights is None:
        torch.manual_seed(_seed_for(spec, seed))
        model = timm.create_model(spec.timm, pretrained=False, num_classes=0)
        exercise_every_block(model)
        return Backbone(spec, model, "random-init", None)
    # We read the file ourselves (tensors only, never pickled objects) and hand timm the dict,
    # so its key remapping (filter_fn) still applies. timm loads non-strictly whenever
    # num_classes differs from the checkpoint's, which would accept another architecture's
    # weights with a warning; so load strictly with the checkpoint's classifier first, and
    # drop only the classifier when that is all that differs.
    state = read_state_dict(weights.path)
    overlay = {"file": None, "hf_hub_id": None, "url": None}
    try:
        model = timm.create_model(spec.timm, pretrained=True,
                                  pretrained_cfg_overlay={**overlay, "state_dict": dict(state)})
        model.reset_classifier(0)
    except RuntimeError as e:
        cfg = timm.models.get_pretrained_cfg(spec.timm)
        head = cfg.classifier if cfg is not None else None
        heads = (head,) if isinstance(head, str) else tuple(head or ())
        keys = mismatched_keys(e)
        if not any(keys.values()) or not all(k.startswith(tuple(h + "." for h in heads))
                                             for ks in keys.values() for k in ks):
            raise WeightsError(mismatch_message(e, weights.path, spec.timm)) from None
        model = timm.create_model(spec.timm, pretrained=True, num_classes=0,
                                  pretrained_cfg_overlay={**overlay, "state_dict": dict(state)})
    return Backbone(spec, model, weights.source, weights.sha256)
