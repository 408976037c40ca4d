"""Numba kernels of a dense conv on its tiles: the whole layer in one call.

Two paths to the same tile products: ``conv_dense_tiles_nchw`` unfolds chunks of output rows
(im2col through the DAC) for one sgemm per tile, and ``conv_dense_taps_nchw`` (stride 1,
kernels over 1x1: no KH*KW-fold unfolded copy) quantises zero-padded input planes once per
row piece and sums one sgemm per tap. Both end in ``adc.tile_epilogue``. Parallel loops
(``prange``) run over an outer independent axis only: rows of the unfolded input, plane
rows, chunks of output rows (each worker unfolds, multiplies and writes its own rows).

The sgemm calls are the engine's ``minitnet.kernels.blas.sgemm_cm`` (numba's helper for
SciPy's cython_blas), made from the workers: BLAS must run single-threaded meanwhile
(``emulator.analog.blas_for_workers``; a multi-threaded OpenBLAS spinning next to numba's
workers is far slower).

Arguments come packed (``emulator.packs`` builds them): ``conv = (KH, KW, stride, padding)``;
``dac = (in_L, row_step, row_bound)``, the DAC of every weight row (that of the row piece
holding it; L = 0: no quantisation, bound = inf: no clip); ``vec = (on, in_L, step, bound)``,
per-vector input scaling (on = 1: ``dac`` is the identity and each row piece's columns are
scaled by their own max |x| before this DAC of range 1; on = 0: off); ``DenseTiles(ti, tf, w,
rv)``, the tables of ``emulator.adc`` with every tile's ``w_eff.T`` (cols, rows) at ``w[w_off:]``
and its ``read_var.T`` at ``rv[w_off:]``; ``TapTiles``, the per-tap layout; ``adc.Epilogue``
with a flat residual.

Per-vector input scaling runs on the im2col path only: a column of the unfolded chunk is one
pixel's input vector, so its scale is the max of the column over the piece's rows; a value
of a per-tap plane serves several pixels, each with its own scale.
"""

from collections import namedtuple

import numba
import numpy as np
from numba import prange

from minitnet.kernels.blas import sgemm_cm
from minitnet.kernels.conv import valid_range

from .adc import quantise, tile_epilogue

__all__ = ["DenseTiles", "TapTiles", "im2col_dac_nchw", "scale_piece", "conv_dense_tiles_nchw",
           "pad_planes", "conv_dense_scaled_nchw", "conv_dense_taps_nchw"]

#: A dense layer's tiles in plan order (row pieces ascending): tables and flat weights.
DenseTiles = namedtuple("DenseTiles", ["ti", "tf", "w", "rv"])
#: A stride-1 dense layer as per-tap products (see ``conv_dense_taps_nchw``): plane-buffer rows
#: (input channel, row piece), each row piece's DAC (step, bound), tt (tiles, KH*KW, 4) =
#: (a_k, b_k, weight offset, plane row of channel a_k), and the tiles' tables.
TapTiles = namedtuple("TapTiles", ["in_L", "plane_ch", "plane_piece", "piece_dac", "ti", "tf", "tt", "w", "rv",
                                   "has_var"])

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _dac_copy(src, stride, L, step, bound, d):
    """d[i] = quantise(src[i * stride]; L, step, bound): one row segment through the DAC."""
    if stride == 1:  # a constant stride vectorises
        for i in range(d.shape[0]):
            d[i] = quantise(src[i], L, step, bound)
    else:
        for i in range(d.shape[0]):
            d[i] = quantise(src[i * stride], L, step, bound)


