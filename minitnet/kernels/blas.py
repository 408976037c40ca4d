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
Python-side context manager ``single_threaded_blas`` sets SciPy's OpenBLAS to
one thread and restores the previous count afterwards (best effort: it is a
no-op when the library or its thread setter cannot be found).
"""
import contextlib
import ctypes
import glob
import os

import numba
import numpy as np
from numba import types

_F32P = types.CPointer(types.float32)
_xxgemm = types.ExternalFunction(
    "numba_xxgemm",
    types.intc(types.char, types.char, types.char, types.intp, types.intp, types.intp,
               _F32P, _F32P, types.intp, _F32P, types.intp, _F32P, _F32P, types.intp),
)
_KIND_S, _NOTRANS = ord("s"), ord("N")


@numba.njit(cache=True, nogil=True)
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

_SETTERS = None


def _openblas_thread_fns():
    """(get, set) num_threads of the OpenBLAS that SciPy's cython_blas uses, or None."""
    global _SETTERS
    if _SETTERS is None:
        _SETTERS = ()
        try:
            import scipy
            import scipy.linalg.cython_blas  # noqa: F401  (loads the library)
        except ImportError:  # pragma: no cover - scipy is a dependency
            return None
        base = os.path.dirname(scipy.__file__)
        paths = []
        for pat in ("../scipy.libs/*openblas*", ".dylibs/*openblas*", "../scipy.libs/*blas*"):
            paths += glob.glob(os.path.join(base, pat))
        for path in paths:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for prefix in ("scipy_openblas", "openblas"):
                get = getattr(lib, f"{prefix}_get_num_threads", None)
                put = getattr(lib, f"{prefix}_set_num_threads", None)
                if get is not None and put is not None:
                    get.restype, put.argtypes = ctypes.c_int, [ctypes.c_int]
                    _SETTERS = (get, put)
                    break
            if _SETTERS:
                break
    return _SETTERS or None


@contextlib.contextmanager
def single_threaded_blas():
    """Run the block with SciPy's OpenBLAS on one thread; restore the count after."""
    fns = _openblas_thread_fns()
    if fns is None:
        yield
        return
    get, put = fns
    old = get()
    if old != 1:
        put(1)
    try:
        yield
    finally:
        if old != 1:
            put(old)
