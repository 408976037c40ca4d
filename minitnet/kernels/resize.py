"""Bilinear resizing, bit-for-bit the recipe of ``torch.nn.functional.interpolate(mode="bilinear")``.

Per axis (input size ``I``, output size ``O``, output index ``d``), in float32:

  align_corners=True:   src = d * (I - 1) / (O - 1)            (src = 0 when O == 1)
  align_corners=False:  src = (d + 0.5) * I / O - 0.5, then src = max(src, 0)

then i0 = min(floor(src), I - 1), i1 = min(i0 + 1, I - 1), l1 = clip(src - i0, 0, 1),
l0 = 1 - l1; when O == I the axis is the identity. There is no antialiasing when
downsampling (torch's default ``antialias=False``). The 2-D value is, in this
order (torch's), out = (x[y0,x0]*lx0 + x[y0,x1]*lx1)*ly0 + (x[y1,x0]*lx0 + x[y1,x1]*lx1)*ly1.
"""
import math

import numba
import numpy as np
from numba import prange

_F32 = np.float32


def bilinear_table(in_size, out_size, align_corners):
    """Per-axis source indices and weights (NumPy, float32 arithmetic as in torch).

    Returns ``(i0, i1, l0, l1)``, each of shape (out_size,): uint64 indices (unsigned,
    so numba skips its negative-index check in the gather) and float32 weights.
    """
    d = np.arange(out_size, dtype=np.uint64)
    if out_size == in_size:
        return d, d.copy(), np.ones(out_size, _F32), np.zeros(out_size, _F32)
    df = d.astype(_F32)
    if align_corners:
        scale = _F32(in_size - 1) / _F32(out_size - 1) if out_size > 1 else _F32(0.0)
        src = scale * df
    else:
        scale = _F32(in_size) / _F32(out_size)
        src = np.maximum(scale * (df + _F32(0.5)) - _F32(0.5), _F32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    l1 = np.clip(src - i0.astype(_F32), _F32(0.0), _F32(1.0)).astype(_F32)
    i1 = i0 + (i0 < in_size - 1)
    return i0.astype(np.uint64), i1.astype(np.uint64), (_F32(1.0) - l1).astype(_F32), l1


@numba.njit(cache=True, inline="always")
def resize_band(x, n, c, off, ytab, xtab, oy0, oy1, h, out, co, pad_out):
    """Output rows oy0..oy1-1 of plane (n, c) of x (its interior at row and column offset ``off``:
    0 plain, 1 padded) into plane (n, co) of out (interior at ``pad_out``): each source row the
    band reads resampled along x once (h[y - ya, ox] = x[y, ix0]*lx0 + x[y, ix1]*lx1, the
    gathers), then every output row the vectorised blend h[iy0]*ly0 + h[iy1]*ly1 (the module's
    order). Rows are taken as 1-D slices of the 4-D arrays (contiguous: the loops vectorise).

    Shapes:
      ytab = (iy0, iy1, ly0, ly1): (OH,) each  xtab = (ix0, ix1, lx0, lx1): (OW,) each
      h: (>= rows read, >= OW) scratch
    """
    iy0, iy1, ly0, ly1 = ytab
    ix0, ix1, lx0, lx1 = xtab
    OW = ix0.shape[0]
    ya, yb = iy0[oy0], iy1[oy1 - 1] + 1  # the source rows this band reads
    for y in range(ya, yb):
        r, hr = x[n, c, y + off, off:], h[y - ya]
        for ox in range(OW):
            hr[ox] = r[ix0[ox]] * lx0[ox] + r[ix1[ox]] * lx1[ox]
    for oy in range(oy0, oy1):
        r0, r1, wy0, wy1 = h[iy0[oy] - ya], h[iy1[oy] - ya], ly0[oy], ly1[oy]
        orow = out[n, co, oy + pad_out, pad_out:pad_out + OW]
        for ox in range(OW):
            orow[ox] = r0[ox] * wy0 + r1[ox] * wy1


@numba.njit(parallel=True, cache=True)
def upsample_bilinear_nchw(x, iy0, iy1, ly0, ly1, ix0, ix1, lx0, lx1, S, out):
    """out[n, c, oy, ox] = bilinear sample of x[n, c] at the tabulated (src_y, src_x), any scale;
    parallel over S bands of output rows per plane (N*C*S tasks: 11 logit planes on 2 workers
    as 22 even halves, not 6 planes against 5). ``resize_band`` per task: separable, each source
    row resampled once per band (an upsampling gathers H rows instead of OH). The values do not
    depend on S.

    Shapes:
      x: (N, C, H, W)  iy0, iy1, ly0, ly1: (OH,)  ix0, ix1, lx0, lx1: (OW,)  out: (N, C, OH, OW)
    """
    N, C = x.shape[0], x.shape[1]
    OH, OW = out.shape[2], out.shape[3]
    for t in prange(N * C * S):
        n, c, s = t // (C * S), (t // S) % C, t % S
        oy0, oy1 = s * OH // S, (s + 1) * OH // S
        if oy0 < oy1:
            h = np.empty((iy1[oy1 - 1] + 1 - iy0[oy0], OW), _F32)
            resize_band(x, n, c, 0, (iy0, iy1, ly0, ly1), (ix0, ix1, lx0, lx1), oy0, oy1, h, out, c, 0)


def resize_bands(NC: int, OH: int, T: int) -> int:
    """Row bands per plane for ``upsample_bilinear_nchw``: enough that the NC*S tasks divide
    evenly among T workers."""
    return max(1, min(OH, T // math.gcd(NC, T)))


