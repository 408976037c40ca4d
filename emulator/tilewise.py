"""Convs run tile by tile through the reference pipeline (``crossbar.mvm``), in NumPy.

The tile-level reference of the fused Numba kernels (``emulator.analog``), which the tests
compare them with, and the unfold of calibration's per-vector observer.  Same mapping,
same tile pipeline, same digital end (partial sums of row pieces, bias, residual, act) as
``emulator.analog``; ``mvm`` draws its normals from ``rng`` (the kernels' draws with the
tests' ``KeyedNormals``).  One im2col of the layer's input (rows in ``(c_in, ky, kx)``
order), one ``mvm`` per tile.  A depthwise tile is block-diagonal: its input vector is the
taps of all its channels (so the per-vector scale is their max |x|) and column c sees only
channel c's taps (the off-diagonal cells carry no current).
"""

from __future__ import annotations

import numpy as np

from .config import HardwareConfig
from .crossbar import ProgrammedTile, mvm, vector_scales
from .quantize import quantize

__all__ = ["unfold_nchw", "conv_tilewise", "mvm_depthwise"]


def unfold_nchw(x: np.ndarray, kernel_size, stride: int, padding: int) -> np.ndarray:
    """im2col: every output pixel's input patch, rows in ``(c, ky, kx)`` order.

    Shapes: x: (N, C, H, W) -> (N*OH*OW, C*KH*KW) float32, pixels row-major per image
    """
    kh, kw = kernel_size
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding))) if padding else x
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    OH, OW = win.shape[2], win.shape[3]           # win: (N, C, OH, OW, KH, KW)
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5).reshape(N * OH * OW, C * kh * kw), np.float32)


def mvm_depthwise(tile: ProgrammedTile, x: np.ndarray, hw: HardwareConfig, rng: np.random.Generator) -> np.ndarray:
    """``crossbar.mvm`` of a block-diagonal depthwise tile held compactly.

    Shapes: x: (P, ch, KK) the taps of the tile's channels  tile.w_eff: (KK, ch)  ->  (P, ch) float32
    """
    P = x.shape[0]
    s = None
    if tile.hw.inp_range == "per-vector":                        # 0. the whole tile's input vector
        s = vector_scales(x.reshape(P, -1))
        x = x / s[:, None, None]
    x_q = x if hw.inp_bits is None and tile.inp_bound is None else quantize(x, hw.inp_bits, tile.inp_bound)
    y = np.einsum("pck,kc->pc", x_q, tile.w_eff).astype(np.float32)
    gain = np.ones(tile.cols, np.float32) if tile.col_gain is None else tile.col_gain
    adc_std = hw.out_noise_std * tile.w_max * tile.inp_bound * gain if hw.out_noise_std > 0 else 0.0
    if tile.read_var is not None or np.any(adc_std):
        var = np.einsum("pck,kc->pc", np.square(x_q), tile.read_var) if tile.read_var is not None else 0.0
        y += rng.standard_normal(y.shape, dtype=np.float32) * np.sqrt(var + np.square(adc_std)).astype(np.float32)
    if hw.out_bits is not None or tile.out_bound is not None:
        y /= gain
        quantize(y, hw.out_bits, tile.out_bound, out=y)
        y *= gain
    if s is not None:
        y *= s[:, None]
    return y * np.asarray(tile.out_scale, np.float32)


def conv_tilewise(pl, x: np.ndarray, residual, act: int, hw: HardwareConfig, rng: np.random.Generator,
                  out: np.ndarray | None = None) -> np.ndarray:
    """``act(tiles(x) + b + residual)`` of one ``ProgrammedLayer``, every tile through ``mvm``.

    Shapes: x: (N, C_in, H, W) float32  ->  (N, C_out, OH, OW) float32
    """
    lay, plan = pl.layer, pl.plan
    N = x.shape[0]
    kh, kw = lay.kernel_size
    OH = (x.shape[2] + 2 * lay.padding - kh) // lay.stride + 1
    OW = (x.shape[3] + 2 * lay.padding - kw) // lay.stride + 1
    cols = unfold_nchw(x, lay.kernel_size, lay.stride, lay.padding)
    P = cols.shape[0]
    y = np.zeros((P, lay.out_channels), np.float32)
    if plan.depthwise:
        taps = cols.reshape(P, lay.out_channels, kh * kw)
        for p, t in zip(plan.pieces, pl.tiles):
            y[:, p.col0:p.col1] = mvm_depthwise(t, taps[:, p.col0:p.col1], hw, rng)
    else:
        for p, t in zip(plan.pieces, pl.tiles):
            y[:, p.col0:p.col1] += mvm(t, cols[:, p.row0:p.row1], hw, rng)
    y += pl.bias
    y = y.reshape(N, OH, OW, -1).transpose(0, 3, 1, 2)
    if out is None:
        out = np.empty((N, lay.out_channels, OH, OW), np.float32)
    out[...] = y
    if residual is not None:
        out += residual
    if act == 1:
        np.maximum(out, 0, out=out)
    elif act == 2:
        np.clip(out, 0, 6, out=out)
    return out
