"""Reference foreground masks drawn as polygons: validate the manifest value, rasterise it.

A reference mask is a list of polygons in *normalised image coordinates*: each vertex is
``[x, y]`` with x = column / width and y = row / height of the photo as displayed (EXIF
orientation applied), both in [0, 1], origin top-left, y down. Normalised coordinates keep one
outline valid for the bundled (resized) file and for its full-resolution original.

Fill rule: a pixel belongs to the mask when its centre ``((col + 0.5) / W, (row + 0.5) / H)``
lies inside at least one polygon. Inside one polygon the even-odd rule applies (a horizontal
ray from the centre crosses its outline an odd number of times), so a self-overlapping outline
leaves the overlap out; separate polygons are united, never subtracted, so a hole has to be
drawn as the outline going around it. Centres exactly on an edge count as inside on the left
and top edges and outside on the right and bottom ones (half-open), so polygons that share an
edge tile without gaps or double counting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["Polygons", "parse_polygons", "rasterize"]

Polygons = tuple[tuple[tuple[float, float], ...], ...]
"""Polygons as validated by :func:`parse_polygons`: vertices ``(x, y)`` in [0, 1]."""


def parse_polygons(value: Any, where: str) -> Polygons:
    """Validate a ``mask_polygons`` value from a manifest.

    Parameters
    ----------
    value
        The parsed TOML value: a non-empty list of polygons, each a list of at least three
        ``[x, y]`` number pairs in [0, 1].
    where : str
        Prefix for error messages, naming the file, image id and key
        (e.g. ``"images/manifest.toml: image[3] (dog_pug): images.dog_pug.mask_polygons"``).

    Returns
    -------
    Polygons

    Raises
    ------
    ValueError
        The message starts with ``where``, names the polygon and vertex, and says what to fix.
    """
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where} must be a non-empty list of polygons [[[x, y], ...], ...], "
                         f"got {value!r:.80}")
    out = []
    for p, poly in enumerate(value):
        if not isinstance(poly, list) or len(poly) < 3:
            raise ValueError(f"{where}[{p}] must be a list of at least 3 [x, y] vertices, "
                             f"got {poly!r:.80}")
        verts = []
        for v, vertex in enumerate(poly):
            ok = (isinstance(vertex, list) and len(vertex) == 2
                  and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in vertex))
            if not ok:
                raise ValueError(f"{where}[{p}][{v}] must be a pair of numbers [x, y], got {vertex!r}")
            x, y = float(vertex[0]), float(vertex[1])
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"{where}[{p}][{v}] = {vertex!r} lies outside [0, 1]: coordinates "
                                 "are fractions of the image width and height")
            verts.append((x, y))
        centred = np.asarray(verts) - np.mean(verts, axis=0)
        if np.linalg.matrix_rank(centred, tol=1e-9) < 2:
            raise ValueError(f"{where}[{p}] has no area (all vertices on one line)")
        out.append(tuple(verts))
    return tuple(out)


def rasterize(polygons: Sequence[Sequence[Sequence[float]]], shape: tuple[int, int]) -> np.ndarray:
    """Polygons in normalised coordinates -> boolean mask (see the module docstring for the rule).

    Parameters
    ----------
    polygons : sequence of polygons, each a sequence of (x, y) in [0, 1]
    shape : (H, W)
        Output size in pixels.

    Returns
    -------
    (H, W) bool ndarray
        True where a pixel centre is inside (even-odd per polygon, union over polygons).
    """
    h, w = int(shape[0]), int(shape[1])
    out = np.zeros((h, w), dtype=bool)
    yc = (np.arange(h) + 0.5) / h  # (H,) row centres
    for poly in polygons:
        pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        x0, y0 = pts[:, 0], pts[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        # Edge e crosses row r when its half-open y-span contains the row centre.
        lo, hi = np.minimum(y0, y1)[:, None], np.maximum(y0, y1)[:, None]
        crosses = (lo <= yc[None, :]) & (yc[None, :] < hi)  # (E, H)
        edge, row = np.nonzero(crosses)
        t = (yc[row] - y0[edge]) / (y1[edge] - y0[edge])
        x_at = x0[edge] + t * (x1[edge] - x0[edge])
        # First column whose centre lies right of the crossing; flip parity from there on.
        col = np.clip(np.floor(x_at * w - 0.5).astype(np.int64) + 1, 0, w)
        toggles = np.zeros((h, w + 1), dtype=np.int64)
        np.add.at(toggles, (row, col), 1)
        out |= (np.cumsum(toggles[:, :w], axis=1) % 2).astype(bool)
    return out
