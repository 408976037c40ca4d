"""Shared test settings. Tolerances live here so every comparison quotes the same numbers."""

import numpy as np
import pytest

#: float32 elementwise results and short sums (pooling, resize, small convs).
RTOL = 1e-5
ATOL = 1e-5
#: big reductions (convs summing hundreds of float32 products): the rounding error
#: of a float32 sum grows with its length and the magnitude of its terms, and
#: BLAS/torch sum in different orders, so absolute error reaches ~1e-5..1e-4.
ATOL_REDUCTION = 1e-4


@pytest.fixture(scope="session")
def demo_random_weights(tmp_path_factory):
    """The shared f=51 architecture with random weights (seed 0), written once per session:
    a stand-in model whose outputs mean nothing (``scripts/make_demo_weights.py`` writes the same)."""
    from netutil import random_tensors

    from minitnet import ItNetConfig
    from minitnet.weights import write_hdf5

    path = tmp_path_factory.mktemp("weights") / "demo-random-f51.h5"
    cfg = ItNetConfig()
    write_hdf5(path, cfg, random_tensors(cfg, np.random.default_rng(0)),
               metadata={"note": "random weights (seed 0): a stand-in, not a model"})
    return path
