"""Numba kernels of the emulated conv: fused im2col + DAC, per-tile noise + ADC, depthwise tiles,
and the Gaussian draws they make.

Pure ``@njit(cache=True, error_model="numpy")`` functions on C-contiguous arrays (the
numpy error model drops the zero-division checks that keep loops from vectorising: every
divisor is a validated, positive quantiser step); they write into
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

* ``word(key, i)`` = half of SplitMix64's output for the counter
  ``key + (i // 2 + 1) * 0x9E3779B97F4A7C15`` (Steele et al., OOPSLA 2014; the
  stream passes BigCrush as 64-bit words), the high half for even i, the low
  half for odd i: a counter-based generator, so any thread can compute any draw;
* ``normal_from_bits(u)`` = the inverse normal CDF of the low 31 bits, signed by
  the top bit: with v = u mod 2**31 and w = float32(float32(v) + 1/2) (exact for
  v < 2**23, rounded to 24 bits above, capped below 2**31), the draw is
  ``-Phi^-1(w / 2**32)`` if u's top bit is set, else its negative. ``-Phi^-1`` comes
  from a line per 1/256 of an octave of w: the float's exponent and top 8
  mantissa bits index a table of 8192 lines (64 KiB; 99.98 % of draws read the
  12 top octaves, 24 KiB, which stay in L1), its low 15 bits are the position on
  the line. No branch, so the loop vectorises (8 lines gathered at a time), and
  no separate tail: the octaves make the lines dense where the quantile curves.
  Error against the exact quantile (float64 ``ndtri``, tested on the extreme
  words and 2 million others): 5.6e-7 for |z| <= 2.5, 6.4e-7 anywhere; range
  ±6.34.

Why not ``rng.standard_normal``: the emulated f=51 network needs ~10**8
normals per image (one per output of every tile MVM); NumPy's ziggurat costs
about 8 ns a draw on the development machine, this about 0.7 ns (0.25 the
words, 0.45 the transform), computed next to where it is used instead of stored
and re-read. Tested: mean, std, tail fractions and symmetry within
4 sigma/sqrt(n), the transform against ``ndtri``, the block generator against
the word-by-word one, and equality with ``crossbar.mvm`` fed the same draws.

Dense convs take one of two paths to the same tile products: ``conv_dense_tiles_nchw``
unfolds chunks of output rows (im2col through the DAC) for one sgemm per tile, and
``conv_dense_taps_nchw`` (stride 1, kernels over 1x1: no 9x unfolded copy) quantises
zero-padded input planes once per row piece and sums one sgemm per tap. Parallel
loops (``prange``) run over an outer independent axis only: rows of the unfolded
input, plane rows, chunks of output rows of a dense layer (each worker unfolds,
multiplies and writes its own rows), planes of a depthwise layer. The sgemm calls
are the engine's ``minitnet.kernels.blas.sgemm_cm`` (numba's helper for SciPy's
cython_blas), made from the workers: BLAS must run single-threaded meanwhile
(``mapping`` wraps every layer call in ``blas.single_threaded_blas``; a
multi-threaded OpenBLAS spinning next to numba's workers on 2 cores measured ~100x
slower). ``noise_adc_accumulate`` and
``epilogue_nchw`` are the stages the fused epilogue replaces, kept as its
reference (tested equal).
"""

import numba
import numpy as np
from llvmlite import ir as llvm_ir
from numba import prange, types
from numba.extending import intrinsic

from minitnet.kernels.blas import sgemm_cm
from minitnet.kernels.conv import valid_range
from minitnet.kernels.elementwise import apply_act as act_value

_ZERO = np.float32(0.0)
_HALF = np.float32(0.5)
_SIX = np.float32(6.0)
_DW_RUN = 2048  # outputs per flat run of a 3x3 depthwise band (rounded down to whole rows)
_BLOCK = 512  # pixels per block of a tile epilogue: its words, y and variance stay in L1


_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@numba.njit(cache=True, error_model="numpy", inline="always")
def hash64(key, c):
    """SplitMix64's 64-bit output for the counter key + (c + 1) * gamma."""
    z = key + (np.uint64(c) + np.uint64(1)) * _GAMMA
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, error_model="numpy", inline="always")
def word(key, i):
    """32 random bits, the i-th of the stream ``key``: the high half of hash64(key, i // 2) for
    even i, its low half for odd i (both halves of one SplitMix64 output)."""
    h = hash64(key, np.uint64(i) >> np.uint64(1))
    return np.uint32(h >> np.uint64(32)) if (i & 1) == 0 else np.uint32(h & np.uint64(0xFFFFFFFF))


