"""``minitnet warmup``: compile the engine's kernels ahead of the first real run."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..jit import CompileCounter, cache_location
from .common import default_weights

HELP = """Compile (or load from Numba's cache) every kernel a model runs: the fused engine
and the node-by-node executor, on a small image with the model's own architecture. Run it
once after installing (or upgrading Numba or Python, or on a new CPU), so that the first
`minitnet segment` starts at once; it does nothing slow when the cache is already warm.
The emulator's kernels compile on the first `minitnet emulate`."""


def register(sub) -> None:
    p = sub.add_parser("warmup", help="compile the engine's kernels ahead of the first run",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=None,
                   help="model whose kernels to compile (default: the shipped shared model)")
    p.set_defaults(func=run)


def run(args) -> int:
    from numba.core import event

    import minitnet

    weights = args.weights or default_weights()
    t0 = time.perf_counter()
    counter = CompileCounter()
    with event.install_listener("numba:compile", counter):
        net = minitnet.load(weights)
        img = np.zeros((40, 56, 3), np.uint8)  # kernels are typed by dtype and rank, not by size
        for fused in (True, False):
            net.fused = fused
            net.predict(img)
    print(f"minitnet warmup: kernels of {weights} ready in {time.perf_counter() - t0:.1f} s "
          f"({counter.compiled} compiled, the rest loaded from the cache in {cache_location()})")
    return 0
