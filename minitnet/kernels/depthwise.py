"""Depthwise 2-D convolution kernel (groups == C_in == C_out), direct loop.

A depthwise conv has K*K multiply-adds per output and no reduction over
channels, so there is nothing for BLAS to do: each (n, c) plane is an
independent job for ``prange``, accumulated row by row in ``out`` (a row stays
in L1) with unit-stride inner loops over W.
"""
import numba
from numba import prange

from minitnet.kernels.conv import valid_range
from minitnet.kernels.elementwise import act_row


@numba.njit(cache=True, inline="always")
def axpy_row(a, src, off, stride, lo, hi, dst):
    """dst[o] += a * src[o*stride + off] for o in [lo, hi); 0-based inner loops (see conv.copy_row).

    Shapes:
      src: (W,)  dst: (OW,)
    """
    d = dst[lo:hi]
    if stride == 1:
        s = src[lo + off:hi + off]
        for i in range(d.shape[0]):
            d[i] += a * s[i]
    elif stride == 2:  # a constant stride lets LLVM use interleaved loads
        s = src[lo * 2 + off:]
        for i in range(d.shape[0]):
            d[i] += a * s[2 * i]
    else:
        s = src[lo * stride + off:]
        for i in range(d.shape[0]):
            d[i] += a * s[i * stride]


@numba.njit(cache=True, inline="always")
def init_row(orow, bias, residual, has_residual, n, c, oy):
    """orow[:] = bias (+ residual[n, c, oy, :]).

    Shapes:
      orow: (OW,)  residual: (N, C, OH, OW) if has_residual
    """
    if has_residual:
        rrow = residual[n, c, oy]
        for i in range(orow.shape[0]):
            orow[i] = bias + rrow[i]
    else:
        orow[:] = bias


@numba.njit(parallel=True, cache=True)
def depthwise_conv2d_nchw(x, w, b, residual, has_residual, stride, padding, act, out):
    """out[n, c] = act(conv(x[n, c], w[c, 0]) + b[c] + residual[n, c]), parallel over (n, c).

    Shapes:
      x: (N, C, H, W)  w: (C, 1, KH, KW)  b: (C,)  residual: (N, C, OH, OW) if has_residual
      out: (N, C, OH, OW), OH = (H + 2*padding - KH)//stride + 1
    """
    N, C, H, W = x.shape
    KH, KW = w.shape[2], w.shape[3]
    OH, OW = out.shape[2], out.shape[3]
    for t in prange(N * C):
        n, c = t // C, t % C
        for oy in range(OH):
            orow = out[n, c, oy]  # seek to out[n, c, oy, :]
            init_row(orow, b[c], residual, has_residual, n, c, oy)
            for ky in range(KH):
                iy = oy * stride + ky - padding
                if iy < 0 or iy >= H:
                    continue
                xr = x[n, c, iy]
                for kx in range(KW):
                    ox0, ox1 = valid_range(kx, padding, stride, W, OW)
                    axpy_row(w[c, 0, ky, kx], xr, kx - padding, stride, ox0, ox1, orow)
            act_row(orow, act)
