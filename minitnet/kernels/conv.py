"""Dense and grouped 2-D convolution kernels (NCHW, OIHW weights).

Strategy: a direct loop runs at a small fraction of BLAS's sgemm rate, so dense
and grouped convs use ``conv2d_nchw_gemm``: it walks the output rows in tiles,
unfolds each tile into a caller-provided flat scratch ``col`` (about 1 MiB, so
it stays in L2, which beats unfolding the whole image), multiplies with
``np.dot`` (BLAS) into a scratch ``acc`` and fuses bias, residual and activation
into the copy to ``out``. A 1x1/stride-1/no-padding conv needs no
unfolding: ``conv2d_nchw_1x1`` is ``np.dot(w(Co,Ci), x[n](Ci,H*W))`` straight
into ``out[n]`` (on par with torch). These drivers are serial; the parallelism
is BLAS's own threads. Depthwise convs live in ``depthwise.py``.

Epilogue everywhere: ``out = act(conv + b + residual)``; act 0 none, 1 relu, 2 relu6.
"""
import numba
import numpy as np

from minitnet.kernels.elementwise import apply_act, bias_act_plane

_ZERO = np.float32(0.0)


@numba.njit(cache=True, inline="always")
def valid_range(k, padding, stride, n_in, n_out):
    """Output indices ``o`` in [lo, hi) whose input ``o*stride + k - padding`` is in [0, n_in)."""
    lo = 0
    if padding > k:
        lo = (padding - k + stride - 1) // stride
    hi = (n_in - 1 + padding - k) // stride + 1  # floor division: negative -> empty
    hi = max(0, min(hi, n_out))
    return min(lo, hi), hi


@numba.njit(cache=True, inline="always")
def copy_row(src, off, stride, lo, hi, dst):
    """dst[o] = src[o*stride + off] for o in [lo, hi).

    Shapes:
      src: (W,)  dst: (OW,)

    Slices first, so the inner loops index from 0: numba's negative-index
    wraparound check on a runtime-offset index would block vectorisation.
    """
    d = dst[lo:hi]
    if stride == 1:
        s = src[lo + off:hi + off]
        for i in range(d.shape[0]):
            d[i] = s[i]
    elif stride == 2:  # a constant stride lets LLVM use interleaved loads
        s = src[lo * 2 + off:]
        for i in range(d.shape[0]):
            d[i] = s[2 * i]
    else:
        s = src[lo * stride + off:]
        for i in range(d.shape[0]):
            d[i] = s[i * stride]


@numba.njit(cache=True)
def im2col_nchw(x, n, c0, KH, KW, stride, padding, oy0, oy1, OW, col):
    """Unfold output rows [oy0, oy1) of image n, input channels c0.. into columns.

    col[(ci*KH + ky)*KW + kx, (oy - oy0)*OW + ox] = x[n, c0 + ci, oy*stride + ky - padding,
    ox*stride + kx - padding], zero where that falls in the padding. The row order
    matches ``w.reshape(C_out, -1)`` for OIHW weights.

    Shapes:
      x: (N, C_in, H, W)  col: (Cg*KH*KW, (oy1 - oy0)*OW), Cg = channels unfolded
    """
    H, W = x.shape[2], x.shape[3]
    for r in range(col.shape[0]):
        ci, ky, kx = r // (KH * KW), (r // KW) % KH, r % KW
        ox0, ox1 = valid_range(kx, padding, stride, W, OW)
        for oy in range(oy0, oy1):
            dst = col[r, (oy - oy0) * OW:(oy - oy0 + 1) * OW]  # seek to col[r, oy - oy0, :]
            iy = oy * stride + ky - padding
            if iy < 0 or iy >= H:
                dst[:] = _ZERO
                continue
            dst[:ox0] = _ZERO
            dst[ox1:] = _ZERO
            copy_row(x[n, c0 + ci, iy], kx - padding, stride, ox0, ox1, dst)


@numba.njit(cache=True)
def gemm_epilogue_nchw(acc, b, residual, has_residual, act, n, co0, oy0, out):
    """out[n, co0 + co, oy0 + j, :] = act(acc[co, j*OW:(j+1)*OW] + b[co0 + co] + residual[...]).

    Shapes:
      acc: (Cg, R*OW)  b: (C_out,)  residual: like out if has_residual  out: (N, C_out, OH, OW)
    """
    OW = out.shape[3]
    R = acc.shape[1] // OW
    for co in range(acc.shape[0]):
        bias = b[co0 + co]
        for j in range(R):
            a = acc[co, j * OW:(j + 1) * OW]
            orow = out[n, co0 + co, oy0 + j]  # seek to out[n, co0 + co, oy0 + j, :]
            if has_residual:
                rrow = residual[n, co0 + co, oy0 + j]
                for ox in range(OW):
                    orow[ox] = apply_act(a[ox] + bias + rrow[ox], act)
            else:
                for ox in range(OW):
                    orow[ox] = apply_act(a[ox] + bias, act)


@numba.njit(cache=True)
def conv2d_nchw_gemm(x, w3, b, residual, has_residual, KH, KW, stride, padding, act, col, acc, out):
    """Grouped/dense conv as tiled im2col + sgemm, fused bias/residual/act epilogue.

    Rows per tile R = min(OH, col.size // (K*OW)) with K = C_in//groups*KH*KW
    (the caller sizes ``col`` for at least one row).

    Shapes:
      x: (N, C_in, H, W)  w3: (groups, C_out//groups, K) = w.reshape(groups, -1, K)
      b: (C_out,)  residual: (N, C_out, OH, OW) if has_residual
      col: (>= K*OW,) flat scratch  acc: (>= C_out//groups * R*OW,) flat scratch
      out: (N, C_out, OH, OW), OH = (H + 2*padding - KH)//stride + 1
    """
    N, C_in = x.shape[0], x.shape[1]
    groups, Cog, K = w3.shape
    OH, OW = out.shape[2], out.shape[3]
    R = min(OH, col.shape[0] // (K * OW))
    for n in range(N):
        for g in range(groups):
            for oy0 in range(0, OH, R):
                oy1 = min(oy0 + R, OH)
                M = (oy1 - oy0) * OW
                colv = col[:K * M].reshape(K, M)
                accv = acc[:Cog * M].reshape(Cog, M)
                im2col_nchw(x, n, g * (C_in // groups), KH, KW, stride, padding, oy0, oy1, OW, colv)
                np.dot(w3[g], colv, accv)
                gemm_epilogue_nchw(accv, b, residual, has_residual, act, n, g * Cog, oy0, out)


@numba.njit(cache=True)
def conv2d_nchw_1x1(x, w2, b, residual, has_residual, act, out):
    """Pointwise conv (1x1, stride 1, padding 0): out[n] = act(w2 @ x[n] + b + residual[n]).

    Shapes:
      x: (N, C_in, H, W)  w2: (C_out, C_in)  b: (C_out,)
      residual: (N, C_out, H, W) if has_residual  out: (N, C_out, H, W)
    """
    N, C_in, H, W = x.shape
    C_out = w2.shape[0]
    for n in range(N):
        np.dot(w2, x[n].reshape(C_in, H * W), out[n].reshape(C_out, H * W))
        for co in range(C_out):
            bias_act_plane(out[n, co], b[co], residual, has_residual, n, co, act)
