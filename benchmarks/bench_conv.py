"""Convolutions at the shapes of the paper's CamVid model (f = 51, 480x360 input).

One group per layer, ``conv:<layer>:<C_in>x<H>x<W>-><C_out>``, implementations:
  minitnet      the engine's fused kernel on padded maps (what ``ItNet`` runs: Winograd
                F(2x2, 3x3) for 3x3 stride 1, band-wise im2col when strided, one sgemm for
                1x1), BLAS single-threaded inside the numba workers as in the engine
  minitnet_ops  the validated NCHW op ``minitnet.ops.conv2d``
  numpy         naive NumPy: im2col by ``sliding_window_view`` + ``tensordot``
  torch         ``torch.nn.functional.conv2d`` (+ the same epilogue)
Every implementation is checked against torch (or NumPy without torch) once, outside
the timed calls. ``extra_info``: threads, GFLOP/s (2 x MACs / median).
"""
import numpy as np
import pytest
from .benchutil import assert_close, record, run_bench, scaled

from minitnet import ops
from minitnet.fused import FusedOptions
from minitnet.fused.kinds import im2col_bands, taps_bands, winograd_bands
from minitnet.fused.select import tap_offsets
from minitnet.kernels import blas
from minitnet.kernels import padded as P
from minitnet.kernels import winograd as WG

F32 = np.float32
IMPLS = ["minitnet", "minitnet_ops", "numpy", "torch"]

# name, C_in, C_out, input (H, W), kernel, stride, act, residual, bias
LAYERS = [
    ("stem1", 3, 48, (360, 480), 3, 2, 1, False, True),
    ("stem2", 51, 51, (180, 240), 3, 2, 1, False, True),
    ("scale0", 102, 25, (90, 120), 3, 1, 1, False, True),
    ("mix0", 75, 25, (90, 120), 3, 1, 1, True, False),
    ("mix1", 75, 25, (45, 60), 3, 1, 1, True, False),
    ("mix2", 75, 25, (23, 30), 3, 1, 1, True, False),
    ("head", 75, 11, (45, 60), 1, 1, 0, False, True),
]


def pad(x):
    N, C, H, W = x.shape
    out = np.zeros((N, C, H + 2, W + 2), F32)
    out[:, :, 1:-1, 1:-1] = x
    return out


def numpy_conv(x, w, b, stride, padding, act, res):
    """Naive NumPy: unfold every window with sliding_window_view, contract with tensordot."""
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    k = w.shape[2]
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    out = np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)
    out = out + b[None, :, None, None]
    if res is not None:
        out = out + res
    if act:
        out = np.maximum(out, 0)
    return np.ascontiguousarray(out, dtype=F32)


def fused_conv(x, w, b, stride, act, res, T, opt=FusedOptions()):
    """The engine's kernel choice for this layer (``minitnet.fused.select``), with its scratch and
    bands (``minitnet.fused.kinds``); returns a runner."""
    N, C_in, H, W = x.shape
    C_out, _, k, _ = w.shape
    p = k // 2
    OH, OW = (H + 2 * p - k) // stride + 1, (W + 2 * p - k) // stride + 1
    xp, rp = pad(x), pad(res) if res is not None else None
    out = np.zeros((N, C_out, OH + 2, OW + 2), F32)
    r, has_res = (rp, True) if rp is not None else (out, False)
    if stride == 1 and k == 3 and 4 * C_in * (H + 2) * (W + 2) > opt.winograd_min_bytes:
        TH, TW = (H + 1) // 2, (W + 1) // 2
        nb = winograd_bands(H, W, T, opt)
        tiles = -(-TH // nb) * TW
        U, V = WG.winograd_weights(w), np.empty((T, 16 * C_in * tiles), F32)
        M, tmp = np.empty((T, 16 * C_out * tiles), F32), np.empty((T, 4 * (W + 4)), F32)

        def run():
            with blas.single_threaded_blas():  # as the engine: BLAS runs inside each worker
                WG.conv2d_nchwp_winograd(xp, 0, U, b, r, 0, has_res, act, out, 0, nb, (tmp, V, M), T)
    elif stride == 1:
        wt = np.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(k * k, C_out, C_in)
        offs = tap_offsets(k, k, p, W + 2)
        nb = taps_bands(H, W, T, opt)

        def run():
            with blas.single_threaded_blas():
                P.conv2d_nchwp_taps(xp, 0, wt, offs, b, r, 0, has_res, act, out, 0, nb, T)
    else:
        K = C_in * k * k
        nb = im2col_bands(OH, OW, K, T, opt)
        col, w2 = np.empty((T, K * -(-OH // nb) * (OW + 2)), F32), w.reshape(C_out, K)

        def run():
            with blas.single_threaded_blas():
                P.conv2d_nchwp_im2col(xp, 0, w2, (k, k, stride, p), b, act, out, 0, nb, col, T)
    return run, lambda: out[:, :, 1:-1, 1:-1]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("layer", LAYERS, ids=lambda l: l[0])
def test_conv(benchmark, threads, layer, impl):
    name, C_in, C_out, hw, k, stride, act, has_res, has_bias = layer
    H, W = scaled(hw)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, C_in, H, W)).astype(F32)
    w = (rng.standard_normal((C_out, C_in, k, k)) * (C_in * k * k) ** -0.5).astype(F32)
    b = rng.standard_normal(C_out).astype(F32) if has_bias else np.zeros(C_out, F32)
    OH, OW = (H + 2 * (k // 2) - k) // stride + 1, (W + 2 * (k // 2) - k) // stride + 1
    res = rng.standard_normal((1, C_out, OH, OW)).astype(F32) if has_res else None
    group = f"conv:{name}:{C_in}x{H}x{W}->{C_out}"
    want = numpy_conv(x, w, b, stride, k // 2, act, res)
    if impl == "minitnet":
        fn, result = fused_conv(x, w, b, stride, act, res, threads["numba_threads"])
    elif impl == "minitnet_ops":
        def fn():
            return ops.conv2d(x, w, b, stride=stride, padding=k // 2, act=act, residual=res)
        result = fn
    elif impl == "numpy":
        def fn():
            return numpy_conv(x, w, b, stride, k // 2, act, res)
        result = fn
    else:
        torch = pytest.importorskip("torch")
        F = torch.nn.functional
        xt, wt, bt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
        rt = torch.from_numpy(res) if res is not None else None

        def fn():
            with torch.inference_mode():
                y = F.conv2d(xt, wt, bt, stride=stride, padding=k // 2)
                if rt is not None:
                    y = y + rt
                return F.relu(y) if act else y
        result = fn
    fn()  # JIT warm-up and the correctness check, outside the timed calls
    assert_close(np.asarray(result()), want, f"{group} {impl}")
    benchmark.group = group
    run_bench(benchmark, fn)
    record(benchmark, group, impl, flop=2 * C_out * C_in * k * k * OH * OW, **threads)
