"""3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3), on padded maps.

Each 2x2 output tile is ``Y = A^T [ (G g G^T) * (B^T d B) ] A`` for the 4x4 input
patch d (padded rows 2*ty..2*ty+3, columns 2*tx..2*tx+3) and each 3x3 filter g:

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]

The 16 products of a tile are 16 independent matrix products over channels,
``M[xi] = U[xi] @ V[xi]`` (U = G g G^T, prepared once per layer in float64 and
rounded once), so a conv with C_in channels costs 16*C_in multiply-adds per
2x2 tile instead of 36*C_in: 2.25x fewer. The transforms are additions only
(plus the halving folded into U). Rounding: every output is a sum of the same
products regrouped, within a few float32 ulps of the direct conv at the
channel counts used here (tests compare with torch).

Work is split into bands of tile rows dealt to ``T`` workers (a ``parallel_kernel``, as in
``padded``); a band's V
(16 x C_in x tiles) and M (16 x C_out x tiles) live in the worker's scratch,
sized (~1 MiB) to stay in L2 -- the sgemm calls run at BLAS speed only when
their operands are cache-resident (a band of a few hundred tiles, not thousands;
``FusedOptions.winograd_band_tiles``).
"""
import numba
import numpy as np

from minitnet.kernels.blas import sgemm_cm
from minitnet.kernels.elementwise import act_row
from minitnet.kernels.padded import task_band
from minitnet.kernels.parallel import F32_1D, F32_2D, F32_3D, F32_4D, parallel_kernel

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)


def winograd_weights(w):
    """U[4*a + b, co, ci] = (G w[co, ci] G^T)[a, b], computed in float64, rounded once.

    Shapes:
      w: (C_out, C_in, 3, 3)  ->  (16, C_out, C_in) float32
    """
    G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
    u = np.einsum("ak,oikl,bl->aboi", G, np.asarray(w, np.float64), G)
    return np.ascontiguousarray(u.reshape(16, *w.shape[:2]), dtype=np.float32)


@numba.njit(cache=True, inline="always")
def _bt_cols(a, V, k, ci, t, TW):
    """V[4k + j, ci, t + tx] for tx < TW: the column half of B^T d B on one row of B^T d:
    (a[c] - a[c+2], a[c+1] + a[c+2], a[c+2] - a[c+1], a[c+1] - a[c+3]) with c = 2*tx.

    Shapes:
      a: (>= 2*TW + 2,)  V: (16, C_in, >= t + TW)
    """
    v0, v1 = V[4 * k, ci, t:t + TW], V[4 * k + 1, ci, t:t + TW]
    v2, v3 = V[4 * k + 2, ci, t:t + TW], V[4 * k + 3, ci, t:t + TW]
    # two loops of two store streams each: few enough pointers for LLVM's runtime alias
    # checks, so both vectorise (one loop of four stores, or four loops of one, do worse)
    for tx in range(TW):
        c = 2 * tx
        x0, x1, x2 = a[c], a[c + 1], a[c + 2]
        v0[tx] = x0 - x2
        v1[tx] = x1 + x2
    for tx in range(TW):
        c = 2 * tx
        x1, x2, x3 = a[c + 1], a[c + 2], a[c + 3]
        v2[tx] = x2 - x1
        v3[tx] = x1 - x3


@numba.njit(cache=True, inline="always")
def winograd_input(x, n, cx, C_in, ty0, ty1, TW, tmp, V):
    """V[xi, ci, (ty - ty0)*TW + tx] = (B^T d B)[xi] of the 4x4 patch of tile (ty, tx) of x[n, cx+ci]
    (padded rows 2*ty.., columns 2*tx..); patch pixels past the padded map (odd H or W) read as 0.
    Rows first (B^T d, whole padded rows at a time into ``tmp``), then columns.

    Shapes:
      x: (N, >= cx+C_in, H+2, W+2)  tmp: (4, >= W+4) scratch  V: (16, C_in, >= (ty1 - ty0)*TW)
    """
    Hp, Wp = x.shape[2], x.shape[3]
    tmp[:, Wp:] = _ZERO  # the column past the border of an odd width
    for ci in range(C_in):
        for ty in range(ty0, ty1):
            r0, r1 = x[n, cx + ci, 2 * ty], x[n, cx + ci, 2 * ty + 1]
            y2, y3 = min(2 * ty + 2, Hp - 1), min(2 * ty + 3, Hp - 1)
            s2 = _ONE if 2 * ty + 2 < Hp else _ZERO  # rows past the border of an odd height read as 0
            s3 = _ONE if 2 * ty + 3 < Hp else _ZERO
            r2, r3 = x[n, cx + ci, y2], x[n, cx + ci, y3]
            a, b, c, d = tmp[0], tmp[1], tmp[2], tmp[3]
            for j in range(Wp):
                u2, u3 = r2[j] * s2, r3[j] * s3
                a[j] = r0[j] - u2
                b[j] = r1[j] + u2
                c[j] = u2 - r1[j]
                d[j] = r1[j] - u3
            t = (ty - ty0) * TW
            for k in range(4):
                _bt_cols(tmp[k], V, k, ci, t, TW)


