"""Dense correspondences between two feature maps, as grid positions.

:func:`match_cells` applies :func:`.correspond.mutual_nn` (cosine similarity of the full
feature vectors) to the foreground cells of two maps and says where each match lies on
each grid; :func:`spread_pick` chooses a few of them to draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .across import pixels
from .correspond import mutual_nn

__all__ = ["CellMatches", "match_cells", "chance_cycle_share", "spread_pick"]


@dataclass(frozen=True)
class CellMatches:
    """Mutual nearest-neighbour matches between the foreground cells of maps A and B.

    Attributes
    ----------
    pos_a, pos_b : (M, 2) ndarray of int64
        ``(row, col)`` of each match on A's and on B's grid; sorted by A's row-major order.
    similarity : (M,) ndarray of float64
        Cosine similarity of each matched pair.
    n_a, n_b : int
        Foreground cells of A and of B.
    """

    pos_a: np.ndarray
    pos_b: np.ndarray
    similarity: np.ndarray
    n_a: int
    n_b: int

    @property
    def n_mutual(self) -> int:
        return int(self.pos_a.shape[0])

    @property
    def cycle_consistent_share(self) -> float:
        """Matches over ``min(n_a, n_b)``: the share of cells whose A -> B -> A cycle closes
        (as :func:`.correspond.cycle_consistent_share`)."""
        return self.n_mutual / min(self.n_a, self.n_b)


def _cells(fmap: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    x = pixels(fmap, mask)
    h, w = np.shape(fmap)[1:]
    keep = np.ones((h, w), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    return x, np.argwhere(keep)  # argwhere is row-major, the order of pixels()


def match_cells(fmap_a: np.ndarray, fmap_b: np.ndarray, mask_a: np.ndarray | None = None,
                mask_b: np.ndarray | None = None) -> CellMatches:
    """Mutual nearest neighbours between the (foreground) cells of two maps.

    Parameters
    ----------
    fmap_a, fmap_b : (C, H_a, W_a), (C, H_b, W_b) array_like, finite
    mask_a, mask_b : (H_a, W_a), (H_b, W_b) bool, optional
        Cells that take part (default: all). Each must keep at least one cell.

    Returns
    -------
    CellMatches
    """
    xa, pa = _cells(fmap_a, mask_a)
    xb, pb = _cells(fmap_b, mask_b)
    if xa.shape[0] == 0 or xb.shape[0] == 0:
        raise ValueError(f"each mask must keep at least one cell, got {xa.shape[0]} and {xb.shape[0]}")
    pairs = mutual_nn(xa, xb)
    ua = xa[pairs[:, 0]].astype(np.float64)
    ub = xb[pairs[:, 1]].astype(np.float64)
    na, nb = np.linalg.norm(ua, axis=1), np.linalg.norm(ub, axis=1)
    dot = np.einsum("md,md->m", ua, ub)
    sim = np.divide(dot, na * nb, out=np.zeros_like(dot), where=(na * nb) > 0)
    return CellMatches(pos_a=pa[pairs[:, 0]].astype(np.int64), pos_b=pb[pairs[:, 1]].astype(np.int64),
                       similarity=sim, n_a=int(xa.shape[0]), n_b=int(xb.shape[0]))


def spread_pick(n: int, most: int) -> np.ndarray:
    """Indices of at most ``most`` of ``n`` items, evenly spread over ``0..n-1``.

    Used to draw a readable subset of matches: taken in A's row-major order, the picked
    matches cover the whole foreground of A rather than its best-matching corner.

    Returns
    -------
    (min(n, most),) ndarray of int64, increasing, without repeats.
    """
    if n < 0 or most < 0:
        raise ValueError(f"n and most must be >= 0, got {n} and {most}")
    if n <= most:
        return np.arange(n, dtype=np.int64)
    if most == 0:
        return np.zeros(0, dtype=np.int64)
    # Centres of `most` equal slices of 0..n-1: distinct because n > most.
    return np.floor((np.arange(most) + 0.5) * n / most).astype(np.int64)


def chance_cycle_share(fmap_a: np.ndarray, fmap_b: np.ndarray, mask_a: np.ndarray | None = None,
                       mask_b: np.ndarray | None = None) -> float:
    """The cycle-consistent share expected by chance for these two sets of cells.

    B's channels are rotated by half their number before matching: every cell keeps its
    values, but channel c of A no longer lines up with channel c of B, so whatever share is
    left is what unrelated features give (about half the cells for independent Gaussian
    vectors; see :func:`.correspond.cycle_share_excess`, which subtracts this baseline).

    Parameters
    ----------
    As :func:`match_cells`.

    Returns
    -------
    float in (0, 1]
    """
    xa, _ = _cells(fmap_a, mask_a)
    xb, _ = _cells(fmap_b, mask_b)
    if xa.shape[0] == 0 or xb.shape[0] == 0:
        raise ValueError(f"each mask must keep at least one cell, got {xa.shape[0]} and {xb.shape[0]}")
    rolled = np.roll(xb, xb.shape[1] // 2, axis=1)
    return mutual_nn(xa, rolled).shape[0] / min(xa.shape[0], xb.shape[0])
