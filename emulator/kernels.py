"""Numba kernels of the emulated conv: fused im2col + DAC, per-tile noise + ADC, depthwise tiles,
and the Gaussian draws they make.

Pure ``@njit(cache=True)`` functions on C-contiguous arrays; they write into
caller-provided arrays, never allocate large buffers and never validate
(``emulator/mapping.py`` does). Randomness comes from the caller: for every
batch of MVMs of one tile it draws one 64-bit ``key`` from its
``np.random.Generator`` and passes it in; the kernel expands the key into as
many normals as it needs (below), so the draws depend only on the caller's
generator and stay the same whatever the thread count.

Every stage repeats the float32 arithmetic of ``emulator.crossbar.mvm`` and
``emulator.quantize.quantize`` operation by operation, so the fast path and
the tile-level reference agree to float32 rounding (tested):

    quantise(v; L, step, bound) = clip(step * clip(rint(v / step), -L, L), -bound, bound)
    L = 0: no quantisation; bound = +inf: no clip.
    noise: v + z * sqrt(x**2 @ read_var + adc_std**2), or v + z * adc_std without read noise.

Gaussian draws. A batch is one tile's MVMs in one layer call (all its M = N*OH*OW
pixels, however the kernel chunks them). Normal i of a batch (i = column * M + m:
column-major over the tile's outputs, ``mvm``'s (M, cols) draw transposed) is
``normal_from_bits(word(key, i))``:

* ``word(key, i)`` = the top 32 bits of SplitMix64's output for the counter
  ``key + (i + 1) * 0x9E3779B97F4A7C15`` (Steele et al., OOPSLA 2014; the
  stream passes BigCrush): a counter-based generator, so any thread can
  compute any draw;
* ``normal_from_bits(u)`` = the inverse normal CDF at p = (u + 0.5) / 2**32,
  read from tables: the 65536 quantiles Phi^-1(i / 65536) with linear
  interpolation between them, and in the two outermost bins (p < 2**-16 or
  p > 1 - 2**-16) the exact quantile of every word. Error against the exact
  quantile: below 1e-6 sigma over the central 99.9 % of draws, at most ~6e-3
  sigma in the bins next to the tails; range ±6.3 sigma.

Why not ``rng.standard_normal``: the emulated f=51 network needs ~10**8
normals per image (one per output of every tile MVM); NumPy's ziggurat costs
about 8.4 ns a draw on the development machine, this about 1.5 ns, computed where
it is used instead of stored and re-read. Tested: mean, std, tail fractions
and symmetry within 4 sigma/sqrt(n), and equality with ``crossbar.mvm`` fed
the same draws.

Parallel loops (``prange``) run over an outer independent axis only: rows of
the unfolded input, columns of a tile, channels of a depthwise layer. The dense
conv (``conv_dense_tiles_nchw``) calls BLAS sgemm from Numba through numba's own
helper ``numba_xxgemm`` (SciPy's cython_blas, as numba's ``np.dot``), outside any
``prange``, so BLAS keeps its own threads. ``noise_adc_accumulate`` and
``epilogue_nchw`` are the stages the fused epilogue replaces, kept as its
reference (tested equal).
"""

import functools

import numba
import numpy as np
from numba import prange, types

from minitnet.kernels.conv import valid_range
from minitnet.kernels.elementwise import apply_act as act_value

_ZERO = np.float32(0.0)
_HALF = np.float32(0.5)
_SIX = np.float32(6.0)
_BIN = np.float32(1.0 / 65536.0)
_BLOCK = 512  # pixels per block of a tile epilogue: its normals stay in L1