@numba.njit(cache=True, inline="always")
def winograd_output(Mw, n, ty0, ty1, TW, b, res, cr, has_res, act, tmp, out, co):
    """out[n, co+o] rows 2*ty0.. = act(A^T M A + b[o] + res[n, cr+o]) for the band's tiles
    (outputs past H or W of a partial tile are dropped). Rows of A^T M first (into ``tmp``).

    Shapes:
      Mw: (16, C_out, >= (ty1 - ty0)*TW)  b: (C_out,)  res: (N, >= cr+C_out, H+2, W+2) if has_res
      tmp: (4, >= TW) scratch  out: (N, >= co+C_out, H+2, W+2)
    """
    H, W = out.shape[2] - 2, out.shape[3] - 2
    TWf = W // 2  # tiles with both output columns inside the image
    for o in range(b.shape[0]):
        bias = b[o]
        for ty in range(ty0, ty1):
            t = (ty - ty0) * TW
            for dy in range(min(2, H - 2 * ty)):
                for k in range(4):  # row dy of A^T M, column k: m[k] + m[4+k] + m[8+k] or m[4+k] - m[8+k] - m[12+k]
                    q, m0, m1, m2, m3 = tmp[k], Mw[k, o, t:], Mw[4 + k, o, t:], Mw[8 + k, o, t:], Mw[12 + k, o, t:]
                    if dy == 0:
                        for tx in range(TW):
                            q[tx] = m0[tx] + m1[tx] + m2[tx]
                    else:
                        for tx in range(TW):
                            q[tx] = m1[tx] - m2[tx] - m3[tx]
                orow = out[n, co + o, 2 * ty + dy + 1, 1:W + 1]  # seek to the interior of output row 2*ty + dy
                _at_cols(tmp[0], tmp[1], tmp[2], tmp[3], bias, TWf, orow)
                if TWf < TW:  # odd width: the last tile has one column
                    orow[2 * TWf] = tmp[0][TWf] + tmp[1][TWf] + tmp[2][TWf] + bias
                if has_res:
                    rrow = res[n, cr + o, 2 * ty + dy + 1, 1:W + 1]
                    for i in range(W):
                        orow[i] += rrow[i]
                act_row(orow, act)


@numba.njit(cache=True, inline="always")
def _at_cols(q0, q1, q2, q3, bias, n, orow):
    """orow[2tx] = q0 + q1 + q2 + bias, orow[2tx+1] = q1 - q2 - q3 + bias for tx < n (A^T .. A, columns).

    Shapes:
      q0..q3: (>= n,)  orow: (>= 2n,)
    """
    e, f = orow[0:], orow[1:]
    for tx in range(n):
        c = 2 * tx
        e[c] = q0[tx] + q1[tx] + q2[tx] + bias
        f[c] = q1[tx] - q2[tx] - q3[tx] + bias


@parallel_kernel(f"{F32_4D}, int64, {F32_3D}, {F32_1D}, {F32_4D}, int64, boolean, int64, {F32_4D}, int64, "
                  f"int64, UniTuple({F32_2D}, 3), int64",
                 weight=3.4)
def conv2d_nchwp_winograd(w, x, cx, U, b, res, cr, has_res, act, out, co, nb, scratch, T):
    """3x3 stride-1 padding-1 conv by F(2x2, 3x3), fused epilogue, parallel over bands of tile rows.

    out[n, co+o] = act(conv3x3(x[n, cx:cx+C_in], w)[o] + b[o] + res[n, cr+o]).

    Shapes:
      x: (N, >= cx+C_in, H+2, W+2)  U: (16, C_out, C_in) = winograd_weights(w)  b: (C_out,)
      res: (N, >= cr+C_out, H+2, W+2) if has_res  out: (N, >= co+C_out, H+2, W+2)
      scratch = (tmp, V, Mw): tmp (T, >= 4*(W+4)), V (T, >= 16*C_in*tiles), Mw (T, >= 16*C_out*tiles),
      tiles = ceil(ceil(H/2) / nb) * ceil(W/2)
    """
    tmp, V, Mw = scratch
    N, H, W = x.shape[0], x.shape[2] - 2, x.shape[3] - 2
    _, C_out, C_in = U.shape
    TH, TW = (H + 1) // 2, (W + 1) // 2
    Uf = U.reshape(-1)
    for task in range(w, N * nb, T):
        n, ty0, ty1 = task_band(task, nb, TH)
        nt = (ty1 - ty0) * TW
        v, m = V[w, :16 * C_in * nt], Mw[w, :16 * C_out * nt]
        tw = tmp[w, :4 * (W + 4)].reshape(4, W + 4)
        winograd_input(x, n, cx, C_in, ty0, ty1, TW, tw, v.reshape(16, C_in, nt))
        for xi in range(16):
            sgemm_cm(nt, C_out, C_in, v, xi * C_in * nt, nt, Uf, xi * C_out * C_in, C_in, 0.0,
                     m, xi * C_out * nt, nt)
        winograd_output(m.reshape(16, C_out, nt), n, ty0, ty1, TW, b, res, cr, has_res, act, tw, out, co)
