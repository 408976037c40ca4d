"""Kernels on padded maps (layout ``nchwp``): the engine's fused execution layout.

A map of C channels and H x W pixels is stored as (N, C, H + 2, W + 2) float32
with a one-pixel border of zeros. The border is the zero padding of every 3x3
conv, so no kernel tests bounds, and a whole row band of one channel is one
contiguous run of memory. With ``Wp = W + 2`` and ``plane = (H + 2) * Wp``,
interior pixel (y, x) sits at flat offset ``(y + 1)*Wp + x + 1`` of its plane.

Convolutions are sgemm calls on these flat planes (``blas.sgemm_cm``):

- stride-1 convs ("same" padding, 3x3 or 1x1) need no im2col: the output rows
  [y0, y1) are the M = (y1 - y0)*Wp - 2 consecutive positions starting at
  pixel (y0, 0), and tap (ky, kx) reads the same run shifted by
  ``(ky - 1)*Wp + (kx - 1)``. Each tap is one sgemm with the channel planes as
  the strided dimension, accumulated with beta = 1 straight into ``out``. The
  two border columns inside the run get garbage and are zeroed again in the
  epilogue, which also adds bias and residual and applies the activation.
- strided convs unfold a row band (``col``) with the same 2-column gap per row,
  then run one sgemm into ``out``.
- the bottleneck (MobileNetV2 inverted residual) runs expand -> ReLU6 ->
  depthwise 3x3 -> ReLU6 -> project + input per row band, with the expanded
  map in a per-worker scratch that stays in L2.

Work is split into row bands (``nb`` per image, rows ``[i*H//nb, (i+1)*H//nb)``)
dealt round-robin to ``T`` workers, one scratch slice per worker: each kernel is the
code of worker ``w`` (``kernels.parallel.parallel_kernel``: numba compiles it once and
runs the T workers on its threads). BLAS must be single-threaded meanwhile
(``blas.single_threaded_blas``). Helpers that one kernel alone calls are
``inline="always"``: numba types them inside that kernel and LLVM compiles them once
(a separate function is compiled on its own and again in every kernel it is linked into).
Channel offsets (``cx``, ``co``, ``cr``) address a slice of a larger map, so
producers write straight into the slot of the concatenation that consumes them.
``act``: 0 none, 1 relu, 2 relu6.
"""

import numba
import numpy as np

from minitnet.kernels.blas import sgemm_cm
from minitnet.kernels.elementwise import apply_act
from minitnet.kernels.parallel import F32_1D, F32_2D, F32_3D, F32_4D, parallel_kernel
from minitnet.kernels.pool import max_row, nanmax
from minitnet.kernels.resize import resize_band

_ZERO = np.float32(0.0)
_NEG_INF = np.float32(-np.inf)
_TABLE = f"Tuple((uint64[::1], uint64[::1], {F32_1D}, {F32_1D}))"  # a bilinear_table: (i0, i1, l0, l1)


@numba.njit(cache=True, inline="always")
def band(i, nb, H):
    """Rows [y0, y1) of band i of nb over H rows (sizes differ by at most one)."""
    return (i * H) // nb, ((i + 1) * H) // nb


@numba.njit(cache=True, inline="always")
def task_band(task, nb, H):
    """Task ``task`` of N*nb (nb row bands per image over H rows): (n, y0, y1)."""
    y0, y1 = band(task % nb, nb, H)
    return task // nb, y0, y1


@numba.njit(cache=True, inline="always")
def band_run(y0, y1, Wp):
    """Rows [y0, y1) of a padded map with rows of Wp floats as one flat run: (offset of
    interior pixel (y0, 0) in its plane, length through pixel (y1 - 1, W - 1))."""
    return (y0 + 1) * Wp + 1, (y1 - y0) * Wp - 2