@functools.lru_cache(maxsize=1)
def normal_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, D, TAIL) float32 tables of ``normal_from_bits``, built once (scipy's ``ndtri``).

    T[i] = Phi^-1(i / 65536) and D[i] = T[i+1] - T[i] for i = 1..65534 (T[0], D[0], D[65535] unused);
    TAIL[j] = Phi^-1((j + 0.5) / 2**32), j = 0..65535: the lower tail word by word.
    """
    from scipy.special import ndtri

    q = ndtri(np.arange(65537, dtype=np.float64) / 65536.0)  # -inf .. +inf
    T = np.zeros(65536, np.float32)
    T[1:] = q[1:65536]
    D = np.zeros(65536, np.float32)
    D[1:65535] = (q[2:65536] - q[1:65535]).astype(np.float32)
    TAIL = ndtri((np.arange(65536, dtype=np.float64) + 0.5) / 2.0**32).astype(np.float32)
    return T, D, TAIL


_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@numba.njit(cache=True, inline="always")
def word(key, i):
    """32 random bits, the i-th of the stream ``key``: SplitMix64 at counter key + (i + 1) * gamma."""
    z = key + (np.uint64(i) + np.uint64(1)) * _GAMMA
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    z = z ^ (z >> np.uint64(31))
    return np.uint32(z >> np.uint64(32))


@numba.njit(cache=True, inline="always")
def normal_from_bits(u, T, D, TAIL):
    """A standard normal (float32) from one uniform 32-bit word (see the module docstring)."""
    hi = u >> 16
    lo = u & 0xFFFF
    if hi == 0:
        return TAIL[lo]
    if hi == 0xFFFF:
        return -TAIL[0xFFFF - lo]
    return T[hi] + (np.float32(lo) + _HALF) * _BIN * D[hi]


@numba.njit(cache=True, parallel=True)
def normals_from_key(key, T, D, TAIL, out):
    """out[i] = normal_from_bits(word(key, i)): a batch's draws as an array (tests, references).

    Shapes: out: (S,) float32
    """
    for i in prange(out.shape[0]):
        out[i] = normal_from_bits(word(key, i), T, D, TAIL)


@numba.njit(cache=True, inline="always")
def quantise(v, L, step, bound):
    """One float32 value through the mid-tread quantiser and clip (see the module docstring)."""
    if L > 0:
        lf = np.float32(L)
        v = min(max(np.rint(v / step), -lf), lf) * step
    return min(max(v, -bound), bound)


@numba.njit(cache=True, parallel=True)
def im2col_dac_nchw(x, n, KH, KW, stride, padding, oy0, oy1, L, step, bound, col, with_square, sq):
    """Unfold output rows [oy0, oy1) of image n into columns, through each row's DAC.

    col[(ci*KH + ky)*KW + kx, (oy - oy0)*OW + ox] = quantise(x[n, ci, iy, ix]; L, step[r], bound[r])
    with iy = oy*stride + ky - padding, ix = ox*stride + kx - padding, and 0 in the padding.
    Row order (c_in, ky, kx) = ``w.reshape(C_out, -1)``; the DAC of row r is that of the
    tile row piece holding r. With ``with_square`` also sq = col**2 (the read-noise inputs).

    Shapes:
      x: (N, C_in, H, W)  step, bound: (C_in*KH*KW,)  col, sq: (C_in*KH*KW, (oy1 - oy0)*OW)
    """
    H, W = x.shape[2], x.shape[3]
    OW = col.shape[1] // (oy1 - oy0)
    for r in prange(col.shape[0]):
        ci, ky, kx = r // (KH * KW), (r // KW) % KH, r % KW
        s, bnd = step[r], bound[r]
        ox0, ox1 = valid_range(kx, padding, stride, W, OW)
        for oy in range(oy0, oy1):
            dst = col[r, (oy - oy0) * OW:(oy - oy0 + 1) * OW]  # seek to col[r, oy - oy0, :]
            iy = oy * stride + ky - padding
            if iy < 0 or iy >= H:
                dst[:] = _ZERO
            else:
                dst[:ox0] = _ZERO
                dst[ox1:] = _ZERO
                d = dst[ox0:ox1]
                src = x[n, ci, iy, ox0 * stride + kx - padding:]  # 0-based loops: no wraparound checks
                if stride == 1:
                    for i in range(d.shape[0]):
                        d[i] = quantise(src[i], L, s, bnd)
                else:
                    for i in range(d.shape[0]):
                        d[i] = quantise(src[i * stride], L, s, bnd)
            if with_square:
                q = sq[r, (oy - oy0) * OW:(oy - oy0 + 1) * OW]
                for ox in range(OW):
                    q[ox] = dst[ox] * dst[ox]


@numba.njit(cache=True, parallel=True)
def noise_adc_accumulate(y, var, has_var, key, has_z, T, D, TAIL, adc_std, adc_var, L, step, bound, scale,
                         accumulate, acc):
    """Stages 4-6 of one tile and the digital partial sum, for a chunk of M MVMs.

    z = normal_from_bits(word(key, c*M + m))
    v = y[c, m] (+ z * sqrt(var[c, m] + adc_var), or + z * adc_std without read noise)
    v = quantise(v; L, step, bound) * scale
    acc[c, m] (+)= v      (+= when ``accumulate``: a later row piece of the same columns)

    Shapes:
      y, var: (cols, M) (var unused unless has_var)  acc: (cols, M)
    """
    cols, M = y.shape
    for c in prange(cols):
        for m in range(M):
            v = y[c, m]
            if has_z:
                z = normal_from_bits(word(key, c * M + m), T, D, TAIL)
                if has_var:
                    v += z * np.sqrt(var[c, m] + adc_var)
                else:
                    v += z * adc_std
            v = quantise(v, L, step, bound) * scale
            if accumulate:
                acc[c, m] += v
            else:
                acc[c, m] = v


@numba.njit(cache=True, parallel=True)
def epilogue_nchw(acc, b, residual, has_residual, act, n, oy0, out):
    """out[n, co, oy0 + j, :] = act(acc[co, j*OW:(j+1)*OW] + b[co] (+ residual)), digital and exact.

    Shapes:
      acc: (C_out, R*OW)  b: (C_out,)  residual: like out if has_residual  out: (N, C_out, OH, OW)
    """
    OW = out.shape[3]
    R = acc.shape[1] // OW
    for co in prange(acc.shape[0]):
        bias = b[co]
        for j in range(R):
            a = acc[co, j * OW:(j + 1) * OW]
            o = out[n, co, oy0 + j]  # seek to out[n, co, oy0 + j, :]
            if has_residual:
                r = residual[n, co, oy0 + j]
                for ox in range(OW):
                    o[ox] = act_value(a[ox] + bias + r[ox], act)
            else:
                for ox in range(OW):
                    o[ox] = act_value(a[ox] + bias, act)


# --- the fused dense conv: one call per layer -------------------------------------------------

_F32P = types.CPointer(types.float32)
_xxgemm = types.ExternalFunction(  # numba's own BLAS helper (SciPy's cython_blas sgemm), cacheable by name
    "numba_xxgemm",
    types.intc(types.char, types.char, types.char, types.intp, types.intp, types.intp,
               _F32P, _F32P, types.intp, _F32P, types.intp, _F32P, _F32P, types.intp))


@numba.njit(cache=True)
def sgemm_rm(M, N, K, a, a_off, lda, b, b_off, ldb, c, c_off, ldc, alpha_beta):
    """Row-major ``C = A @ B`` on flat float32 arrays with leading dimensions (BLAS sgemm).

    A (M, K) is a[a_off + i*lda + p], B (K, N) is b[b_off + p*ldb + j], C (M, N) is
    c[c_off + i*ldc + j]; alpha_beta = (1, 0). Row-major C = A B is column-major C^T = B^T A^T.
    """
    _xxgemm(ord("s"), ord("N"), ord("N"), N, M, K, alpha_beta[0:].ctypes, b[b_off:].ctypes, ldb,
            a[a_off:].ctypes, lda, alpha_beta[1:].ctypes, c[c_off:].ctypes, ldc)


@numba.njit(cache=True, parallel=True)
def square_rows(a, r0, r1, m):
    """a[r, :m] = a[r, :m]**2 in place for rows r0..r1-1 of the (rows, m) matrix in flat ``a``."""
    for r in prange(r0, r1):
        v = a[r * m:(r + 1) * m]
        for j in range(m):
            v[j] = v[j] * v[j]


@numba.njit(cache=True, parallel=True)
def tile_epilogue_nchw(y, var, col0, cols, m, ti, tf, key, T, D, TAIL, out_L, b, residual, has_residual, act,
                       p0, P, o0, OHW, out):
    """Stages 4-6 of one tile for a chunk of m MVMs, the digital partial sum and, after the
    tile's last row piece, bias (+ residual) and act, written straight into ``out``.

    For tile column c (layer column co = col0 + c) and chunk pixel j, with the draw
    z = normal_from_bits(word(key, c*P + p0 + j)) (``mvm``'s (P, cols) draw transposed,
    P = the layer call's N*OH*OW pixels, p0 = the chunk's first pixel):
      v = y[co, j] (+ z * sqrt(var[co, j] + adc_var), or + z * adc_std without read noise)
      v = quantise(v; out_L, out_step, out_bound) * scale
      s = v (first row piece) or out[..] + v;  out[..] = act(s + b[co] (+ residual)) after the last.
    ti = (row0, row1, col0, col1, w_off, first, last, flags: 1 read variance, 2 draws normals);
    tf = (adc_std, adc_var, out_step, out_bound, scale).

    Shapes:
      y, var: (C_out * m,) as (C_out, m)  out, residual: flat (N*C_out*OH*OW,); out[.., co, pixel j]
      is out[o0 + co*OHW + j] with o0 = the chunk's offset in channel 0 (residual likewise)
    """
    first, last, has_var, has_z = ti[5] != 0, ti[6] != 0, (ti[7] & 1) != 0, (ti[7] & 2) != 0
    adc_std, adc_var, step, bound, scale = tf[0], tf[1], tf[2], tf[3], tf[4]
    for c in prange(cols):
        co = col0 + c
        o = out[o0 + co * OHW:o0 + co * OHW + m]
        r = residual[o0 + co * OHW:o0 + co * OHW + m] if has_residual else o
        z = np.zeros(_BLOCK, np.float32)
        for j0 in range(0, m, _BLOCK):  # blocks: the normals (table lookups) apart, the arithmetic vectorises
            j1 = min(j0 + _BLOCK, m)
            if has_z:
                draws_into(key, c * P + p0 + j0, T, D, TAIL, z[:j1 - j0])
            adc_block(y[co * m + j0:co * m + j1], var[co * m + j0:co * m + j1], z, has_var, has_z, adc_std, adc_var,
                      out_L, step, bound, scale, first, last, b[co], r[j0:j1], has_residual, act, o[j0:j1])


@numba.njit(cache=True, inline="always")
def draws_into(key, i0, T, D, TAIL, z):
    """z[j] = normal_from_bits(word(key, i0 + j)): a block's normals, apart from the arithmetic."""
    for j in range(z.shape[0]):
        z[j] = normal_from_bits(word(key, i0 + j), T, D, TAIL)


@numba.njit(cache=True, inline="always")
def adc_block(y, var, z, has_var, has_z, adc_std, adc_var, L, step, bound, scale, first, last, bias, r,
              has_residual, act, o):
    """o = [act(] [o +] quantise(y [+ z * std]) * scale [+ bias (+ r))]: ``tile_epilogue_nchw`` on one block.
    One simple loop per case (flags tested outside the loops), so each vectorises."""
    n = o.shape[0]
    if first:
        for j in range(n):
            o[j] = _ZERO
    if has_var:
        for j in range(n):
            o[j] += quantise(y[j] + z[j] * np.sqrt(var[j] + adc_var), L, step, bound) * scale
    elif has_z:
        for j in range(n):
            o[j] += quantise(y[j] + z[j] * adc_std, L, step, bound) * scale
    else:
        for j in range(n):
            o[j] += quantise(y[j], L, step, bound) * scale
    if last:
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


@numba.njit(cache=True, parallel=True)
def conv_dense_tiles_nchw(x, KH, KW, stride, padding, in_L, row_step, row_bound, ti, tf, wT, rvT, keys, out_L,
                          T, D, TAIL, b, residual, has_residual, act, R, col, y, var, out):
    """A dense conv on its tiles, the whole layer in one call: for every chunk of R output rows,
    im2col through each row piece's DAC, then per row piece one sgemm per tile (3. matmul),
    the unfolded rows squared in place and one sgemm per tile for the read-noise variance
    ``x**2 @ read_var``, and ``tile_epilogue_nchw`` (4-6 and the digital sums) into ``out``.

    Tiles come in plan order (row pieces ascending) with ti, tf as in ``tile_epilogue_nchw``;
    tile t's w_eff.T (cols, rows) is wT[w_off:], its read_var.T rvT[w_off:] (when flagged).
    Chunks run one after the other (BLAS may thread each product); the stages inside run
    in parallel over rows or columns. Results do not depend on R or the thread count.

    Shapes:
      x: (N, C_in, H, W)  row_step, row_bound: (C_in*KH*KW,)  ti: (tiles, 8) int64  tf: (tiles, 5)
      keys: (tiles,) uint64  col: (>= rows*R*OW,)  y, var: (>= C_out*R*OW,)  out: (N, C_out, OH, OW)
    """
    N, C_out, OH, OW = out.shape
    rows, nt = row_step.shape[0], ti.shape[0]
    ab = np.zeros(2, np.float32)
    ab[0] = 1.0
    of, rf = out.reshape(out.size), residual.reshape(residual.size)
    for n in range(N):
        for oy0 in range(0, OH, R):
            oy1 = min(oy0 + R, OH)
            m = (oy1 - oy0) * OW
            im2col_dac_nchw(x, n, KH, KW, stride, padding, oy0, oy1, in_L, row_step, row_bound,
                            col[:rows * m].reshape(rows, m), False, col[:1].reshape(1, 1))
            p0, o0 = (n * OH + oy0) * OW, n * C_out * OH * OW + oy0 * OW
            t0 = 0
            while t0 < nt:  # one row piece: its tiles t0..t1-1
                t1 = t0 + 1
                while t1 < nt and ti[t1, 0] == ti[t0, 0]:
                    t1 += 1
                r0, r1 = ti[t0, 0], ti[t0, 1]
                sq = False
                for t in range(t0, t1):
                    c0, cols = ti[t, 2], ti[t, 3] - ti[t, 2]
                    sgemm_rm(cols, m, r1 - r0, wT, ti[t, 4], r1 - r0, col, r0 * m, m, y, c0 * m, m, ab)
                    sq |= (ti[t, 7] & 1) != 0
                if sq:
                    square_rows(col, r0, r1, m)
                for t in range(t0, t1):
                    c0, cols = ti[t, 2], ti[t, 3] - ti[t, 2]
                    if (ti[t, 7] & 1) != 0:
                        sgemm_rm(cols, m, r1 - r0, rvT, ti[t, 4], r1 - r0, col, r0 * m, m, var, c0 * m, m, ab)
                    tile_epilogue_nchw(y, var, c0, cols, m, ti[t], tf[t], keys[t], T, D, TAIL, out_L, b, rf,
                                       has_residual, act, p0, N * OH * OW, o0, OH * OW, of)
                t0 = t1


@numba.njit(cache=True, parallel=True)
def dac_planes_nchw(x, L, step, bound, out):
    """out[n, c] = quantise(x[n, c]; L, step[c], bound[c]): each channel through its tile's DAC.

    Shapes: x, out: (N, C, H, W)  step, bound: (C,)
    """
    N, C = x.shape[0], x.shape[1]
    for t in prange(N * C):
        n, c = t // C, t % C
        src, dst = x[n, c].ravel(), out[n, c].ravel()
        s, bnd = step[c], bound[c]
        for i in range(src.shape[0]):
            dst[i] = quantise(src[i], L, s, bnd)


@numba.njit(cache=True, parallel=True)
def depthwise_tiles_nchw(xq, w, rv, has_var, keys, kbase, has_z, T, D, TAIL, adc_std, adc_var,
                         out_L, out_step, out_bound, scale, b, residual, has_residual, act, KH, KW, stride,
                         padding, out):
    """A depthwise layer on block-diagonal tiles, from DAC outputs ``xq`` (``dac_planes_nchw``).

    Column c of its tile sees only its own KH*KW taps (the diagonal block), so each
    output pixel is a KH*KW-term dot with w[c], read-noise variance sum(xq**2 * rv[c]),
    one normal, the ADC and the drift scale of c's tile; then digitally + b[c]
    (+ residual) and act. The normal of pixel p = (n*OH + oy)*OW + ox is draw
    kbase[c] + p of its tile's batch ``keys[c]``: kbase[c] = (c - c0) * N*OH*OW for a
    tile of channels c0.. (``mvm``'s (P, channels) draw, transposed).

    Shapes:
      xq: (N, C, H, W)  w, rv: (C, KH*KW)  keys: (C,) uint64  kbase: (C,) int64  per-channel params: (C,)
      residual: (N, C, OH, OW) if has_residual  out: (N, C, OH, OW)
    """
    N, C, H, W = xq.shape
    OH, OW = out.shape[2], out.shape[3]
    for t in prange(N * C):
        n, c = t // C, t % C
        av_c, sd_c, s_out, b_out, sc, bias = adc_var[c], adc_std[c], out_step[c], out_bound[c], scale[c], b[c]
        key_c = keys[c]
        vrow = np.empty(OW, np.float32)
        for oy in range(OH):
            arow = out[n, c, oy]  # seek to out[n, c, oy, :]: accumulate the dot here
            arow[:] = _ZERO
            vrow[:] = _ZERO
            for ky in range(KH):
                iy = oy * stride + ky - padding
                if iy < 0 or iy >= H:
                    continue
                for kx in range(KW):
                    wk, rk = w[c, ky * KW + kx], rv[c, ky * KW + kx]
                    ox0, ox1 = valid_range(kx, padding, stride, W, OW)
                    ar, vr = arow[ox0:ox1], vrow[ox0:ox1]
                    src = xq[n, c, iy, ox0 * stride + kx - padding:]  # 0-based loops: no wraparound checks
                    if stride == 1:  # a constant stride vectorises
                        for i in range(ar.shape[0]):
                            ar[i] += src[i] * wk
                        if has_var:
                            for i in range(ar.shape[0]):
                                vr[i] += src[i] * src[i] * rk
                    else:
                        for i in range(ar.shape[0]):
                            ar[i] += src[i * stride] * wk
                        if has_var:
                            for i in range(ar.shape[0]):
                                vr[i] += src[i * stride] * src[i * stride] * rk
            if has_z:  # separate loops per case: each stays branch-free over the row
                i0 = kbase[c] + (n * OH + oy) * OW  # draw of out[n, c, oy, 0]
                if has_var:
                    for ox in range(OW):
                        arow[ox] += normal_from_bits(word(key_c, i0 + ox), T, D, TAIL) * np.sqrt(vrow[ox] + av_c)
                else:
                    for ox in range(OW):
                        arow[ox] += normal_from_bits(word(key_c, i0 + ox), T, D, TAIL) * sd_c
            for ox in range(OW):
                arow[ox] = quantise(arow[ox], out_L, s_out, b_out) * sc + bias
            if has_residual:
                rrow = residual[n, c, oy]
                for ox in range(OW):
                    arow[ox] += rrow[ox]
            if act != 0:
                for ox in range(OW):
                    arow[ox] = act_value(arow[ox], act)


@numba.njit(cache=True, parallel=True)
def depthwise_absmax(x, KH, KW, stride, padding, OH, OW, in_L, in_step, in_bound, w, inp_max, out_max):
    """Calibration of depthwise tiles: per channel, max |tap input| and max |noise-free column output|.

    inp_max[c] = max over pixels and taps of |x| as the DAC receives it (0 in the padding);
    out_max[c] = max over pixels of |sum_k quantise(x_k) * w[c, k]| (the ADC input without noise).

    Shapes:
      x: (N, C, H, W)  w: (C, KH*KW)  in_step, in_bound: (C,)  inp_max, out_max: (C,) (updated: max with old)
    """
    N, C, H, W = x.shape
    for c in prange(C):
        mi, mo = inp_max[c], out_max[c]
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
                            a += quantise(v, in_L, in_step[c], in_bound[c]) * w[c, ky * KW + kx]
                    if abs(a) > mo:
                        mo = abs(a)
        inp_max[c], out_max[c] = mi, mo
