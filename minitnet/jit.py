"""Numba compilation, seen from the user's side.

The kernels are ``@njit(cache=True)``: the first run on a machine compiles each kernel a
model needs (10-15 s of CPU for the fused engine) and writes it to Numba's cache (the ``__pycache__``
folders beside the modules, or ``NUMBA_CACHE_DIR``); later processes load it in well under
a second. The cache of a kernel is invalidated when its source file changes, when Numba or
the Python version changes, or on another CPU model (Numba compiles for the host CPU).

``compile_notice()`` says so, once per process, when the first kernel of minitnet or the
emulator actually compiles (a cache miss: Numba's ``numba:compile`` event fires only then),
so a cold start is not a silent wait. ``minitnet warmup`` compiles ahead of time.

``compile_kernels`` compiles the parallel kernels a fused plan needs before it runs, and on a
cold cache splits them (by their ``weight``) between this process and helper processes
(``python -m minitnet.jit MODULE:KERNEL ...``) that write numba's cache: on two cores a cold
start takes about two thirds of the time. ``MINITNET_COMPILE_WORKERS`` sets the number of processes
(default: 2 when a second CPU is free, ``compile_workers``; 1: no helper). A helper that
fails changes nothing but the time: this process compiles what is not cached.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import os
import subprocess
import sys
import threading

from numba.core import event

__all__ = ["compile_notice", "cache_location", "CompileCounter", "compile_kernels", "compile_workers"]

#: modules whose kernels the notice is about
_OURS = ("minitnet.", "emulator.")


def cache_location() -> str:
    """Where compiled kernels are cached: ``NUMBA_CACHE_DIR``, else beside the modules."""
    return os.environ.get("NUMBA_CACHE_DIR") or "the __pycache__ folders of minitnet's modules"


class CompileCounter(event.Listener):
    """A listener of Numba's ``numba:compile`` event counting the kernels of minitnet and the
    emulator that compile (cache misses): ``compiled`` in all, ``kernels`` {module.qualname:
    versions compiled}."""

    def __init__(self):
        self.compiled = 0
        self.kernels: collections.Counter = collections.Counter()
        self._lock = threading.Lock()

    def on_start(self, ev):
        func = getattr((ev.data or {}).get("dispatcher"), "py_func", None)
        mod = getattr(func, "__module__", "") or ""
        if mod.startswith(_OURS):
            with self._lock:
                self.compiled += 1
                self.kernels[f"{mod}.{func.__qualname__}"] += 1
                first = self.compiled == 1
            if first:
                self.first_compile()

    def on_end(self, ev):
        pass

    def first_compile(self):
        """Called once, when the first of our kernels starts compiling."""


class _Notice(CompileCounter):
    def __init__(self, stream, label: str):
        super().__init__()
        self.stream, self.label = stream, label

    @property
    def said(self) -> bool:
        return self.compiled > 0

    def first_compile(self):
        print(f"{self.label}compiling kernels (first run only; cached in {cache_location()})...",
              file=self.stream, flush=True)


@contextlib.contextmanager
def compile_notice(stream=None, label: str = "minitnet: "):
    """Within the block, print one line to ``stream`` (stderr) when a kernel of minitnet or the
    emulator is compiled rather than loaded from the cache."""
    listener = _Notice(stream if stream is not None else sys.stderr, label)
    with event.install_listener("numba:compile", listener):
        yield listener


def compile_workers() -> int:
    """Processes that share a cold start's compiling: ``MINITNET_COMPILE_WORKERS`` (>= 1), else 2
    when a second CPU is about free (the CPUs this process may use less the 1-minute load
    average >= 1.5), else 1: on busy cores a helper would only add its start-up."""
    env = os.environ.get("MINITNET_COMPILE_WORKERS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            from .errors import ConfigError

            raise ConfigError(f"MINITNET_COMPILE_WORKERS={env!r}: expected a whole number >= 1 (1: no helper "
                              f"processes)") from None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on this platform: count the CPUs only
        load = 0.0
    return 2 if cpus - load >= 1.5 else 1


#: a helper's start-up (importing numba and the kernels), in the CPU seconds of kernel weights
_HELPER_START = 0.8


def _split(kernels: list, parts: int) -> list[list]:
    """``kernels`` in ``parts`` groups of about equal total weight (largest first, each to the
    lightest group); the helpers' groups (all but 0, this process's) start with their start-up."""
    groups, load = [[] for _ in range(parts)], [0.0] + [_HELPER_START] * (parts - 1)
    for k in sorted(kernels, key=lambda k: -k.weight):
        i = load.index(min(load))
        groups[i].append(k)
        load[i] += k.weight
    return groups


_COMPILE_LOCK = threading.Lock()


def compile_kernels(kernels, workers: int | None = None) -> list:
    """Compile (or load from numba's cache) every ``minitnet.kernels.parallel.ParallelKernel`` of
    ``kernels``; the ones not cached are split between this process and ``workers - 1`` helper
    processes (default ``compile_workers()``). Returns the kernels compiled here."""
    kernels = list(dict.fromkeys(kernels))
    workers = compile_workers() if workers is None else max(1, int(workers))
    with _COMPILE_LOCK:
        missing = [k for k in kernels if not k.cached()]
        groups = _split(missing, min(workers, len(missing))) if len(missing) > 1 and workers > 1 else [missing]
        helpers = [h for h in map(_start_helper, filter(None, groups[1:])) if h is not None]
        try:
            for k in groups[0]:
                k.compile()
            for h in helpers:
                h.wait()
        finally:
            for h in helpers:  # interrupted: no helper outlives the call
                if h.poll() is None:
                    h.kill()
                    h.wait()
        for k in kernels:  # load what the helpers wrote (or compile what a failed helper left)
            k.compile()
    return groups[0]


def _start_helper(kernels):
    try:
        return subprocess.Popen([sys.executable, "-m", "minitnet.jit", *(k.name for k in kernels)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:  # no process to be had: this one compiles them after its own
        return None


def _helper_main(names) -> int:
    """Compile the kernels named ``module:qualname`` (a helper process of ``compile_kernels``)."""
    for name in names:
        module, _, qualname = name.partition(":")
        getattr(importlib.import_module(module), qualname).compile()
    return 0


if __name__ == "__main__":
    sys.exit(_helper_main(sys.argv[1:]))