@numba.njit(cache=True, inline="always")
def epilogue_nchwp(out, n, co, y0, y1, b, res, cr, has_res, act):
    """Rows [y0, y1) of out[n, co:co+C]: zero the border columns, then
    interior = act(interior + b[c] + res[n, cr + c]).

    Shapes:
      out: (N, >= co+C, H+2, W+2)  b: (C,)  res: (N, >= cr+C, H+2, W+2) if has_res
    """
    Wp = out.shape[3]
    for c in range(b.shape[0]):
        bias = b[c]
        for y in range(y0 + 1, y1 + 1):
            row = out[n, co + c, y]  # seek to out[n, co + c, y, :] (padded row)
            row[0] = _ZERO
            row[Wp - 1] = _ZERO
            o = row[1:Wp - 1]
            if has_res:
                r = res[n, cr + c, y, 1:Wp - 1]
                for i in range(o.shape[0]):
                    o[i] = apply_act(o[i] + bias + r[i], act)
            else:
                for i in range(o.shape[0]):
                    o[i] = apply_act(o[i] + bias, act)


@parallel_kernel(f"{F32_4D}, int64, {F32_3D}, int64[::1], {F32_1D}, {F32_4D}, int64, boolean, int64, "
                  f"{F32_4D}, int64, int64, int64",
                 weight=0.85)
def conv2d_nchwp_taps(w, x, cx, wt, offs, b, res, cr, has_res, act, out, co, nb, T):
    """Stride-1 "same" conv as one sgemm per tap, fused epilogue, parallel over row bands.

    out[n, co+o] = act(sum_t wt[t] @ shift_t(x[n, cx:cx+C_in]) + b + res[n, cr+o]).

    Shapes:
      x: (N, >= cx+C_in, H+2, W+2)  wt: (taps, C_out, C_in) = w.transpose(2, 3, 0, 1) flattened
      offs: (taps,) flat shift of each tap, (ky - padding)*Wp + (kx - padding)
      b: (C_out,)  res: (N, >= cr+C_out, H+2, W+2) if has_res  out: (N, >= co+C_out, H+2, W+2)
    """
    N, Hp, Wp = x.shape[0], x.shape[2], x.shape[3]
    taps, C_out, C_in = wt.shape
    plane = Hp * Wp
    wf = wt.reshape(-1)
    for task in range(w, N * nb, T):
        n, y0, y1 = task_band(task, nb, Hp - 2)
        xf, of = x[n].reshape(-1), out[n].reshape(-1)
        q0, M = band_run(y0, y1, Wp)
        for t in range(taps):
            sgemm_cm(M, C_out, C_in, xf, cx * plane + q0 + offs[t], plane, wf, t * C_out * C_in, C_in,
                     0.0 if t == 0 else 1.0, of, co * plane + q0, plane)
        epilogue_nchwp(out, n, co, y0, y1, b, res, cr, has_res, act)


@numba.njit(cache=True, inline="always")
def im2col_nchwp(x, n, cx, geom, y0, y1, OWp, col):
    """Unfold output rows [y0, y1) of image n: col[(ci*KH + ky)*KW + kx, (oy - y0)*OWp + ox]
    = x[n, cx+ci, oy*stride + ky - padding + 1, ox*stride + kx - padding + 1] for ox < OW = OWp - 2,
    and 0 in the two gap columns of each row (they map onto out's border). padding <= 1;
    ``geom`` = (KH, KW, stride, padding).

    Shapes:
      x: (N, >= cx+C_in, H+2, W+2)  col: (C_in*KH*KW, (y1 - y0)*OWp - 2)
    """
    KH, KW, stride, padding = geom
    M = col.shape[1]
    OW = OWp - 2
    for r in range(col.shape[0]):
        ci, ky, kx = r // (KH * KW), (r // KW) % KH, r % KW
        dst = col[r]
        for oy in range(y0, y1):
            j0 = (oy - y0) * OWp
            src = x[n, cx + ci, oy * stride + ky - padding + 1, kx - padding + 1:]
            d = dst[j0:j0 + OW]
            for i in range(OW):
                d[i] = src[i * stride]
            for j in range(j0 + OW, min(j0 + OWp, M)):
                dst[j] = _ZERO


@parallel_kernel(f"{F32_4D}, int64, {F32_2D}, UniTuple(int64, 4), {F32_1D}, int64, {F32_4D}, int64, int64, "
                  f"{F32_2D}, int64",
                 weight=1.1)
