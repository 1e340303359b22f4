"""Where a model's weights come from: local file -> Hugging Face cache -> hub.

timm's own hub access retries for ~47 s per file when there is no network; we decide in
seconds instead: ``HF_HUB_OFFLINE=1`` skips the hub at once, otherwise one TCP connect with a
short timeout says whether the hub answers at all.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .config import ModelSpec

__all__ = ["ResolvedWeights", "WeightsError", "resolve_weights", "resolve_all", "sha256_file", "hub_reachable",
           "read_state_dict", "check_weights_file", "mismatch_message"]

HUB_HOST = "huggingface.co"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class WeightsError(RuntimeError):
    """No weights for one or more models; the message names them and the ways out."""


@dataclass(frozen=True)
class ResolvedWeights:
    """path: the weights file; source: "file", "hf-cache" or "hub"; sha256 of the file."""

    path: Path
    source: str
    sha256: str


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hub_id(spec: ModelSpec) -> str | None:
    """The Hugging Face repo holding the pretrained weights of ``spec.timm``, from timm's cfg."""
    from .modelmeta import model_meta

    return model_meta(spec.timm).hf_hub_id


def hub_reachable(timeout: float = 3.0) -> bool:
    """False at once when ``HF_HUB_OFFLINE`` is set; else whether the hub accepts a connection."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    host = os.environ.get("HF_ENDPOINT", f"https://{HUB_HOST}").split("://", 1)[-1].split("/", 1)[0]
    try:
        with socket.create_connection((host.split(":")[0], 443), timeout=timeout):
            return True
    except OSError:
        return False


def _from_hf_cache(repo: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    for name in WEIGHT_FILES:
        hit = try_to_load_from_cache(repo, name)
        if isinstance(hit, str) and Path(hit).is_file():
            return Path(hit)
    return None


def _from_hub(repo: str) -> Path | None:
    from huggingface_hub import hf_hub_download

    for name in WEIGHT_FILES:
        try:
            return Path(hf_hub_download(repo, name))
        except Exception:  # noqa: BLE001 - any hub failure means: try the next file, then report
            continue
    return None


def resolve_weights(spec: ModelSpec, *, online: bool) -> ResolvedWeights | None:
    """The first weights source that works for ``spec``, or None.

    Order: ``spec.weights`` (config), the Hugging Face cache, the hub (only when ``online``).
    """
    if spec.weights is not None:
        return ResolvedWeights(spec.weights, "file", sha256_file(spec.weights))
    repo = hub_id(spec)
    if repo is None:
        return None
    cached = _from_hf_cache(repo)
    if cached is not None:
        return ResolvedWeights(cached, "hf-cache", sha256_file(cached))
    if online:
        got = _from_hub(repo)
        if got is not None:
            return ResolvedWeights(got, "hub", sha256_file(got))
    return None


def resolve_all(
    specs: tuple[ModelSpec, ...], *, config_path: Path | None = None,
    reachable: Callable[[], bool] = hub_reachable,
) -> dict[str, ResolvedWeights]:
    """Weights for every model, or one WeightsError naming all models that have none.

    The hub is probed once, and only when some model is neither a local file nor cached.
    """
    found: dict[str, ResolvedWeights] = {}

    def attempt(todo: list[ModelSpec], online: bool) -> list[ModelSpec]:
        """Resolve what can be; return the specs still without weights."""
        for spec in todo:
            got = resolve_weights(spec, online=online)
            if got is not None:
                found[spec.id] = got
        return [s for s in todo if s.id not in found]

    missing = attempt(list(specs), online=False)
    if missing and reachable():
        missing = attempt(missing, online=True)
    if missing:
        names = "\n".join(f"  - {s.id} ({s.timm})" for s in missing)
        where = str(config_path) if config_path else "report.toml"
        raise WeightsError(
            "No weights available for:\n"
            f"{names}\n"
            "The Hugging Face hub is not reachable (or HF_HUB_OFFLINE is set) and the weights are not "
            "in the local Hugging Face cache. Ways out:\n"
            "  1. go online once and rebuild: the weights are cached for later offline builds;\n"
            f"  2. point `weights = \"path/to/file.safetensors\"` at a local file for that model in {where};\n"
            "  3. build with --random-init to see the pipeline with seeded random weights."
        )
    return found


_WRAPPERS = ("state_dict_ema", "model_ema", "state_dict", "model")


def read_state_dict(path: Path) -> dict:
    """The tensors of a weights file, read as data only.

    ``.safetensors`` through safetensors; anything else through ``torch.load`` with
    ``weights_only=True`` (set here, not left to the library's default), so a checkpoint that
    needs Python objects beyond tensors is refused instead of run. Training checkpoints are
    unwrapped as timm does (``state_dict_ema``, ``model_ema``, ``state_dict``, ``model``;
    a ``module.`` prefix dropped).

    Raises
    ------
    WeightsError
        Naming the file, what is wrong with it and what to do.
    """
    import pickle

    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise WeightsError(
                f"{path}: cannot read this safetensors file ({e}); it is damaged or truncated "
                "(an interrupted download?) — download it again, or remove it to use the hub cache") from None
        return sd
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise WeightsError(
            f"{path}: refused to load this checkpoint: it is a pickle that needs Python objects beyond "
            f"tensors ({first}). Loading it could run code from the file. Convert it to .safetensors "
            "on a machine where you trust it, or use the model's published safetensors weights") from None
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        raise WeightsError(f"{path}: not a readable weights file ({type(e).__name__}: {str(e)[:200]}); "
                           "give a .safetensors file or a torch state_dict") from None
    for key in _WRAPPERS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: holds no state_dict of tensors; give the model's weights file")
    return {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}


def check_weights_file(path: Path) -> str | None:
    """Why ``path`` cannot be used as weights, or None when it reads as tensors only."""
    try:
        read_state_dict(path)
    except WeightsError as e:
        return str(e)
    return None


_KEYS_RE = {kind.lower(): re.compile(rf'{kind} key\(s\) in state_dict: ((?:"[^"]*"(?:, )?)+)')
            for kind in ("Missing", "Unexpected")}


def mismatched_keys(err: Exception) -> dict[str, list[str]]:
    """``{"missing": [...], "unexpected": [...], "shape": [...]}`` from torch's load_state_dict error."""
    text = str(err)
    out = {}
    for kind, rx in _KEYS_RE.items():
        m = rx.search(text)
        out[kind] = re.findall(r'"([^"]*)"', m.group(1)) if m else []
    out["shape"] = re.findall(r"size mismatch for ([^:]+):", text)
    return out


def mismatch_message(err: Exception, path: Path, timm_name: str, shown: int = 5) -> str:
    """A short message for a checkpoint that does not fit the model, from torch's long one.

    torch lists every missing and unexpected key (kilobytes for a wrong architecture); this
    keeps the counts and the first few of each.
    """
    parts = []
    for kind, keys in mismatched_keys(err).items():
        if keys:
            more = f", ... ({len(keys) - shown} more)" if len(keys) > shown else ""
            what = "tensors of the wrong shape" if kind == "shape" else f"{kind} keys"
            parts.append(f"{len(keys)} {what} ({', '.join(keys[:shown])}{more})")
    what = "; ".join(parts) or str(err).splitlines()[0][:300]
    return (f"{path}: these weights do not fit the model {timm_name}: {what}. The file is probably for "
            "another architecture or size — check `timm` and `weights` of this model in report.toml")
