"""Batched feature extraction and the content-addressed on-disk feature cache.

A cache entry holds every stage of one (model, image) pair as a safetensors file. Its key
is the sha256 of everything the numbers depend on: timm name, weights identity (file sha256
or the random-init seed), C5 norm, the preprocessed pixels, normalisation, dtype and the
torch/timm versions. The file's metadata carries a sha256 of its tensor bytes and one per
stage. :meth:`FeatureCache.has` may trust an entry whose size and modification time are those
it had when last verified (a no-change rebuild reads no feature bytes), but every stage an
analysis reads is checked against its digest on its first read in a process
(:meth:`FeatureCache.stage`): bytes that changed in place (bit rot, a restored backup) raise
:class:`DamagedEntry`, the entry is removed, and the build computes it again.
"""
from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import re
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .atomic import atomic_path
from .config import ModelSpec
from .modelmeta import ModelMeta, library_versions

if TYPE_CHECKING:
    import torch

    from .backbones import Backbone

__all__ = ["FeatureCache", "entry_key", "extract_all", "pick_device", "check_device", "model_identity",
           "CacheStats", "DamagedEntry", "control_identity"]

FORMAT = "dinoreport-features-2"  # 2: the entry digest is over its stage digests


DEVICES = ("auto", "cpu", "cuda", "mps")


def check_device(name: str) -> str:
    """The device name, checked without importing torch (availability is checked on use)."""
    if name not in DEVICES:
        raise ValueError(f"--device must be one of {', '.join(DEVICES)}, got {name!r}")
    return name


def pick_device(name: str) -> "torch.device":
    """``auto`` -> cuda, then mps, then cpu; an explicit device that is absent is an error."""
    import torch

    check_device(name)
    mps = getattr(torch.backends, "mps", None)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is visible to torch (use --device cpu or auto)")
    if name == "mps" and not (mps is not None and mps.is_available()):
        raise ValueError("--device mps: MPS is not available here (use --device cpu or auto)")
    return torch.device(name)


RANDOM_INIT = "every-block-v1"
"""The random-init recipe of :func:`dinoreport.backbones.create_backbone` (part of cache keys)."""


def model_identity(spec: ModelSpec, meta: ModelMeta, weights_sha256: str | None, seed: int, dtype: str) -> dict:
    """Everything about a model that changes its features (part of every cache key).

    Random-init weights are identified by the seed and the model id, because the seed of
    each model's initialisation is derived from both, and by :data:`RANDOM_INIT`, the name of
    the initialisation recipe (bumped when it changes, so old random features are not reused).
    """
    versions = library_versions()
    return {
        "format": FORMAT,
        "timm_name": spec.timm,
        "weights": weights_sha256 or f"random-init:{RANDOM_INIT}:{seed}:{spec.id}",
        "c5_norm": spec.convnext_c5_norm,
        "stages": [s.name for s in meta.stages],
        "mean": [round(float(v), 6) for v in meta.mean],
        "std": [round(float(v), 6) for v in meta.std],
        "dtype": dtype,
        "torch": versions["torch"].split("+")[0],
        "timm": versions["timm"],
    }


def control_identity(spec: ModelSpec, meta: ModelMeta, torch_seed: int, init: str, dtype: str) -> dict:
    """:func:`model_identity` of an untrained control (:func:`dinoreport.backbones.create_control`):
    identified by its architecture (the timm name without its pretrained tag, so models of one
    architecture share the entries), init recipe and torch seed."""
    ident = model_identity(spec, meta, None, 0, dtype)
    return {**ident, "timm_name": spec.timm.split(".", 1)[0], "weights": f"control:{RANDOM_INIT if init == 'every-block' else init}:{torch_seed}"}


def pixels_sha256(rgb: np.ndarray) -> str:
    """sha256 of a preprocessed (H, W, 3) uint8 image, shape included."""
    h = hashlib.sha256(f"{rgb.shape}".encode())
    h.update(np.ascontiguousarray(rgb).tobytes())
    return h.hexdigest()