def conv2d_nchwp_im2col(w, x, cx, w2, geom, b, act, out, co, nb, col, T):
    """Dense conv (any stride, padding <= 1) as band-wise im2col + one sgemm, fused epilogue;
    ``geom`` = (KH, KW, stride, padding).

    Shapes:
      x: (N, >= cx+C_in, H+2, W+2)  w2: (C_out, C_in*KH*KW) = w.reshape(C_out, -1)  b: (C_out,)
      out: (N, >= co+C_out, OH+2, OW+2)  col: (T, >= C_in*KH*KW * (max band rows * (OW+2) - 2))
    """
    N = x.shape[0]
    C_out, K = w2.shape
    OHp, OWp = out.shape[2], out.shape[3]
    plane = OHp * OWp
    wf = w2.reshape(-1)
    for task in range(w, N * nb, T):
        n, y0, y1 = task_band(task, nb, OHp - 2)
        q0, M = band_run(y0, y1, OWp)
        cv = col[w, :K * M].reshape(K, M)
        im2col_nchwp(x, n, cx, geom, y0, y1, OWp, cv)
        sgemm_cm(M, C_out, K, col[w], 0, M, wf, 0, K, 0.0, out[n].reshape(-1), co * plane + q0, plane)
        epilogue_nchwp(out, n, co, y0, y1, b, out, 0, False, act)  # no residual: out is a placeholder


@numba.njit(cache=True, inline="always")
def expand_epilogue(h, ldh, be, y0, r0, r1, Hp, Wp):
    """Rows r0 <= r < r1 of the expanded band (padded row y0 + r): h[c, r*Wp + j] = relu6(h + be[c])
    inside the image, 0 on the border (the depthwise conv's zero padding).

    Shapes:
      h: (>= C_h*ldh,) flat  be: (C_h,)
    """
    for c in range(be.shape[0]):
        bias = be[c]
        for r in range(r0, r1):
            row = h[c * ldh + r * Wp:c * ldh + (r + 1) * Wp]  # seek to padded row y0 + r of channel c
            if y0 + r == 0 or y0 + r == Hp - 1:
                row[:] = _ZERO
                continue
            row[0] = _ZERO
            row[Wp - 1] = _ZERO
            o = row[1:Wp - 1]
            for i in range(o.shape[0]):
                o[i] = apply_act(o[i] + bias, 2)


@numba.njit(cache=True, inline="always")
def depthwise3x3_flat(h, ldh, wd, bd, Wp, M, d, ldd):
    """d[c, j] = relu6(bd[c] + sum_{ky,kx} wd[c, 3*ky + kx] * h[c, j + ky*Wp + kx]) for j < M.

    The run j covers a row band of the padded output (gap columns included: finite
    garbage that the project sgemm writes onto out's border, zeroed afterwards).
    Summation order as ``depthwise_conv2d_nchw``: bias, then taps row by row.

    Shapes:
      h: (>= C*ldh,)  wd: (C, 9)  bd: (C,)  d: (>= C*ldd,), M + 2*Wp + 2 <= ldh
    """
    for c in range(wd.shape[0]):
        hc = h[c * ldh:(c + 1) * ldh]
        h0, h1, h2 = hc[0:], hc[1:], hc[2:]
        h3, h4, h5 = hc[Wp:], hc[Wp + 1:], hc[Wp + 2:]
        h6, h7, h8 = hc[2 * Wp:], hc[2 * Wp + 1:], hc[2 * Wp + 2:]
        w0, w1, w2, w3, w4, w5, w6, w7, w8 = wd[c, 0], wd[c, 1], wd[c, 2], wd[c, 3], wd[c, 4], wd[c, 5], \
            wd[c, 6], wd[c, 7], wd[c, 8]
        bias = bd[c]
        dc = d[c * ldd:c * ldd + M]
        for j in range(M):
            v = bias + w0 * h0[j] + w1 * h1[j] + w2 * h2[j] + w3 * h3[j] + w4 * h4[j] + w5 * h5[j] \
                + w6 * h6[j] + w7 * h7[j] + w8 * h8[j]
            dc[j] = apply_act(v, 2)


@numba.njit(cache=True, inline="always")
def expand_band(x, n, we, be, y0, R, carry, h, ldh):
    """The expanded map of padded rows y0 .. y0+R+1 into h, relu6 and zero border applied.
    With ``carry`` the first two rows are already in h (the previous band's last two):
    only R new rows are multiplied.

    Shapes:
      x: (N, C, H+2, W+2)  we: (C_h, C)  h: (>= C_h*ldh,)
    """
    C, Hp, Wp = x.shape[1], x.shape[2], x.shape[3]
    C_h = we.shape[0]
    r0 = 2 if carry else 0
    sgemm_cm((R + 2 - r0) * Wp, C_h, C, x[n].reshape(-1), (y0 + r0) * Wp, Hp * Wp, we.reshape(-1), 0, C, 0.0,
             h, r0 * Wp, ldh)
    expand_epilogue(h, ldh, be, y0, r0, R + 2, Hp, Wp)


