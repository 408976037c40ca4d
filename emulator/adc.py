"""The converters of the emulated tiles in Numba: the DAC/ADC quantiser, and the epilogue of a
dense tile (stages 4-6 of ``crossbar.mvm``, the digital partial sum, bias, residual, act).

Every stage repeats the float32 arithmetic of ``emulator.crossbar.mvm`` and
``emulator.quantize.quantize`` operation by operation, so the fast path and the tile-level
reference agree to float32 rounding (tested):

    quantise(v; L, step, bound) = clip(step * clip(rint(v / step), -L, L), -bound, bound)
    L = 0: no quantisation; bound = +inf: no clip.
    noise: v + z * sqrt(x**2 @ read_var + adc_std**2), or v + z * adc_std without read noise.
    per-vector input scaling: the ADC output times the vector's scale s, then the drift scale.

Parameter tables (built by ``emulator.packs``, read by ``emulator.dense`` and
``emulator.depthwise``):

* ``ti`` (tiles, 8) int64 per dense tile: row0, row1, col0, col1, w_off (its weights' offset in
  the flat weight array), first (the first row piece of its columns), last (the last one),
  flags (1: read-noise variance, 2: draws normals);
* ``tf`` (tiles, columns, 5) float32 per dense tile and column (per-column weight scaling
  and drift compensation give each column its own), and the first five columns of a
  depthwise layer's per-channel table: ``TF_ADC_STD, TF_ADC_VAR, TF_OUT_STEP, TF_OUT_BOUND,
  TF_SCALE``;
* ``Epilogue(out_L, bias, residual, has_residual, act)``: the layer's ADC levels per side (0:
  no quantisation), its digital bias (C_out,), the residual added before the act (or a
  placeholder when ``has_residual`` is False) and the act (0 none, 1 relu, 2 relu6).

All functions are ``@njit(cache=True, error_model="numpy")`` (the numpy error model drops
the zero-division checks that keep loops from vectorising: every divisor is a validated,
positive quantiser step) and write into arrays the caller passes in.
"""

from collections import namedtuple

import numba
import numpy as np

from .rng import normal_from_bits, words_into

__all__ = ["Epilogue", "quantise", "adc_into", "adc_scaled_into", "tile_epilogue", "TF_ADC_STD", "TF_ADC_VAR", "TF_OUT_STEP",
           "TF_OUT_BOUND", "TF_SCALE", "BLOCK"]

#: The digital end of a layer on tiles (see the module docstring).
Epilogue = namedtuple("Epilogue", ["out_L", "bias", "residual", "has_residual", "act"])

TF_ADC_STD, TF_ADC_VAR, TF_OUT_STEP, TF_OUT_BOUND, TF_SCALE = range(5)
_ZERO = np.float32(0.0)
_SIX = np.float32(6.0)
BLOCK = 512  # pixels per block of a tile epilogue: its words, y and variance stay in L1


@numba.njit(cache=True, error_model="numpy", inline="always")
def quantise(v, L, step, bound):
    """One float32 value through the mid-tread quantiser and clip (see the module docstring)."""
    if L > 0:
        lf = np.float32(L)
        v = min(max(np.rint(v / step), -lf), lf) * step
    return min(max(v, -bound), bound)


@numba.njit(cache=True, error_model="numpy", inline="always")
def adc_into(y, var, u, has_var, has_z, first, tf, L, o):
    """o[j] (+)= quantise(y[j] (+ z_j * std_j); L, step, bound) * scale for one block: stages 4-6
    of a tile and the digital partial sum (``=`` for the first row piece, ``+=`` after), with
    z_j = normal_from_bits(u[j]) and std_j = sqrt(var[j] + adc_var) (read noise on) or adc_std.
    One simple loop per case (flags tested outside the loops), so each vectorises.

    Shapes: y, var, o: (n,)  u: (>= n,) uint32  tf: (>= 5,) as TF_*
    """
    n = o.shape[0]
    adc_std, adc_var, step, bound, scale = tf[0], tf[1], tf[2], tf[3], tf[4]
    if has_var:
        if first:
            for j in range(n):
                o[j] = quantise(y[j] + normal_from_bits(u[j]) * np.sqrt(var[j] + adc_var), L, step, bound) * scale
        else:
            for j in range(n):
                o[j] += quantise(y[j] + normal_from_bits(u[j]) * np.sqrt(var[j] + adc_var), L, step, bound) * scale
    elif has_z:
        if first:
            for j in range(n):
                o[j] = quantise(y[j] + normal_from_bits(u[j]) * adc_std, L, step, bound) * scale
        else:
            for j in range(n):
                o[j] += quantise(y[j] + normal_from_bits(u[j]) * adc_std, L, step, bound) * scale
    else:
        if first:
            for j in range(n):
                o[j] = quantise(y[j], L, step, bound) * scale
        else:
            for j in range(n):
                o[j] += quantise(y[j], L, step, bound) * scale


