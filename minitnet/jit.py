"""Numba compilation, seen from the user's side.

The kernels are ``@njit(cache=True)``: the first run on a machine compiles each kernel a
model needs (tens of seconds in all) and writes it to Numba's cache (the ``__pycache__``
folders beside the modules, or ``NUMBA_CACHE_DIR``); later processes load it in well under
a second. The cache of a kernel is invalidated when its source file changes, when Numba or
the Python version changes, or on another CPU model (Numba compiles for the host CPU).

``compile_notice()`` says so, once per process, when the first kernel of minitnet or the
emulator actually compiles (a cache miss: Numba's ``numba:compile`` event fires only then),
so a cold start is not a silent wait. ``minitnet warmup`` compiles ahead of time.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

from numba.core import event

__all__ = ["compile_notice", "cache_location", "CompileCounter"]

#: modules whose kernels the notice is about
_OURS = ("minitnet.", "emulator.")


def cache_location() -> str:
    """Where compiled kernels are cached: ``NUMBA_CACHE_DIR``, else beside the modules."""
    return os.environ.get("NUMBA_CACHE_DIR") or "the __pycache__ folders of minitnet's modules"


class CompileCounter(event.Listener):
    """A listener of Numba's ``numba:compile`` event counting the kernels of minitnet and the
    emulator that compile (cache misses): ``compiled``."""

    def __init__(self):
        self.compiled = 0
        self._lock = threading.Lock()

    def on_start(self, ev):
        disp = (ev.data or {}).get("dispatcher")
        mod = getattr(getattr(disp, "py_func", None), "__module__", "") or ""
        if mod.startswith(_OURS):
            with self._lock:
                self.compiled += 1
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