@numba.njit(cache=True, error_model="numpy", inline="always")
def im2col_row(x, n, conv, oy0, oy1, dac, col, r):
    """Row r = (ci, ky, kx) of ``im2col_dac_nchw``'s col: the output rows whose tap row falls in
    the padding are zeros, the others the DAC outputs of their input row, zero where tap column
    kx falls in the padding."""
    KH, KW, stride, padding = conv
    L, s, bnd = dac[0], dac[1][r], dac[2][r]
    H, W = x.shape[2], x.shape[3]
    OW = col.shape[1] // (oy1 - oy0)
    ci, ky, kx = r // (KH * KW), (r // KW) % KH, r % KW
    ox0, ox1 = valid_range(kx, padding, stride, W, OW)
    lo, hi = valid_range(ky, padding, stride, H, oy1)
    a, b = max(lo, oy0), max(hi, oy0)  # output rows a..b-1 read the image, the others the padding
    row = col[r]
    row[:(a - oy0) * OW] = _ZERO
    row[(b - oy0) * OW:] = _ZERO
    for oy in range(a, b):
        dst = row[(oy - oy0) * OW:(oy - oy0 + 1) * OW]  # seek to col[r, oy - oy0, :]
        dst[:ox0] = _ZERO
        dst[ox1:] = _ZERO
        src = x[n, ci, oy * stride + ky - padding, ox0 * stride + kx - padding:]  # 0-based: no wraparound checks
        _dac_copy(src, stride, L, s, bnd, dst[ox0:ox1])


@numba.njit(cache=True, error_model="numpy", parallel=True)
def im2col_dac_nchw(x, n, conv, oy0, oy1, dac, col):
    """Unfold output rows [oy0, oy1) of image n into columns, through each row's DAC.

    col[(ci*KH + ky)*KW + kx, (oy - oy0)*OW + ox] = quantise(x[n, ci, iy, ix]; L, step[r], bound[r])
    with iy = oy*stride + ky - padding, ix = ox*stride + kx - padding, and 0 in the padding.
    Row order (c_in, ky, kx) = ``w.reshape(C_out, -1)``. ``minitnet.kernels.conv.im2col_nchw``
    is the float engine's unfold; this one quantises each value as it copies it (the DAC of
    the row piece), which the dense path needs in the same pass.

    Shapes:
      x: (N, C_in, H, W)  dac[1], dac[2]: (C_in*KH*KW,)  col: (C_in*KH*KW, (oy1 - oy0)*OW)
    """
    for r in prange(col.shape[0]):
        im2col_row(x, n, conv, oy0, oy1, dac, col, r)


@numba.njit(cache=True, error_model="numpy", inline="always")
def sgemm_rm(M, N, K, a, a_off, lda, b, b_off, ldb, c, c_off, ldc, beta):
    """Row-major ``C = A @ B + beta*C`` on flat float32 arrays with leading dimensions (BLAS sgemm):
    A (M, K) is a[a_off + i*lda + p], B (K, N) is b[b_off + p*ldb + j], C (M, N) is
    c[c_off + i*ldc + j]. Row-major C = A B is column-major C^T = B^T A^T: the engine's ``sgemm_cm``."""
    sgemm_cm(N, M, K, b, b_off, ldb, a, a_off, lda, beta, c, c_off, ldc)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _tile_product(tr, w, cf, m, dst, mb):
    """dst[col0:col1 rows] = w_t (cols, rows of the piece) @ cf[rows row0..row1) (rows, m), for tile row tr:
    one sgemm, or (m > mb) one per block of at most mb columns, the blocks of equal size."""
    r0, k, c0, cols = tr[0], tr[1] - tr[0], tr[2], tr[3] - tr[2]
    nb = (m + mb - 1) // mb
    b = (m + nb - 1) // nb
    for j0 in range(0, m, b):
        sgemm_rm(cols, min(b, m - j0), k, w, tr[4], k, cf, r0 * m + j0, m, dst, c0 * m + j0, m, 0.0)


@numba.njit(cache=True, error_model="numpy")
def _square_rows(a, r0, r1, m):
    """a[r, :m] = a[r, :m]**2 in place for rows r0..r1-1 of the (rows, m) matrix in flat ``a``."""
    for r in range(r0, r1):
        v = a[r * m:(r + 1) * m]
        for j in range(m):
            v[j] = v[j] * v[j]


