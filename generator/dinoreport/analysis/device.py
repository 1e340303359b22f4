"""Where the analyses' dense linear algebra runs: numpy on the CPU, or torch on a GPU.

The eigendecompositions, scatter matrices and Gram matrices of the analyses (within-image and
across-image PCA, CKA, the explorer's basis) run in float64 either way, so both paths give
the same numbers up to rounding (tests compare them). numpy is the path on a CPU: LAPACK's
subset eigensolver on one thread beats torch's full ``eigh`` there. On a machine with a GPU
the same functions move their matrices to it.

``DINOREPORT_ANALYSIS_DEVICE`` chooses: ``auto`` (default: ``cuda`` when torch sees a GPU,
else numpy), ``numpy``, ``cuda``, or ``cpu`` (torch on the CPU; used by the tests to check
the torch path without a GPU).
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["ENV", "analysis_device", "to_device", "to_numpy"]

ENV = "DINOREPORT_ANALYSIS_DEVICE"
_CHOICES = ("auto", "numpy", "cuda", "cpu")


@lru_cache(maxsize=1)
def analysis_device() -> "torch.device | None":
    """The torch device for the analyses' linear algebra, or None for numpy.

    Read once per process from ``DINOREPORT_ANALYSIS_DEVICE`` (``analysis_device.cache_clear()``
    re-reads it).
    """
    want = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if want not in _CHOICES:
        raise ValueError(f"{ENV}={want!r}: use one of {', '.join(_CHOICES)}")
    if want == "numpy":
        return None
    import torch

    if want == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else None
    if want == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{ENV}=cuda: torch sees no CUDA device (use auto or numpy)")
    return torch.device(want)


def to_device(x: np.ndarray, dev: "torch.device") -> "torch.Tensor":
    """A float64 tensor on ``dev`` holding ``x``."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).to(dev)


def to_numpy(t: "torch.Tensor") -> np.ndarray:
    """A float64 numpy copy of a tensor from any device."""
    return t.detach().to("cpu", dtype=__import__("torch").float64).numpy()