@numba.njit(cache=True, inline="always")
def carry_rows(h, ldh, C_h, R, Wp):
    """Move rows R, R+1 of every channel's band to rows 0, 1 (forward copy: safe when R < 2).

    Shapes:
      h: (>= C_h*ldh,) flat, rows of Wp floats
    """
    for c in range(C_h):
        hc = h[c * ldh:(c + 1) * ldh]
        for i in range(2 * Wp):
            hc[i] = hc[R * Wp + i]


@parallel_kernel(f"{F32_4D}, {F32_2D}, {F32_1D}, {F32_2D}, {F32_1D}, {F32_2D}, {F32_1D}, {F32_4D}, int64, "
                  f"{F32_2D}, {F32_2D}, int64",
                 weight=2.1)
def bottleneck_nchwp(w, x, we, be, wd, bd, wp, bp, out, nb, hid, dwo, T):
    """Inverted residual, fused per row band: out = x + project(relu6(dw3x3(relu6(expand(x))))).

    Worker w takes the contiguous bands [w*nb/T, (w+1)*nb/T) of every image, in order: the
    expanded map of a band (R + 2 rows with the halo) and its depthwise output live in the
    worker's ``hid``/``dwo`` slices (L2-sized) and never reach memory, and the two halo rows
    a band shares with the next are carried over instead of recomputed.

    Shapes:
      x: (N, C, H+2, W+2)  we: (C_h, C)  be: (C_h,)  wd: (C_h, 9)  bd: (C_h,)  wp: (C, C_h)  bp: (C,)
      out: (N, C, H+2, W+2)  hid: (T, C_h * (Rmax+2)*(W+2))  dwo: (T, C_h * Rmax*(W+2)),
      Rmax = max band rows = ceil(H / nb)
    """
    N, C, Hp, Wp = x.shape
    C_h = we.shape[0]
    plane = Hp * Wp
    ldh, ldd = hid.shape[1] // C_h, dwo.shape[1] // C_h
    wpf = wp.reshape(-1)
    b0, b1 = band(w, T, nb)
    h, d = hid[w], dwo[w]
    for n in range(N):
        of = out[n].reshape(-1)
        Rp = 0  # rows of the previous band
        for i in range(b0, b1):
            y0, y1 = band(i, nb, Hp - 2)
            R = y1 - y0
            if i > b0:
                carry_rows(h, ldh, C_h, Rp, Wp)
            expand_band(x, n, we, be, y0, R, i > b0, h, ldh)
            M, q0 = R * Wp - 2, (y0 + 1) * Wp + 1
            depthwise3x3_flat(h, ldh, wd, bd, Wp, M, d, ldd)
            sgemm_cm(M, C, C_h, d, 0, ldd, wpf, 0, C_h, 0.0, of, q0, plane)
            epilogue_nchwp(out, n, 0, y0, y1, bp, x, 0, True, 0)
            Rp = R


@parallel_kernel(f"{F32_4D}, int64, {F32_1D}, {F32_1D}, int64, {F32_4D}, int64, int64",
                 weight=0.45)
def affine_nchwp(w, x, cx, scale, shift, act, out, co, T):
    """out[n, co+c] = act(x[n, cx+c] * scale[c] + shift[c]) on the interior; borders untouched.

    Shapes:
      x: (N, >= cx+C, H+2, W+2)  scale, shift: (C,)  out: (N, >= co+C, H+2, W+2)
    """
    N, Hp, Wp = x.shape[0], x.shape[2], x.shape[3]
    C = scale.shape[0]
    t0, t1 = band(w, T, N * C)
    for t in range(t0, t1):
        n, c = t // C, t % C
        s, h = scale[c], shift[c]
        for y in range(1, Hp - 1):
            xr, orow = x[n, cx + c, y, 1:Wp - 1], out[n, co + c, y, 1:Wp - 1]
            for i in range(xr.shape[0]):
                orow[i] = apply_act(xr[i] * s + h, act)