@numba.njit(cache=True, error_model="numpy")
def scale_piece(a, r0, r1, m, vec, sv):
    """Per-vector input scaling of one row piece of an unfolded chunk (``crossbar.mvm`` stage 0, then
    the DAC): sv[j] = max |a[r, j]| over the piece's rows r0..r1-1 (1 where 0), then
    a[r, j] = quantise(a[r, j] / sv[j]; L, step, bound) in place, ``vec = (on, L, step, bound)``
    the DAC of the scaled vectors (its range 1; on = 1).

    Shapes: a: flat (rows * m,) as (rows, m), unquantised  sv: (m,)
    """
    L, step, bound = vec[1], vec[2], vec[3]
    sv[:] = _ZERO
    for r in range(r0, r1):
        v = a[r * m:(r + 1) * m]
        for j in range(m):
            sv[j] = max(sv[j], abs(v[j]))
    for j in range(m):
        sv[j] = sv[j] if sv[j] > _ZERO else _ONE
    for r in range(r0, r1):
        v = a[r * m:(r + 1) * m]
        for j in range(m):
            v[j] = quantise(v[j] / sv[j], L, step, bound)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _piece_end(ti, t0):
    """One past the last tile of the row piece that starts at tile t0 (tiles in plan order)."""
    t1 = t0 + 1
    while t1 < ti.shape[0] and ti[t1, 0] == ti[t0, 0]:
        t1 += 1
    return t1


@numba.njit(cache=True, error_model="numpy", parallel=True)
def conv_dense_tiles_nchw(x, conv, dac, vec, tiles, keys, ep, R, scratch, out):
    """A dense conv on its tiles, the whole layer in one call: for every chunk of R output rows,
    im2col through each row piece's DAC, then per row piece one sgemm per tile (3. matmul),
    the unfolded rows squared in place and one sgemm per tile for the read-noise variance
    ``x**2 @ read_var``, and ``adc.tile_epilogue`` (4-6 and the digital sums) into ``out``.
    With per-vector input scaling (``vec[0]``; ``dac`` then the identity) each row piece's
    columns are scaled and quantised first (``scale_piece``) and the epilogue multiplies by
    their scales. Chunks are the parallel axis. Results do not depend on R or the thread
    count (the draws are indexed by pixel, the sums are per chunk).

    Shapes:
      x: (N, C_in, H, W)  keys: (tiles,) uint64 (one per tile that draws)
      scratch: (threads, (rows + 2*C_out + on) * R*OW) (one row per worker)  out: (N, C_out, OH, OW)
    """
    N, C_out, OH, OW = out.shape
    rows, ti = dac[1].shape[0], tiles.ti
    nch = (OH + R - 1) // R
    of = out.reshape(out.size)
    for job in prange(N * nch):
        n, oy0 = job // nch, (job % nch) * R
        oy1 = min(oy0 + R, OH)
        m = (oy1 - oy0) * OW
        mine = scratch[numba.get_thread_id()]  # this worker's buffers: no allocation per chunk
        col = mine[:rows * m].reshape(rows, m)
        y = mine[rows * m:(rows + C_out) * m]
        var = mine[(rows + C_out) * m:(rows + 2 * C_out) * m]
        sv = mine[(rows + 2 * C_out) * m:(rows + 2 * C_out + vec[0]) * m]  # per-vector scales, or empty
        for r in range(rows):
            im2col_row(x, n, conv, oy0, oy1, dac, col, r)
        cf = col.reshape(rows * m)
        chunk = (m, OW, OW, (n * OH + oy0) * OW, N * OH * OW, n * C_out * OH * OW + oy0 * OW, OH * OW)
        t0 = 0
        while t0 < ti.shape[0]:  # one row piece: its tiles t0..t1-1
            t1 = _piece_end(ti, t0)
            if vec[0]:
                scale_piece(cf, ti[t0, 0], ti[t0, 1], m, vec, sv)
            _piece_tiles(t0, t1, tiles, keys, cf, m, (y, var, sv), chunk, ep, of, m)
            t0 = t1


