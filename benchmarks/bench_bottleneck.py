"""The bottleneck residual block (BRB) of every scale: 25 -> 150 -> 25 channels, t = 6.

Groups per scale (90x120, 45x60, 23x30 at full size):
  bottleneck:<C>x<H>x<W>      the whole block, x + project(relu6(dw(relu6(expand(x)))))
      minitnet       the engine's fused kernel (row bands; the 150-channel map stays in L2)
      minitnet_ops   three validated ops (``ops.conv2d``), as the unfused engine runs them
      numpy          np.dot for the 1x1 convs, nine shifted multiply-adds for the depthwise
      torch          three ``F.conv2d`` calls with the same epilogues
  expand / depthwise / project:<...>   each part alone: minitnet (``ops.conv2d``), numpy, torch
Checked against NumPy once outside the timed calls; ``extra_info`` has GFLOP/s.
"""
import numpy as np
import pytest
from .benchutil import assert_close, record, run_bench, scaled

from minitnet import ops
from minitnet.fused import FusedOptions
from minitnet.fused.kinds import bottleneck_bands
from minitnet.kernels import blas
from minitnet.kernels import padded as P

F32 = np.float32
C, CH = 25, 150
SCALES = [(90, 120), (45, 60), (23, 30)]


def weights(rng):
    we = (rng.standard_normal((CH, C, 1, 1)) * C ** -0.5).astype(F32)
    wd = (rng.standard_normal((CH, 1, 3, 3)) / 3).astype(F32)
    wp = (rng.standard_normal((C, CH, 1, 1)) * CH ** -0.5).astype(F32)
    return we, wd, wp, np.zeros(CH, F32), np.zeros(CH, F32), np.zeros(C, F32)


def np_1x1(x, w, act=0, res=None):
    out = np.einsum("oc,nchw->nohw", w[:, :, 0, 0], x, optimize=True)
    if res is not None:
        out = out + res
    return np.clip(out, 0, 6) if act == 2 else out


def np_dw(x, w):
    H, W = x.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros_like(x)
    for ky in range(3):
        for kx in range(3):
            out += w[None, :, 0, ky, kx, None, None] * xp[:, :, ky:ky + H, kx:kx + W]
    return np.clip(out, 0, 6)


def np_brb(x, we, wd, wp):
    return np_1x1(np_dw(np_1x1(x, we, 2), wd), wp, res=x)


def torch_fn(part, x, we, wd, wp):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    xt, et, dt, pt = (torch.from_numpy(a) for a in (x, we, wd, wp))

    def fn():
        with torch.inference_mode():
            if part == "expand":
                return F.relu6(F.conv2d(xt, et))
            if part == "depthwise":
                return F.relu6(F.conv2d(xt, dt, padding=1, groups=CH))
            if part == "project":
                return F.conv2d(xt, pt) + xt[:, :C]
            return xt + F.conv2d(F.relu6(F.conv2d(F.relu6(F.conv2d(xt, et)), dt, padding=1, groups=CH)), pt)
    return fn


def fused_brb(x, we, wd, wp, be, bd, bp, T):
    N, _, H, W = x.shape
    xp = np.zeros((N, C, H + 2, W + 2), F32)
    xp[:, :, 1:-1, 1:-1] = x
    out = np.zeros_like(xp)
    nb = bottleneck_bands(H, T, FusedOptions())
    rmax = -(-H // nb)
    hid, dwo = np.empty((T, CH * (rmax + 2) * (W + 2)), F32), np.empty((T, CH * rmax * (W + 2)), F32)
    args = (xp, we.reshape(CH, C), be, wd.reshape(CH, 9), bd, wp.reshape(C, CH), bp, out, nb, hid, dwo, T)

    def run():
        with blas.single_threaded_blas():  # as the engine: BLAS runs inside each worker
            P.bottleneck_nchwp(*args)
    return run, (lambda: out[:, :, 1:-1, 1:-1])


@pytest.mark.parametrize("impl", ["minitnet", "minitnet_ops", "numpy", "torch"])
@pytest.mark.parametrize("hw", SCALES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_bottleneck(benchmark, threads, hw, impl):
    H, W = scaled(hw)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, C, H, W)).astype(F32)
    we, wd, wp, be, bd, bp = weights(rng)
    group = f"bottleneck:{C}x{H}x{W}"
    result = None
    if impl == "minitnet":
        fn, result = fused_brb(x, we, wd, wp, be, bd, bp, threads["numba_threads"])
    elif impl == "minitnet_ops":
        def fn():
            h = ops.conv2d(x, we, be, act=2)
            h = ops.conv2d(h, wd, bd, padding=1, groups=CH, act=2)
            return ops.conv2d(h, wp, bp, residual=x)
    elif impl == "numpy":
        def fn():
            return np_brb(x, we, wd, wp)
    else:
        fn = torch_fn("brb", x, we, wd, wp)
    out = fn()
    assert_close(np.asarray(result() if result else out), np_brb(x, we, wd, wp), f"{group} {impl}")
    benchmark.group = group
    run_bench(benchmark, fn)
    record(benchmark, group, impl, flop=2 * (2 * C * CH + 9 * CH) * H * W, **threads)


@pytest.mark.parametrize("impl", ["minitnet", "numpy", "torch"])
@pytest.mark.parametrize("part", ["expand", "depthwise", "project"])
@pytest.mark.parametrize("hw", SCALES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_bottleneck_part(benchmark, threads, hw, part, impl):
    H, W = scaled(hw)
    rng = np.random.default_rng(1)
    we, wd, wp, be, bd, bp = weights(rng)
    cin = C if part == "expand" else CH
    x = rng.uniform(0, 6, (1, cin, H, W)).astype(F32)
    res = np.ascontiguousarray(x[:, :C])
    want = {"expand": lambda: np_1x1(x, we, 2), "depthwise": lambda: np_dw(x, wd),
            "project": lambda: np_1x1(x, wp, res=res)}[part]
    if impl == "minitnet":
        def fn():
            if part == "expand":
                return ops.conv2d(x, we, be, act=2)
            if part == "depthwise":
                return ops.conv2d(x, wd, bd, padding=1, groups=CH, act=2)
            return ops.conv2d(x, wp, bp, residual=res)
    elif impl == "numpy":
        fn = want
    else:
        fn = torch_fn(part, x, we, wd, wp)
    group = f"{part}:{cin}x{H}x{W}"
    assert_close(np.asarray(fn()), want(), f"{group} {impl}")
    benchmark.group = group
    run_bench(benchmark, fn)
    macs = {"expand": C * CH, "depthwise": 9 * CH, "project": C * CH}[part]
    record(benchmark, group, impl, flop=2 * macs * H * W, **threads)
