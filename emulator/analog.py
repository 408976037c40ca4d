"""The analog conv paths: one programmed layer run on its tiles, from its pack.

A dense conv is one Numba call: ``dense.conv_dense_tiles_nchw`` unfolds chunks of output rows
(im2col, through each row piece's DAC), runs one sgemm per tile, squares the unfolded rows in
place for one more sgemm per tile (the read-noise variance), and a fused epilogue draws the
normals and applies noise, ADC, the digital partial sum, bias, residual and activation
straight into the output; a stride-1 dense conv with a kernel over 1x1 takes the per-tap
products instead (``dense.conv_dense_taps_nchw``); depthwise layers run in one Numba kernel
over bands of rows (``depthwise.depthwise_tiles_nchw``). With per-vector input scaling each
row piece's unfolded columns are scaled by their own max |x| before the DAC (a stride-1 conv
with a kernel over 1x1 unfolds from padded planes, ``dense.conv_dense_scaled_nchw``), and a
depthwise pixel's scale is the max over its tile's channels and window. The tile pipeline and its random
draws are those of ``emulator.crossbar.mvm`` (tested against it with the same rng).

Chunk sizes are an ``AnalogOptions`` (results do not depend on them).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from dataclasses import dataclass

import numba
import numpy as np

from minitnet.graph import Layer
from minitnet.kernels import blas

from .adc import Epilogue
from .dense import conv_dense_scaled_nchw, conv_dense_taps_nchw, conv_dense_tiles_nchw, im2col_dac_nchw
from .depthwise import depthwise_tiles_nchw
from .errors import ShapeError
from .packs import DensePack, DepthwisePack
from .programming import ProgrammedLayer
from .rng import draw_keys

__all__ = ["AnalogOptions", "conv_layer", "conv_dense", "conv_depthwise", "dense_chunks", "chunk_rows",
           "tap_chunk_rows", "out_size", "blas_for_workers", "dw_bands", "dw_scratch", "NO_RESIDUAL"]

NO_RESIDUAL = np.zeros((1, 1, 1, 1), np.float32)


@dataclass(frozen=True)
class AnalogOptions:
    """How the analog conv paths cut their work; the outputs do not depend on it (tested)."""

    #: float32 elements of the unfolded input per chunk of a dense conv (128 KiB by default): the
    #: chunk, its tile outputs and variances stay in L2 from im2col to the epilogue.
    chunk_elems: int = 1 << 15
    #: padded pixels per chunk of a stride-1 dense conv's per-tap products.
    tap_chunk_pixels: int = 1024
    #: stride-1 dense convs with a kernel over 1x1 run as per-tap products (with per-vector scaling:
    #: unfolded from padded planes), not im2col + sgemm.
    taps: bool = True


def out_size(lay: Layer, x: np.ndarray) -> tuple[int, int]:
    """(OH, OW) of ``lay`` on ``x``, checking its channels and size."""
    kh, kw = lay.kernel_size
    N, C, H, W = x.shape
    if C != lay.in_channels:
        raise ShapeError(f"{lay.name}: x has C_in={C} but the layer expects {lay.in_channels} (x.shape={x.shape})")
    OH = (H + 2 * lay.padding - kh) // lay.stride + 1
    OW = (W + 2 * lay.padding - kw) // lay.stride + 1
    if OH < 1 or OW < 1:
        raise ShapeError(f"{lay.name}: input (H, W)=({H}, {W}) is smaller than the {kh}x{kw} kernel")
    return OH, OW


def conv_geometry(lay: Layer) -> tuple[int, int, int, int]:
    """The kernels' ``conv`` tuple: (KH, KW, stride, padding)."""
    return (*lay.kernel_size, lay.stride, lay.padding)


def _epilogue(pl: ProgrammedLayer, out_L: int, residual, act: int, flat: bool) -> Epilogue:
    res = NO_RESIDUAL if residual is None else residual
    return Epilogue(out_L, pl.bias, res.reshape(-1) if flat else res, residual is not None, act)


def _empty(shape, pool) -> np.ndarray:
    return np.empty(shape, np.float32) if pool is None else pool.empty(shape)


def _workers() -> int:
    """Rows of per-worker scratch: numba's thread ids run below its configured maximum."""
    return numba.config.NUMBA_NUM_THREADS


def conv_layer(pl: ProgrammedLayer, pk, x, residual, act, rng, opts: AnalogOptions, pool=None) -> np.ndarray:
    """``act(tiles(x) + b + residual)`` of one programmed layer, read and ADC noise from ``rng``."""
    if pl.plan.depthwise:
        return conv_depthwise(pl, pk, x, residual, act, rng, pool)
    return conv_dense(pl, pk, x, residual, act, rng, opts, pool)


