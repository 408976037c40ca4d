"""Map the graph IR onto crossbar tiles, program a chip, and run images through it.

    chip = emulator.program(net, emulator.preset("pcm", t_inference=3600.0), rng,
                            calibration=[img_a, img_b])      # one draw of programming noise
    for n, logits, state_error in chip.run(img, rng):        # like ItNet.iter_outputs
        ...

What goes where (the conventions of ``emulator/tiles.py``):

* every unique conv layer of the graph IR (``Graph.layers``) becomes a weight
  matrix of ``KH*KW*C_in`` rows by ``C_out`` columns (rows in im2col order
  ``(c_in, ky, kx)``), split over tiles in balanced pieces; the folded BN goes
  into the programmed weights (``minitnet.weights.fold_weights``), the bias stays
  digital;
* depthwise layers are packed block-diagonally: a tile holds a group of
  channels, each channel's taps in its own rows and its output in its own
  column; the off-diagonal cells are left unprogrammed and carry no current,
  so a column sees its own taps only;
* everything else (bias, BN affines, activations, pooling, resizing,
  concatenation, residual additions, the sum of the partial outputs of row
  pieces after their ADCs) is digital and exact: the float engine's own ops.

Programmed tiles are keyed by the *resolved* layer name
(``Graph.layer_name(node, n)``): with shared weights every iteration resolves
to the same layer and so runs on the same tiles, with the same fixed-pattern
noise, drift and stuck devices; independent weights resolve to N programmed
bodies, each its own draw. Read and ADC noise are drawn at every MVM from the
``rng`` passed to ``Chip.run``.

Execution follows the engine exactly: the graph runs on the engine's executor
(``minitnet.executor.run``) with ``ChipBackend``, whose conv runs on tiles, so ``preset("ideal")
reproduces the float engine's logits. A dense conv is one Numba call
(``kernels.conv_dense_tiles_nchw``): it unfolds chunks of output rows (im2col,
through each row piece's DAC), runs one sgemm per tile, squares the unfolded
rows in place for one more sgemm per tile (the read-noise variance), and a fused
epilogue draws the normals and applies noise, ADC, the digital partial sum, bias,
residual and activation straight into the output; depthwise layers run in one
Numba kernel over channels. The tile pipeline and its random draws
are those of ``emulator.crossbar.mvm`` (tested against it with the same rng).

DAC and ADC ranges are fixed per tile by ``Chip.calibrate`` on a few images:
the float engine runs them, and each tile takes the maximum |input| it
receives (``inp_bound``) and then the maximum |noise-free ADC input| with the
calibrated DAC (``out_bound``), exactly ``crossbar.calibrate_tile`` with
``quantile=1`` over all executions of the tile (a shared tile: all N
iterations).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import threading
import warnings
from dataclasses import dataclass
from typing import Iterator

import numba
import numpy as np

from minitnet.buffers import Recycler
from minitnet.engine import ItNet
from minitnet.executor import FloatBackend, ObserverBackend, run as run_graph
from minitnet.graph import Graph, Layer, build_graph
from minitnet.kernels import blas as _blas

from . import kernels as K
from .config import HardwareConfig
from .crossbar import ProgrammedTile, _check_hw, _check_rng, program_tile
from .errors import ConfigError, ShapeError
from .quantize import levels_per_side
from .tiles import LayerPlan, plan_graph

__all__ = ["ProgrammedLayer", "Chip", "program", "run", "mapping_report", "format_report", "draw_key",
           "CalibrationWarning", "needs_calibration"]

#: float32 elements of the unfolded input per chunk of a dense conv (128 KiB): the chunk, its
#: tile outputs and variances stay in L2 from im2col to the epilogue (measured on the f=51 layers:
#: 32-64 Ki elements fastest, 1 Mi 10-20 % slower). Results do not depend on it.
CHUNK_ELEMS = 1 << 15
#: padded pixels per chunk of a stride-1 dense conv's per-tap products (measured on the f=51
#: layers at 1 thread: sgemm of 25 x 25 x m runs fastest for m = 600 to 1200).
TAP_CHUNK_PIXELS = 1024
#: stride-1 dense convs with a kernel over 1x1 run as per-tap products (``K.conv_dense_taps_nchw``), not im2col + sgemm
TAPS = True
_NO_RESIDUAL = np.zeros((1, 1, 1, 1), np.float32)
_INF = np.float32(np.inf)
_NO_KEY = np.uint64(0)


def draw_key(rng: np.random.Generator) -> np.uint64:
    """The 64-bit key of one batch of MVMs of one tile: one raw draw of ``rng``. The kernels expand
    it into the batch's standard normals (``emulator.kernels``: SplitMix64 + tabulated inverse CDF)."""
    return np.uint64(rng.bit_generator.random_raw())


def draw_keys(rng: np.random.Generator, z_tiles: np.ndarray) -> np.ndarray:
    """``draw_key`` for every tile flagged in ``z_tiles`` (bool, plan order), in that order, _NO_KEY
    for the others: the same keys as one ``draw_key`` per flagged tile, in one call."""
    keys = np.zeros(z_tiles.shape[0], np.uint64)
    k = int(np.count_nonzero(z_tiles))
    if k:
        keys[z_tiles] = rng.bit_generator.random_raw(k)
    return keys


class CalibrationWarning(UserWarning):
    """A chip fixed its DAC/ADC ranges on the image it was asked to run (no calibration images given)."""


def needs_calibration(hw: HardwareConfig) -> bool:
    """Whether tiles of ``hw`` need DAC/ADC ranges that ``hw`` does not fix.

    A DAC range is needed by ``inp_bits`` and by ``out_noise_std`` (whose unit is
    ``w_max * inp_bound``), an ADC range by ``out_bits``.
    """
    need_inp = (hw.inp_bits is not None or hw.out_noise_std > 0) and hw.inp_bound is None
    need_out = hw.out_bits is not None and hw.out_bound is None
    return need_inp or need_out


