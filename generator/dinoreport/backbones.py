"""timm adapters: one interface, ``{stage name: NCHW float32 tensor}``.

Two families, told apart by the model's own structure (:func:`is_vit`):

* **Plain ViTs** (ViT, DeiT, CLIP, DINOv2 with or without registers, DINOv3 ViT/EVA): one
  resolution for every block. A stage is the patch tokens after one block, named ``B<n>``
  (1-based block number), stride = patch size, grid = input size / patch size. Class,
  register and other prefix tokens (``num_prefix_tokens``) are dropped by timm's
  ``forward_intermediates``. Default blocks: 1/4, 1/2, 3/4 and the end of depth (B3, B6, B9,
  B12 for depth 12). The model's last block is taken after its final norm (what the model
  itself outputs); earlier blocks are raw.
* **Hierarchical models** (ConvNeXt V1/V2, ResNet, EfficientNet, Swin, ...): one stage per
  ``feature_info`` entry, named ``C<log2 stride>`` (stride 4 -> C2 ... stride 32 -> C5). Default:
  every entry with stride >= 4 (the stride-2 stems of ResNet/EfficientNet are left out).

``[[models]] stages = ["B6", "B12"]`` (or ``["C3", "C5"]``) in report.toml overrides the default.

Input sizes. Every model is created with ``dynamic_img_size=True`` when its timm class takes
it (ViTs, EVA, Swin): ViTs then interpolate their position embedding to any grid, and Swin
pads each stage to whole windows and crops back, so its maps stay aligned with the input.
A fixed image size at creation (``img_size``) is *not* used: the report's crops keep each
photo's aspect ratio, so no single size fits them all. Models that accept neither stop with a
:class:`BackboneError`. What each model needs from the input is :attr:`ModelMeta.multiple`
(patch size for ViTs, the largest ``feature_info`` stride otherwise); the build crops every
image to the least common multiple over its models (see :func:`dinoreport.modelmeta.crop_multiple`).

We build the *full* timm model (``num_classes=0``) rather than ``features_only``: it keeps
``head.norm`` for ``convnext_c5_norm`` and loads checkpoints with their own key names; its
``forward_intermediates`` returns exactly the ``features_only`` maps.
"""
from __future__ import annotations

import math
import zlib

import torch

from .config import ModelSpec
from .modelmeta import BackboneError, StageInfo, create_model, model_facts, model_meta, select_stages
from .weights import ResolvedWeights, WeightsError, mismatch_message, mismatched_keys, read_state_dict

__all__ = ["Backbone", "BackboneError", "create_backbone", "create_control", "control_seed", "CONTROL_INITS",
           "exercise_every_block"]