@intrinsic
def _f32_bits(typingctx, x):
    """The IEEE bits of a float32 as a uint32 (a bitcast)."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], llvm_ir.IntType(32))
    return types.uint32(types.float32), codegen


_OCTAVES = 32      # w in [2**-1, 2**31): exponent fields 126..157
_SUB_BITS = 8     # 256 sub-bins per octave (the top mantissa bits)
_T_BITS = 23 - _SUB_BITS


def _octave_table() -> np.ndarray:
    """The lines of ``normal_from_bits``: for octave o (w = v + 1/2 in [2**(o-1), 2**o)) and sub-bin s
    (w = 2**(o-1) * (1 + (s + t) / 256), t in [0, 1)), a0 + a1 * t interpolates -Phi^-1(w / 2**32) (scipy's
    float64 ``ndtri``, rounded once) at the two Chebyshev nodes of [0, 1]. Flat float32 (32 * 256 * 2,):
    entry 2k holds a0, 2k + 1 holds a1 of line k = o * 256 + s. 64 KiB, but a draw reads octaves 20-31
    (w >= 2**19, 24 KiB of lines) with probability 1 - 2**-12: the lines in use stay in L1."""
    from scipy.special import ndtri

    sub = 1 << _SUB_BITS
    nodes = 0.5 - 0.5 * np.cos(np.array([1, 3]) * np.pi / 4)
    o = np.arange(_OCTAVES)[:, None, None]
    s = np.arange(sub)[None, :, None]
    w = 2.0 ** (o - 1.0) * (1.0 + (s + nodes) / sub)
    f = -ndtri(np.minimum(w / 2.0**32, 0.5)).reshape(-1, 2)        # values at the nodes
    a1 = (f[:, 1] - f[:, 0]) / (nodes[1] - nodes[0])
    a0 = f[:, 0] - a1 * nodes[0]
    return np.stack([a0, a1], axis=1).astype(np.float32).ravel()


_LINES = _octave_table()
_LINE0 = np.uint32((126 << 23) >> _T_BITS)    # exponent field 126 (w = 1/2), sub-bin 0
_LINE_MASK = np.uint32(_OCTAVES * (1 << _SUB_BITS) - 1)
_W_MAX = np.float32(2.0**31 - 128)  # the largest float32 below 2**31
_T_MASK = np.uint32((1 << _T_BITS) - 1)
_T_SCALE = np.float32(2.0**-_T_BITS)


@numba.njit(cache=True, error_model="numpy", inline="always")
def normal_from_bits(u):
    """A standard normal (float32) from one uniform 32-bit word, branch-free (vectorises): with
    v = u mod 2**31 and w = float32(float32(v) + 1/2), the value is -Phi^-1(w / 2**32) (>= 0) if
    u's top bit is set, else its negative; -Phi^-1 by the line of w's octave and sub-bin
    (``_octave_table``), read from w's IEEE bits (see the module docstring)."""
    w = min(np.float32(np.int32(u & np.uint32(0x7FFFFFFF))) + _HALF, _W_MAX)
    bits = _f32_bits(w)
    k = np.uint32(2) * (((bits >> np.uint32(_T_BITS)) - _LINE0) & _LINE_MASK)  # 32-bit: dword gathers
    t = (np.float32(np.int32(bits & _T_MASK)) + _HALF) * _T_SCALE
    a = _LINES[k] + _LINES[k + np.uint32(1)] * t
    return a if (u >> np.uint32(31)) != 0 else -a


@numba.njit(cache=True, error_model="numpy", parallel=True)
def normals_of_words(u, out):
    """out[i] = normal_from_bits(u[i]) (tests of the transform).

    Shapes: u: (S,) uint32  out: (S,) float32
    """
    for i in prange(u.shape[0]):
        out[i] = normal_from_bits(u[i])


