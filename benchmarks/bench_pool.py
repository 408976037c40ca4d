"""Max pooling (kernel = stride, ceil mode) at the shapes of the data block.

Groups ``maxpool<k>:<C>x<H>x<W>``: the RGB image (k 2), the stage-1 map (k 2) and the
stage-2 map feeding scales 1 and 2 (k 2, 4). Implementations:
  minitnet      the engine's kernel on padded maps (interior to interior)
  minitnet_ops  ``minitnet.ops.max_pool2d``
  numpy         pad with -inf to a multiple of k, reshape, max
  torch         ``F.max_pool2d(ceil_mode=True)``
Results must be bit-exact (checked once outside the timed calls); ``extra_info`` has GB/s
(input + output bytes).
"""
import numba
import numpy as np
import pytest
from .benchutil import record, run_bench, scaled

from minitnet import ops
from minitnet.kernels import padded as P

F32 = np.float32
SHAPES = [(3, (360, 480), 2), (51, (180, 240), 2), (102, (90, 120), 2), (102, (90, 120), 4)]


def np_pool(x, k):
    N, C, H, W = x.shape
    OH, OW = -(-H // k), -(-W // k)
    xp = np.full((N, C, OH * k, OW * k), -np.inf, F32)
    xp[:, :, :H, :W] = x
    return xp.reshape(N, C, OH, k, OW, k).max(axis=(3, 5))


@pytest.mark.parametrize("impl", ["minitnet", "minitnet_ops", "numpy", "torch"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"k{s[2]}-{s[0]}x{s[1][0]}x{s[1][1]}")
def test_maxpool(benchmark, threads, shape, impl):
    C, hw, k = shape
    H, W = scaled(hw)
    x = np.random.default_rng(0).standard_normal((1, C, H, W)).astype(F32)
    want = np_pool(x, k)
    OH, OW = want.shape[2:]
    result = None
    if impl == "minitnet":
        xp = np.zeros((1, C, H + 2, W + 2), F32)
        xp[:, :, 1:-1, 1:-1] = x
        out = np.zeros((1, C, OH + 2, OW + 2), F32)
        none = np.zeros(1, F32)

        def fn():
            P.max_pool2d_nchwp(xp, 0, C, k, none, none, 0, False, out, 0, numba.get_num_threads())

        def result():
            return out[:, :, 1:-1, 1:-1]
    elif impl == "minitnet_ops":
        def fn():
            return ops.max_pool2d(x, k)
    elif impl == "numpy":
        def fn():
            return np_pool(x, k)
    else:
        torch = pytest.importorskip("torch")
        xt = torch.from_numpy(x)

        def fn():
            return torch.nn.functional.max_pool2d(xt, k, k, ceil_mode=True)
    got = fn()
    np.testing.assert_array_equal(np.asarray(result() if result else got), want)
    group = f"maxpool{k}:{C}x{H}x{W}"
    benchmark.group = group
    run_bench(benchmark, fn)
    record(benchmark, group, impl, nbytes=4 * C * (H * W + OH * OW), **threads)
