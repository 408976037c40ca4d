"""Random ItNet weights for tests (no torch needed)."""

import numpy as np

from minitnet.weights import expected_tensors, write_hdf5


def random_tensors(cfg, rng: np.random.Generator) -> dict:
    """Random weights with He-like scale and random, non-trivial BN statistics."""
    t = {}
    for k, shape in expected_tensors(cfg).items():
        if k.endswith("running_var"):
            v = rng.uniform(0.5, 2.0, shape)
        elif k.endswith("running_mean"):
            v = rng.normal(0, 0.2, shape)
        elif k.endswith("bn.weight") or (k.startswith("inter_bn") and k.endswith("weight")):
            v = rng.uniform(0.5, 1.5, shape)
        elif k.endswith(".bias"):
            v = rng.normal(0, 0.1, shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            v = rng.normal(0, np.sqrt(2.0 / fan_in), shape)
        t[k] = v.astype(np.float32)
    return t


def write_random(path, cfg, seed=0, normalisation=None):
    write_hdf5(path, cfg, random_tensors(cfg, np.random.default_rng(seed)), normalisation)
    return path
