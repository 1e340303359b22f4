"""Linear algebra shared by the PCA, across-image, claim and explorer code: the top eigenpairs of
a scatter matrix (LAPACK subset, or torch on the analysis device), which of them are really
there, and a deterministic sign for each component."""
from __future__ import annotations

import numpy as np

from ._threads import one_blas_thread
from .device import analysis_device, to_device, to_numpy

__all__ = ["orient_rows", "rounding_floor", "top_components", "top_eigh", "top_eigh_torch"]


def orient_rows(components: np.ndarray) -> np.ndarray:
    """Flip each row so that its entry of largest absolute value is positive.

    Zero rows stay zero. Ties go to the first such entry (np.argmax).
    """
    out = components.copy()
    if out.size == 0:
        return out
    idx = np.argmax(np.abs(out), axis=1)
    signs = np.sign(out[np.arange(out.shape[0]), idx])
    signs[signs == 0] = 1.0
    return out * signs[:, None]


def rounding_floor(n_rows: int, dim: int, max_abs: float, dtype: np.dtype) -> float:
    """Upper bound on the scatter that storage rounding alone can put in any direction.

    Each stored entry is off by at most half an ulp, ``eps / 2 * |x|``; the
    total squared error over all ``n_rows * dim`` entries bounds the scatter
    along any single direction.
    """
    eps = float(np.finfo(dtype).eps) if np.issubdtype(dtype, np.floating) else 0.0
    return n_rows * dim * (0.5 * eps * max_abs) ** 2


def top_components(scatter_eigvals: np.ndarray, vecs: np.ndarray, k: int, dim: int,
                    floor: float = 0.0, total: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pick the k largest variance directions, zeroing numerically absent ones.

    Parameters
    ----------
    scatter_eigvals : (m,) float64, descending, >= 0 after clipping
    vecs : (m, D) float64 unit rows matching `scatter_eigvals`
    floor : float
        Scatter at or below this (e.g. :func:`rounding_floor`) counts as absent.
    total : float, optional
        Total scatter (trace); needed when only the top eigenvalues were computed.
    """
    total = float(scatter_eigvals.sum()) if total is None else float(total)
    comps = np.zeros((k, dim), dtype=np.float64)
    ratio = np.zeros(k, dtype=np.float64)
    if total <= 0.0:
        return comps, ratio
    # Eigenvalues at rounding level belong to the null space; their vectors
    # are arbitrary, so they are reported as absent (zero) rather than noise.
    tol = max(scatter_eigvals[0], 0.0) * max(dim, scatter_eigvals.size) * np.finfo(np.float64).eps
    tol = max(tol, floor)
    m = min(k, scatter_eigvals.size)
    keep = scatter_eigvals[:m] > tol
    comps[:m][keep] = vecs[:m][keep]
    ratio[:m][keep] = scatter_eigvals[:m][keep] / total
    return orient_rows(comps), ratio


def top_eigh(sym: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest eigenpairs of a symmetric PSD matrix, exactly (LAPACK, subset).

    Returns eigenvalues (m,) descending, clipped at 0, and eigenvectors as rows (m, n),
    m = min(k, n). Computing only the top few is several times faster than a full eigh.
    With a GPU (:func:`analysis_device`) the full eigh runs there instead.
    """
    from scipy.linalg import eigh

    dev = analysis_device()
    if dev is not None:
        ev, vt = top_eigh_torch(to_device(sym, dev), k)
        return to_numpy(ev), to_numpy(vt)
    n = sym.shape[0]
    m = min(k, n)
    with one_blas_thread():
        w, v = eigh(sym, subset_by_index=[n - m, n - 1], driver="evr", check_finite=False)
    return np.clip(w[::-1], 0.0, None), v[:, ::-1].T


def top_eigh_torch(sym, k: int):
    """:func:`top_eigh` in torch on the tensor's device: (m,) descending >= 0, (m, n) rows."""
    import torch

    n = sym.shape[0]
    m = min(k, n)
    w, v = torch.linalg.eigh((sym + sym.T) / 2)  # ascending
    return w.flip(0)[:m].clamp_min(0.0), v.flip(1)[:, :m].T
