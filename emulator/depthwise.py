"""Numba kernels of a depthwise layer on block-diagonal tiles (``emulator/tiles.py``).

Column c of its tile sees only its own KH*KW taps (the diagonal block), so each output
pixel is a KH*KW-term dot with w[c] of the DAC outputs, a read-noise variance
sum(xq**2 * rv[c]), one normal, the ADC and the drift scale of c's tile; then digitally
+ b[c] (+ residual) and act.

Arguments come packed (``emulator.packs`` builds them): ``conv = (KH, KW, stride, padding)``;
``DepthwiseTiles(in_L, w, rv, cp, has_var, has_z)`` with w, rv (C, KH*KW) the w_eff and read
variances per channel and ``cp`` (C, 7) float32 the per-channel table of its tile: columns
``adc.TF_*`` (adc_std, adc_var, out_step, out_bound, scale), then ``CP_IN_STEP``,
``CP_IN_BOUND`` (its DAC); ``groups`` (G, 2) int64, the tiles' channel ranges c0..c1 with
per-vector input scaling (``NO_GROUPS``, empty: none; the DAC of ``cp`` is then that of the
scaled vectors, range 1); ``adc.Epilogue`` (bias, residual, act, ADC levels).

Per-vector input scaling (``_band_per_vector``): the input vector of a pixel on a tile is all
taps of all its channels, so each output pixel has one scale per tile and a tap's input is
quantised per output pixel it serves (quantise(x / s_p)), not once per input pixel.
"""

from collections import namedtuple

import numba
import numpy as np
from numba import prange

from minitnet.kernels.elementwise import apply_act as act_value

from .adc import quantise
from .rng import normal_from_bits, words_into

__all__ = ["DepthwiseTiles", "NO_GROUPS", "CP_IN_STEP", "CP_IN_BOUND", "depthwise_tiles_nchw", "depthwise_absmax"]

NO_GROUPS = np.zeros((0, 2), np.int64)
#: A depthwise layer's tiles as per-channel arrays (see the module docstring).
DepthwiseTiles = namedtuple("DepthwiseTiles", ["in_L", "w", "rv", "cp", "has_var", "has_z", "groups"],
                            defaults=(NO_GROUPS,))