@numba.njit(cache=True, error_model="numpy", inline="always")
def _piece_tiles(t0, t1, tiles, keys, cf, m, bufs, chunk, ep, of, mb):
    """The tiles t0..t1-1 of one row piece on its unfolded chunk ``cf`` (rows x m, through the DAC):
    one sgemm per tile, the rows squared in place and one sgemm per tile for the read-noise
    variance (when a tile has it), then each tile's ``adc.tile_epilogue`` into ``of``.
    ``bufs = (y, var, sv)``: the products, the variances, the per-vector scales (or empty)."""
    ti = tiles.ti
    y, var, sv = bufs
    sq = False
    for t in range(t0, t1):
        _tile_product(ti[t], tiles.w, cf, m, y, mb)
        sq |= (ti[t, 7] & 1) != 0
    if sq:
        _square_rows(cf, ti[t0, 0], ti[t0, 1], m)
    for t in range(t0, t1):
        if (ti[t, 7] & 1) != 0:
            _tile_product(ti[t], tiles.rv, cf, m, var, mb)
        tile_epilogue(y, var, ti[t], tiles.tf[t], keys[t], chunk, ep, sv, of)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _pad_plane(plane, padding, dac, L, step, bound, dst):
    """dst = ``plane`` zero-padded by ``padding``, flattened row by row at width Wp = W + 2*padding,
    then zeros to dst's end; through the DAC quantise(.; L, step, bound) if ``dac``, else copied
    as it is (per-vector scaling quantises later, once per pixel a value serves)."""
    H, W = plane.shape
    Wp = W + 2 * padding
    dst[:padding * Wp] = _ZERO
    for iy in range(H):
        row = dst[(iy + padding) * Wp:(iy + padding + 1) * Wp]
        row[:padding] = _ZERO
        row[padding + W:] = _ZERO
        d, src = row[padding:padding + W], plane[iy]
        if dac:
            _dac_copy(src, 1, L, step, bound, d)
        else:
            d[:] = src
    dst[(H + padding) * Wp:] = _ZERO


# --- per-vector scaling of a stride-1 dense conv: the unfolded chunk from padded planes ----------

@numba.njit(cache=True, error_model="numpy", parallel=True)
def pad_planes(x, n, padding, planes):
    """planes[c] = channel c of image n zero-padded by ``padding``, flattened row by row at width
    Wp = W + 2*padding, then zeros to the row's end; unquantised (per-vector scaling quantises a
    value once per pixel it serves).

    Shapes: x: (N, C, H, W)  planes: (C, S) with S >= (H + 2*padding) * Wp
    """
    for c in prange(planes.shape[0]):
        _pad_plane(x[n, c], padding, False, 0, _ZERO, _ZERO, planes[c])