# ---------------------------------------------------------------------------------------------
# programmed layers and their execution packs
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ProgrammedLayer:
    """One unique conv layer of the graph on its tiles: one programming draw.

    ``tiles[i]`` holds ``plan.pieces[i]``: for a dense layer the block
    ``W[row0:row1, col0:col1]`` of ``W = w.reshape(C_out, -1).T`` (rows = inputs);
    for a depthwise layer the channels ``[col0, col1)`` as the compact
    (KH*KW, channels) matrix of their diagonal blocks. ``bias`` is digital.
    """

    layer: Layer
    plan: LayerPlan
    tiles: tuple[ProgrammedTile, ...]
    bias: np.ndarray

    @property
    def name(self) -> str:
        return self.layer.name

    def effective_weight(self) -> np.ndarray:
        """The weights the tiles compute with, noise-free, folded back to OIHW: ``w_eff`` times the
        digital drift-compensation scale (what the chip computes without read noise, DAC and ADC).

        Shapes: (C_out, C_in // groups, KH, KW) float32
        """
        lay = self.layer
        kh, kw = lay.kernel_size
        if self.plan.depthwise:
            w = np.zeros((lay.out_channels, kh * kw), np.float32)
            for p, t in zip(self.plan.pieces, self.tiles):
                w[p.col0:p.col1] = (t.w_eff * np.float32(t.out_scale)).T
            return w.reshape(lay.out_channels, 1, kh, kw)
        W = np.zeros((self.plan.rows, self.plan.cols), np.float32)
        for p, t in zip(self.plan.pieces, self.tiles):
            W[p.row0:p.row1, p.col0:p.col1] = t.w_eff * np.float32(t.out_scale)
        return np.ascontiguousarray(W.T).reshape(lay.out_channels, lay.in_channels, kh, kw)


def _levels(bits):
    return 0 if bits is None else levels_per_side(bits)


def _step(bits, bound):
    """The float32 step of ``quantize`` (``x.dtype.type(bound / L)``); 1 when not quantising."""
    if bits is None or bound is None:
        return np.float32(1.0)
    return np.float32(bound / levels_per_side(bits))


def _bound(bound):
    return _INF if bound is None else np.float32(bound)


@dataclass
class _TileExec:
    row0: int
    row1: int
    col0: int
    col1: int
    wT: np.ndarray               # (cols, rows) float32: w_eff transposed
    rvT: np.ndarray | None       # (cols, rows) float32: read-noise variance, or None
    has_z: bool                  # this tile draws normals (read or ADC-input noise on)
    adc_std: np.float32
    adc_var: np.float32
    out_step: np.float32
    out_bound: np.float32
    scale: np.float32
    accumulate: bool             # a later row piece: add to the partial sum


@dataclass
class _DensePack:
    in_L: int
    row_step: np.ndarray         # (rows,) DAC step of the row piece holding each row
    row_bound: np.ndarray        # (rows,) DAC bound (inf: no clip)
    out_L: int
    tiles: list
    has_var: bool
    has_z: bool
    max_cols: int
    ti: np.ndarray               # (tiles, 8) int64: row0, row1, col0, col1, w_off, first, last, flags
    tf: np.ndarray               # (tiles, 5) float32: adc_std, adc_var, out_step, out_bound, scale
    w_flat: np.ndarray           # every tile's wT, concatenated (offset w_off)
    rv_flat: np.ndarray          # every tile's rvT (zeros where a tile has none), same offsets
    taps: "_TapPack | None" = None  # the per-tap layout of a stride-1 layer (``K.conv_dense_taps_nchw``)
    z_tiles: np.ndarray | None = None  # (tiles,) bool: the tiles that draw normals (plan order)

    def __post_init__(self):
        self.z_tiles = np.array([t.has_z for t in self.tiles], bool)


@dataclass
class _TapPack:
    """A stride-1 dense layer as per-tap products (``K.conv_dense_taps_nchw``).

    The rows (c, ky, kx) of a row piece [row0, row1) that belong to tap k = ky*KW + kx are
    those of the channels a_k = ceil((row0 - k) / KK) .. b_k = ceil((row1 - k) / KK): one
    contiguous channel range per tap, so tile t's product is a sum of one sgemm per tap.
    Each row piece quantises the planes of its channels [row0 // KK, (row1 - 1) // KK] with
    its own DAC into its own rows of the plane buffer.
    """

    plane_ch: np.ndarray         # (plane rows,) input channel of each plane-buffer row
    plane_piece: np.ndarray      # (plane rows,) row piece whose DAC fills it
    piece_dac: np.ndarray        # (pieces, 2) float32: DAC step, bound of each row piece
    tt: np.ndarray               # (tiles, KK, 4) int64: a_k, b_k, weight offset, plane row of channel a_k
    wt: np.ndarray               # tile t, tap k: its weights (cols x (b_k - a_k)) at offset tt[t, k, 2]
    rvt: np.ndarray              # the read-noise variances, same offsets (zeros where a tile has none)


@dataclass
class _DepthwisePack:
    in_L: int
    out_L: int
    w: np.ndarray                # (C, KH*KW) w_eff per channel
    rv: np.ndarray               # (C, KH*KW) read variance (zeros when off)
    has_var: bool
    has_z: bool
    in_step: np.ndarray          # per channel (C,), from its tile
    in_bound: np.ndarray
    adc_std: np.ndarray
    adc_var: np.ndarray
    out_step: np.ndarray
    out_bound: np.ndarray
    scale: np.ndarray
    groups: tuple                # (c0, c1) per tile, in programming order
    group_of: np.ndarray | None = None  # (C,) int64: each channel's tile (index into groups)
    rank: np.ndarray | None = None      # (C,) int64: c - c0 of its tile

    def set_groups(self, groups):
        C = self.w.shape[0]
        self.groups = tuple(groups)
        self.group_of, self.rank = np.zeros(C, np.int64), np.zeros(C, np.int64)
        for g, (c0, c1) in enumerate(self.groups):
            self.group_of[c0:c1] = g
            self.rank[c0:c1] = np.arange(c1 - c0)


def _adc_std(tile: ProgrammedTile, hw: HardwareConfig) -> float:
    """``mvm``'s ADC-input noise std: out_noise_std * w_max * inp_bound (0 when off, or before
    calibration, where only the first calibration pass, which draws no noise, packs the tile)."""
    if hw.out_noise_std == 0 or tile.inp_bound is None:
        return 0.0
    return hw.out_noise_std * tile.w_max * tile.inp_bound


