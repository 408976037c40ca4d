"""Write OUT.h5: the default architecture (shared f=51) with random weights.

A stand-in for trying the tools without a trained model; its segmentations are
meaningless. Deterministic (seed 0), no torch needed. The tests make the same
file with the ``demo_random_weights`` fixture.

    python scripts/make_demo_weights.py out/demo-random-f51.h5
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from netutil import random_tensors  # noqa: E402

from minitnet import ItNetConfig  # noqa: E402
from minitnet.weights import write_hdf5  # noqa: E402

if len(sys.argv) != 2:
    sys.exit(__doc__)
out = Path(sys.argv[1])
cfg = ItNetConfig()
write_hdf5(out, cfg, random_tensors(cfg, np.random.default_rng(0)),
           metadata={"note": "random weights (seed 0): a stand-in, not a model"})
print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