class Backbone:
    """A timm model with a stage-dict forward. Build with :func:`create_backbone`."""

    def __init__(self, spec: ModelSpec, model: torch.nn.Module, weights_source: str,
                 weights_sha256: str | None):
        self.spec = spec
        self.model = model.eval()
        self.weights_source = weights_source
        self.weights_sha256 = weights_sha256
        facts = model_facts(model, spec.timm)
        self.is_vit = facts["is_vit"]
        available = tuple(StageInfo(**s) for s in facts["available"])
        self.stages = select_stages(spec.timm, available, tuple(facts["default"]), spec.stages)
        # What running the model showed it needs (MaxViT: window × stride), checked once per
        # timm version and kept in the cache (modelmeta.probe_multiple).
        self._multiple = model_meta(spec.timm, spec.stages).multiple
        names = [s.name for s in available]
        # forward_intermediates indices: block index for ViTs, feature_info index otherwise.
        self._indices = [names.index(s.name) for s in self.stages]
        self._final_norm = self.is_vit and self._indices[-1] == len(available) - 1
        cfg = model.pretrained_cfg
        self.mean = torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1)
        self.license = cfg.get("license")

    @property
    def multiple(self) -> int:
        """Input sides must be a multiple of this: patch size (ViT) or the largest stride."""
        return self._multiple

    def to(self, device: torch.device) -> "Backbone":
        self.model.to(device)
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) normalised with the model's mean/std."""
        x = images.permute(0, 3, 1, 2).float().div_(255.0)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, 3, H, W) normalised -> ``{stage: (N, C, H/stride, W/stride) float32}``.

        Raises
        ------
        BackboneError
            H or W is not a multiple of :attr:`multiple`, or the model fails on this input.
        """
        h, w = x.shape[-2:]
        if h % self.multiple or w % self.multiple:
            raise BackboneError(
                f"Model '{self.spec.timm}' needs input sides that are multiples of {self.multiple} px, "
                f"but got {w}×{h}. Crop the images with images.preprocess(..., multiple={self.multiple}) "
                "or let the build choose the crop (it uses the least common multiple of its models).")
        try:
            maps = self._intermediates(x)
        except (RuntimeError, AssertionError, ValueError, TypeError) as e:
            last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise BackboneError(
                f"Model '{self.spec.timm}' could not run on a {w}×{h} input ({last}). Its timm class "
                f"{type(self.model).__name__} probably accepts only the input size it was built for; "
                "pick a variant that takes any size (e.g. a ViT, Swin, ConvNeXt or ResNet) or a "
                "resolution that matches the model.") from None
        for s, t in zip(self.stages, maps):
            if tuple(t.shape[-2:]) != (h // s.stride, w // s.stride):
                raise BackboneError(
                    f"Model '{self.spec.timm}' gave a {t.shape[-2]}×{t.shape[-1]} map at stage {s.name} for a "
                    f"{h}×{w} input, where its stride {s.stride} predicts {h // s.stride}×{w // s.stride}: "
                    "its cells would not line up with the image. Pick another stage (`stages` in "
                    "report.toml) or another model family (ViT, Swin, ConvNeXt, ResNet, EfficientNet).")
        return {s.name: t.float() for s, t in zip(self.stages, maps)}

    def _intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        m = self.model
        if self.is_vit:
            maps = m.forward_intermediates(
                x, indices=self._indices, norm=False, output_fmt="NCHW", intermediates_only=True
            )
            if self._final_norm:
                # Only the last block goes through the final norm (what the model itself outputs).
                maps[-1] = m.norm(maps[-1].permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            return list(maps)
        maps = list(m.forward_intermediates(x, indices=self._indices, intermediates_only=True))
        if self.spec.convnext_c5_norm and self._indices[-1] == len(m.feature_info) - 1:
            maps[-1] = m.head.norm(maps[-1])
        # Some hierarchical transformers report channels-last maps; the interface is NCHW.
        for k, (s, t) in enumerate(zip(self.stages, maps)):
            if t.ndim == 4 and t.shape[1] != s.channels and t.shape[-1] == s.channels:
                maps[k] = t.permute(0, 3, 1, 2)
        return maps


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

    Raises
    ------
    BackboneError
        Unknown name, no spatial features, a fixed input size, or unknown ``spec.stages``.
    """
    if weights is None:
        torch.manual_seed(_seed_for(spec, seed))
        model = create_model(spec.timm)
        exercise_every_block(model)
        return Backbone(spec, model, "random-init", None)
    import timm

    # We read the file ourselves (tensors only, never pickled objects) and hand timm the dict,
    # so its key remapping (filter_fn) still applies. timm loads non-strictly whenever
    # num_classes differs from the checkpoint's, which would accept another architecture's
    # weights with a warning; so load strictly with the checkpoint's classifier first, and
    # drop only the classifier when that is all that differs.
    state = read_state_dict(weights.path)
    overlay = {"file": None, "hf_hub_id": None, "url": None}
    try:
        model = create_model(spec.timm, pretrained=True, num_classes=None,
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
        model = create_model(spec.timm, pretrained=True,
                             pretrained_cfg_overlay={**overlay, "state_dict": dict(state)})
    return Backbone(spec, model, weights.source, weights.sha256)


CONTROL_INITS = ("timm", "every-block")
"""Init recipes of an untrained control: timm's own (``pretrained=False``, what training starts
from) or the project's exercised random init (:func:`exercise_every_block`)."""


def control_seed(architecture: str, seed: int, k: int) -> int:
    """The torch seed of control ``k`` of an architecture: the config seed, the control's index
    and the architecture's name mixed, apart from every random-init seed (:func:`_seed_for`
    mixes a model id, never the word "control")."""
    return (seed * 1_000_003 + k * 7_919 + zlib.crc32(f"control:{architecture}".encode())) % (2**31)


def create_control(spec: ModelSpec, torch_seed: int, init: str = "timm") -> Backbone:
    """The untrained control of ``spec``'s architecture: the same timm model before training.

    ``init="timm"``: exactly as timm initialises it (``pretrained=False``) after
    ``torch.manual_seed(torch_seed)``; two models of one architecture (the two ConvNeXt-T) get
    the same control. ``init="every-block"``: that, then :func:`exercise_every_block`.
    The stages, C5 norm and input normalisation are ``spec``'s, so the control's maps line up
    with the trained model's cell by cell.
    """
    if init not in CONTROL_INITS:
        raise ValueError(f"control init must be one of {CONTROL_INITS}, got {init!r}")
    torch.manual_seed(torch_seed)
    model = create_model(spec.timm)
    if init == "every-block":
        exercise_every_block(model)
    return Backbone(spec, model, f"untrained control ({init} init, seed {torch_seed})", None)

