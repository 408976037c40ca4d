"""Elementwise kernels: activations, add, per-channel affine, conv epilogues.

All kernels take C-contiguous float32 arrays, write into ``out`` and never
validate (``minitnet.ops`` does). ``act`` codes: 0 none, 1 relu, 2 relu6.
NaN propagates through every activation, as in PyTorch.
"""
import numba
import numpy as np
from numba import prange

_ZERO = np.float32(0.0)
_SIX = np.float32(6.0)
_BLOCK = 1 << 14  # elements per prange chunk of the flat kernels


@numba.njit(cache=True, inline="always")
def apply_act(v, act):
    """Return ``act(v)`` for a float32 scalar: 0 identity, 1 relu, 2 relu6 (NaN stays NaN)."""
    if act >= 1 and v < _ZERO:
        return _ZERO
    if act == 2 and v > _SIX:
        return _SIX
    return v


@numba.njit(cache=True, inline="always")
def act_row(row, act):
    """Apply ``act`` in place to a row (no-op for act 0).

    Shapes:
      row: (W,)
    """
    if act != 0:
        for i in range(row.shape[0]):
            row[i] = apply_act(row[i], act)


@numba.njit(cache=True, inline="always")
def _block_bounds(blk, size):
    lo = blk * _BLOCK
    return lo, min(lo + _BLOCK, size)


@numba.njit(parallel=True, cache=True)
def act_flat(x, act, out):
    """out = act(x), elementwise; ``out`` may be ``x``.

    Shapes:
      x: (S,)  out: (S,)   (a flat view of any C-contiguous array)
    """
    size = x.shape[0]
    for blk in prange((size + _BLOCK - 1) // _BLOCK):
        lo, hi = _block_bounds(blk, size)
        xs, os = x[lo:hi], out[lo:hi]  # 0-based loop: no wraparound check, vectorises
        for i in range(xs.shape[0]):
            os[i] = apply_act(xs[i], act)


@numba.njit(parallel=True, cache=True)
def add_flat(a, b, act, out):
    """out = act(a + b), elementwise; ``out`` may be ``a`` or ``b``.

    Shapes:
      a: (S,)  b: (S,)  out: (S,)
    """
    size = a.shape[0]
    for blk in prange((size + _BLOCK - 1) // _BLOCK):
        lo, hi = _block_bounds(blk, size)
        as_, bs, os = a[lo:hi], b[lo:hi], out[lo:hi]
        for i in range(as_.shape[0]):
            os[i] = apply_act(as_[i] + bs[i], act)


@numba.njit(parallel=True, cache=True)
def affine_nchw(x, scale, shift, act, out):
    """out[n, c] = act(x[n, c] * scale[c] + shift[c]) (a folded BatchNorm); ``out`` may be ``x``.

    Shapes:
      x: (N, C, H, W)  scale: (C,)  shift: (C,)  out: (N, C, H, W)
    """
    N, C, H, W = x.shape
    for t in prange(N * C):
        n, c = t // C, t % C
        s, h = scale[c], shift[c]
        for y in range(H):
            xr, orow = x[n, c, y], out[n, c, y]  # seek to x[n, c, y, :], out[n, c, y, :]
            for i in range(W):
                orow[i] = apply_act(xr[i] * s + h, act)


@numba.njit(cache=True, inline="always")
def bias_act_plane(o, bias, residual, has_residual, n, c, act):
    """In place on one output plane o = out[n, c]: o = act(o + bias + residual[n, c]).

    Shapes:
      o: (OH, OW)  residual: (N, C, OH, OW) if has_residual else ignored
    """
    OH, OW = o.shape
    for y in range(OH):
        orow = o[y]
        if has_residual:
            rrow = residual[n, c, y]
            for i in range(OW):
                orow[i] = apply_act(orow[i] + bias + rrow[i], act)
        else:
            for i in range(OW):
                orow[i] = apply_act(orow[i] + bias, act)
