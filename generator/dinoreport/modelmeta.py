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
from .suggest import closest

__all__ = ["StageInfo", "ModelMeta", "ModelFacts", "BackboneError", "model_meta", "select_stages",
           "crop_multiple", "CropRule", "create_model", "model_facts", "probe_multiple", "is_vit", "vit_blocks",
           "timm_names",
           "library_versions", "RANDOM_INIT"]

RANDOM_INIT = "random-init"  # the weights source of a model built with seeded random weights

# Bump when the facts stored per model change shape or meaning.
_FORMAT = "3"  # 3: ``multiple`` is probed (window x stride for MaxViT), fixed-size models refused


class BackboneError(ValueError):
    """A model the report cannot show; the message is one paragraph naming the model,
    what is missing and what to try."""


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
    """A model's stages, normalisation (from its pretrained_cfg), license and hub repo.

    stages : the stages the report shows (the family default or ``[[models]] stages``).
    available : every stage the model offers (all blocks of a ViT, all feature_info entries).
    multiple : input sides must be a multiple of this many pixels: patch size or last stride,
        or more when running the model says so (MaxViT: window × stride, :func:`probe_multiple`).
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


@dataclass(frozen=True)
class CropRule:
    """How a build crops its images: sides are multiples of ``multiple``, the least common
    multiple (:func:`crop_multiple`) of what each model needs (``needs``: ``{timm name:
    multiple}``). One object for the pipeline, the analyses' captions and build.json."""

    multiple: int
    needs: dict[str, int]

    @classmethod
    def of(cls, needs: dict[str, int]) -> "CropRule":
        return cls(crop_multiple(needs), dict(needs))

    def explained(self) -> str:
        """``" = lcm(14, 16, 32)"`` when models need different multiples, else ``""``."""
        kinds = sorted(set(self.needs.values()))
        return f" = lcm({', '.join(map(str, kinds))})" if len(kinds) > 1 else ""

    def as_json(self) -> dict:
        return {"multiple": self.multiple, "needs": dict(sorted(self.needs.items()))}


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

    ``stages``: the stage names to show (empty: the family default, see :mod:`dinoreport.backbones`).

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

        with torch.device("meta"):
            model = create_model(name)
        cfg = model.pretrained_cfg
        facts = model_facts(model, name)
        facts["multiple"] = probe_multiple(model, name, facts)
        data = {
            "timm": name,
            **facts,
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


# --- what a timm model offers (stages, input multiple), read from its structure ----------

def vit_blocks(depth: int) -> list[int]:
    """1-based block numbers at 1/4, 1/2, 3/4 and the end of depth (ViT-S: 3, 6, 9, 12)."""
    return sorted({max(1, math.ceil(depth * q / 4)) for q in (1, 2, 3, 4)})


def is_vit(model: Any) -> bool:
    """A plain ViT (token blocks over patches) rather than a model with feature_info stages."""
    return hasattr(model, "blocks") and hasattr(model, "patch_embed") and hasattr(model, "num_prefix_tokens")


def _fixed_size(model: Any) -> tuple[int, int] | None:
    """The only input size a model accepts, or None when it takes any (multiple of) size."""
    pe = getattr(model, "patch_embed", None)
    if pe is not None and getattr(pe, "strict_img_size", False) and not getattr(model, "dynamic_img_size", False):
        size = getattr(pe, "img_size", None)
        return tuple(size) if size is not None else (0, 0)
    return None


def model_facts(model: Any, name: str) -> dict[str, Any]:
    """The stages a model offers, its default stages and input multiple (no forward pass).

    Returns
    -------
    dict with ``is_vit``, ``available`` (list of StageInfo dicts, in forward order), ``default``
    (stage names) and ``multiple`` (px).

    Raises
    ------
    BackboneError
        The model gives no spatial feature maps, or only accepts one fixed input size.
    """
    cls = type(model).__name__
    if not hasattr(model, "forward_intermediates"):
        raise BackboneError(
            f"Model '{name}' ({cls}) cannot be shown: its timm class has no forward_intermediates, so "
            "it gives no per-stage feature maps. Try a model family that does, such as ConvNeXt, "
            "ResNet, EfficientNet, Swin or a ViT (vit_*, *_dinov2, *_dinov3).")
    fixed = _fixed_size(model)
    if fixed is not None:
        raise BackboneError(
            f"Model '{name}' ({cls}) only accepts {fixed[1]}×{fixed[0]} px inputs: its timm class takes "
            "neither dynamic_img_size nor other sizes, while the report keeps each photo's aspect ratio. "
            "Try a family that accepts any size (ViT, Swin, ConvNeXt, ResNet, EfficientNet).")
    info = getattr(model, "feature_info", None)
    entries = info.get_dicts() if hasattr(info, "get_dicts") else list(info or [])
    if is_vit(model):
        patch = model.patch_embed.patch_size
        ph, pw = (patch, patch) if isinstance(patch, int) else (int(patch[0]), int(patch[1]))
        if ph != pw:
            raise BackboneError(
                f"Model '{name}' ({cls}) has non-square {ph}×{pw} patches; the report needs one stride "
                "per stage. Try a model with square patches.")
        depth = len(model.blocks)
        # feature_info knows hybrid stems (a CNN before the patch embed); else the patch size.
        stride = int(entries[-1]["reduction"]) if entries else ph
        return _isotropic([StageInfo(f"B{b}", int(model.embed_dim), stride) for b in range(1, depth + 1)], True)
    if not entries:
        raise BackboneError(
            f"Model '{name}' ({cls}) cannot be shown: it has no feature_info, so timm does not say "
            "which layers give spatial feature maps at which stride. Try a model family that has it, "
            "such as ConvNeXt, ResNet, EfficientNet, Swin or a ViT.")
    strides = [int(e["reduction"]) for e in entries]
    if len(entries) > 1 and len(set(strides)) == 1:
        # One resolution throughout (MLP-Mixer, ConvMixer, ...): blocks, as for a ViT.
        return _isotropic([StageInfo(f"B{k}", int(e["num_chs"]), strides[0]) for k, e in enumerate(entries, 1)],
                          False)
    available, count = [], {}
    for entry, stride in zip(entries, strides):
        base = f"C{int(math.log2(stride))}" if stride & (stride - 1) == 0 else f"S{stride}"
        count[base] = count.get(base, 0) + 1
        # Several entries at one stride (rare) keep apart as C4, C4_2, C4_3.
        available.append(StageInfo(base if count[base] == 1 else f"{base}_{count[base]}", int(entry["num_chs"]), stride))
    # Default: the last entry at each stride >= 4 (stage ends; stride-2 stems left out).
    last = {s.stride: s.name for s in available}
    default = [s.name for s in available if s.stride >= 4 and last[s.stride] == s.name] or [available[-1].name]
    return {"is_vit": False, "available": [asdict(s) for s in available], "default": default,
            "multiple": max(strides)}


#: Multiples of the structural multiple (patch or largest stride) tried by :func:`probe_multiple`:
#: MaxViT needs its 7-cell windows at stride 32 (7 × 32 = 224), a window of 8 would need 256.
PROBE_FACTORS = (1, 2, 3, 4, 5, 6, 7, 8)


def probe_multiple(model: Any, name: str, facts: dict[str, Any]) -> int:
    """What the input sides of ``model`` must be a multiple of, found by running it.

    The structure gives a first answer (``facts["multiple"]``: patch size or largest stride),
    but some models need more: MaxViT partitions every stage into 7 × 7 windows and grids, so
    its sides must be multiples of 7 × 32 = 224. Each candidate ``facts["multiple"] × k``
    (:data:`PROBE_FACTORS`) is tried as a non-square ``M × 2M`` input on torch's meta device
    (shapes only, no arithmetic: milliseconds to a second per model), and the first whose every
    stage gives a map of ``input / stride`` cells is the answer. ``model`` must live on the
    meta device.

    Returns
    -------
    int
        The input multiple in pixels; the structural one when the probe cannot run on the meta
        device (an operation without a meta kernel), so nothing is refused for that.

    Raises
    ------
    BackboneError
        No candidate works: the model takes only the input size it was built for (Hiera, ...).
    """
    import torch

    base = int(facts["multiple"])
    available = [StageInfo(**s) for s in facts["available"]]
    last = ""
    for k in PROBE_FACTORS:
        m = base * k
        try:
            with torch.device("meta"), torch.inference_mode():
                maps = model.forward_intermediates(torch.empty(1, 3, m, 2 * m), indices=len(available),
                                                   intermediates_only=True)
        except NotImplementedError:  # no meta kernel for some operation: cannot tell here
            return base
        except Exception as e:  # noqa: BLE001 - any failure means "not this size"
            text = str(e).strip()
            last = text.splitlines()[-1] if text else type(e).__name__
            continue
        want = [(m // s.stride, 2 * m // s.stride) for s in available]
        got = [tuple(t.shape[-2:]) if t.shape[1] == s.channels else tuple(t.shape[1:3])
               for s, t in zip(available, maps)]
        if got == want:
            return m
        last = f"at {2 * m}×{m} px its maps were {got}, not input / stride {want}"
    native = getattr(model, "pretrained_cfg", {}).get("input_size")
    size = f" ({native[2]}×{native[1]} px)" if native and len(native) == 3 else ""
    raise BackboneError(
        f"Model '{name}' ({type(model).__name__}) takes only the input size it was built for{size}: "
        f"it failed on every non-square input whose sides are multiples of {base} up to {base * PROBE_FACTORS[-1]} px "
        f"({last}), while the report keeps each photo's aspect ratio. Try a family that accepts "
        "any size (ViT, Swin, ConvNeXt, ResNet, EfficientNet, MaxViT).")


def _isotropic(available: list[StageInfo], vit: bool) -> dict[str, Any]:
    depth = len(available)
    return {"is_vit": vit, "available": [asdict(s) for s in available],
            "default": [f"B{b}" for b in vit_blocks(depth)], "multiple": available[0].stride}


def create_model(name: str, *, pretrained: bool = False, num_classes: int | None = 0,
                 **kwargs: Any) -> Any:
    """``timm.create_model(name, num_classes=0)`` that accepts the report's image sizes.

    ``num_classes=None`` keeps the pretrained config's classifier (to load a checkpoint strictly).

    ``dynamic_img_size=True`` is passed to every class that takes it (ViTs, EVA, Swin); others
    (CNNs) accept any multiple of their stride as they are.

    Raises
    ------
    BackboneError
        timm does not know ``name``.
    """
    import timm

    arch = name.split(".", 1)[0]
    if not timm.is_model(arch):
        hint = closest(arch, timm.list_models())
        raise BackboneError(
            f"Model '{name}' is unknown to the installed timm {timm.__version__}: there is no "
            f"architecture '{arch}'. " + (f"Closest names: {', '.join(hint)}. " if hint else "")
            + "Run `python -c \"import timm; print(timm.list_models('*convnext*', pretrained=True))\"` "
              "to list real names.")
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    try:
        return timm.create_model(name, pretrained=pretrained, dynamic_img_size=True, **kwargs)
    except TypeError as e:
        # The class does not take the argument (raised before any weight is initialised).
        if "dynamic_img_size" not in str(e):
            raise
    return timm.create_model(name, pretrained=pretrained, **kwargs)
