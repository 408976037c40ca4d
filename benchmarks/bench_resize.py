"""Bilinear resizing (align_corners=False) at the shapes of the network.

Groups ``bilinear:<C>x<H>x<W>-><OH>x<OW>``: the classifier's x8 upsampling of 11 logits
to the full image, and the mixing resizes between the three scales (x2, x4 up, x2 down).
Implementations:
  minitnet      the engine's separable kernel on padded maps (plain output for the logits)
  minitnet_ops  ``minitnet.ops.interpolate_bilinear``
  numpy         the same formula with fancy-index gathers
  torch         ``F.interpolate(mode="bilinear")``
Checked against torch's arithmetic once outside the timed calls (bit-exact for minitnet);
``extra_info`` has GB/s (input + output bytes).
"""
import numpy as np
import pytest
from .benchutil import assert_close, record, run_bench, scaled

from minitnet import kernels as K
from minitnet import ops
from minitnet.kernels import padded as P
from minitnet.kernels.resize import resize_bands

F32 = np.float32
# C, input size, output size
SHAPES = [(11, (45, 60), (360, 480)), (25, (45, 60), (90, 120)), (25, (23, 30), (90, 120)),
          (25, (90, 120), (45, 60)), (25, (90, 120), (23, 30))]


def np_resize(x, size):
    iy0, iy1, ly0, ly1 = K.bilinear_table(x.shape[2], size[0], False)  # indices and weights, as torch
    ix0, ix1, lx0, lx1 = K.bilinear_table(x.shape[3], size[1], False)
    iy0, iy1, ix0, ix1 = (i.astype(np.intp) for i in (iy0, iy1, ix0, ix1))
    r0, r1 = x[:, :, iy0], x[:, :, iy1]
    h0 = r0[..., ix0] * lx0 + r0[..., ix1] * lx1
    h1 = r1[..., ix0] * lx0 + r1[..., ix1] * lx1
    return h0 * ly0[:, None] + h1 * ly1[:, None]


@pytest.mark.parametrize("impl", ["minitnet", "minitnet_ops", "numpy", "torch"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1][0]}x{s[1][1]}-{s[2][0]}x{s[2][1]}")
def test_bilinear(benchmark, threads, shape, impl):
    C, hw, ohw = shape
    (H, W), (OH, OW) = scaled(hw), scaled(ohw)
    x = np.random.default_rng(0).standard_normal((1, C, H, W)).astype(F32)
    want = ops.interpolate_bilinear(x, (OH, OW))  # torch's recipe, tested bit-exact in tests/
    result = None
    if impl == "minitnet":
        T = threads["numba_threads"]
        xp = np.zeros((1, C, H + 2, W + 2), F32)
        xp[:, :, 1:-1, 1:-1] = x
        tabs = K.bilinear_table(H, OH, False), K.bilinear_table(W, OW, False)
        plain = C == 11  # the logits leave the engine as plain NCHW
        out = np.zeros((1, C, OH + 2 * (not plain), OW + 2 * (not plain)), F32)
        scratch = np.empty((T, H * OW), F32)
        S = resize_bands(C, OH, T)

        def fn():
            P.resize_bilinear_nchwp(xp, 0, C, *tabs, out, 0, 0 if plain else 1, S, scratch, T)

        def result():
            return out if plain else out[:, :, 1:-1, 1:-1]
    elif impl == "minitnet_ops":
        def fn():
            return ops.interpolate_bilinear(x, (OH, OW))
    elif impl == "numpy":
        def fn():
            return np_resize(x, (OH, OW))
    else:
        torch = pytest.importorskip("torch")
        xt = torch.from_numpy(x)

        def fn():
            return torch.nn.functional.interpolate(xt, size=(OH, OW), mode="bilinear", align_corners=False)
    first = fn()
    got = np.asarray(result() if result else first)
    if impl == "minitnet":
        np.testing.assert_array_equal(got, want)
    else:
        assert_close(got, want, f"bilinear {impl}")
    group = f"bilinear:{C}x{H}x{W}->{OH}x{OW}"
    benchmark.group = group
    run_bench(benchmark, fn)
    record(benchmark, group, impl, nbytes=4 * C * (H * W + OH * OW), **threads)
