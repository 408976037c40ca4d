"""Max pooling kernel with stride == kernel_size and no padding.

``ceil_mode`` is decided by the caller through ``out``'s size: with
OH = ceil(H/k) the last, partial window is clipped to the input and still
counts, exactly as ``torch.nn.functional.max_pool2d(x, k, k, ceil_mode=True)``.
NaN propagates (a window containing NaN yields NaN), as in PyTorch.
"""
import numba
import numpy as np
from numba import prange

_NEG_INF = np.float32(-np.inf)


@numba.njit(cache=True, inline="always")
def nanmax(m, v):
    """max(m, v) where NaN wins; a select, not a branch, so loops over it vectorise."""
    return v if (v > m or v != v) else m


@numba.njit(cache=True, inline="always")
def max_row(src, k, OW, dst):
    """dst[ox] = max(dst[ox], src[ox*k : ox*k + k]) with the last window clipped to src; NaN wins.

    Shapes:
      src: (W,)  dst: (OW,), OW = ceil(W/k) or W//k

    Full windows are read through a (full, k) reshape so every index is 0-based
    (numba's negative-index check would otherwise block vectorisation).
    """
    full = min(OW, src.shape[0] // k)
    windows = src[:full * k].reshape(full, k)
    for ox in range(full):
        m = dst[ox]
        for j in range(k):
            m = nanmax(m, windows[ox, j])
        dst[ox] = m
    for ox in range(full, OW):  # at most one partial window (ceil_mode)
        tail = src[ox * k:]
        m = dst[ox]
        for j in range(tail.shape[0]):
            m = nanmax(m, tail[j])
        dst[ox] = m


@numba.njit(parallel=True, cache=True)
def max_pool2d_nchw(x, k, out):
    """out[n, c, oy, ox] = max of x[n, c, oy*k : oy*k + k, ox*k : ox*k + k] (clipped), parallel over (n, c).

    Shapes:
      x: (N, C, H, W)  out: (N, C, OH, OW), OH = ceil(H/k) (ceil_mode) or H//k, same for OW
    """
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    for t in prange(N * C):
        n, c = t // C, t % C
        for oy in range(OH):
            orow = out[n, c, oy]  # seek to out[n, c, oy, :]
            orow[:] = _NEG_INF
            for iy in range(oy * k, min(oy * k + k, H)):
                max_row(x[n, c, iy], k, OW, orow)