@numba.njit(cache=True, error_model="numpy", inline="always")
def adc_scaled_into(y, var, u, has_var, has_z, first, tf, L, sv, o):
    """``adc_into`` with per-vector input scaling: o[j] (+)= quantise(y[j] (+ z_j * std_j); L, step,
    bound) * sv[j] * scale, sv[j] the scale of pixel j's input vector (``crossbar.mvm``: the ADC
    output times s, then the drift-compensation scale, in that order).

    Shapes: y, var, sv, o: (n,)  u: (>= n,) uint32  tf: (>= 5,) as TF_*
    """
    n = o.shape[0]
    adc_std, adc_var, step, bound, scale = tf[0], tf[1], tf[2], tf[3], tf[4]
    if has_var:
        if first:
            for j in range(n):
                v = y[j] + normal_from_bits(u[j]) * np.sqrt(var[j] + adc_var)
                o[j] = quantise(v, L, step, bound) * sv[j] * scale
        else:
            for j in range(n):
                v = y[j] + normal_from_bits(u[j]) * np.sqrt(var[j] + adc_var)
                o[j] += quantise(v, L, step, bound) * sv[j] * scale
    elif has_z:
        if first:
            for j in range(n):
                o[j] = quantise(y[j] + normal_from_bits(u[j]) * adc_std, L, step, bound) * sv[j] * scale
        else:
            for j in range(n):
                o[j] += quantise(y[j] + normal_from_bits(u[j]) * adc_std, L, step, bound) * sv[j] * scale
    else:
        if first:
            for j in range(n):
                o[j] = quantise(y[j], L, step, bound) * sv[j] * scale
        else:
            for j in range(n):
                o[j] += quantise(y[j], L, step, bound) * sv[j] * scale


@numba.njit(cache=True, error_model="numpy", inline="always")
def _finish(o, bias, r, has_residual, act):
    """o = act(o + bias (+ r)): the digital end of a dense tile's last row piece, on one block."""
    n = o.shape[0]
    if has_residual:
        for j in range(n):
            o[j] = o[j] + bias + r[j]
    else:
        for j in range(n):
            o[j] = o[j] + bias
    if act != 0:
        hi = _SIX if act == 2 else np.float32(np.inf)
        for j in range(n):
            o[j] = min(max(o[j], _ZERO), hi)


@numba.njit(cache=True, error_model="numpy")
def tile_epilogue(y, var, ti, tf, key, chunk, ep, sv, out):
    """Stages 4-6 of one dense tile for a chunk of MVMs, the digital partial sum and, after the
    tile's last row piece, bias (+ residual) and act, written straight into ``out``.

    ``chunk = (m, Wp, OW, p0, P, o0, OHW)``: the chunk is m // Wp output rows of Wp products
    each, of which the first OW are output pixels (Wp = OW for im2col chunks; Wp = the padded
    width for the per-tap products, whose last Wp - OW per row are discarded). For tile column
    c (layer column co = col0 + c) and the chunk's pixel j (row-major over its output rows),
    with the draw z = normal_from_bits(word(key, c*P + p0 + j)) (``mvm``'s (P, cols) draw
    transposed, P = the layer call's N*OH*OW pixels, p0 = the chunk's first pixel): ``adc_into``
    then, after the last row piece, out = act(out + b[co] (+ residual)). With per-vector input
    scaling ``sv`` holds the scale of each of the chunk's input vectors (of this tile's row piece,
    laid out as the chunk's products) and ``adc_scaled_into`` multiplies by it; empty: no scaling.

    Shapes:
      y, var: (C_out * m,) as (C_out, m // Wp, Wp)  ti: (8,) int64  tf: (>= cols, 5) float32, row c = column c
      sv: (m,) as (m // Wp, Wp), or (0,)
      out, ep.residual: flat (N*C_out*OH*OW,); out[.., co, pixel j] is out[o0 + co*OHW + j] with
      o0 = the chunk's offset in channel 0 (residual likewise)
    """
    m, Wp, OW, p0, P, o0, OHW = chunk
    col0, cols = ti[2], ti[3] - ti[2]
    first, last, has_var, has_z = ti[5] != 0, ti[6] != 0, (ti[7] & 1) != 0, (ti[7] & 2) != 0
    run, runs = (m, 1) if Wp == OW else (OW, m // Wp)  # contiguous output pixels: one run
    u = np.empty(BLOCK, np.uint32)
    for c in range(cols):  # serial: a chunk's worker runs it (chunks are the parallel axis)
        co = col0 + c
        for j in range(runs):
            yo, oo = co * m + j * Wp, o0 + co * OHW + j * OW
            o = out[oo:oo + run]
            r = ep.residual[oo:oo + run] if ep.has_residual else o
            for j0 in range(0, run, BLOCK):  # blocks: the words apart, then one vectorised loop per case
                j1 = min(j0 + BLOCK, run)
                if has_z:
                    words_into(key, c * P + p0 + j * OW + j0, u[:j1 - j0])
                if sv.shape[0] > 0:
                    adc_scaled_into(y[yo + j0:yo + j1], var[yo + j0:yo + j1], u, has_var, has_z, first, tf[c],
                                    ep.out_L, sv[j * Wp + j0:j * Wp + j1], o[j0:j1])
                else:
                    adc_into(y[yo + j0:yo + j1], var[yo + j0:yo + j1], u, has_var, has_z, first, tf[c], ep.out_L,
                             o[j0:j1])
                if last:
                    _finish(o[j0:j1], ep.bias[co], r[j0:j1], ep.has_residual, ep.act)