@numba.njit(cache=True, error_model="numpy", parallel=True)
def normals_from_key(key, out):
    """out[i] = normal_from_bits(word(key, i)): a batch's draws as an array (tests, references).

    Shapes: out: (S,) float32
    """
    for b in prange((out.shape[0] + _BLOCK - 1) // _BLOCK):
        draws_into(key, b * _BLOCK, out[b * _BLOCK:(b + 1) * _BLOCK])


@numba.njit(cache=True, error_model="numpy")
def draws_block(key, i0, z):
    """``draws_into`` as a callable kernel (tests): z[j] = normal_from_bits(word(key, i0 + j))."""
    draws_into(key, i0, z)


@numba.njit(cache=True, error_model="numpy", inline="always")
def quantise(v, L, step, bound):
    """One float32 value through the mid-tread quantiser and clip (see the module docstring)."""
    if L > 0:
        lf = np.float32(L)
        v = min(max(np.rint(v / step), -lf), lf) * step
    return min(max(v, -bound), bound)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def im2col_dac_nchw(x, n, KH, KW, stride, padding, oy0, oy1, L, step, bound, col, with_square, sq):
    """Unfold output rows [oy0, oy1) of image n into columns, through each row's DAC.

    col[(ci*KH + ky)*KW + kx, (oy - oy0)*OW + ox] = quantise(x[n, ci, iy, ix]; L, step[r], bound[r])
    with iy = oy*stride + ky - padding, ix = ox*stride + kx - padding, and 0 in the padding.
    Row order (c_in, ky, kx) = ``w.reshape(C_out, -1)``; the DAC of row r is that of the
    tile row piece holding r. With ``with_square`` also sq = col**2 (the read-noise inputs).

    Shapes:
      x: (N, C_in, H, W)  step, bound: (C_in*KH*KW,)  col, sq: (C_in*KH*KW, (oy1 - oy0)*OW)
    """
    for r in prange(col.shape[0]):
        im2col_row(x, n, KH, KW, stride, padding, oy0, oy1, L, step, bound, col, r)
        if with_square:
            q, d = sq[r], col[r]
            for j in range(q.shape[0]):
                q[j] = d[j] * d[j]


@numba.njit(cache=True, error_model="numpy", inline="always")
def im2col_row(x, n, KH, KW, stride, padding, oy0, oy1, L, step, bound, col, r):
    """Row r of ``im2col_dac_nchw``'s col (no square)."""
    H, W = x.shape[2], x.shape[3]
    OW = col.shape[1] // (oy1 - oy0)
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


@numba.njit(cache=True, error_model="numpy", parallel=True)
def noise_adc_accumulate(y, var, has_var, key, has_z, adc_std, adc_var, L, step, bound, scale,
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
                z = normal_from_bits(word(key, c * M + m))
                if has_var:
                    v += z * np.sqrt(var[c, m] + adc_var)
                else:
                    v += z * adc_std
            v = quantise(v, L, step, bound) * scale
            if accumulate:
                acc[c, m] += v
            else:
                acc[c, m] = v


@numba.njit(cache=True, error_model="numpy", parallel=True)
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

@numba.njit(cache=True, error_model="numpy", inline="always")
def sgemm_rm(M, N, K, a, a_off, lda, b, b_off, ldb, c, c_off, ldc, beta):
    """Row-major ``C = A @ B + beta*C`` on flat float32 arrays with leading dimensions (BLAS sgemm):
    A (M, K) is a[a_off + i*lda + p], B (K, N) is b[b_off + p*ldb + j], C (M, N) is
    c[c_off + i*ldc + j]. Row-major C = A B is column-major C^T = B^T A^T: the engine's ``sgemm_cm``."""
    sgemm_cm(N, M, K, b, b_off, ldb, a, a_off, lda, beta, c, c_off, ldc)


@numba.njit(cache=True, error_model="numpy")
def square_rows(a, r0, r1, m):
    """a[r, :m] = a[r, :m]**2 in place for rows r0..r1-1 of the (rows, m) matrix in flat ``a``."""
    for r in range(r0, r1):
        v = a[r * m:(r + 1) * m]
        for j in range(m):
            v[j] = v[j] * v[j]


@numba.njit(cache=True, error_model="numpy")
def tile_epilogue_nchw(y, var, col0, cols, m, Wp, OW, ti, tf, key, out_L, b, residual, has_residual, act,
                       p0, P, o0, OHW, out):
    """Stages 4-6 of one tile for a chunk of MVMs, the digital partial sum and, after the
    tile's last row piece, bias (+ residual) and act, written straight into ``out``.

    The chunk is m // Wp output rows of Wp products each, of which the first OW are output
    pixels (Wp = OW for im2col chunks; Wp = the padded width for the per-tap products, whose
    last Wp - OW per row are discarded). For tile column c (layer column co = col0 + c) and
    the chunk's pixel j (row-major over its output rows), with the draw
    z = normal_from_bits(word(key, c*P + p0 + j)) (``mvm``'s (P, cols) draw transposed,
    P = the layer call's N*OH*OW pixels, p0 = the chunk's first pixel):
      v = y[co, j] (+ z * sqrt(var[co, j] + adc_var), or + z * adc_std without read noise)
      v = quantise(v; out_L, out_step, out_bound) * scale
      s = v (first row piece) or out[..] + v;  out[..] = act(s + b[co] (+ residual)) after the last.
    ti = (row0, row1, col0, col1, w_off, first, last, flags: 1 read variance, 2 draws normals);
    tf = (adc_std, adc_var, out_step, out_bound, scale).

    Shapes:
      y, var: (C_out * m,) as (C_out, m // Wp, Wp)  out, residual: flat (N*C_out*OH*OW,); out[.., co,
      pixel j] is out[o0 + co*OHW + j] with o0 = the chunk's offset in channel 0 (residual likewise)
    """
    first, last, has_var, has_z = ti[5] != 0, ti[6] != 0, (ti[7] & 1) != 0, (ti[7] & 2) != 0
    adc_std, adc_var, step, bound, scale = tf[0], tf[1], tf[2], tf[3], tf[4]
    run, runs = (m, 1) if Wp == OW else (OW, m // Wp)  # contiguous output pixels: one run
    u = np.empty(_BLOCK, np.uint32)
    for c in range(cols):  # serial: a chunk's worker runs it (chunks are the parallel axis)
        co = col0 + c
        for j in range(runs):
            yo, oo = co * m + j * Wp, o0 + co * OHW + j * OW
            o = out[oo:oo + run]
            r = residual[oo:oo + run] if has_residual else o
            for j0 in range(0, run, _BLOCK):  # blocks: the words apart, then one vectorised loop per case
                j1 = min(j0 + _BLOCK, run)
                if has_z:
                    words_into(key, c * P + p0 + j * OW + j0, u[:j1 - j0])
                adc_block(y[yo + j0:yo + j1], var[yo + j0:yo + j1], u, has_var, has_z, adc_std, adc_var,
                          out_L, step, bound, scale, first, last, b[co], r[j0:j1], has_residual, act, o[j0:j1])


@numba.njit(cache=True, error_model="numpy", inline="always")
def words_into(key, i0, u):
    """u[j] = word(key, i0 + j), two words per hash (vectorised)."""
    n = u.shape[0]
    j0 = 0
    if (i0 & 1) != 0 and n > 0:  # an odd first index: the low half of its hash
        u[0] = word(key, i0)
        j0 = 1
    c0 = np.uint64(i0 + j0) >> np.uint64(1)
    for q in range((n - j0) >> 1):
        h = hash64(key, c0 + np.uint64(q))
        u[j0 + 2 * q] = np.uint32(h >> np.uint64(32))
        u[j0 + 2 * q + 1] = np.uint32(h & np.uint64(0xFFFFFFFF))
    if ((n - j0) & 1) != 0:
        u[n - 1] = word(key, i0 + n - 1)


@numba.njit(cache=True, error_model="numpy", inline="always")
def draws_into(key, i0, z):
    """z[j] = normal_from_bits(word(key, i0 + j)): the words into z's memory, then the transform
    in place (vectorised: eight table lines gathered at a time)."""
    u = z.view(np.uint32)
    words_into(key, i0, u)
    for j in range(z.shape[0]):
        z[j] = normal_from_bits(u[j])


@numba.njit(cache=True, error_model="numpy", inline="always")
def adc_block(y, var, u, has_var, has_z, adc_std, adc_var, L, step, bound, scale, first, last, bias, r,
              has_residual, act, o):
    """o = [act(] [o +] quantise(y [+ z * std]) * scale [+ bias (+ r))]: ``tile_epilogue_nchw`` on one block,
    z = normal_from_bits(u) (the words' transform done in the same loop: no store and reload of z).
    One simple loop per case (flags tested outside the loops), so each vectorises."""
    n = o.shape[0]
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


@numba.njit(cache=True, error_model="numpy", parallel=True)
def conv_dense_tiles_nchw(x, KH, KW, stride, padding, in_L, row_step, row_bound, ti, tf, wT, rvT, keys, out_L,
                          b, residual, has_residual, act, R, scratch, out):
    """A dense conv on its tiles, the whole layer in one call: for every chunk of R output rows,
    im2col through each row piece's DAC, then per row piece one sgemm per tile (3. matmul),
    the unfolded rows squared in place and one sgemm per tile for the read-noise variance
    ``x**2 @ read_var``, and ``tile_epilogue_nchw`` (4-6 and the digital sums) into ``out``.

    Tiles come in plan order (row pieces ascending) with ti, tf as in ``tile_epilogue_nchw``;
    tile t's w_eff.T (cols, rows) is wT[w_off:], its read_var.T rvT[w_off:] (when flagged).
    Chunks are the parallel axis: each worker unfolds its chunk, multiplies (BLAS must be
    single-threaded meanwhile) and writes its output rows. Results do not depend on R or
    the thread count (the draws are indexed by pixel, the sums are per chunk).

    Shapes:
      x: (N, C_in, H, W)  row_step, row_bound: (C_in*KH*KW,)  ti: (tiles, 8) int64  tf: (tiles, 5)
      keys: (tiles,) uint64  scratch: (threads, (rows + 2*C_out) * R*OW) (one row per worker)
      out: (N, C_out, OH, OW)
    """
    N, C_out, OH, OW = out.shape
    rows, nt = row_step.shape[0], ti.shape[0]
    nch = (OH + R - 1) // R
    of, rf = out.reshape(out.size), residual.reshape(residual.size)
    for job in prange(N * nch):
        n, oy0 = job // nch, (job % nch) * R
        oy1 = min(oy0 + R, OH)
        m = (oy1 - oy0) * OW
        mine = scratch[numba.get_thread_id()]  # this worker's buffers: no allocation per chunk
        col = mine[:rows * m].reshape(rows, m)
        y = mine[rows * m:(rows + C_out) * m]
        var = mine[(rows + C_out) * m:(rows + 2 * C_out) * m]
        for r in range(rows):
            im2col_row(x, n, KH, KW, stride, padding, oy0, oy1, in_L, row_step, row_bound, col, r)
        cf = col.reshape(rows * m)
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
                sgemm_rm(cols, m, r1 - r0, wT, ti[t, 4], r1 - r0, cf, r0 * m, m, y, c0 * m, m, 0.0)
                sq |= (ti[t, 7] & 1) != 0
            if sq:
                square_rows(cf, r0, r1, m)
            for t in range(t0, t1):
                c0, cols = ti[t, 2], ti[t, 3] - ti[t, 2]
                if (ti[t, 7] & 1) != 0:
                    sgemm_rm(cols, m, r1 - r0, rvT, ti[t, 4], r1 - r0, cf, r0 * m, m, var, c0 * m, m, 0.0)
                tile_epilogue_nchw(y, var, c0, cols, m, OW, OW, ti[t], tf[t], keys[t], out_L, b, rf,
                                   has_residual, act, p0, N * OH * OW, o0, OH * OW, of)
            t0 = t1


@numba.njit(cache=True, error_model="numpy", parallel=True)
def depthwise_tiles_nchw(x, in_L, in_step, in_bound, w, rv, has_var, keys, kbase, has_z, adc_std,
                         adc_var, out_L, out_step, out_bound, scale, b, residual, has_residual, act, KH, KW, stride,
                         padding, nb, scratch, out):
    """A depthwise layer on block-diagonal tiles, each plane through its tile's DAC first.

    Column c of its tile sees only its own KH*KW taps (the diagonal block), so each
    output pixel is a KH*KW-term dot with w[c] of the DAC outputs quantise(x; in_L,
    in_step[c], in_bound[c]), read-noise variance sum(xq**2 * rv[c]), one normal, the ADC
    and the drift scale of c's tile; then digitally + b[c] (+ residual) and act. The normal
    of pixel p = (n*OH + oy)*OW + ox is draw kbase[c] + p of its tile's batch ``keys[c]``:
    kbase[c] = (c - c0) * N*OH*OW for a tile of channels c0.. (``mvm``'s (P, channels)
    draw, transposed).

    The parallel axis is ``nb`` bands of output rows per image (all channels of a band on
    one worker), as the dense layers' chunks of rows: with the static schedule, a worker
    reads the rows it wrote in the expand conv before and writes those the project conv
    after reads, in its own cache. Per band and channel, the input rows it needs (halo
    included) are quantised into a zero-padded buffer of its thread (their squares beside
    them with read noise on); a 3x3 stride-1 layer then runs each stage as one flat loop
    over the band (``_dw3_band``: on a 23x30 map, row loops of 30 were mostly remainder),
    any other shape row by row (``_dw_rows``).

    Shapes:
      x: (N, C, H, W)  w, rv: (C, KH*KW)  keys: (C,) uint64  kbase: (C,) int64  per-channel params: (C,)
      residual: (N, C, OH, OW) if has_residual  scratch: (threads, 2*(H + 2*padding)*(W + 2*padding))
      out: (N, C, OH, OW)
    """
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    Hp, Wp = H + 2 * padding, W + 2 * padding
    taps3 = KH == 3 and KW == 3 and stride == 1  # flat runs over the band (the usual case)
    for job in prange(N * nb):
        n, band = job // nb, job % nb
        oy0, oy1 = band * OH // nb, (band + 1) * OH // nb
        py0 = oy0 * stride  # the band's padded-input rows: py0 .. py0 + rows - 1
        rows = (oy1 - 1) * stride + KH - py0 if oy1 > oy0 else 0
        mine = scratch[numba.get_thread_id()]  # this worker's buffers: no allocation per band
        qp = mine[:rows * Wp].reshape(rows, Wp)  # the DAC outputs, zero-padded (rows <= Hp)
        qq = mine[Hp * Wp:Hp * Wp + rows * Wp].reshape(rows, Wp)  # their squares (when read noise is on)
        run = max(Wp, _DW_RUN // Wp * Wp)  # the flat runs of _dw3_band: whole output rows
        acc, vr, u = np.empty(run, np.float32), np.empty(run, np.float32), np.empty(run, np.uint32)
        for c in range(C if rows > 0 else 0):
            s_in, b_in = in_step[c], in_bound[c]
            for lr in range(rows):
                iy = py0 + lr - padding
                dst = qp[lr]
                if iy < 0 or iy >= H:
                    dst[:] = _ZERO
                else:
                    dst[:padding] = _ZERO
                    dst[padding + W:] = _ZERO
                    src, d = x[n, c, iy], dst[padding:padding + W]
                    for ix in range(W):
                        d[ix] = quantise(src[ix], in_L, s_in, b_in)
            if has_var:  # the squares: the same roundings as (p * p) * r
                qf, sf = mine[:rows * Wp], mine[Hp * Wp:Hp * Wp + rows * Wp]
                for i in range(rows * Wp):
                    sf[i] = qf[i] * qf[i]
            if taps3:
                _dw3_band(mine, acc, vr, u, Hp, Wp, n, c, oy0, oy1, OH, OW, w, rv, has_var, keys, kbase, has_z, adc_std,
                          adc_var, out_L, out_step, out_bound, scale, b, residual, has_residual, act, out)
            else:
                _dw_rows(qp, qq, n, c, oy0, oy1, stride, KH, KW, OH, OW, w, rv, has_var, keys, kbase, has_z,
                         adc_std, adc_var, out_L, out_step, out_bound, scale, b, residual, has_residual, act, out)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _dw3_band(mine, acc, vr, u, Hp, Wp, n, c, oy0, oy1, OH, OW, w, rv, has_var, keys, kbase, has_z, adc_std,
              adc_var, out_L, out_step, out_bound, scale, b, residual, has_residual, act, out):
    """Channel c of a band of a 3x3 stride-1 depthwise layer on its zero-padded DAC rows
    (``mine[:rows*Wp]``, squares at ``mine[Hp*Wp:]``), as flat runs of output rows: with the
    rows at width Wp (the last Wp - OW of each discarded), output f = r*Wp + ox reads tap
    (ky, kx) at f + ky*Wp + kx, so the 9-tap sums, the variance's and the ADC each run as one
    loop over ``acc.size // Wp`` rows at a time (long loops on small maps, an L1-sized working
    set on large ones); then per output row the residual, act and the store. Sums in the
    general loop's order (taps row by row)."""
    B = Hp * Wp
    qf, sf = mine[:B], mine[B:2 * B]
    w0, w1, w2, w3, w4, w5, w6, w7, w8 = w[c, 0], w[c, 1], w[c, 2], w[c, 3], w[c, 4], w[c, 5], w[c, 6], w[c, 7], \
        w[c, 8]
    r0, r1, r2, r3, r4, r5, r6, r7, r8 = rv[c, 0], rv[c, 1], rv[c, 2], rv[c, 3], rv[c, 4], rv[c, 5], rv[c, 6], \
        rv[c, 7], rv[c, 8]
    av_c, sd_c, s_out, b_out, sc, bias = adc_var[c], adc_std[c], out_step[c], out_bound[c], scale[c], b[c]
    rc = max(1, acc.shape[0] // Wp)
    for k0 in range(oy0, oy1, rc):
        nr = min(rc, oy1 - k0)
        F = (nr - 1) * Wp + OW  # flat outputs of rows k0..k0+nr-1, the last row's discarded tail excluded
        e = (k0 - oy0) * Wp  # buffer offset of tap row 0 of output row k0
        q0, q1, q2 = qf[e:e + F + 2], qf[e + Wp:e + Wp + F + 2], qf[e + 2 * Wp:e + 2 * Wp + F + 2]  # slices: no
        for i in range(F):                                                                # index checks in the loop
            acc[i] = (q0[i] * w0 + q0[i + 1] * w1 + q0[i + 2] * w2 + q1[i] * w3 + q1[i + 1] * w4
                      + q1[i + 2] * w5 + q2[i] * w6 + q2[i + 1] * w7 + q2[i + 2] * w8)
        if has_var:
            s0, s1, s2 = sf[e:e + F + 2], sf[e + Wp:e + Wp + F + 2], sf[e + 2 * Wp:e + 2 * Wp + F + 2]
            for i in range(F):
                vr[i] = (s0[i] * r0 + s0[i + 1] * r1 + s0[i + 2] * r2 + s1[i] * r3 + s1[i + 1] * r4
                         + s1[i + 2] * r5 + s2[i] * r6 + s2[i + 1] * r7 + s2[i + 2] * r8)
        if has_z:  # each output row's words at its place in the run (the discarded tails keep any bits)
            for r in range(nr):
                words_into(keys[c], kbase[c] + (n * OH + k0 + r) * OW, u[r * Wp:r * Wp + OW])
            if has_var:
                for i in range(F):
                    acc[i] = quantise(acc[i] + normal_from_bits(u[i]) * np.sqrt(vr[i] + av_c), out_L, s_out,
                                      b_out) * sc + bias
            else:
                for i in range(F):
                    acc[i] = quantise(acc[i] + normal_from_bits(u[i]) * sd_c, out_L, s_out, b_out) * sc + bias
        else:
            for i in range(F):
                acc[i] = quantise(acc[i], out_L, s_out, b_out) * sc + bias
        for r in range(nr):
            a, o = acc[r * Wp:r * Wp + OW], out[n, c, k0 + r]
            if has_residual:
                rr = residual[n, c, k0 + r]
                for ox in range(OW):
                    o[ox] = act_value(a[ox] + rr[ox], act)
            else:
                for ox in range(OW):
                    o[ox] = act_value(a[ox], act)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _dw_rows(qp, qq, n, c, oy0, oy1, stride, KH, KW, OH, OW, w, rv, has_var, keys, kbase, has_z, adc_std, adc_var,
             out_L, out_step, out_bound, scale, b, residual, has_residual, act, out):
    """Channel c of a band of any depthwise layer, output row by output row: the taps, the
    variance's, one normal per output from the row's words, the ADC, bias, residual, act."""
    av_c, sd_c, s_out, b_out, sc, bias = adc_var[c], adc_std[c], out_step[c], out_bound[c], scale[c], b[c]
    vrow = np.empty(OW, np.float32)
    urow = np.empty(OW, np.uint32)
    for oy in range(oy0, oy1):
        lo = (oy - oy0) * stride  # the buffer row of tap row 0
        arow = out[n, c, oy]  # seek to out[n, c, oy, :]: accumulate the dot here
        arow[:] = _ZERO
        vrow[:] = _ZERO
        for ky in range(KH):
            src_row, sq_row = qp[lo + ky], qq[lo + ky if has_var else 0]
            for kx in range(KW):
                wk, rk = w[c, ky * KW + kx], rv[c, ky * KW + kx]
                if stride == 1:  # a constant stride vectorises
                    src = src_row[kx:kx + OW]
                    for i in range(OW):
                        arow[i] += src[i] * wk
                    if has_var:
                        sq = sq_row[kx:kx + OW]
                        for i in range(OW):
                            vrow[i] += sq[i] * rk
                else:
                    for i in range(OW):
                        arow[i] += src_row[i * stride + kx] * wk
                    if has_var:
                        for i in range(OW):
                            vrow[i] += sq_row[i * stride + kx] * rk
        if has_z:
            words_into(keys[c], kbase[c] + (n * OH + oy) * OW, urow)
            if has_var:
                for ox in range(OW):
                    arow[ox] += normal_from_bits(urow[ox]) * np.sqrt(vrow[ox] + av_c)
            else:
                for ox in range(OW):
                    arow[ox] += normal_from_bits(urow[ox]) * sd_c
        for ox in range(OW):
            arow[ox] = quantise(arow[ox], out_L, s_out, b_out) * sc + bias
        if has_residual:
            rrow = residual[n, c, oy]
            for ox in range(OW):
                arow[ox] += rrow[ox]
        if act != 0:
            for ox in range(OW):
                arow[ox] = act_value(arow[ox], act)


@numba.njit(cache=True, error_model="numpy", parallel=True)
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


# --- the dense conv without im2col (stride 1): per-tap products on padded DAC planes -----------

@numba.njit(cache=True, error_model="numpy", parallel=True)
def dac_pad_planes(x, n, padding, in_L, plane_ch, plane_piece, piece_dac, with_square, planes, sq):
    """Every plane-buffer row through its row piece's DAC, zero-padded for the per-tap products.

    planes[r] = the (H + 2*padding) x (W + 2*padding) zero-padded plane of channel plane_ch[r]
    of image n, quantise(.; L, step, bound) with (step, bound) = piece_dac[plane_piece[r]],
    flattened row by row, then zeros up to the row's end (the reads past the last row of
    the products' discarded pad columns). A channel split between two row pieces has a row
    per piece (each piece its own DAC). With ``with_square`` also sq = planes**2.

    Shapes:
      x: (N, C_in, H, W)  plane_ch, plane_piece: (rows,)  piece_dac: (pieces, 2)  planes, sq: (rows, S)
      with S >= (H + 2*padding) * (W + 2*padding)
    """
    H, W = x.shape[2], x.shape[3]
    Wp = W + 2 * padding
    S = planes.shape[1]
    for r in prange(planes.shape[0]):
        c, p = plane_ch[r], plane_piece[r]
        s, bnd = piece_dac[p, 0], piece_dac[p, 1]
        dst = planes[r]
        dst[:padding * Wp] = _ZERO
        for iy in range(H):
            row = dst[(iy + padding) * Wp:(iy + padding + 1) * Wp]
            row[:padding] = _ZERO
            row[padding + W:] = _ZERO
            src = x[n, c, iy]
            d = row[padding:padding + W]
            for i in range(W):
                d[i] = quantise(src[i], in_L, s, bnd)
        dst[(H + padding) * Wp:] = _ZERO
        if with_square:
            q = sq[r]
            for i in range(S):
                q[i] = dst[i] * dst[i]


@numba.njit(cache=True, error_model="numpy", parallel=True)
def conv_dense_taps_nchw(x, KH, KW, padding, in_L, plane_ch, plane_piece, piece_dac, ti, tt, tf, wt, rvt, keys,
                         out_L, b, residual, has_residual, act, R, with_var, planes, sq, scratch, out):
    """A stride-1 dense conv on its tiles without im2col: ``conv_dense_tiles_nchw``'s result from
    per-tap products on zero-padded DAC planes (``dac_pad_planes``).

    Row r = (c, ky, kx) of the weight matrix reads input channel c shifted by (ky, kx); with
    the planes padded and flattened at width Wp = W + 2*padding, the inputs of tap k = (ky, kx)
    for output rows oy0..oy1 are the contiguous run planes[., (oy0 + ky)*Wp + kx:][:R*Wp], so
    tile t's product is the sum over its taps k of one sgemm
    ``W_t,k (cols x n_k) @ planes[rows of channels a_k..b_k) (n_k x R*Wp)``,
    the channels a_k..b_k of tap k in the tile's row piece (tt[t, k] = (a_k, b_k, weight
    offset, first plane-buffer row)); the read-noise variance likewise from the squared
    planes. Each output row carries Wp - OW discarded columns. The DAC, the draws, the ADC
    and the digital epilogue are those of ``conv_dense_tiles_nchw``; only the order of the
    sums inside a tile differs (float32 rounding). Chunks of R output rows run in parallel.

    Shapes:
      x: (N, C_in, H, W)  ti: (tiles, 8)  tt: (tiles, KH*KW, 4) int64  tf: (tiles, 5)
      wt, rvt: flat (cols x n_k blocks)  planes, sq: (plane rows, S)  scratch: (threads, 2*C_out*R*Wp)
      out: (N, C_out, OH, OW) with OH = H + 2*padding - KH + 1 (stride 1)
    """
    N, C_out, OH, OW = out.shape
    Wp = x.shape[3] + 2 * padding
    S, nt, KK = planes.shape[1], ti.shape[0], KH * KW
    nch = (OH + R - 1) // R
    of, rf = out.reshape(out.size), residual.reshape(residual.size)
    pf, qf = planes.reshape(planes.size), sq.reshape(sq.size)
    for n in range(N):
        dac_pad_planes(x, n, padding, in_L, plane_ch, plane_piece, piece_dac, with_var, planes, sq)
        for ch in prange(nch):  # chunks are the parallel axis (BLAS single-threaded meanwhile)
            oy0 = ch * R
            rr = min(R, OH - oy0)
            m = rr * Wp
            mine = scratch[numba.get_thread_id()]  # this worker's buffers: no allocation per chunk
            y, var = mine[:C_out * m], mine[C_out * m:2 * C_out * m]
            p0, o0 = (n * OH + oy0) * OW, n * C_out * OH * OW + oy0 * OW
            for t in range(nt):
                c0, cols = ti[t, 2], ti[t, 3] - ti[t, 2]
                tv = (ti[t, 7] & 1) != 0
                for prod in range(2 if tv else 1):  # the signal's taps, then the variance's
                    beta = 0.0
                    for k in range(KK):
                        a, bb, woff, brow = tt[t, k, 0], tt[t, k, 1], tt[t, k, 2], tt[t, k, 3]
                        if bb <= a:
                            continue
                        off = brow * S + (oy0 + k // KW) * Wp + k % KW
                        if prod == 0:
                            sgemm_rm(cols, m, bb - a, wt, woff, bb - a, pf, off, S, y, c0 * m, m, beta)
                        else:
                            sgemm_rm(cols, m, bb - a, rvt, woff, bb - a, qf, off, S, var, c0 * m, m, beta)
                        beta = 1.0
                tile_epilogue_nchw(y, var, c0, cols, m, Wp, OW, ti[t], tf[t], keys[t], out_L, b, rf,
                                   has_residual, act, p0, N * OH * OW, o0, OH * OW, of)
