"""Linear CKA between two sets of features of the same positions."""

from __future__ import annotations

import numpy as np

from ._threads import on_one_blas_thread
from .device import analysis_device, to_device
from .checks import check_fmap

__all__ = ["CkaAccumulator", "linear_cka", "resize_map"]


def _check_rows(a: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} must be (N, D) with N, D >= 1, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise ValueError(f"{name} must be finite, got {bad} non-finite values")
    return arr


@on_one_blas_thread
def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear centred kernel alignment (Kornblith et al. 2019).

    Parameters
    ----------
    x : (N, D1) array_like, finite
    y : (N, D2) array_like, finite
        Row i of both describes the same sample (e.g. the same position).

    Returns
    -------
    float in [0, 1]
        ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with column-centred
        Xc, Yc, in float64. Evaluated via N x N Gram matrices when N is small
        relative to D1, D2, else in feature space (same value). If either input
        is constant (all rows equal, so zero after centring) the result is 0.0.
    """
    a = _check_rows(x, "x")
    b = _check_rows(y, "y")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"x and y must have the same N, got {a.shape[0]} and {b.shape[0]}")
    n, d1 = a.shape
    d2 = b.shape[1]
    a -= a.mean(axis=0)
    b -= b.mean(axis=0)
    dev = analysis_device()
    if dev is not None:
        num, den = _cka_terms_torch(to_device(a, dev), to_device(b, dev))
    elif n * (d1 + d2) < d1 * d2 + d1 * d1 + d2 * d2:
        k = a @ a.T
        l = b @ b.T
        num = float(np.sum(k * l))
        den = float(np.linalg.norm(k) * np.linalg.norm(l))
    else:
        num = float(np.linalg.norm(b.T @ a) ** 2)
        den = float(np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b))
    if den == 0.0:
        return 0.0
    return float(min(max(num / den, 0.0), 1.0))


class CkaAccumulator:
    """Linear CKA between many feature sets of the same positions, streamed chunk by chunk.

    The rows (positions) arrive in chunks, e.g. one image at a time; memory holds only the
    cross products, ``D_u x D_v`` per pair, never the pooled rows, so it stays flat however
    many images there are. The result equals :func:`linear_cka` of the pooled rows up to
    rounding (float64; each set is shifted by its first chunk's mean before accumulating, so
    a large common offset does not cancel the centred sums).

    Parameters
    ----------
    pairs : sequence of (name, name)
        The pairs of feature sets whose CKA is wanted; a set may appear in many pairs.

    Examples
    --------
    >>> acc = CkaAccumulator([("a", "b")])
    >>> for chunk in chunks:                    # doctest: +SKIP
    ...     acc.update({"a": xa, "b": xb})      # (N_i, D_a) and (N_i, D_b), same N_i
    >>> acc.value("a", "b")                     # doctest: +SKIP
    """

    def __init__(self, pairs):
        self.pairs = sorted({tuple(p) for p in pairs})
        self.names = sorted({n for p in self.pairs for n in p})
        self.n = 0
        self._shift: dict = {}
        self._sum: dict = {}
        self._prod: dict = {}

    @on_one_blas_thread
    def update(self, rows: dict) -> None:
        """Add one chunk: ``{name: (N, D_name) array}`` for every name of the pairs, same N."""
        if not self.names:
            return
        missing = [n for n in self.names if n not in rows]
        if missing:
            raise ValueError(f"chunk lacks feature sets {missing}")
        xs = {n: _check_rows(rows[n], f"rows[{n!r}]") for n in self.names}
        ns = {x.shape[0] for x in xs.values()}
        if len(ns) != 1:
            raise ValueError(f"every feature set of a chunk must have the same rows, got {sorted(ns)}")
        for n, x in xs.items():
            if n not in self._shift:
                self._shift[n] = x.mean(axis=0)
                self._sum[n] = np.zeros(x.shape[1])
            elif x.shape[1] != self._shift[n].shape[0]:
                raise ValueError(f"rows[{n!r}] has {x.shape[1]} columns, earlier chunks {self._shift[n].shape[0]}")
            x -= self._shift[n]
            self._sum[n] += x.sum(axis=0)
        for u, v in self._all_products():
            term = xs[u].T @ xs[v]
            if (u, v) in self._prod:
                self._prod[(u, v)] += term
            else:
                self._prod[(u, v)] = term
        self.n += ns.pop()

    def _all_products(self):
        return sorted(set(self.pairs) | {(n, n) for n in self.names})

    def _centred(self, u, v) -> np.ndarray:
        return self._prod[(u, v)] - np.outer(self._sum[u], self._sum[v]) / self.n

    def value(self, u, v) -> float:
        """Linear CKA in [0, 1] of sets ``u`` and ``v`` over every row seen (0.0 if either is
        constant), as :func:`linear_cka`."""
        if (u, v) not in self.pairs:
            if (v, u) in self.pairs:
                u, v = v, u
            else:
                raise KeyError(f"pair ({u!r}, {v!r}) was not asked for")
        if self.n == 0:
            raise ValueError("no rows yet: call update() first")
        num = float(np.linalg.norm(self._centred(u, v)) ** 2)
        den = float(np.linalg.norm(self._centred(u, u)) * np.linalg.norm(self._centred(v, v)))
        if den == 0.0:
            return 0.0
        return float(min(max(num / den, 0.0), 1.0))


def _cka_terms_torch(a, b) -> tuple[float, float]:
    """Numerator and denominator of linear CKA in torch (centred float64 tensors, one device)."""
    n, d1 = a.shape
    d2 = b.shape[1]
    if n * (d1 + d2) < d1 * d2 + d1 * d1 + d2 * d2:
        k = a @ a.T
        l = b @ b.T
        return float((k * l).sum()), float(k.norm() * l.norm())
    return float((b.T @ a).norm() ** 2), float((a.T @ a).norm() * (b.T @ b).norm())


def _bilinear_axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Half-pixel centres, as PyTorch's interpolate(align_corners=False).
    pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    pos = np.clip(pos, 0.0, n_in - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, pos - i0


def resize_map(fmap: np.ndarray, shape: tuple[int, int], dtype: type = np.float64) -> np.ndarray:
    """Resize a feature map spatially so two maps can be compared position by position.

    Parameters
    ----------
    fmap : (C, H, W) array_like, finite
    shape : (h, w) positive ints

    Returns
    -------
    (C, h, w) ndarray of float32
        If h divides H and w divides W: mean over each (H/h) x (W/w) block (area
        averaging). Otherwise bilinear with half-pixel centres and edge clamping
        (PyTorch ``align_corners=False``, no antialias). Same shape: a copy.

    dtype : the arithmetic's float type. float32 is about twice as fast on large early-stage
        maps (positional bias resizes most images of every stage) and agrees with float64 to
        float32 rounding.
    """
    fm = check_fmap(fmap)
    if (len(tuple(shape)) != 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer))
                                     or s < 1 for s in shape)):
        raise ValueError(f"shape must be two positive ints, got {shape!r}")
    h, w = int(shape[0]), int(shape[1])
    c, hi, wi = fm.shape
    if (h, w) == (hi, wi):
        return fm.copy()
    x = fm.astype(dtype)
    if hi % h == 0 and wi % w == 0:
        return x.reshape(c, h, hi // h, w, wi // w).mean(axis=(2, 4)).astype(np.float32)
    # An axis of unchanged length has weights exactly 1 and 0: skipping it gives the same bits.
    rows = x
    if h != hi:
        r0, r1, rt = _bilinear_axis(hi, h)
        rt = rt.astype(dtype)
        rows = x[:, r0, :] * (1 - rt)[None, :, None] + x[:, r1, :] * rt[None, :, None]
    out = rows
    if w != wi:
        c0, c1, ct = _bilinear_axis(wi, w)
        ct = ct.astype(dtype)
        out = rows[:, :, c0] * (1 - ct)[None, None, :] + rows[:, :, c1] * ct[None, None, :]
    return out.astype(np.float32)