def _pack(pl: ProgrammedLayer, hw: HardwareConfig, identity_dac: bool = False):
    """The arrays the kernels need, from the (calibrated) tiles of one layer.

    ``identity_dac``: no DAC quantisation or clip (the first calibration pass).
    """
    in_L = 0 if identity_dac else _levels(hw.inp_bits)
    out_L = _levels(hw.out_bits)

    def dac(t):
        if identity_dac:
            return np.float32(1.0), _INF
        return _step(hw.inp_bits, t.inp_bound), _bound(t.inp_bound)

    if pl.plan.depthwise:
        C = pl.layer.out_channels
        kk = pl.layer.kernel_size[0] * pl.layer.kernel_size[1]
        f32 = lambda: np.zeros(C, np.float32)  # noqa: E731
        pk = _DepthwisePack(in_L, out_L, np.zeros((C, kk), np.float32), np.zeros((C, kk), np.float32),
                            False, False, f32(), f32(), f32(), f32(), f32(), f32(), f32(), tuple())
        groups = []
        for p, t in zip(pl.plan.pieces, pl.tiles):
            c = slice(p.col0, p.col1)
            groups.append((p.col0, p.col1))
            pk.w[c] = t.w_eff.T
            if t.read_var is not None:
                pk.rv[c] = t.read_var.T
                pk.has_var = True
            a = _adc_std(t, hw)
            pk.has_z |= t.read_var is not None or a != 0
            pk.in_step[c], pk.in_bound[c] = dac(t)
            pk.adc_std[c] = np.float32(a)
            pk.adc_var[c] = np.float32(a) ** 2
            pk.out_step[c] = _step(hw.out_bits, t.out_bound)
            pk.out_bound[c] = _bound(t.out_bound)
            pk.scale[c] = np.float32(t.out_scale)
        pk.set_groups(groups)
        return pk

    rows = pl.plan.rows
    row_step = np.ones(rows, np.float32)
    row_bound = np.full(rows, _INF, np.float32)
    tiles = []
    for p, t in zip(pl.plan.pieces, pl.tiles):
        s, b = dac(t)
        if p.col0 == 0:
            row_step[p.row0:p.row1], row_bound[p.row0:p.row1] = s, b
        elif row_bound[p.row0] != b:  # pragma: no cover - calibration gives a row piece one range
            raise ConfigError(f"{pl.name}: tiles of row piece [{p.row0}, {p.row1}) have different DAC ranges "
                              f"({row_bound[p.row0]} and {b}); the DAC drives all tiles of a row piece")
        a = _adc_std(t, hw)
        tiles.append(_TileExec(
            p.row0, p.row1, p.col0, p.col1, np.ascontiguousarray(t.w_eff.T),
            None if t.read_var is None else np.ascontiguousarray(t.read_var.T),
            t.read_var is not None or a != 0, np.float32(a), np.float32(a) ** 2,
            _step(hw.out_bits, t.out_bound), _bound(t.out_bound), np.float32(t.out_scale), p.row0 != 0))
    pk = _DensePack(in_L, row_step, row_bound, out_L, tiles, any(t.rvT is not None for t in tiles),
                    any(t.has_z for t in tiles), max(t.col1 - t.col0 for t in tiles), *_flatten(tiles))
    if pl.layer.stride == 1 and pl.layer.kernel_size != (1, 1):  # a 1x1 im2col is just the DAC: no gain
        pk.taps = _tap_pack(pk, pl.layer.kernel_size[0] * pl.layer.kernel_size[1])
    return pk


