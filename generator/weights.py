"""Where a model's weights come from: local file -> Hugging Face cache -> hub.

timm's own hub access retries for ~47 s per file when there is no network; we decide in
seconds instead: ``HF_HUB_OFFLINE=1`` skips the hub at once, otherwise one TCP connect with a
short timeout says whether the hub answers at all.
"""
from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .config import ModelSpec

__all__ = ["ResolvedWeights", "WeightsError", "resolve_weights", "resolve_all", "sha256_file", "hub_reachable"]

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
