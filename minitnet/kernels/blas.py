"""sgemm with explicit leading dimensions and offsets, callable from numba kernels.

``np.dot`` inside numba only takes contiguous matrices. The fused kernels need
BLAS's full interface: a strided operand (one channel plane after another, a
row band of a padded map, a shifted tap window), ``beta = 1`` accumulation and
a destination inside a larger array. ``sgemm_cm`` calls the same BLAS that
numba's ``np.dot`` uses (SciPy's ``cython_blas.sgemm``) through numba's own
C helper ``numba_xxgemm``. The helper is referenced by symbol name, so kernels
calling it stay cacheable (``cache=True``), unlike a ctypes function pointer.

Threads: the kernels parallelise with numba ``prange`` and call sgemm from
every worker, so BLAS itself must run single-threaded while they do. The
Python-side context manager ``single_threaded_blas`` sets the loaded BLAS
libraries to one thread through threadpoolctl and restores their counts
afterwards (a no-op when threadpoolctl finds no BLAS).
"""
import contextlib

import numba
import numpy as np
from numba import types
from threadpoolctl import ThreadpoolController

_F32P = types.CPointer(types.float32)
_xxgemm = types.ExternalFunction(
    "numba_xxgemm",
    types.intc(types.char, types.char, types.char, types.intp, types.intp, types.intp,
               _F32P, _F32P, types.intp, _F32P, types.intp, _F32P, _F32P, types.intp),
)
_KIND_S, _NOTRANS = ord("s"), ord("N")


# inline: a few lines at each call site (a separate function is compiled again for every
# pattern of constant arguments, numba's literal types, it is called with)
@numba.njit(cache=True, nogil=True, inline="always")
def sgemm_cm(m, n, k, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc):
    """Column-major ``C = A @ B + beta*C`` on flat float32 arrays (no transposes).

    A is (m, k) at ``a[a_off:]`` with column stride ``lda``: element (i, p) is
    ``a[a_off + p*lda + i]``; B (k, n) and C (m, n) likewise. Read with rows and
    columns swapped, it is the row-major ``C^T = B^T @ A^T``: for weights
    ``w`` (C_out, C_in) row-major and an activation block whose channel planes are
    ``lda`` apart, ``sgemm_cm(M, C_out, C_in, x, x_off, plane, w, 0, C_in, beta, out, o_off, plane_out)``
    is ``out[co, p] = sum_ci w[co, ci] * x[ci, p] (+ beta*out)`` over M pixels p.

    Shapes:
      a: (>= a_off + (k-1)*lda + m,)  b: (>= b_off + (n-1)*ldb + k,)  c: (>= c_off + (n-1)*ldc + m,)
    """
    ab = np.empty(2, np.float32)  # BLAS takes alpha and beta by pointer
    ab[0] = 1.0
    ab[1] = beta
    _xxgemm(_KIND_S, _NOTRANS, _NOTRANS, m, n, k, ab[0:].ctypes, a[a_off:].ctypes, lda,
            b[b_off:].ctypes, ldb, ab[1:].ctypes, c[c_off:].ctypes, ldc)


@numba.njit(cache=True)
def _warm(a, c):
    sgemm_cm(1, 1, 1, a, 0, 1, a, 0, 1, 0.0, c, 0, 1)


def warm_up():
    """Resolve the BLAS function pointer on this thread (numba's helper takes the GIL
    the first time; a ``prange`` worker must not be the first caller)."""
    _warm(np.ones(1, np.float32), np.zeros(1, np.float32))


# -- BLAS threads (Python side) ------------------------------------------------------

_LIBS = None


def _blas_libs() -> list:
    """threadpoolctl's controllers of every BLAS loaded once SciPy's is (numpy's and SciPy's
    OpenBLAS in the wheels), found once: a BLAS loaded later is not held."""
    global _LIBS
    if _LIBS is None:
        import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS that sgemm_cm and numba's np.dot call)

        _LIBS = ThreadpoolController().select(user_api="blas").lib_controllers
    return _LIBS


def blas_num_threads() -> int:
    """The largest thread count of the loaded BLAS libraries (1 if none is found)."""
    return max((lib.get_num_threads() for lib in _blas_libs()), default=1)


def set_blas_num_threads(n: int) -> None:
    """Set every loaded BLAS library to ``n`` threads (no restore; see ``single_threaded_blas``)."""
    for lib in _blas_libs():
        lib.set_num_threads(n)


@contextlib.contextmanager
def single_threaded_blas():
    """Run the block with every loaded BLAS on one thread; restore each library's count after.

    Re-entrant (inside another one it changes nothing) and cheap enough to enter once per
    graph block: a few ctypes calls per library through a threadpoolctl controller found once
    (``threadpool_limits`` itself rescans the loaded libraries on every call).
    """
    libs = _blas_libs()
    old = [lib.get_num_threads() for lib in libs]
    for lib, n in zip(libs, old):
        if n != 1:
            lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(libs, old):
            if n != 1:
                lib.set_num_threads(n)
