"""Write weights/demo-random-f51.h5: the default architecture with random weights.

Only a stand-in so the CLI runs before trained weights exist; its segmentations
are meaningless. Deterministic (seed 0), no torch needed.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from netutil import random_tensors  # noqa: E402

from minitnet import ItNetConfig  # noqa: E402
from minitnet.weights import write_hdf5  # noqa: E402

out = Path(__file__).resolve().parent.parent / "weights" / "demo-random-f51.h5"
cfg = ItNetConfig()
write_hdf5(out, cfg, random_tensors(cfg, np.random.default_rng(0)),
           metadata={"note": "random weights (seed 0), a stand-in until trained weights land"})
print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