def chunk_rows(pk: DensePack, OH: int, OW: int, chunk_elems: int) -> int:
    """Output rows per chunk: the unfolded chunk (rows x R*OW) holds about ``chunk_elems`` floats."""
    return max(1, min(OH, chunk_elems // (pk.rows * OW)))


def tap_chunk_rows(Wp: int, OH: int, tap_chunk_pixels: int) -> int:
    """Output rows per chunk of the per-tap products: about ``tap_chunk_pixels`` padded pixels."""
    return max(1, min(OH, tap_chunk_pixels // Wp))


def dense_chunks(lay: Layer, pk: DensePack, x: np.ndarray, OH: int, OW: int, col: np.ndarray, chunk_elems: int):
    """Unfold x chunk by chunk through the DAC: yields (n, oy0, oy1, col (K, M))."""
    R = chunk_rows(pk, OH, OW, chunk_elems)
    for n in range(x.shape[0]):
        for oy0 in range(0, OH, R):
            oy1 = min(oy0 + R, OH)
            colv = col[:pk.rows * (oy1 - oy0) * OW].reshape(pk.rows, (oy1 - oy0) * OW)
            im2col_dac_nchw(x, n, conv_geometry(lay), oy0, oy1, pk.dac, colv)
            yield n, oy0, oy1, colv


def conv_dense(pl: ProgrammedLayer, pk: DensePack, x, residual, act, rng, opts: AnalogOptions,
               pool=None) -> np.ndarray:
    """A dense layer on its tiles (im2col + sgemm, or per-tap products for stride 1)."""
    lay = pl.layer
    OH, OW = out_size(lay, x)
    N, C_out = x.shape[0], lay.out_channels
    out = _empty((N, C_out, OH, OW), pool)
    if pk.taps is not None and opts.taps:
        return _conv_dense_taps(pl, pk, x, residual, act, rng, out, opts, pool)
    if pk.vec[0] and lay.stride == 1 and lay.kernel_size != (1, 1) and opts.taps:
        return _conv_dense_scaled(pl, pk, x, residual, act, rng, out, opts, pool)
    R = parallel_rows(chunk_rows(pk, OH, OW, opts.chunk_elems), OH, N)
    keys = draw_keys(rng, pk.z_tiles)
    scratch = _empty((_workers(), (pk.rows + 2 * C_out + pk.vec[0]) * R * OW), pool)
    with blas_for_workers():
        conv_dense_tiles_nchw(x, conv_geometry(lay), pk.dac, pk.vec, pk.table, keys,
                              _epilogue(pl, pk.out_L, residual, act, True), R, scratch, out)
    return out


def _conv_dense_taps(pl: ProgrammedLayer, pk: DensePack, x, residual, act, rng, out, opts: AnalogOptions,
                     pool=None) -> np.ndarray:
    lay, tp = pl.layer, pk.taps
    kw = lay.kernel_size[1]
    H, W = x.shape[2], x.shape[3]
    OH = out.shape[2]
    Hp, Wp = H + 2 * lay.padding, W + 2 * lay.padding
    S = Hp * Wp + kw - 1  # the last tap's reads run kw - 1 past the padded plane (discarded columns)
    planes = _empty((tp.plane_ch.shape[0], S), pool)
    sq = _empty((tp.plane_ch.shape[0], S), pool) if pk.has_var else planes[:1, :1]
    R = parallel_rows(tap_chunk_rows(Wp, OH, opts.tap_chunk_pixels), OH)
    keys = draw_keys(rng, pk.z_tiles)
    scratch = _empty((_workers(), 2 * lay.out_channels * R * Wp), pool)
    with blas_for_workers():
        conv_dense_taps_nchw(x, conv_geometry(lay), tp, keys, _epilogue(pl, pk.out_L, residual, act, True), R,
                             planes, sq, scratch, out)
    return out


#: Largest M*N*K of an sgemm that OpenBLAS's AVX-512 kernels run as a small product, without
#: packing (1.6x faster on the 25 x 338 x 116 products of a 3x3 layer than at 25 x 338 x 122):
#: the per-chunk products of per-vector scaling are split to stay below it.
SMALL_GEMM = 1_000_000


def gemm_cols(pk: DensePack) -> int:
    """Pixels per sgemm of ``conv_dense_scaled_nchw``: a tile's product (its columns x its row
    piece's rows x these pixels) stays within ``SMALL_GEMM``."""
    rows = max(t.row1 - t.row0 for t in pk.tiles)
    cols = max(t.col1 - t.col0 for t in pk.tiles)
    return max(16, SMALL_GEMM // (rows * cols))


def _conv_dense_scaled(pl: ProgrammedLayer, pk: DensePack, x, residual, act, rng, out, opts: AnalogOptions,
                       pool=None) -> np.ndarray:
    """A stride-1 dense layer with per-vector input scaling, unfolded from padded planes."""
    lay = pl.layer
    kh, kw = lay.kernel_size
    H, W = x.shape[2], x.shape[3]
    OH, C_out = out.shape[2], lay.out_channels
    Wp = W + 2 * lay.padding
    planes = _empty((lay.in_channels, (H + 2 * lay.padding) * Wp + kw - 1), pool)
    R = parallel_rows(chunk_rows(pk, OH, Wp, opts.chunk_elems), OH)
    keys = draw_keys(rng, pk.z_tiles)
    scratch = _empty((_workers(), (pk.rows + 2 * C_out + 2) * R * Wp + kh * Wp + kw), pool)
    with blas_for_workers():
        conv_dense_scaled_nchw(x, conv_geometry(lay), pk.vec, pk.table, keys,
                               _epilogue(pl, pk.out_L, residual, act, True), R, gemm_cols(pk), planes, scratch, out)
    return out


def conv_depthwise(pl: ProgrammedLayer, pk: DepthwisePack, x, residual, act, rng, pool=None) -> np.ndarray:
    """A depthwise layer on its block-diagonal tiles."""
    lay = pl.layer
    OH, OW = out_size(lay, x)
    N, C = x.shape[0], lay.out_channels
    P = N * OH * OW
    out = _empty((N, C, OH, OW), pool)
    if pk.table.has_z:  # one key per tile (in programming order); a channel's draws follow its tile's earlier
        keys = rng.bit_generator.random_raw(len(pk.groups))[pk.group_of]  # channels'
        kbase = pk.rank * P
    else:
        keys, kbase = np.zeros(C, np.uint64), np.zeros(C, np.int64)
    planes = 3 if pk.table.groups.shape[0] else 2  # per-vector scaling: input rows, channel max, scales
    depthwise_tiles_nchw(x, conv_geometry(lay), pk.table, keys, kbase, _epilogue(pl, pk.out_L, residual, act, False),
                         dw_bands(OH), dw_scratch(x, lay.padding, pool, planes), out)
    return out


def parallel_rows(R: int, OH: int, N: int = 1) -> int:
    """Chunk rows: at most R, lowered until the N images' chunks give every worker a few to
    take, then the R' in [R/2, R] whose chunks the workers finish soonest (the busiest
    worker's rows, ceil(chunks / T) * R', smallest; ties to the larger R')."""
    return _parallel_rows_for(R, OH, N, numba.get_num_threads())


@functools.lru_cache(maxsize=1024)
def _parallel_rows_for(R: int, OH: int, N: int, T: int) -> int:
    want = 4 * T
    if N * ((OH + R - 1) // R) < want:
        R = max(1, min(R, -(-N * OH // want)))
    return min(range(max(1, R // 2), R + 1), key=lambda r: (-(-N * -(-OH // r) // T) * r, -r))


_BLAS_HELD = threading.local()


@contextlib.contextmanager
def blas_for_workers():
    """The kernels call sgemm from numba's workers: BLAS single-threaded meanwhile, and its
    function pointer resolved on this thread first (``minitnet.kernels.blas``). Re-entrant:
    inside an outer one (a graph block's, ``ChipBackend.block``) it costs nothing."""
    if getattr(_BLAS_HELD, "depth", 0):
        yield
        return
    with blas.single_threaded_blas():
        blas.warm_up()
        _BLAS_HELD.depth = 1
        try:
            yield
        finally:
            _BLAS_HELD.depth = 0


def dw_bands(OH: int) -> int:
    """Bands of output rows per image of a depthwise layer: one per worker (the dense layers'
    chunks of rows fall to the workers in the same halves under the static schedule)."""
    return max(1, min(OH, numba.get_num_threads()))


def dw_scratch(x, padding, pool=None, planes: int = 2):
    """Per-worker scratch of ``depthwise_tiles_nchw``: ``planes`` zero-padded planes (DAC outputs
    and squares; three with per-vector input scaling)."""
    return _empty((_workers(), planes * (x.shape[2] + 2 * padding) * (x.shape[3] + 2 * padding)), pool)