@numba.njit(cache=True, error_model="numpy", inline="always")
def _tap_run(pf, S, r, KK, KW, Wp, base):
    """The inputs of weight row r = (c, ky, kx) for the chunk's padded pixels: plane c from ``base``
    (the chunk's first padded row) shifted by (ky, kx), in the flat planes ``pf`` (rows S apart)."""
    k = r % KK
    return pf[(r // KK) * S + base + (k // KW) * Wp + k % KW:]


@numba.njit(cache=True, error_model="numpy")
def _plane_scales(pf, S, r0, r1, conv, Wp, base, m, mx, sv):
    """sv[j] = max |x| over weight rows r0..r1-1 = (c, ky, kx) of the chunk's padded pixel j (1
    where 0): for the channels whole in the piece, the max over the window of ``mx`` (their max
    |x| per padded pixel), then the rows of the channels it splits one by one."""
    KH, KW = conv[0], conv[1]
    KK = KH * KW
    cA, cB = (r0 + KK - 1) // KK, r1 // KK  # whole channels cA..cB-1
    sv[:m] = _ZERO
    if cB > cA:
        span = m + (KH - 1) * Wp + KW - 1
        mx[:span] = _ZERO
        for c in range(cA, cB):
            src = pf[c * S + base:c * S + base + span]
            for j in range(span):
                mx[j] = max(mx[j], abs(src[j]))
        for k in range(KK):
            src = mx[(k // KW) * Wp + k % KW:]
            for j in range(m):
                sv[j] = max(sv[j], src[j])
    split = (r0, min(r1, cA * KK), max(r0, cB * KK), r1) if cB > cA else (r0, r1, r1, r1)
    for a, b in ((split[0], split[1]), (split[2], split[3])):
        for r in range(a, b):
            src = _tap_run(pf, S, r, KK, KW, Wp, base)
            for j in range(m):
                sv[j] = max(sv[j], abs(src[j]))
    for j in range(m):
        sv[j] = sv[j] if sv[j] > _ZERO else _ONE


@numba.njit(cache=True, error_model="numpy")
def _scaled_rows(pf, S, r0, r1, conv, Wp, base, m, vec, sv, cf):
    """Rows r0..r1-1 of the chunk unfolded at padded width: cf[r*m + j] = quantise(x / sv[j]; L, step,
    bound) of weight row r's input at padded pixel j (``vec`` = the DAC of range 1)."""
    KW, KK = conv[1], conv[0] * conv[1]
    L, step, bound = vec[1], vec[2], vec[3]
    for r in range(r0, r1):
        src = _tap_run(pf, S, r, KK, KW, Wp, base)
        d = cf[r * m:(r + 1) * m]
        for j in range(m):
            d[j] = quantise(src[j] / sv[j], L, step, bound)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def conv_dense_scaled_nchw(x, conv, vec, tiles, keys, ep, R, mb, planes, scratch, out):
    """A stride-1 dense conv with per-vector input scaling (a kernel over 1x1): the products
    of ``conv_dense_tiles_nchw`` on a chunk unfolded from zero-padded unquantised planes
    (``pad_planes``) at their width Wp, as the per-tap products read them: weight row
    (c, ky, kx) of output rows oy0.. is the contiguous run of plane c from (oy0 + ky)*Wp + kx,
    so each row piece's unfolded chunk is built directly scaled and quantised
    (``_plane_scales``, ``_scaled_rows``), without im2col's edge cases; each output row
    carries Wp - OW discarded columns. A tile's product is one sgemm per block of at most
    ``mb`` columns (sized by the caller: OpenBLAS runs small products without packing, and
    a chunk's rows times a row of pixels is just above its limit). Chunks of R output rows
    run in parallel.

    Shapes:
      x: (N, C_in, H, W)  planes: (C_in, S), S = (H + 2*padding)*Wp + KW - 1
      scratch: (threads, (rows + 2*C_out + 2)*R*Wp + KH*Wp + KW)  out: (N, C_out, OH, OW)
    """
    N, C_out, OH, OW = out.shape
    padding = conv[3]
    Wp = x.shape[3] + 2 * padding
    S, ti = planes.shape[1], tiles.ti
    rows = np.max(ti[:, 1])
    nch = (OH + R - 1) // R
    of, pf = out.reshape(out.size), planes.reshape(planes.size)
    for n in range(N):
        pad_planes(x, n, padding, planes)
        for ch in prange(nch):
            oy0 = ch * R
            m = min(R, OH - oy0) * Wp
            mine = scratch[numba.get_thread_id()]  # this worker's buffers: no allocation per chunk
            e = (rows + 2 * C_out) * m  # the unfolded chunk, products, variances; then scales, channel max
            cf, y, var = mine[:rows * m], mine[rows * m:(rows + C_out) * m], mine[(rows + C_out) * m:e]
            sv, mx = mine[e:e + m], mine[e + m:]
            chunk = (m, Wp, OW, (n * OH + oy0) * OW, N * OH * OW, n * C_out * OH * OW + oy0 * OW, OH * OW)
            t0 = 0
            while t0 < ti.shape[0]:  # one row piece: its tiles t0..t1-1
                t1 = _piece_end(ti, t0)
                _plane_scales(pf, S, ti[t0, 0], ti[t0, 1], conv, Wp, oy0 * Wp, m, mx, sv)
                _scaled_rows(pf, S, ti[t0, 0], ti[t0, 1], conv, Wp, oy0 * Wp, m, vec, sv, cf)
                _piece_tiles(t0, t1, tiles, keys, cf, m, (y, var, sv), chunk, ep, of, mb)
                t0 = t1


# --- the dense conv without im2col (stride 1): per-tap products on padded DAC planes -----------

@numba.njit(cache=True, error_model="numpy", parallel=True)
def dac_pad_planes(x, n, padding, taps, planes, sq):
    """Every plane-buffer row through its row piece's DAC, zero-padded for the per-tap products.

    planes[r] = the (H + 2*padding) x (W + 2*padding) zero-padded plane of channel plane_ch[r]
    of image n, quantise(.; L, step, bound) with (step, bound) = piece_dac[plane_piece[r]],
    flattened row by row, then zeros up to the row's end (the reads past the last row of
    the products' discarded pad columns). A channel split between two row pieces has a row
    per piece (each piece its own DAC). With read noise (``taps.has_var``) also sq = planes**2.

    Shapes:
      x: (N, C_in, H, W)  planes, sq: (rows, S) with S >= (H + 2*padding) * (W + 2*padding)
    """
    S = planes.shape[1]
    for r in prange(planes.shape[0]):
        c, p = taps.plane_ch[r], taps.plane_piece[r]
        dst = planes[r]
        _pad_plane(x[n, c], padding, True, taps.in_L, taps.piece_dac[p, 0], taps.piece_dac[p, 1], dst)
        if taps.has_var:
            q = sq[r]
            for i in range(S):
                q[i] = dst[i] * dst[i]


@numba.njit(cache=True, error_model="numpy", inline="always")
def _tap_products(tt, tr, w, pf, S, Wp, KW, oy0, m, dst):
    """One tile's product for a chunk as the sum of one sgemm per tap k: its weights
    (cols x (b_k - a_k)) at w[tt[k, 2]:] times the plane rows of channels a_k..b_k shifted to
    tap k = (k // KW, k % KW), read from the flat planes ``pf`` (rows S apart)."""
    c0, cols = tr[2], tr[3] - tr[2]
    beta = 0.0
    for k in range(tt.shape[0]):
        a, bb, woff, brow = tt[k, 0], tt[k, 1], tt[k, 2], tt[k, 3]
        if bb <= a:
            continue
        off = brow * S + (oy0 + k // KW) * Wp + k % KW
        sgemm_rm(cols, m, bb - a, w, woff, bb - a, pf, off, S, dst, c0 * m, m, beta)
        beta = 1.0


@numba.njit(cache=True, error_model="numpy", parallel=True)
def conv_dense_taps_nchw(x, conv, taps, keys, ep, R, planes, sq, scratch, out):
    """A stride-1 dense conv on its tiles without im2col: ``conv_dense_tiles_nchw``'s result from
    per-tap products on zero-padded DAC planes (``dac_pad_planes``).

    Row r = (c, ky, kx) of the weight matrix reads input channel c shifted by (ky, kx); with
    the planes padded and flattened at width Wp = W + 2*padding, the inputs of tap k = (ky, kx)
    for output rows oy0..oy1 are the contiguous run planes[., (oy0 + ky)*Wp + kx:][:R*Wp], so
    tile t's product is the sum over its taps k of one sgemm
    ``W_t,k (cols x n_k) @ planes[rows of channels a_k..b_k) (n_k x R*Wp)``,
    the channels a_k..b_k of tap k in the tile's row piece; the read-noise variance likewise
    from the squared planes. Each output row carries Wp - OW discarded columns. The DAC, the
    draws, the ADC and the digital epilogue are those of ``conv_dense_tiles_nchw``; only the
    order of the sums inside a tile differs (float32 rounding). Chunks of R output rows run
    in parallel.

    Shapes:
      x: (N, C_in, H, W)  planes, sq: (plane rows, S)  scratch: (threads, 2*C_out*R*Wp)
      out: (N, C_out, OH, OW) with OH = H + 2*padding - KH + 1 (stride 1)
    """
    N, C_out, OH, OW = out.shape
    KW, padding = conv[1], conv[3]
    Wp = x.shape[3] + 2 * padding
    S, ti = planes.shape[1], taps.ti
    nch = (OH + R - 1) // R
    of = out.reshape(out.size)
    pf, qf = planes.reshape(planes.size), sq.reshape(sq.size)
    unscaled = np.empty(0, np.float32)  # no per-vector scaling on this path
    for n in range(N):
        dac_pad_planes(x, n, padding, taps, planes, sq)
        for ch in prange(nch):  # chunks are the parallel axis (BLAS single-threaded meanwhile)
            oy0 = ch * R
            m = min(R, OH - oy0) * Wp
            mine = scratch[numba.get_thread_id()]  # this worker's buffers: no allocation per chunk
            y, var = mine[:C_out * m], mine[C_out * m:2 * C_out * m]
            chunk = (m, Wp, OW, (n * OH + oy0) * OW, N * OH * OW, n * C_out * OH * OW + oy0 * OW, OH * OW)
            for t in range(ti.shape[0]):
                _tap_products(taps.tt[t], ti[t], taps.w, pf, S, Wp, KW, oy0, m, y)  # the signal's taps
                if (ti[t, 7] & 1) != 0:                                             # then the variance's
                    _tap_products(taps.tt[t], ti[t], taps.rv, qf, S, Wp, KW, oy0, m, var)
                tile_epilogue(y, var, ti[t], taps.tf[t], keys[t], chunk, ep, unscaled, of)
