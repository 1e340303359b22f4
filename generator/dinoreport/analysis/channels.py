"""Seeded choice of channels to show."""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["pick_channels"]


def pick_channels(n_channels: int, k: int, seed: int, key: str) -> tuple[int, ...]:
    """Pick `k` distinct channel indices, reproducibly.

    Parameters
    ----------
    n_channels : int
        Channels available, >= 1.
    k : int
        How many to pick, >= 0; ``k >= n_channels`` returns all channels.
    seed : int
        The config seed, >= 0.
    key : str
        What the pick is for (e.g. ``"dinov3_convnext_tiny/C3"``), so each model
        and stage gets its own draw.

    Returns
    -------
    tuple of int, sorted ascending
        Drawn by ``numpy.random.default_rng([seed, zlib.crc32(key)])``: the same
        (seed, key) always gives the same channels.
    """
    for name, v, least in (("n_channels", n_channels, 1), ("k", k, 0), ("seed", seed, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {v!r}")
    if not isinstance(key, str):
        raise ValueError(f"key must be a str, got {type(key).__name__}")
    if k >= n_channels:
        return tuple(range(int(n_channels)))
    rng = np.random.default_rng([int(seed), zlib.crc32(key.encode("utf-8"))])
    picked = rng.choice(int(n_channels), size=int(k), replace=False)
    return tuple(sorted(int(i) for i in picked))