def entry_key(identity: dict, image_sha: str) -> str:
    blob = json.dumps({"model": identity, "image": image_sha}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    computed: int = 0
    damaged: int = 0


class DamagedEntry(RuntimeError):
    """A feature cache entry whose bytes no longer match its digest (it has been removed)."""

    def __init__(self, key: str, path: Path, stage: str, gone: bool = False):
        why = ("is gone (removed while the build read it)" if gone else
               "does not match its sha256: its bytes changed after it was written; it was removed")
        super().__init__(f"feature cache entry {path} (stage {stage}) {why} and will be computed again")
        self.key, self.path, self.stage = key, path, stage


def _stage_meta(stage: str) -> str:
    return f"sha256.{stage}"


class FeatureCache:
    """Folder of safetensors entries ``<key[:2]>/<key>.safetensors``; atomic writes."""

    def __init__(self, root: Path, *, read: bool = True):
        self.root = Path(root)
        self.read = read  # False: no entry is trusted; every one asked for is computed again
        self.stats = CacheStats()
        self.device: str | None = None  # the device features were computed on, if any
        self.load_seconds = 0.0  # time spent making models (only when features were computed)
        # (key, stage, size:mtime) whose bytes this process has checked or written itself.
        self._checked: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def _stamp(self, key: str) -> Path:
        # "<key>.verified" holds "size:mtime_ns" of the entry when its sha256 last checked out.
        return self.root / key[:2] / f"{key}.verified"

    @staticmethod
    def _signature(p: Path) -> str:
        st = p.stat()
        return f"{st.st_size}:{st.st_mtime_ns}"

    def _mark_verified(self, key: str) -> None:
        try:
            self._stamp(key).write_text(self._signature(self.path(key)))
        except OSError:
            pass  # only a shortcut: without it the next build verifies the entry again

    def has(self, key: str) -> bool:
        """Whether a sound entry exists, without returning it.

        An entry whose sha256 checked out before and whose size and modification time are
        unchanged since is trusted without reading it (a no-change rebuild then reads no
        feature bytes); otherwise it is read and verified as by :meth:`get`.
        """
        if not self.read:
            return False
        try:
            sig = self._signature(self.path(key))
        except OSError:
            return False
        try:
            if self._stamp(key).read_text() == sig:
                return True
        except OSError:
            pass
        return self.get(key) is not None

    @staticmethod
    def _stage_digest(name: str, arr: np.ndarray) -> str:
        h = hashlib.sha256(f"{name}{arr.shape}{arr.dtype}".encode())
        # A view, not tobytes(): a stage is up to tens of MB and sha256 runs at a few hundred
        # MB/s here, so a copy on top would be felt in the cache-write thread.
        h.update(memoryview(np.ascontiguousarray(arr)).cast("B"))
        return h.hexdigest()

    @classmethod
    def _digest(cls, tensors: dict[str, np.ndarray], stage_digests: dict[str, str] | None = None) -> str:
        """The entry's digest: sha256 over its stages' digests, so each byte is hashed once."""
        if stage_digests is None:
            stage_digests = {name: cls._stage_digest(name, arr) for name, arr in tensors.items()}
        return hashlib.sha256("".join(f"{name}:{stage_digests[name]}\n"
                                      for name in sorted(stage_digests)).encode()).hexdigest()

    def _remove(self, key: str) -> None:
        self.stats.damaged += 1
        self.path(key).unlink(missing_ok=True)
        self._stamp(key).unlink(missing_ok=True)

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        """The stages of an entry, or None when absent or damaged (a damaged file is removed)."""
        from safetensors import SafetensorError, safe_open

        p = self.path(key)
        if not p.is_file():
            return None
        try:
            with safe_open(str(p), framework="numpy") as f:
                meta = f.metadata() or {}
                tensors = {name: f.get_tensor(name) for name in f.keys()}
            ok = meta.get("format") == FORMAT and meta.get("sha256") == self._digest(tensors)
        except (SafetensorError, OSError, ValueError, RuntimeError):
            ok = False
        if not ok:
            self._remove(key)
            return None
        self._mark_verified(key)
        return tensors

    def stage(self, key: str, stage: str, channel: int | None = None) -> np.ndarray:
        """One stage ``(C, H, W)`` float32 of an entry, or only its ``channel`` ``(H, W)``.

        The stage's bytes are checked against the digest written with them on the first read
        of that stage in this process (later reads of the same unchanged file are not hashed
        again; a channel is then read alone). An entry of an older writer without per-stage
        digests is checked whole. Raises :class:`DamagedEntry` (the entry is removed) when
        they do not match or the entry is gone (the build then extracts it again).
        """
        from safetensors import SafetensorError, safe_open

        p = self.path(key)
        try:
            sig = self._signature(p)
        except FileNotFoundError:
            # Another analysis found it damaged and removed it, or the cache was cleaned.
            raise DamagedEntry(key, p, stage, gone=True) from None
        mark = (key, stage, sig)
        with self._lock:
            checked = mark in self._checked
        try:
            with safe_open(str(p), framework="numpy") as f:  # a file removed since: see below
                if checked:
                    return f.get_tensor(stage) if channel is None else f.get_slice(stage)[int(channel)]
                meta = f.metadata() or {}
                want = meta.get(_stage_meta(stage))
                arr = f.get_tensor(stage) if want is not None else None
            ok = want is None or (meta.get("format") == FORMAT and want == self._stage_digest(stage, arr))
        except (SafetensorError, ValueError, RuntimeError, KeyError, OSError):
            if not p.exists():
                raise DamagedEntry(key, p, stage, gone=True) from None
            ok = False
        if ok and want is None:
            # An older writer's entry, without per-stage digests: checked whole by get, which
            # removes it when damaged.
            tensors = self.get(key)
            if tensors is None:
                raise DamagedEntry(key, p, stage)
            arr = tensors.get(stage)
            ok = arr is not None
        if not ok:
            with self._lock:
                self._remove(key)
            raise DamagedEntry(key, p, stage)
        with self._lock:
            self._checked.add(mark)
        return arr if channel is None else np.ascontiguousarray(arr[int(channel)])

    def put(self, key: str, tensors: dict[str, np.ndarray]) -> None:
        """Write an entry atomically; a full or failing disk raises ``OSError`` naming the entry."""
        from safetensors import SafetensorError
        from safetensors.numpy import save_file

        stages = {name: self._stage_digest(name, arr) for name, arr in tensors.items()}
        meta = {"format": FORMAT, "sha256": self._digest(tensors, stages)}
        meta.update({_stage_meta(name): digest for name, digest in stages.items()})
        path = self.path(key)
        try:
            with atomic_path(path) as tmp:
                save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp), metadata=meta)
        except SafetensorError as e:
            # The Rust writer reports I/O failures (a full disk) as its own error, with the OS
            # error number only in its text ("... (os error 28)" or "code: 28").
            text = str(e)
            found = re.search(r"os error (\d+)|code: (\d+)", text)
            code = int(next(g for g in found.groups() if g)) if found else (
                errno.ENOSPC if "No space left" in text else errno.EIO)
            raise OSError(code, os.strerror(code), str(path)) from None
        self._mark_verified(key)
        sig = self._signature(path)
        with self._lock:
            # What this process just wrote from memory needs no check when analyses read it back.
            self._checked.update((key, name, sig) for name in tensors)


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl, Windows)."""
    try:
        # The symbols this process already has: no search for libc (find_library would start
        # a subprocess, here from inside the extraction loop).
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


def give_back_freed_memory() -> None:
    """Hand the heap pages that freed tensors left behind back to the operating system.

    A CPU forward pass allocates and frees a few hundred MB of activations whose sizes change
    with every input shape; glibc keeps such freed memory in its heaps, so the resident size
    crept up with each new shape and a 400-image build passed 2 GB. ConvNeXt-T over 40 random
    shapes (``python bench/memory_trim.py``, 2 cores): 1176 -> 1659 MiB after 10..40 passes,
    trimmed 857 -> 878 MiB (peak 1167-1176 instead of 1644-1659), for 30-70 ms a pass
    (re-touching the pages). No-op without glibc.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def resident_mib() -> float | None:
    """This process's resident set size in MiB (Linux ``/proc``), or None where unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class HeapTrimmer:
    """Calls :func:`give_back_freed_memory` only when resident memory has grown.

    Trimming after every pass cost 30-70 ms each (the pages are touched again by the next
    pass), although passes over images of one shape reuse the same freed blocks and the
    resident size does not creep. So a pass is followed by a trim only when the resident size
    is ``slack_mib`` above what it was after the last trim (or at the start). Without
    ``/proc`` (no way to tell) it trims every time, as before.
    """

    def __init__(self, slack_mib: float = 128.0) -> None:
        self.slack_mib = slack_mib
        self.trims = 0
        self._floor = resident_mib()

    def __call__(self) -> bool:
        """Trim if grown; whether it trimmed."""
        now = resident_mib()
        if now is not None and self._floor is not None and now < self._floor + self.slack_mib:
            return False
        give_back_freed_memory()
        self.trims += 1
        self._floor = resident_mib()
        return True


def extract_all(
    identity: dict,
    images: Mapping[str, np.ndarray],
    cache: FeatureCache,
    *,
    make_backbone: Callable[[], "Backbone"],
    device: str = "auto",
    dtype: str = "fp32",
    batch_size: int = 4,
    cpu_batch_size: int = 1,
    advance: Callable[[int], None] | None = None,
) -> dict[str, str]:
    """Make sure every image has a cache entry for a model; return ``{image id: key}``.

    identity : from :func:`model_identity`.
    images : ``{id: (H, W, 3) uint8}`` preprocessed; images of the same shape are batched. Any
        mapping: each image is looked up once to hash it and once more only if it is computed,
        so an :class:`~dinoreport.images.ImageStore` keeps a batch or two in memory, not the set.
    make_backbone : builds the model; called (and torch imported) only if something is missing.
    device : "auto", "cpu", "cuda" or "mps", resolved only when features are computed.
    dtype : "fp32", or "bf16" (autocast; features are stored as float32 either way).
    batch_size : same-size images per forward pass on an accelerator.
    cpu_batch_size : the same on a CPU, where batching does not pay (see the comment below).
    advance : called with the number of images finished (hits and computed alike).
    """
    keys: dict[str, str] = {}
    todo: dict[tuple, list[str]] = defaultdict(list)
    for iid in sorted(images):
        rgb = images[iid]
        keys[iid] = key = entry_key(identity, pixels_sha256(rgb))
        if cache.has(key):
            cache.stats.hits += 1
            if advance:
                advance(1)
        else:
            todo[rgb.shape].append(iid)
    if not todo:
        return keys
    import torch

    dev = pick_device(device)
    cache.device = str(dev)
    t = time.perf_counter()
    backbone = make_backbone().to(dev)
    cache.load_seconds += time.perf_counter() - t
    # On an accelerator, batches of same-size images keep it busy; channels-last suits the
    # convolutions of CNNs on tensor cores and cuDNN's autotuner pays off because the batch
    # shapes repeat. On a CPU batching does not pay: a 4-image batch measured 2-12 % slower per
    # image than one image at a time (ConvNeXt-T and ViT-S/16 at 448 px, 2 cores), and
    # channels-last varied between 15 % faster and 3 % slower from run to run, so images go one
    # at a time in the default layout there (bench/cpu_batching.py measures both).
    use_cl = dev.type != "cpu" and not backbone.is_vit
    if use_cl:
        backbone.model.to(memory_format=torch.channels_last)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if dev.type == "cpu":
        batch_size = cpu_batch_size
    trim_if_grown = HeapTrimmer()
    autocast = torch.autocast(device_type=dev.type, dtype=torch.bfloat16) if dtype == "bf16" else None
    batches = [ids[start:start + batch_size] for shape in sorted(todo)
               for ids in (todo[shape],) for start in range(0, len(ids), batch_size)]

    def prepare(chunk: list[str]) -> "torch.Tensor":
        # Stacking (and pinning, for an asynchronous copy to a GPU) runs in a worker thread
        # while the model computes the previous batch.
        x = torch.from_numpy(np.stack([images[i] for i in chunk]))
        return x.pin_memory() if dev.type == "cuda" else x

    def store(chunk: list[str], arrays: dict[str, np.ndarray]) -> None:
        for j, iid in enumerate(chunk):
            cache.put(keys[iid], {k: np.ascontiguousarray(a[j]) for k, a in arrays.items()})

    # One thread prepares the next batch, one writes finished entries (hashing and file writes
    # release the GIL), so the model is never waiting on either.
    with ThreadPoolExecutor(1, thread_name_prefix="prepare") as prep, \
            ThreadPoolExecutor(1, thread_name_prefix="cache-write") as writer:
        nxt = prep.submit(prepare, batches[0])
        writes = []
        for b, chunk in enumerate(batches):
            batch = nxt.result().to(dev, non_blocking=True)
            if b + 1 < len(batches):
                nxt = prep.submit(prepare, batches[b + 1])
            with torch.inference_mode():
                x = backbone.normalize(batch)
                if use_cl:
                    x = x.contiguous(memory_format=torch.channels_last)
                if autocast is not None:
                    with autocast:
                        out = backbone.forward(x)
                else:
                    out = backbone.forward(x)
            # One copy back per stage and batch.
            arrays = {k: v.float().contiguous().cpu().numpy() for k, v in out.items()}
            writes.append(writer.submit(store, chunk, arrays))
            while len(writes) > 2:  # at most two batches of maps waiting: memory stays flat
                writes.pop(0).result()
            if dev.type == "cpu":
                trim_if_grown()
            cache.stats.computed += len(chunk)
            if advance:
                advance(len(chunk))
        for w in writes:
            w.result()  # re-raise a failed write here, before the keys are handed out
    return keys
