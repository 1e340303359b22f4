"""What feature maps share at each grid position across images: positional bias.

A network can leave a trace of *where* a cell is in its features: a ViT adds learnt position
embeddings, a ConvNeXt sees zero padding near the border. Averaging the L2-normalised features
of many images at each position keeps that trace and averages the content away; the share of
the feature variance that position alone explains (a one-way analysis of variance with the
position as the factor) says how strong it is.

All functions are pure: arrays in, arrays/dataclasses out.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .checks import check_fmap

__all__ = ["PositionBias", "PositionAccumulator", "common_grid", "l2_normalise"]


def l2_normalise(fmap: np.ndarray) -> np.ndarray:
    """(C, H, W) map -> float32, every position's feature vector of unit length (a zero vector
    stays zero). The norms are taken in float64, so large features do not overflow."""
    fm = check_fmap(fmap)
    n = np.sqrt(np.einsum("chw,chw->hw", fm, fm, dtype=np.float64))
    return fm * np.where(n > 0, 1.0 / np.where(n > 0, n, 1.0), 0.0).astype(np.float32)[None]


def common_grid(grids: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The grid every image is brought to: the most frequent one (ties: the smallest area, then
    the smallest (h, w)), so most maps are used as they are and the rest are resized."""
    if not grids:
        raise ValueError("common_grid needs at least one grid")
    counts = Counter(tuple(int(v) for v in g) for g in grids)
    return min(counts, key=lambda g: (-counts[g], g[0] * g[1], g))


@dataclass(frozen=True)
class PositionBias:
    """Positional bias of one model stage over a set of images.

    Attributes
    ----------
    mean_map : (C, h, w) ndarray of float64
        Mean over images of the L2-normalised features at each position.
    share : float
        Share of the variance of the normalised features that position explains:
        ``n * sum_p |m_p - mu|^2 / sum_{i,p} |x_ip - mu|^2`` (between-position over total sum of
        squares; mu the grand mean). Even without any positional effect it is about
        ``(h*w - 1) / (n*h*w - 1)`` from sampling noise alone.
    share_adjusted : float
        The same corrected for that chance level (omega squared of a two-way layout, images x
        positions, one map per cell): ``(SS_b - (P - 1) MS_r) / (SS_t + MS_r)`` with ``MS_r``
        the residual mean square after the position and the image means are removed. Every
        position sees every image, so an image's own offset (one photo darker than another)
        moves no position mean; it is taken out of the noise level too, else the correction
        would overshoot below 0. About 0 without a positional effect, can be slightly negative.
    offset_norm : (h, w) ndarray of float64
        ``|m_p - mu|``: how far each position's mean lies from the grand mean.
    mean_norm : (h, w) ndarray of float64
        ``|m_p|`` in [0, 1]: 1 where every image has the same direction at that position.
    border_ratio : float
        With ``m_in`` the mean of ``m_p`` over the interior (all but the outer ring of
        positions): the mean of ``|m_p - m_in|^2`` over the ring divided by its mean over the
        interior. About 1 when the ring is like any other position, much larger when the bias
        sits at the border (padding); NaN on grids without an interior.
    n_images : int
    """

    mean_map: np.ndarray
    share: float
    share_adjusted: float
    offset_norm: np.ndarray
    mean_norm: np.ndarray
    border_ratio: float
    n_images: int


class PositionAccumulator:
    """Streams maps of one grid, image by image, and gives their :class:`PositionBias`.

    Memory is one (C, h, w) sum whatever the number of images.

    Parameters
    ----------
    channels : int >= 1
    grid : (h, w)
        The grid every map given to :meth:`update` must have
        (see :func:`common_grid` and :func:`~dinoreport.analysis.cka.resize_map`).
    """

    def __init__(self, channels: int, grid: tuple[int, int]) -> None:
        self._shape = (int(channels), int(grid[0]), int(grid[1]))
        self._sum = np.zeros(self._shape, dtype=np.float64)
        self._sq = 0.0
        self._img_sq = 0.0  # sum over images of |image mean vector|^2
        self._n = 0

    @property
    def n(self) -> int:
        return self._n

    def update(self, fmap: np.ndarray) -> None:
        """Add one image's (C, h, w) map (normalised here, per position)."""
        x = l2_normalise(fmap)
        if x.shape != self._shape:
            raise ValueError(f"map must be {self._shape} (channels, grid), got {x.shape}")
        self._sum += x
        # Every normalised vector has length 1 (zero vectors 0): the sum of squares is a count.
        self._sq += float(np.count_nonzero(np.any(x != 0, axis=0)))
        im = x.reshape(x.shape[0], -1).mean(axis=1, dtype=np.float64)
        self._img_sq += float(im @ im)
        self._n += 1

    def result(self) -> PositionBias:
        """The bias of every map seen (at least two)."""
        n = self._n
        if n < 2:
            raise ValueError(f"positional bias needs at least 2 images, got {n}")
        c, h, w = self._shape
        p = h * w
        m = self._sum / n
        mu = m.reshape(c, -1).mean(axis=1)
        dev = m - mu[:, None, None]
        off2 = np.einsum("chw,chw->hw", dev, dev)
        ss_b = n * float(off2.sum())
        ss_t = self._sq - n * p * float(mu @ mu)
        ss_img = p * self._img_sq - n * p * float(mu @ mu)
        share = ss_b / ss_t if ss_t > 0 else 0.0
        adj = 0.0
        if ss_t > 0 and p > 1:
            ms_r = max(ss_t - ss_b - ss_img, 0.0) / ((p - 1) * (n - 1))
            adj = (ss_b - (p - 1) * ms_r) / (ss_t + ms_r)
        ring = np.zeros((h, w), dtype=bool)
        ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True
        # Measured from the interior's own mean, not the grand mean: a border offset moves the
        # grand mean too, and on small grids, where the ring is half the cells, it would show
        # in the interior as much as in the ring.
        inner = ~ring
        border_ratio = float("nan")
        if inner.any():
            d_in = m - m[:, inner].mean(axis=1)[:, None, None]
            d2 = np.einsum("chw,chw->hw", d_in, d_in)
            if d2[inner].mean() > 0:
                border_ratio = float(d2[ring].mean() / d2[inner].mean())
        return PositionBias(mean_map=m, share=float(share), share_adjusted=float(adj),
                            offset_norm=np.sqrt(off2), mean_norm=np.sqrt(np.einsum("chw,chw->hw", m, m)),
                            border_ratio=border_ratio, n_images=n)
