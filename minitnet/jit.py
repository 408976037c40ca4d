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

__all__ = ["compile_notice", "cache_location"]

#: modules whose kernels the notice is about
_OURS = ("minitnet.", "emulator.")


def cache_location() -> str:
    """Where compiled kernels are cached: ``NUMBA_CACHE_DIR``, else beside the modules."""
    return os.environ.get("NUMBA_CACHE_DIR") or "the __pycache__ folders of minitnet's modules"


class _Notice(event.Listener):
    def __init__(self, stream, label: str):
        self.stream, self.label, self.said = stream, label, False
        self._lock = threading.Lock()

    def on_start(self, ev):
        disp = (ev.data or {}).get("dispatcher")
        mod = getattr(getattr(disp, "py_func", None), "__module__", "") or ""
        with self._lock:
            if self.said or not mod.startswith(_OURS):
                return
            self.said = True
        print(f"{self.label}compiling kernels (first run only; cached in {cache_location()})...",
              file=self.stream, flush=True)

    def on_end(self, ev):
        pass


@contextlib.contextmanager
def compile_notice(stream=None, label: str = "minitnet: "):
    """Within the block, print one line to ``stream`` (stderr) when a kernel of minitnet or the
    emulator is compiled rather than loaded from the cache."""
    listener = _Notice(stream if stream is not None else sys.stderr, label)
    with event.install_listener("numba:compile", listener):
        yield listener
