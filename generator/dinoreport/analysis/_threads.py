"""Thread limits for the small dense linear algebra of the analyses.

The analyses call LAPACK on matrices of at most a few thousand rows (within-image and
across-image PCA). Such calls are latency-bound: with several BLAS threads each of the
hundreds of small level-2 steps of a tridiagonalisation synchronises the threads, and on a
machine whose cores are busy (torch's own OpenMP pool spinning after inference, or other
processes) one ``eigh`` of a 384 x 384 matrix took 0.3-2 s instead of 4 ms single-threaded.
The matrix products around them (scatter matrices, projections, CKA's Gram matrices) are
small too and measured 1.5-4x faster on one thread on the shared 2-core machine. The results
are the same numbers up to float rounding, so these functions run on one BLAS thread; torch's
own threads (extraction) are not affected.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache, wraps
from typing import Callable, Iterator, TypeVar

F = TypeVar("F", bound=Callable)

__all__ = ["one_blas_thread", "on_one_blas_thread"]


@lru_cache(maxsize=1)
def _controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # scikit-learn depends on it, but it is not ours to require
        return None
    # The controller sees only the libraries loaded when it is made: scipy ships its own
    # OpenBLAS (the one LAPACK's eigh runs on), separate from numpy's, so load it first.
    import scipy.linalg  # noqa: F401

    return ThreadpoolController()


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the enclosed BLAS/LAPACK calls (numpy, scipy) on one thread."""
    ctl = _controller()
    if ctl is None:
        yield
        return
    with ctl.limit(limits=1, user_api="blas"):
        yield


def on_one_blas_thread(fn: F) -> F:
    """Decorator: run ``fn`` inside :func:`one_blas_thread`."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        with one_blas_thread():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