CP_IN_STEP, CP_IN_BOUND = 5, 6

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
_RAW = np.array([0, 0, 0, 0, 0, 1, np.inf], np.float32)  # a cp row whose DAC (with L = 0) is the identity
_DW_RUN = 2048  # outputs per flat run of a 3x3 depthwise band (rounded down to whole rows)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def depthwise_tiles_nchw(x, conv, tiles, keys, kbase, ep, nb, scratch, out):
    """A depthwise layer on its tiles, each plane through its tile's DAC first.

    The normal of pixel p = (n*OH + oy)*OW + ox of channel c is draw kbase[c] + p of its
    tile's batch ``keys[c]``: kbase[c] = (c - c0) * N*OH*OW for a tile of channels c0..
    (``mvm``'s (P, channels) draw, transposed).

    The parallel axis is ``nb`` bands of output rows per image (all channels of a band on
    one worker), as the dense layers' chunks of rows: with the static schedule, a worker
    reads the rows it wrote in the expand conv before and writes those the project conv
    after reads, in its own cache. Per band and channel, the input rows it needs (halo
    included) are quantised into a zero-padded buffer of its thread (their squares beside
    them with read noise on); a 3x3 stride-1 layer then runs each stage as one flat loop
    over the band (``_dw3_band``: on small maps, row loops are mostly remainder), any other
    shape row by row (``_dw_rows``). With per-vector input scaling (``tiles.groups``) a band
    runs tile by tile instead (``_band_per_vector``).

    Shapes:
      x: (N, C, H, W)  keys: (C,) uint64  kbase: (C,) int64  ep.residual: (N, C, OH, OW) if used
      scratch: (threads, P*(H + 2*padding)*(W + 2*padding)), P = 2 (3 with per-vector scaling)
      out: (N, C, OH, OW)
    """
    N, C, H, W = x.shape
    KH, KW, stride, padding = conv
    OH, OW = out.shape[2], out.shape[3]
    Hp, Wp = H + 2 * padding, W + 2 * padding
    taps3 = KH == 3 and KW == 3 and stride == 1  # flat runs over the band (the usual case)
    for job in prange(N * nb):
        n, band = job // nb, job % nb
        oy0, oy1 = band * OH // nb, (band + 1) * OH // nb
        py0 = oy0 * stride  # the band's padded-input rows: py0 .. py0 + rows - 1
        rows = (oy1 - 1) * stride + KH - py0 if oy1 > oy0 else 0
        mine = scratch[numba.get_thread_id()]  # this worker's buffers: no allocation per band
        qf, sf = mine[:rows * Wp], mine[Hp * Wp:Hp * Wp + rows * Wp]  # DAC outputs, zero-padded; their squares
        run = max(Wp, _DW_RUN // Wp * Wp)  # the flat runs of _dw3_band: whole output rows
        acc, vr, u = np.empty(run, np.float32), np.empty(run, np.float32), np.empty(run, np.uint32)
        if tiles.groups.shape[0] > 0 and rows > 0:  # per-vector input scaling: tile by tile
            _band_per_vector(x, conv, mine, (acc, vr, u), (n, oy0, oy1, py0, rows), tiles, keys, kbase, ep, out)
        for c in range(C if rows > 0 and tiles.groups.shape[0] == 0 else 0):
            _dac_rows(x[n, c], py0 - padding, padding, tiles.in_L, tiles.cp[c], qf.reshape(rows, Wp))
            if tiles.has_var:  # the squares: the same roundings as (p * p) * r
                for i in range(rows * Wp):
                    sf[i] = qf[i] * qf[i]
            where = (n, c, oy0, oy1)
            if taps3:
                _dw3_band(mine, acc, vr, u, Wp, where, tiles, keys[c], kbase[c], ep, out)
            else:
                _dw_rows(qf.reshape(rows, Wp), sf.reshape(rows, Wp), where, conv, tiles, keys[c], kbase[c], ep,
                         out)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _dac_rows(plane, iy0, padding, L, cp, qp):
    """qp[lr] = the input row iy0 + lr of ``plane`` through the channel's DAC, zero-padded by
    ``padding`` on both sides (a row outside the plane: all zeros)."""
    H, W = plane.shape
    s_in, b_in = cp[CP_IN_STEP], cp[CP_IN_BOUND]
    for lr in range(qp.shape[0]):
        iy = iy0 + lr
        dst = qp[lr]
        if iy < 0 or iy >= H:
            dst[:] = _ZERO
        else:
            dst[:padding] = _ZERO
            dst[padding + W:] = _ZERO
            src, d = plane[iy], dst[padding:padding + W]
            for ix in range(W):
                d[ix] = quantise(src[ix], L, s_in, b_in)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _taps3(qf, e, Wp, F, wk, dst):
    """dst[i] = the 9-tap sum of flat output i: tap (ky, kx) reads qf[e + ky*Wp + kx + i]."""
    w0, w1, w2, w3, w4, w5, w6, w7, w8 = wk[0], wk[1], wk[2], wk[3], wk[4], wk[5], wk[6], wk[7], wk[8]
    q0, q1, q2 = qf[e:e + F + 2], qf[e + Wp:e + Wp + F + 2], qf[e + 2 * Wp:e + 2 * Wp + F + 2]  # slices: no
    for i in range(F):                                                                # index checks in the loop
        dst[i] = (q0[i] * w0 + q0[i + 1] * w1 + q0[i + 2] * w2 + q1[i] * w3 + q1[i + 1] * w4
                  + q1[i + 2] * w5 + q2[i] * w6 + q2[i + 1] * w7 + q2[i + 2] * w8)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _adc_run(acc, vr, u, F, has_var, has_z, cp, L, bias, sv):
    """acc[i] = quantise(acc[i] (+ z_i * std_i); L, out_step, out_bound) * scale + bias in place
    for i < F (z_i = normal_from_bits(u[i]); std_i as in ``adc.adc_into``); with per-vector
    input scaling (``sv`` not empty) the ADC output times sv[i] first, as ``adc.adc_scaled_into``."""
    sd_c, av_c, s_out, b_out, sc = cp[0], cp[1], cp[2], cp[3], cp[4]
    if sv.shape[0] > 0:
        if has_z and has_var:
            for i in range(F):
                v = acc[i] + normal_from_bits(u[i]) * np.sqrt(vr[i] + av_c)
                acc[i] = quantise(v, L, s_out, b_out) * sv[i] * sc + bias
        elif has_z:
            for i in range(F):
                acc[i] = quantise(acc[i] + normal_from_bits(u[i]) * sd_c, L, s_out, b_out) * sv[i] * sc + bias
        else:
            for i in range(F):
                acc[i] = quantise(acc[i], L, s_out, b_out) * sv[i] * sc + bias
    elif has_z and has_var:
        for i in range(F):
            acc[i] = quantise(acc[i] + normal_from_bits(u[i]) * np.sqrt(vr[i] + av_c), L, s_out, b_out) * sc + bias
    elif has_z:
        for i in range(F):
            acc[i] = quantise(acc[i] + normal_from_bits(u[i]) * sd_c, L, s_out, b_out) * sc + bias
    else:
        for i in range(F):
            acc[i] = quantise(acc[i], L, s_out, b_out) * sc + bias


@numba.njit(cache=True, error_model="numpy", inline="always")
def _store_row(a, ep, n, c, oy, out):
    """out[n, c, oy, :] = act(a (+ residual[n, c, oy, :])): the digital end of one output row."""
    o = out[n, c, oy]
    if ep.has_residual:
        rr = ep.residual[n, c, oy]
        for ox in range(o.shape[0]):
            o[ox] = act_value(a[ox] + rr[ox], ep.act)
    else:
        for ox in range(o.shape[0]):
            o[ox] = act_value(a[ox], ep.act)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _dw3_band(mine, acc, vr, u, Wp, where, t, key, base, ep, out):
    """Channel c of a band of a 3x3 stride-1 depthwise layer on its zero-padded DAC rows
    (``mine[:rows*Wp]``, squares at ``mine[Hp*Wp:]``), as flat runs of output rows: with the
    rows at width Wp (the last Wp - OW of each discarded), output f = r*Wp + ox reads tap
    (ky, kx) at f + ky*Wp + kx, so the 9-tap sums, the variance's and the ADC each run as one
    loop over ``acc.size // Wp`` rows at a time (long loops on small maps, an L1-sized working
    set on large ones); then per output row the residual, act and the store. Sums in the
    general loop's order (taps row by row)."""
    n, c, oy0, oy1 = where
    OH, OW = out.shape[2], out.shape[3]
    B = mine.shape[0] // 2  # Hp * Wp
    rc = max(1, acc.shape[0] // Wp)
    for k0 in range(oy0, oy1, rc):
        nr = min(rc, oy1 - k0)
        F = (nr - 1) * Wp + OW  # flat outputs of rows k0..k0+nr-1, the last row's discarded tail excluded
        e = (k0 - oy0) * Wp  # buffer offset of tap row 0 of output row k0
        _taps3(mine, e, Wp, F, t.w[c], acc)
        if t.has_var:
            _taps3(mine, B + e, Wp, F, t.rv[c], vr)
        if t.has_z:  # each output row's words at its place in the run (the discarded tails keep any bits)
            for r in range(nr):
                words_into(key, base + (n * OH + k0 + r) * OW, u[r * Wp:r * Wp + OW])
        _adc_run(acc, vr, u, F, t.has_var, t.has_z, t.cp[c], ep.out_L, ep.bias[c], acc[:0])
        for r in range(nr):
            _store_row(acc[r * Wp:r * Wp + OW], ep, n, c, k0 + r, out)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _row_taps(rows, lo, stride, KW, wk, dst):
    """dst = sum over taps (ky, kx) of wk[ky*KW + kx] * rows[lo + ky, ox*stride + kx] (taps in order)."""
    OW = dst.shape[0]
    dst[:] = _ZERO
    for ky in range(wk.shape[0] // KW):
        src_row = rows[lo + ky]
        for kx in range(KW):
            wkk = wk[ky * KW + kx]
            if stride == 1:  # a constant stride vectorises
                src = src_row[kx:kx + OW]
                for i in range(OW):
                    dst[i] += src[i] * wkk
            else:
                for i in range(OW):
                    dst[i] += src_row[i * stride + kx] * wkk


@numba.njit(cache=True, error_model="numpy", inline="always")
def _dw_rows(qp, qq, where, conv, t, key, base, ep, out):
    """Channel c of a band of any depthwise layer, output row by output row: the taps, the
    variance's, one normal per output from the row's words, the ADC, bias, residual, act."""
    n, c, oy0, oy1 = where
    stride, KW = conv[2], conv[1]
    OH, OW = out.shape[2], out.shape[3]
    vrow = np.empty(OW, np.float32)
    urow = np.empty(OW, np.uint32)
    for oy in range(oy0, oy1):
        lo = (oy - oy0) * stride  # the buffer row of tap row 0
        arow = out[n, c, oy]  # seek to out[n, c, oy, :]: accumulate the dot here
        _row_taps(qp, lo, stride, KW, t.w[c], arow)
        if t.has_var:
            _row_taps(qq, lo, stride, KW, t.rv[c], vrow)
        if t.has_z:
            words_into(key, base + (n * OH + oy) * OW, urow)
        _adc_run(arow, vrow, urow, OW, t.has_var, t.has_z, t.cp[c], ep.out_L, ep.bias[c], vrow[:0])
        _store_row(arow, ep, n, c, oy, out)


# --- per-vector input scaling: one scale per output pixel and tile ----------------------------

@numba.njit(cache=True, error_model="numpy")
def _band_per_vector(x, conv, mine, bufs, band, t, keys, kbase, ep, out):
    """A band of a depthwise layer with per-vector input scaling, tile by tile. The input vector
    of output pixel p on a tile is the taps of all the tile's channels c0..c1 (``tilewise.mvm_depthwise``),
    so its scale s_p = max |x| over the tile's channels and the pixel's window (1 where 0): the
    max over channels of |x| per input pixel (``_channel_absmax``), then its max over each window
    (``_window_scales``). Then per channel the unquantised zero-padded input rows, each tap read
    as quantise(x / s_p) through the channel's DAC (range 1), the products, and the ADC output
    times s_p (``_dw3_band_scaled``; any other shape ``_dw_rows_scaled``).

    ``mine``: three (H + 2*padding)*(W + 2*padding) planes: input rows, channel max, scales.
    """
    n, oy0, oy1, py0, rows = band
    KH, KW, stride, padding = conv
    H, W = x.shape[2], x.shape[3]
    Wp = W + 2 * padding
    B = (H + 2 * padding) * Wp
    OW = out.shape[3]
    qp, mx = mine[:rows * Wp].reshape(rows, Wp), mine[B:B + rows * Wp].reshape(rows, Wp)
    sv = mine[2 * B:2 * B + (oy1 - oy0) * Wp]  # scales of output (oy, ox) at (oy - oy0) * Wp + ox
    for g in range(t.groups.shape[0]):
        c0, c1 = t.groups[g, 0], t.groups[g, 1]
        _channel_absmax(x[n, c0:c1], py0 - padding, padding, mx)
        _window_scales(mx, KH, KW, stride, OW, sv)
        for c in range(c0, c1):
            _dac_rows(x[n, c], py0 - padding, padding, 0, _RAW, qp)  # unquantised
            where = (n, c, oy0, oy1)
            if KH == 3 and KW == 3 and stride == 1:
                _dw3_band_scaled(mine[:rows * Wp], sv, bufs, Wp, where, t, keys[c], kbase[c], ep, out)
            else:
                _dw_rows_scaled(qp, sv, where, conv, t, keys[c], kbase[c], ep, out)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _channel_absmax(planes, iy0, padding, mx):
    """mx[lr, padding + ix] = max over the channels of |planes[c, iy0 + lr, ix]|, 0 in the padding
    and for rows outside the planes."""
    H, W = planes.shape[1], planes.shape[2]
    mx[:, :] = _ZERO
    for c in range(planes.shape[0]):
        for lr in range(mx.shape[0]):
            iy = iy0 + lr
            if 0 <= iy < H:
                src, d = planes[c, iy], mx[lr, padding:padding + W]
                for ix in range(W):
                    d[ix] = max(d[ix], abs(src[ix]))


@numba.njit(cache=True, error_model="numpy", inline="always")
def _window_scales(mx, KH, KW, stride, OW, sv):
    """sv[r*Wp + ox] = max over the window of output (r, ox) of ``mx`` (1 where 0), for the band's
    output rows r; 1 in each row's discarded tail ox >= OW."""
    Wp = mx.shape[1]
    for r in range(sv.shape[0] // Wp):
        d = sv[r * Wp:(r + 1) * Wp]
        d[:] = _ZERO
        for ky in range(KH):
            row = mx[r * stride + ky]
            for kx in range(KW):
                if stride == 1:  # a constant stride vectorises
                    src = row[kx:kx + OW]
                    for i in range(OW):
                        d[i] = max(d[i], src[i])
                else:
                    for i in range(OW):
                        d[i] = max(d[i], row[i * stride + kx])
        for i in range(Wp):
            d[i] = d[i] if d[i] > _ZERO else _ONE


@numba.njit(cache=True, error_model="numpy", inline="always")
def _scaled9(q0, q1, q2, i, s, L, step, bound):
    """The 9 taps of flat output i, each quantise(x / s) (the DAC of the scaled vector)."""
    return (quantise(q0[i] / s, L, step, bound), quantise(q0[i + 1] / s, L, step, bound),
            quantise(q0[i + 2] / s, L, step, bound), quantise(q1[i] / s, L, step, bound),
            quantise(q1[i + 1] / s, L, step, bound), quantise(q1[i + 2] / s, L, step, bound),
            quantise(q2[i] / s, L, step, bound), quantise(q2[i + 1] / s, L, step, bound),
            quantise(q2[i + 2] / s, L, step, bound))


@numba.njit(cache=True, error_model="numpy", inline="always")
def _taps3_scaled(qf, e, Wp, F, s, L, cp, wk, rk, has_var, dst, vdst):
    """``_taps3`` with per-vector scaling: dst[i] = sum_k quantise(x_k / s[i]) * wk[k] over the 9
    taps of flat output i (x_k unquantised), and with ``has_var`` vdst[i] = sum_k (v_k * v_k) * rk[k]."""
    step, bound = cp[CP_IN_STEP], cp[CP_IN_BOUND]
    w0, w1, w2, w3, w4, w5, w6, w7, w8 = wk[0], wk[1], wk[2], wk[3], wk[4], wk[5], wk[6], wk[7], wk[8]
    q0, q1, q2 = qf[e:e + F + 2], qf[e + Wp:e + Wp + F + 2], qf[e + 2 * Wp:e + 2 * Wp + F + 2]
    for i in range(F):
        v = _scaled9(q0, q1, q2, i, s[i], L, step, bound)
        dst[i] = (v[0] * w0 + v[1] * w1 + v[2] * w2 + v[3] * w3 + v[4] * w4 + v[5] * w5 + v[6] * w6
                  + v[7] * w7 + v[8] * w8)
    if has_var:
        r0, r1, r2, r3, r4, r5, r6, r7, r8 = rk[0], rk[1], rk[2], rk[3], rk[4], rk[5], rk[6], rk[7], rk[8]
        for i in range(F):
            v = _scaled9(q0, q1, q2, i, s[i], L, step, bound)
            vdst[i] = (v[0] * v[0] * r0 + v[1] * v[1] * r1 + v[2] * v[2] * r2 + v[3] * v[3] * r3
                       + v[4] * v[4] * r4 + v[5] * v[5] * r5 + v[6] * v[6] * r6 + v[7] * v[7] * r7
                       + v[8] * v[8] * r8)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _dw3_band_scaled(qf, sv, bufs, Wp, where, t, key, base, ep, out):
    """``_dw3_band`` with per-vector scaling: channel c of a band of a 3x3 stride-1 layer on its
    unquantised zero-padded rows ``qf`` and the band's scales ``sv`` (rows at width Wp, as the
    flat outputs)."""
    n, c, oy0, oy1 = where
    acc, vr, u = bufs
    OH, OW = out.shape[2], out.shape[3]
    rc = max(1, acc.shape[0] // Wp)
    for k0 in range(oy0, oy1, rc):
        nr = min(rc, oy1 - k0)
        F = (nr - 1) * Wp + OW
        e = (k0 - oy0) * Wp  # buffer offset of tap row 0 of output row k0, and of its scales
        s = sv[e:e + F]
        _taps3_scaled(qf, e, Wp, F, s, t.in_L, t.cp[c], t.w[c], t.rv[c], t.has_var, acc, vr)
        if t.has_z:
            for r in range(nr):
                words_into(key, base + (n * OH + k0 + r) * OW, u[r * Wp:r * Wp + OW])
        _adc_run(acc, vr, u, F, t.has_var, t.has_z, t.cp[c], ep.out_L, ep.bias[c], s)
        for r in range(nr):
            _store_row(acc[r * Wp:r * Wp + OW], ep, n, c, k0 + r, out)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _dw_rows_scaled(qp, sv, where, conv, t, key, base, ep, out):
    """``_dw_rows`` with per-vector scaling (any shape): each tap quantise(x / s) of its output's
    scale, the products and the variance's in tap order, the ADC output times s."""
    n, c, oy0, oy1 = where
    KW, stride = conv[1], conv[2]
    OH, OW = out.shape[2], out.shape[3]
    L, step, bound = t.in_L, t.cp[c, CP_IN_STEP], t.cp[c, CP_IN_BOUND]
    wk, rk = t.w[c], t.rv[c]
    vrow, urow = np.zeros(OW, np.float32), np.empty(OW, np.uint32)
    for oy in range(oy0, oy1):
        s = sv[(oy - oy0) * qp.shape[1]:(oy - oy0) * qp.shape[1] + OW]
        arow = out[n, c, oy]
        arow[:] = _ZERO
        vrow[:] = _ZERO
        for k in range(wk.shape[0]):
            src = qp[(oy - oy0) * stride + k // KW]
            kx = k % KW
            for i in range(OW):
                v = quantise(src[i * stride + kx] / s[i], L, step, bound)
                arow[i] += v * wk[k]
                vrow[i] += v * v * rk[k]
        if t.has_z:
            words_into(key, base + (n * OH + oy) * OW, urow)
        _adc_run(arow, vrow, urow, OW, t.has_var, t.has_z, t.cp[c], ep.out_L, ep.bias[c], s)
        _store_row(arow, ep, n, c, oy, out)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def depthwise_absmax(x, conv, in_L, cp, w, inp_max, out_max):
    """Calibration of depthwise tiles: per channel, max |tap input| and max |noise-free column output|.

    inp_max[c] = max over pixels and taps of |x| as the DAC receives it (0 in the padding);
    out_max[c] = max over pixels of |sum_k quantise(x_k) * w[c, k]| (the ADC input without noise).

    Shapes:
      x: (N, C, H, W)  w: (C, KH*KW)  cp: (C, 7)  inp_max, out_max: (C,) (updated: max with old)
    """
    N, C, H, W = x.shape
    KH, KW, stride, padding = conv
    OH, OW = (H + 2 * padding - KH) // stride + 1, (W + 2 * padding - KW) // stride + 1
    for c in prange(C):
        mi, mo = inp_max[c], out_max[c]
        s_in, b_in = cp[c, CP_IN_STEP], cp[c, CP_IN_BOUND]
        for n in range(N):
            for oy in range(OH):
                for ox in range(OW):
                    a = _ZERO
                    for ky in range(KH):
                        iy = oy * stride + ky - padding
                        for kx in range(KW):
                            ix = ox * stride + kx - padding
                            v = _ZERO
                            if 0 <= iy < H and 0 <= ix < W:
                                v = x[n, c, iy, ix]
                            if abs(v) > mi:
                                mi = abs(v)
                            a += quantise(v, in_L, s_in, b_in) * w[c, ky * KW + kx]
                    if abs(a) > mo:
                        mo = abs(a)
        inp_max[c], out_max[c] = mi, mo