def _tap_pack(pk: _DensePack, KK: int) -> _TapPack:
    """The per-tap layout of a stride-1 layer's tiles (see ``_TapPack``), KK = KH*KW taps."""
    starts = sorted({t.row0 for t in pk.tiles})
    piece_of = {r0: i for i, r0 in enumerate(starts)}
    plane_ch, plane_piece, first_row = [], [], {}
    piece_dac = np.zeros((len(starts), 2), np.float32)
    for t in pk.tiles:
        i = piece_of[t.row0]
        if t.row0 in first_row:
            continue
        cA, cB = t.row0 // KK, (t.row1 - 1) // KK + 1
        first_row[t.row0] = len(plane_ch) - cA  # plane row of channel c: first_row + c
        plane_ch += range(cA, cB)
        plane_piece += [i] * (cB - cA)
        piece_dac[i] = pk.row_step[t.row0], pk.row_bound[t.row0]
    tt = np.zeros((len(pk.tiles), KK, 4), np.int64)
    ws, rvs, off = [], [], 0
    for j, t in enumerate(pk.tiles):
        for k in range(KK):
            a, b = -((k - t.row0) // KK), -((k - t.row1) // KK)  # ceil((row0 - k) / KK), ceil((row1 - k) / KK)
            rows = np.arange(a, b) * KK + k - t.row0            # this tap's rows inside the tile
            ws.append(np.ascontiguousarray(t.wT[:, rows]).ravel())
            rvs.append(np.ascontiguousarray(t.rvT[:, rows]).ravel() if t.rvT is not None
                       else np.zeros(t.wT.shape[0] * rows.size, np.float32))
            tt[j, k] = a, b, off, first_row[t.row0] + a
            off += ws[-1].size
    return _TapPack(np.array(plane_ch, np.int64), np.array(plane_piece, np.int64), piece_dac, tt,
                    np.concatenate(ws), np.concatenate(rvs))


def _flatten(tiles: list) -> tuple:
    """The tiles as the arrays of ``K.conv_dense_tiles_nchw``: (ti, tf, w_flat, rv_flat)."""
    nt = len(tiles)
    ti = np.zeros((nt, 8), np.int64)
    tf = np.zeros((nt, 5), np.float32)
    offs = np.cumsum([0] + [t.wT.size for t in tiles])
    w_flat = np.concatenate([t.wT.ravel() for t in tiles])
    rv_flat = np.zeros_like(w_flat)
    for i, t in enumerate(tiles):
        later = [u for u in tiles[i + 1:] if u.col0 == t.col0]  # later row pieces of these columns
        ti[i] = (t.row0, t.row1, t.col0, t.col1, offs[i], not t.accumulate, not later,
                 (t.rvT is not None) | (t.has_z << 1))
        tf[i] = (t.adc_std, t.adc_var, t.out_step, t.out_bound, t.scale)
        if t.rvT is not None:
            rv_flat[offs[i]:offs[i + 1]] = t.rvT.ravel()
    return ti, tf, w_flat, rv_flat


def _out_size(lay: Layer, x: np.ndarray) -> tuple[int, int]:
    kh, kw = lay.kernel_size
    N, C, H, W = x.shape
    if C != lay.in_channels:
        raise ShapeError(f"{lay.name}: x has C_in={C} but the layer expects {lay.in_channels} (x.shape={x.shape})")
    OH = (H + 2 * lay.padding - kh) // lay.stride + 1
    OW = (W + 2 * lay.padding - kw) // lay.stride + 1
    if OH < 1 or OW < 1:
        raise ShapeError(f"{lay.name}: input (H, W)=({H}, {W}) is smaller than the {kh}x{kw} kernel")
    return OH, OW


def _dense_chunks(lay: Layer, pk: _DensePack, x: np.ndarray, OH: int, OW: int, col: np.ndarray,
                  sq: np.ndarray | None = None):
    """Unfold x chunk by chunk through the DAC: yields (n, oy0, oy1, col (K, M), col**2 (K, M) if sq given)."""
    with_square = sq is not None
    kh, kw = lay.kernel_size
    rows = pk.row_step.shape[0]
    R = _chunk_rows(pk, OH, OW)
    for n in range(x.shape[0]):
        for oy0 in range(0, OH, R):
            oy1 = min(oy0 + R, OH)
            colv = col[:rows * (oy1 - oy0) * OW].reshape(rows, (oy1 - oy0) * OW)
            sqv = sq[:rows * (oy1 - oy0) * OW].reshape(rows, (oy1 - oy0) * OW) if with_square else colv
            K.im2col_dac_nchw(x, n, kh, kw, lay.stride, lay.padding, oy0, oy1, pk.in_L, pk.row_step,
                              pk.row_bound, colv, with_square, sqv)
            yield n, oy0, oy1, colv, sqv


def _chunk_rows(pk: _DensePack, OH: int, OW: int) -> int:
    """Output rows per chunk: the unfolded chunk (rows x R*OW) holds about CHUNK_ELEMS floats."""
    return max(1, min(OH, CHUNK_ELEMS // (pk.row_step.shape[0] * OW)))


def _conv_dense(pl: ProgrammedLayer, pk: _DensePack, x, residual, act, rng, pool=None) -> np.ndarray:
    lay = pl.layer
    OH, OW = _out_size(lay, x)
    N, C_out = x.shape[0], lay.out_channels
    out = _empty((N, C_out, OH, OW), pool)
    if pk.taps is not None and TAPS:
        return _conv_dense_taps(pl, pk, x, residual, act, rng, out, pool)
    R = _parallel_rows(_chunk_rows(pk, OH, OW), OH, N)
    keys = draw_keys(rng, pk.z_tiles)
    has_res = residual is not None
    kh, kw = lay.kernel_size
    scratch = _empty((_workers(), (pk.row_step.shape[0] + 2 * C_out) * R * OW), pool)
    with _blas_for_workers():
        K.conv_dense_tiles_nchw(x, kh, kw, lay.stride, lay.padding, pk.in_L, pk.row_step, pk.row_bound, pk.ti,
                                pk.tf, pk.w_flat, pk.rv_flat, keys, pk.out_L, pl.bias,
                                residual if has_res else _NO_RESIDUAL, has_res, act, R, scratch, out)
    return out


def _empty(shape, pool) -> np.ndarray:
    return np.empty(shape, np.float32) if pool is None else pool.empty(shape)


def _parallel_rows(R: int, OH: int, N: int = 1) -> int:
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
def _blas_for_workers():
    """The kernels call sgemm from numba's workers: BLAS single-threaded meanwhile, and its
    function pointer resolved on this thread first (``minitnet.kernels.blas``). Re-entrant:
    inside an outer one (a graph block's, ``ChipBackend.block``) it costs nothing."""
    if getattr(_BLAS_HELD, "depth", 0):
        yield
        return
    with _blas.single_threaded_blas():
        _blas.warm_up()
        _BLAS_HELD.depth = 1
        try:
            yield
        finally:
            _BLAS_HELD.depth = 0


def _tap_chunk_rows(Wp: int, OH: int) -> int:
    """Output rows per chunk of the per-tap products: about TAP_CHUNK_PIXELS padded pixels."""
    return max(1, min(OH, TAP_CHUNK_PIXELS // Wp))


def _conv_dense_taps(pl: ProgrammedLayer, pk: _DensePack, x, residual, act, rng, out, pool=None) -> np.ndarray:
    lay, tp = pl.layer, pk.taps
    kh, kw = lay.kernel_size
    H, W = x.shape[2], x.shape[3]
    OH = out.shape[2]
    Hp, Wp = H + 2 * lay.padding, W + 2 * lay.padding
    S = Hp * Wp + kw - 1  # the last tap's reads run kw - 1 past the padded plane (discarded columns)
    planes = _empty((tp.plane_ch.shape[0], S), pool)
    sq = _empty((tp.plane_ch.shape[0], S), pool) if pk.has_var else planes[:1, :1]
    R = _parallel_rows(_tap_chunk_rows(Wp, OH), OH)
    keys = draw_keys(rng, pk.z_tiles)
    has_res = residual is not None
    scratch = _empty((_workers(), 2 * lay.out_channels * R * Wp), pool)
    with _blas_for_workers():
        K.conv_dense_taps_nchw(x, kh, kw, lay.padding, pk.in_L, tp.plane_ch, tp.plane_piece, tp.piece_dac, pk.ti,
                               tp.tt, pk.tf, tp.wt, tp.rvt, keys, pk.out_L, pl.bias,
                               residual if has_res else _NO_RESIDUAL, has_res, act, R, pk.has_var, planes, sq,
                               scratch, out)
    return out


def _conv_depthwise(pl: ProgrammedLayer, pk: _DepthwisePack, x, residual, act, rng, pool=None) -> np.ndarray:
    lay = pl.layer
    OH, OW = _out_size(lay, x)
    N, C = x.shape[0], lay.out_channels
    P = N * OH * OW
    out = _empty((N, C, OH, OW), pool)
    if pk.has_z:  # one key per tile (in programming order); a channel's draws follow its tile's earlier channels'
        keys = rng.bit_generator.random_raw(len(pk.groups))[pk.group_of]
        kbase = pk.rank * P
    else:
        keys, kbase = np.zeros(C, np.uint64), np.zeros(C, np.int64)
    has_res = residual is not None
    kh, kw = lay.kernel_size
    K.depthwise_tiles_nchw(x, pk.in_L, pk.in_step, pk.in_bound, pk.w, pk.rv, pk.has_var, keys, kbase, pk.has_z,
                           pk.adc_std,
                           pk.adc_var, pk.out_L, pk.out_step, pk.out_bound, pk.scale, pl.bias,
                           residual if has_res else _NO_RESIDUAL, has_res, act, kh, kw, lay.stride, lay.padding,
                           _dw_bands(OH), _dw_scratch(x, lay.padding, pool), out)
    return out


def _workers() -> int:
    """Rows of per-worker scratch: numba's thread ids run below its configured maximum."""
    return numba.config.NUMBA_NUM_THREADS


def _dw_bands(OH: int) -> int:
    """Bands of output rows per image of a depthwise layer: one per worker (the dense layers'
    chunks of rows fall to the workers in the same halves under the static schedule)."""
    return max(1, min(OH, numba.get_num_threads()))


def _dw_scratch(x, padding, pool=None):
    return _empty((_workers(), 2 * (x.shape[2] + 2 * padding) * (x.shape[3] + 2 * padding)), pool)


# ---------------------------------------------------------------------------------------------
# the chip as a backend of the executor (``minitnet.executor.run``)
# ---------------------------------------------------------------------------------------------
class ChipBackend(FloatBackend):
    """Runs the graph with every conv on the chip's tiles (read and ADC noise from ``rng``)
    and the digital ops exact, in the float engine's ops; outputs come from the chip's
    recycled buffers."""

    placed_ops = frozenset({"affine", "resize"})  # convs come from the chip's own buffers

    def __init__(self, chip: "Chip", rng: np.random.Generator):
        super().__init__(chip.net.params)
        self.chip, self.rng = chip, rng
        self.pool = chip._pool

    def block(self):
        return _blas_for_workers()  # once per block, not per conv

    def alloc(self, shape):
        return self.pool.empty(shape)

    def conv(self, node, layer, x, residual, out=None):
        return self.chip._conv(layer.name, x, residual, node.act, self.rng, self.pool)

    def digital(self, node, layer, args, out=None):
        if node.op == "maxpool" and node.attrs["kernel_size"] == 1:
            return args[0]
        if out is None:
            out = self.pool.empty((args[0].shape[0], *node.shape))
        return super().digital(node, layer, args, out)


def _relative_state_error(emu: dict, ref: dict) -> float:
    num = sum(float(np.sum((emu[k].astype(np.float64) - ref[k]) ** 2)) for k in ref)
    den = sum(float(np.sum(ref[k].astype(np.float64) ** 2)) for k in ref)
    return math.sqrt(num / den) if den > 0 else (0.0 if num == 0 else math.inf)


# ---------------------------------------------------------------------------------------------
# the chip
# ---------------------------------------------------------------------------------------------
class Chip:
    """An ItNet programmed onto crossbar tiles: one draw of programming noise, drift and stuck
    devices, reusable over many images. Make one with :func:`program`.

    ``layers`` maps every unique (resolved) conv layer name to its ``ProgrammedLayer``; a shared
    iterative block appears once and runs on the same tiles in every iteration.
    """

    def __init__(self, net: ItNet, hw: HardwareConfig, layers: dict[str, ProgrammedLayer]):
        self.net = net
        self.hw = hw
        self.layers = layers
        self.calibration_images = 0
        self._packs: dict = {}
        self._pool = Recycler()  # node outputs, planes, scratch: reused once dropped

    def __repr__(self):
        cal = f"calibrated on {self.calibration_images} image(s)" if self.calibration_images else "not calibrated"
        return f"Chip({self.net.config}, {len(self.layers)} conv layers on {self.tiles} tiles, {cal})"

    @property
    def config(self):
        return self.net.config

    @property
    def tiles(self) -> int:
        """Programmed tiles (a shared block's tiles count once)."""
        return sum(len(pl.tiles) for pl in self.layers.values())

    @property
    def needs_calibration(self) -> bool:
        """True while the tiles lack a DAC/ADC range that ``hw`` needs (see :meth:`calibrate`)."""
        return needs_calibration(self.hw) and self.calibration_images == 0

    # -- calibration ---------------------------------------------------------------------
    def calibrate(self, images) -> "Chip":
        """Fix every tile's DAC and ADC ranges from a few images; returns self.

        ``images``: one image or a few: uint8 (H, W, 3), a uint8 batch (B, H, W, 3), float
        NCHW (B, 3, H, W) as ``ItNet.prepare`` takes, or a list of those (sizes may differ).
        The float engine runs them through every iteration; each tile's ``inp_bound`` is the
        largest |input| it receives, then its ``out_bound`` the largest |noise-free ADC input|
        (quantised inputs times ``w_eff``, before drift compensation): ``calibrate_tile`` with
        ``quantile=1`` over all executions of the tile. Bounds fixed in ``hw`` are kept.
        Deterministic; draws no random numbers.
        """
        xs = _as_images(self.net, images, "Chip.calibrate")
        hw = self.hw
        # pass 1: largest |input| per DAC (a dense row piece; a depthwise tile)
        inp = {name: np.zeros(len(pl.tiles)) for name, pl in self.layers.items()}
        ident = {name: _pack(pl, hw, identity_dac=True) for name, pl in self.layers.items()}

        def observe_inp(name, x):
            pl, pk = self.layers[name], ident[name]
            if pl.plan.depthwise:
                mi, mo = self._depthwise_absmax(pl, pk, x)
                for i, (c0, c1) in enumerate(pk.groups):
                    inp[name][i] = max(inp[name][i], float(mi[c0:c1].max()))
                return
            OH, OW = _out_size(pl.layer, x)
            col = np.empty(pk.row_step.shape[0] * _chunk_rows(pk, OH, OW) * OW, np.float32)
            for _, _, _, colv, _ in _dense_chunks(pl.layer, pk, x, OH, OW, col):
                for i, p in enumerate(pl.plan.pieces):
                    if p.col0 == 0:
                        inp[name][i] = max(inp[name][i], float(np.max(np.abs(colv[p.row0:p.row1]))))

        self._observe_all(xs, observe_inp)
        staged = {}
        for name, pl in self.layers.items():
            seen = _fill_dead(inp[name], name, "input", "DAC", "inp_bound", len(xs))
            tiles = []
            for i, (p, t) in enumerate(zip(pl.plan.pieces, pl.tiles)):
                j = i if pl.plan.depthwise else [k for k, q in enumerate(pl.plan.pieces)
                                                 if q.row0 == p.row0 and q.col0 == 0][0]
                b = hw.inp_bound if hw.inp_bound is not None else seen[j]
                tiles.append(dataclasses.replace(t, inp_bound=float(b)))
            staged[name] = dataclasses.replace(pl, tiles=tuple(tiles))
        # pass 2: largest |noise-free ADC input| per tile, with the calibrated DAC
        packs = {name: _pack(pl, hw) for name, pl in staged.items()}
        out = {name: np.zeros(len(pl.tiles)) for name, pl in staged.items()}

        def observe_out(name, x):
            pl, pk = staged[name], packs[name]
            if pl.plan.depthwise:
                mi, mo = self._depthwise_absmax(pl, pk, x)
                for i, (c0, c1) in enumerate(pk.groups):
                    out[name][i] = max(out[name][i], float(mo[c0:c1].max()))
                return
            OH, OW = _out_size(pl.layer, x)
            col = np.empty(pk.row_step.shape[0] * _chunk_rows(pk, OH, OW) * OW, np.float32)
            for _, _, _, colv, _ in _dense_chunks(pl.layer, pk, x, OH, OW, col):
                for i, t in enumerate(pk.tiles):
                    y = np.dot(t.wT, colv[t.row0:t.row1])
                    out[name][i] = max(out[name][i], float(np.max(np.abs(y))))

        self._observe_all(xs, observe_out)
        for name, pl in staged.items():
            seen = _fill_dead(out[name], name, "output", "ADC", "out_bound", len(xs))
            tiles = tuple(dataclasses.replace(t, out_bound=float(seen[i] if hw.out_bound is None else hw.out_bound))
                          for i, t in enumerate(pl.tiles))
            self.layers[name] = dataclasses.replace(pl, tiles=tiles)
        self.calibration_images = sum(x.shape[0] for x in xs)
        self._packs.clear()
        return self

    def _observe_all(self, xs, observe):
        obs = ObserverBackend(self.net.params, observe)
        for x in xs:
            g = self.net.graph(x.shape[2], x.shape[3])
            for _ in run_graph(g, obs, x):
                pass

    @staticmethod
    def _depthwise_absmax(pl, pk, x):
        """Per channel: max |input| its taps read, max |noise-free ADC input| (the DAC of ``pk``)."""
        OH, OW = _out_size(pl.layer, x)
        kh, kw = pl.layer.kernel_size
        C = pl.layer.out_channels
        if pl.layer.stride == 1 and pl.layer.padding < min(kh, kw):
            # stride 1: every input pixel is read by some tap, so the plane's max is the taps' max;
            # the outputs come from the run kernel without noise, ADC, bias or act
            mi = np.abs(x).max(axis=(0, 2, 3))
            y = np.empty((x.shape[0], C, OH, OW), np.float32)
            ones, zeros = np.ones(C, np.float32), np.zeros(C, np.float32)
            K.depthwise_tiles_nchw(x, pk.in_L, pk.in_step, pk.in_bound, pk.w, pk.rv, False, np.zeros(C, np.uint64),
                                   np.zeros(C, np.int64), False,
                                   zeros, zeros, 0, ones, np.full(C, _INF), ones, zeros,
                                   _NO_RESIDUAL, False, 0, kh, kw, 1, pl.layer.padding, _dw_bands(OH),
                                   _dw_scratch(x, pl.layer.padding), y)
            return mi, np.abs(y).max(axis=(0, 2, 3))
        mi, mo = np.zeros(C, np.float32), np.zeros(C, np.float32)
        K.depthwise_absmax(x, kh, kw, pl.layer.stride, pl.layer.padding, OH, OW, pk.in_L, pk.in_step, pk.in_bound,
                           pk.w, mi, mo)
        return mi, mo

    # -- running -------------------------------------------------------------------------
    def release(self):
        """Free the arrays kept between runs for reuse (activations and logits the caller has
        dropped); the next run allocates them again."""
        self._pool = Recycler()  # node outputs, planes, scratch: reused once dropped

    def _pack_of(self, name: str):
        pk = self._packs.get(name)
        if pk is None:
            pk = self._packs[name] = _pack(self.layers[name], self.hw)
        return pk

    def _conv(self, name, x, residual, act, rng, pool=None):
        pl = self.layers[name]
        pk = self._pack_of(name)
        if pl.plan.depthwise:
            return _conv_depthwise(pl, pk, x, residual, act, rng, pool)
        return _conv_dense(pl, pk, x, residual, act, rng, pool)

    def conv(self, name: str, x, rng: np.random.Generator, *, act: int = 0, residual=None) -> np.ndarray:
        """One conv layer of the chip on its tiles: ``act(tiles(x) + b + residual)``.

        Shapes: x: (N, C_in, H, W) float32  ->  (N, C_out, OH, OW) float32
        """
        if name not in self.layers:
            raise ShapeError(f"Chip.conv: no programmed layer {name!r}; layers are {sorted(self.layers)[:8]}...")
        _check_rng(rng, "Chip.conv")
        if self.needs_calibration:
            raise ConfigError(f"Chip.conv: {_needs_msg(self.hw)}; call chip.calibrate(images) first")
        x = np.ascontiguousarray(x, np.float32)
        if x.ndim != 4:
            raise ShapeError(f"Chip.conv: x must be (N, C, H, W), got shape {x.shape}")
        if residual is not None:
            residual = np.ascontiguousarray(residual, np.float32)
        return self._conv(name, x, residual, act, rng)

    def run(self, x, rng: np.random.Generator, last: int | None = None,
            reference: bool = True) -> Iterator[tuple[int, np.ndarray, float]]:
        """Yield ``(n, logits, state_error)`` for every head iteration n <= last, like
        ``ItNet.iter_outputs``.

        logits: (B, C, H, W) float32 of the emulated chip. state_error: relative L2 error of the
        loop-carried state after iteration n (all L scales together) against the float engine
        run alongside on the same input, ``||s_emu - s_float|| / ||s_float||``; NaN when
        ``reference=False`` (which skips the float run). Read and ADC noise are drawn from
        ``rng`` at every MVM. If the chip still needs DAC/ADC ranges it calibrates them on
        ``x`` first (a ``CalibrationWarning``); they then stay fixed for later images.
        """
        net = self.net
        _check_rng(rng, "Chip.run")
        cfg = net.config
        last = cfg.iterations if last is None else last
        if isinstance(last, bool) or not isinstance(last, (int, np.integer)) or not 1 <= last <= cfg.iterations:
            raise ShapeError(f"Chip.run: last={last!r} must be an iteration in 1..{cfg.iterations}")
        x = net.prepare(x)
        if self.needs_calibration:
            warnings.warn(f"Chip.run: {_needs_msg(self.hw)} and no calibration images were given: calibrating "
                          f"on the image being run (ranges then stay fixed); pass calibration=[...] to "
                          f"emulator.program for ranges independent of the input", CalibrationWarning,
                          stacklevel=2)
            self.calibrate(x)
        return self._run(x, rng, int(last), reference)

    def _run(self, x, rng, last, reference):
        g = self.net.graph(x.shape[2], x.shape[3])
        emu = run_graph(g, ChipBackend(self, rng), x, last)
        ref = self.net.iter_states(x, last) if reference else None  # the fused float engine when it can
        for n, state, logits in emu:
            if logits is None:
                continue
            err = math.nan
            if ref is not None:
                k, fstate, _ = next(ref)
                assert k == n, (k, n)  # both yield at the head iterations
                err = _relative_state_error(state, fstate)
            yield n, logits, err

    def logits(self, x, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
        """Emulated logits (B, C, H, W) of output n (default: the last), no float reference."""
        n = self.net.config.head_iterations[-1] if n is None else self.net.check_output(n)
        for k, lg, _ in self.run(x, rng, last=n, reference=False):
            if k == n:
                return lg
        raise AssertionError("unreachable")  # pragma: no cover

    # -- inspection ----------------------------------------------------------------------
    def effective_params(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``net.params`` with every conv's weights replaced by the chip's effective weights
        (``ProgrammedLayer.effective_weight``): a float engine with these params computes what
        the chip computes without read noise, DAC and ADC."""
        params = dict(self.net.params)
        for name, pl in self.layers.items():
            params[name] = (pl.effective_weight(), params[name][1])
        return params

    def effective_net(self) -> ItNet:
        """A float ``ItNet`` running the chip's effective weights (see ``effective_params``)."""
        net = self.net
        # a fresh ItNet (not a copy): the engine caches prepared weights and plans per instance
        twin = ItNet(net.config, net.tensors, net.norm_scale, net.norm_offset, net.bn_eps, net.metadata, net.source)
        twin.params = self.effective_params()
        return twin

    def report(self, height: int | None = None, width: int | None = None) -> dict:
        """``mapping_report`` of this chip's network and tile size."""
        return mapping_report(self.net, self.hw, height, width)


def _fill_dead(seen: np.ndarray, name: str, what: str, conv: str, field: str, images: int) -> np.ndarray:
    """Calibrated maxima of a layer's tiles; a tile that saw only zeros (a dead channel group)
    takes the largest range of its layer. A layer that saw only zeros is an error."""
    top = float(seen.max()) if seen.size else 0.0
    if not top > 0:
        raise ConfigError(f"Chip.calibrate: every tile of layer {name!r} saw only zero {what}s on the {images} "
                          f"calibration image(s), so its {conv} range would be 0; calibrate on images that "
                          f"excite it, or set {field} in the HardwareConfig")
    return np.where(seen > 0, seen, top)


def _needs_msg(hw):
    parts = []
    if (hw.inp_bits is not None or hw.out_noise_std > 0) and hw.inp_bound is None:
        parts.append(f"inp_bits={hw.inp_bits}, out_noise_std={hw.out_noise_std} need a DAC range (inp_bound)")
    if hw.out_bits is not None and hw.out_bound is None:
        parts.append(f"out_bits={hw.out_bits} needs an ADC range (out_bound)")
    return "; ".join(parts)


def _as_images(net: ItNet, images, where: str) -> list[np.ndarray]:
    """One image / batch / list of them -> a list of NCHW float32 batches (``net.prepare``)."""
    if isinstance(images, np.ndarray):
        items = [images]
    else:
        try:
            items = list(images)
        except TypeError:
            raise ShapeError(f"{where}: expected an image array or a list of images, got {type(images).__name__}") \
                from None
    if not items:
        raise ShapeError(f"{where}: no calibration images given (an empty list); pass one or a few images")
    return [net.prepare(np.asarray(im)) for im in items]


def _check_net(net, where):
    if not isinstance(net, ItNet):
        raise TypeError(f"{where}: net must be a minitnet ItNet (minitnet.load('W.h5')), got {type(net).__name__}")


# ---------------------------------------------------------------------------------------------
# the public functions
# ---------------------------------------------------------------------------------------------
def program(net: ItNet, hw: HardwareConfig, rng: np.random.Generator, calibration=None) -> Chip:
    """Program every unique conv layer of ``net``'s graph onto tiles of ``hw``: one chip.

    One draw of programming noise, drift and stuck devices per tile, from ``rng``, in a
    fixed order (layers in execution order, tiles in plan order). A shared iterative
    block is programmed once; independent weights give N programmed bodies.
    ``calibration``: a few images (see ``Chip.calibrate``) that fix the tiles' DAC/ADC
    ranges where ``hw`` needs them (``needs_calibration``: DAC/ADC bits or ADC-input noise
    without a fixed bound); otherwise they are not used, so no clipping is added (call
    ``chip.calibrate`` to clip anyway). If ``hw`` needs ranges and none are given, the chip
    calibrates on the first image it runs and warns (``CalibrationWarning``).
    """
    _check_net(net, "program")
    _check_hw(hw, "program")
    _check_rng(rng, "program")
    g = net.graph(64, 64)  # layer shapes (and so the tiles) do not depend on the input size
    layers = {}
    for name, plan in plan_graph(g, hw).items():
        lay = g.layers[name]
        w, b = net.params[name]
        if plan.depthwise:
            kk = lay.kernel_size[0] * lay.kernel_size[1]
            mats = [w[p.col0:p.col1].reshape(p.cols, kk).T for p in plan.pieces]  # (taps, channels)
        else:
            W = w.reshape(lay.out_channels, -1).T                               # (K, C_out)
            mats = [W[p.row0:p.row1, p.col0:p.col1] for p in plan.pieces]
        tiles = tuple(program_tile(m, hw, rng) for m in mats)
        layers[name] = ProgrammedLayer(lay, plan, tiles, np.ascontiguousarray(b, np.float32))
    chip = Chip(net, hw, layers)
    if calibration is not None and needs_calibration(hw):
        chip.calibrate(calibration)
    return chip


def run(net: ItNet, x, hw: HardwareConfig, rng: np.random.Generator, last: int | None = None,
        reference: bool = True) -> Iterator[tuple[int, np.ndarray, float]]:
    """Program a chip and run one image (batch) through it: ``program(...).run(x, rng)``.

    If ``hw`` needs DAC/ADC ranges they are calibrated on ``x`` itself (no warning:
    that is what this one-shot helper does); for ranges fixed on other images, use
    ``program(net, hw, rng, calibration=...)`` and ``Chip.run``.
    """
    _check_net(net, "run")
    chip = program(net, hw, rng, calibration=x)
    return chip.run(x, rng, last=last, reference=reference)


# ---------------------------------------------------------------------------------------------
# the mapping report
# ---------------------------------------------------------------------------------------------
def _graph_of(source, height, width) -> Graph:
    from minitnet.config import ItNetConfig

    h = 360 if height is None else height
    w = 480 if width is None else width
    if isinstance(source, Graph):
        if height is not None or width is not None:
            return build_graph(source.config, h, w)
        return source
    if isinstance(source, ItNet):
        return source.graph(h, w)
    if isinstance(source, ItNetConfig):
        return build_graph(source, h, w)
    raise TypeError(f"mapping_report: expected an ItNet, a Graph or an ItNetConfig, got {type(source).__name__}")


def _layer_rows(g: Graph, hw: HardwareConfig) -> list[dict]:
    block, runs = {}, {}
    for st in g.schedule():
        if st.layer is None or st.node.op != "conv":
            continue
        block.setdefault(st.layer, st.block)
        runs[st.layer] = runs.get(st.layer, 0) + 1
    rows = []
    for name, plan in plan_graph(g, hw).items():
        lay = g.layers[name]
        oh, ow = lay.out_size
        rows.append({
            "layer": name, "block": block.get(name, "-"), "kind": "depthwise" if plan.depthwise else "dense",
            "rows": plan.rows, "cols": plan.cols, "row_pieces": len(plan.row_splits),
            "col_pieces": len(plan.col_splits), "tiles": plan.tiles, "cells": plan.cells, "weights": plan.weights,
            "utilisation": plan.utilisation, "executions": runs.get(name, 0),
            "tile_mvms": runs.get(name, 0) * plan.tiles * oh * ow,
        })
    return rows


def _totals(rows: list[dict]) -> dict:
    def agg(sel):
        t = sum(r["tiles"] for r in sel)
        cells = sum(r["cells"] for r in sel)
        wts = sum(r["weights"] for r in sel)
        return {"layers": len(sel), "tiles": t, "cells": cells, "weights": wts,
                "utilisation": wts / cells if cells else 0.0, "tile_mvms": sum(r["tile_mvms"] for r in sel)}

    out = agg(rows)
    for key, sel in (("dense", [r for r in rows if r["kind"] == "dense"]),
                     ("depthwise", [r for r in rows if r["kind"] == "depthwise"])):
        out[key] = agg(sel)
    for b in ("data", "body", "head"):
        out[f"{b}_tiles"] = sum(r["tiles"] for r in rows if r["block"] == b)
    return out


def mapping_report(source, hw: HardwareConfig, height: int | None = None, width: int | None = None) -> dict:
    """Tiles and cells per unique conv layer, utilisation, and totals for the shared and the
    independent (unrolled) form of the same configuration.

    ``source``: an ItNet, a Graph or an ItNetConfig. Tile counts do not depend on the input
    size; ``executions`` (per image run) and ``tile_mvms`` (tile activations per image:
    executions x tiles x output pixels) are at ``height`` x ``width`` (default: the graph's
    own size, else CamVid's 360 x 480).

    Returns a JSON-ready dict: ``tile`` (rows, cols), ``config``, ``size``, ``layers`` (this
    configuration, one dict per layer), ``totals`` with ``this``, ``shared`` and
    ``independent`` (each: layers, tiles, cells, weights, utilisation, tile_mvms, the
    dense/depthwise split and data/body/head tiles) and ``saving`` (independent tiles /
    shared tiles).
    """
    _check_hw(hw, "mapping_report")
    g = _graph_of(source, height, width)
    cfg = g.config
    rows = _layer_rows(g, hw)
    other = build_graph(dataclasses.replace(cfg, shared=not cfg.shared), g.height, g.width)
    other_totals = _totals(_layer_rows(other, hw))
    this = _totals(rows)
    shared, independent = (this, other_totals) if cfg.shared else (other_totals, this)
    return {
        "tile": {"rows": hw.rows, "cols": hw.cols},
        "config": cfg.to_dict(),
        "size": {"height": g.height, "width": g.width},
        "layers": rows,
        "totals": {"this": this, "shared": shared, "independent": independent},
        "saving": independent["tiles"] / shared["tiles"],
    }


def format_report(report: dict, layers: bool = True) -> str:
    """The mapping report as a readable table."""
    cfg = report["config"]
    tr, tc = report["tile"]["rows"], report["tile"]["cols"]
    mode = "shared" if cfg["shared"] else "independent"
    lines = [f"mapping onto {tr}x{tc} tiles: L={cfg['levels']} K={cfg['blocks']} N={cfg['iterations']} "
             f"f={cfg['width']}, {mode} weights, {report['size']['height']}x{report['size']['width']} input"]
    if layers:
        lines.append(f"  {'layer':<28} {'block':<5} {'kind':<9} {'rows':>5} {'cols':>5} {'tiles':>5} "
                     f"{'util %':>7} {'runs':>4}")
        for r in report["layers"]:
            lines.append(f"  {r['layer']:<28} {r['block']:<5} {r['kind']:<9} {r['rows']:>5} {r['cols']:>5} "
                         f"{r['tiles']:>5} {100 * r['utilisation']:>7.2f} {r['executions']:>4}")
    lines.append(f"  {'graph':<12} {'tiles':>6} {'(dense':>7} {'+ dw)':>6} {'cells':>12} {'weights':>10} "
                 f"{'util %':>7} {'tile MVMs/img':>14}")
    for key in ("shared", "independent"):
        t = report["totals"][key]
        mark = " <- this" if key == mode else ""
        lines.append(f"  {key:<12} {t['tiles']:>6} {t['dense']['tiles']:>7} {t['depthwise']['tiles']:>6} "
                     f"{t['cells']:>12,} {t['weights']:>10,} {100 * t['utilisation']:>7.2f} "
                     f"{t['tile_mvms']:>14,}{mark}")
    dw = report["totals"]["this"]["depthwise"]
    if dw["tiles"]:
        lines.append(f"  depthwise layers packed block-diagonally: {dw['weights']:,} weights on {dw['cells']:,} "
                     f"cells ({100 * dw['utilisation']:.2f} % used)")
    lines.append(f"  independent / shared tiles: {report['saving']:.2f}x")
    return "\n".join(lines)
