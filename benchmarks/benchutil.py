"""Helpers of the benchmarks (imported by ``conftest.py``, the ``bench_*.py`` files and
``profile_engine.py``): sizes, thread pinning, random weights, checks and the results.

Sizes: by default (CI, ``python3 -m pytest -q``) every benchmark runs on a tiny
problem, once, so the whole folder is a quick smoke test of the code paths. The
paper's sizes (480x360 input, f = 51) need ``MINITNET_BENCH_FULL=1``; see
``benchmarks/README.md``. Timings are never asserted.

Threads: ``MINITNET_BENCH_THREADS`` (default: all cores at full size, 1 at smoke size) is pinned for numba,
every OpenBLAS in the process (NumPy's and SciPy's, through threadpoolctl when
installed, else their own setters) and torch (ONNX Runtime: its session
options), and recorded in each benchmark's ``extra_info``.
"""
import ctypes
import os
import sys
from pathlib import Path

import numba
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # netutil: random weights

FULL = os.environ.get("MINITNET_BENCH_FULL") == "1"
#: threads of every implementation; the smoke run uses one (it times nothing, and on a busy
#: CI machine spinning thread pools would only slow it down)
THREADS = int(os.environ.get("MINITNET_BENCH_THREADS", (os.cpu_count() or 1) if FULL else 1))
#: full size of the paper's CamVid model; the smoke size keeps the scales at exact halvings (the
#: ONNX export turns resize sizes into scales, which round differently on odd sizes)
IMAGE = (360, 480) if FULL else (64, 96)
ITERATIONS = 16 if FULL else 3
#: float32 tolerance of big reductions (summation order differs between implementations)
ATOL_REDUCTION = 1e-4


def scaled(hw):
    """A map size of the full-size network, shrunk ~8x for the smoke run (at least 2 pixels)."""
    return hw if FULL else tuple(max(2, -(-s // 8)) for s in hw)


# -- threads --------------------------------------------------------------------------

def _openblas_setters():
    """set_num_threads of every OpenBLAS mapped into this process (Linux), keyed by path."""
    found = {}
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return found
    for path in sorted({ln.split()[-1] for ln in maps if "openblas" in ln.rsplit("/", 1)[-1].lower()}):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for sym in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
                    "openblas_set_num_threads"):
            fn = getattr(lib, sym, None)
            if fn is not None:
                fn.argtypes = [ctypes.c_int]
                found[path] = fn
                break
    return found


def pin_threads(n: int) -> dict:
    """Pin numba, BLAS and torch to n threads; return what was set (for extra_info)."""
    import scipy.linalg.cython_blas  # noqa: F401  (load SciPy's BLAS so it is pinned too)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    from minitnet.kernels import padded
    z = np.zeros((1, 1, 3, 3), np.float32)
    padded.affine_nchwp(z, 0, z[0, 0, 0, :1], z[0, 0, 0, :1], 0, z, 0, n)  # start numba's threading layer
    info = {"threads": n, "numba_threads": numba.get_num_threads(), "numba_layer": numba.threading_layer()}
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n, user_api="blas")
        info["blas"] = "threadpoolctl"
    except ImportError:
        setters = _openblas_setters()
        for fn in setters.values():
            fn(n)
        info["blas"] = f"{len(setters)} OpenBLAS pinned"
    try:
        import torch
        torch.set_num_threads(n)
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


# -- weights ------------------------------------------------------------------------------

def bench_tensors(cfg, seed=0):
    """Random f = 51 weights (tests/netutil) with the mixing and project convs scaled by 0.3 so
    activations stay O(1..100) over 16 iterations (speed does not depend on the values;
    unscaled He weights grow ~10x per two iterations and overflow the comparisons)."""
    from netutil import random_tensors
    t = random_tensors(cfg, np.random.default_rng(seed))
    for k in t:
        if ".mix." in k or k.endswith("project.weight"):
            t[k] = t[k] * np.float32(0.3)
    return t


def assert_close(got, want, what, rel=1e-5):
    """max |got - want| <= ATOL_REDUCTION + rel * max |want| (float32 sums in another order)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    tol = ATOL_REDUCTION + rel * float(np.abs(want).max())
    err = float(np.abs(got - want).max())
    assert err <= tol, f"{what}: max |diff| = {err:.3g} > {tol:.3g} (atol {ATOL_REDUCTION} + {rel} x max)"


# -- timing ----------------------------------------------------------------------------------

def run_bench(benchmark, fn):
    """Time fn: pytest-benchmark's calibrated rounds at full size, a single call at smoke size
    (so CI pays one call per benchmark)."""
    if FULL:
        return benchmark(fn)
    return benchmark.pedantic(fn, rounds=1, iterations=1)


# -- results and summary ---------------------------------------------------------------------

_RESULTS = []  # (group, impl, benchmark fixture)
NOTES = []  # extra lines for the summary (peak memory, JIT start)


def record(benchmark, group, impl, flop=None, nbytes=None, **info):
    """Name the benchmark (group, impl) and keep it for the summary; call after timing."""
    _RESULTS.append((group, impl, benchmark))
    benchmark.extra_info.update(info, impl=impl)
    stats = getattr(benchmark, "stats", None)
    med = stats.stats.median if stats is not None else None
    if med:
        if flop:
            benchmark.extra_info["gflop_per_s"] = round(flop / med / 1e9, 2)
        if nbytes:
            benchmark.extra_info["gbyte_per_s"] = round(nbytes / med / 1e9, 2)


def _medians():
    out = {}
    for group, impl, bm in _RESULTS:
        stats = getattr(bm, "stats", None)
        if stats is not None and stats.stats.median:
            out.setdefault(group, {})[impl] = stats.stats.median
    return out