@numba.njit(cache=True, inline="always")
def max_row2(src, OW, dst):
    """dst[ox] = max(dst[ox], src[2*ox], src[2*ox + 1]) (last window clipped); NaN wins.

    Shapes:
      src: (W,)  dst: (OW,), OW = ceil(W/2) or W//2
    """
    full = min(OW, src.shape[0] // 2)
    for ox in range(full):  # constant stride 2: vectorises with interleaved loads
        dst[ox] = nanmax(nanmax(dst[ox], src[2 * ox]), src[2 * ox + 1])
    if full < OW:
        dst[full] = nanmax(dst[full], src[2 * full])


@parallel_kernel(f"{F32_4D}, int64, int64, int64, {F32_1D}, {F32_1D}, int64, boolean, {F32_4D}, int64, int64",
                 weight=0.95)
def max_pool2d_nchwp(w, x, cx, C, k, scale, shift, act, has_affine, out, co, T):
    """out[n, co+c] = max_pool2d(x[n, cx+c], k, stride k, ceil_mode) on interiors (windows
    clipped to the image, never to the zero border), then, if has_affine, the folded
    BatchNorm that follows it: act(out * scale[c] + shift[c]). NaN propagates.

    Shapes:
      x: (N, >= cx+C, H+2, W+2)  scale, shift: (C,) if has_affine
      out: (N, >= co+C, ceil(H/k)+2, ceil(W/k)+2)
    """
    N, H, W = x.shape[0], x.shape[2] - 2, x.shape[3] - 2
    OH, OW = out.shape[2] - 2, out.shape[3] - 2
    t0, t1 = band(w, T, N * C)
    for t in range(t0, t1):
        n, c = t // C, t % C
        for oy in range(OH):
            orow = out[n, co + c, oy + 1, 1:OW + 1]  # seek to the interior of out[n, co + c, oy + 1]
            for i in range(OW):  # a loop, not orow[:] = ..: numba's slice fill is a slow generic path
                orow[i] = _NEG_INF
            for iy in range(oy * k, min(oy * k + k, H)):
                src = x[n, cx + c, iy + 1, 1:W + 1]
                if k == 2:
                    max_row2(src, OW, orow)
                else:
                    max_row(src, k, OW, orow)
            if has_affine:
                s, h = scale[c], shift[c]
                for i in range(OW):
                    orow[i] = apply_act(orow[i] * s + h, act)


@parallel_kernel(f"{F32_4D}, int64, int64, {_TABLE}, {_TABLE}, {F32_4D}, int64, int64, int64, {F32_2D}, int64",
                 weight=0.7)
def resize_bilinear_nchwp(w, x, cx, C, ytab, xtab, out, co, pad_out, S, scratch, T):
    """Separable bilinear resize of padded interiors, torch's arithmetic order:
    h[y, ox] = x[y, ix0]*lx0 + x[y, ix1]*lx1, then out[oy] = h[iy0]*ly0 + h[iy1]*ly1
    (the same float ops, in the same order, as ``upsample_bilinear_nchw``).

    ``pad_out`` 1: out is padded (interior written); 0: out is a plain NCHW map. Each plane
    is cut into S bands of output rows (tasks N*C*S, dealt to T workers; a band computes
    only the source rows it reads, so bands add at most one h row each).

    Shapes:
      x: (N, >= cx+C, H+2, W+2)  ytab = (iy0, iy1, ly0, ly1): (OH,) each, xtab = (ix0, ix1, lx0, lx1):
      (OW,) each (``bilinear_table``; indices non-decreasing)
      out: (N, >= co+C, OH + 2*pad_out, OW + 2*pad_out)  scratch: (T, >= H*OW)
    """
    N = x.shape[0]
    iy0, iy1 = ytab[0], ytab[1]
    OH, OW = iy0.shape[0], xtab[0].shape[0]
    for t in range(w, N * C * S, T):
        n, c = t // (C * S), (t // S) % C
        oy0, oy1 = band(t % S, S, OH)
        if oy0 == oy1:
            continue
        h = scratch[w, :(iy1[oy1 - 1] + 1 - iy0[oy0]) * OW].reshape(-1, OW)
        resize_band(x, n, cx + c, 1, ytab, xtab, oy0, oy1, h, out, co + c, pad_out)

