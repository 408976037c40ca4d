"""Execution packs: the arrays the Numba kernels read, built once per (calibrated) layer.

A pack turns the ``ProgrammedTile``s of one ``ProgrammedLayer`` and the ``HardwareConfig``
into the parameter tables of ``emulator.adc`` (``ti``, ``tf``, the depthwise ``cp``),
flat weight arrays, and the per-tap layout of stride-1 dense layers. Deterministic; no
random draws. ``Chip`` keeps one pack per layer until it is re-calibrated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import HardwareConfig
from .crossbar import ProgrammedTile
from .dense import DenseTiles, TapTiles
from .depthwise import CP_IN_BOUND, CP_IN_STEP, NO_GROUPS, DepthwiseTiles
from .errors import ConfigError
from .programming import ProgrammedLayer
from .quantize import levels_per_side

__all__ = ["TileExec", "DensePack", "DepthwisePack", "pack_layer", "INF"]

INF = np.float32(np.inf)


def _levels(bits):
    return 0 if bits is None else levels_per_side(bits)


def _step(bits, bound):
    """The float32 step of ``quantize`` (``x.dtype.type(bound / L)``); 1 when not quantising."""
    if bits is None or bound is None:
        return np.float32(1.0)
    return np.float32(bound / levels_per_side(bits))


def _bound(bound):
    return INF if bound is None else np.float32(bound)


def adc_std(tile: ProgrammedTile, hw: HardwareConfig) -> float:
    """``mvm``'s ADC-input noise std: out_noise_std * w_max * inp_bound (0 when off, or before
    calibration, where only the first calibration pass, which draws no noise, packs the tile);
    of a column with ``w_max_c = w_max`` (``TileExec.columns`` scales it per column)."""
    if hw.out_noise_std == 0 or tile.inp_bound is None:
        return 0.0
    return hw.out_noise_std * tile.w_max * tile.inp_bound


@dataclass
class TileExec:
    """One dense tile as the kernels see it (``w_eff`` and ``read_var`` transposed, ADC parameters)."""

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
    scale: np.float32 | np.ndarray  # drift compensation: one, or (cols,) with per-column compensation
    accumulate: bool             # a later row piece: add to the partial sum
    col_gain: np.ndarray | None = None  # (cols,) w_max_c / w_max (per-column weight scaling), or None

    def columns(self) -> np.ndarray:
        """(cols, 5) float32: the ``adc.TF_*`` parameters of each column (its ADC range and noise
        scale with ``col_gain``; the digital scale is the column's drift compensation)."""
        cols = self.col1 - self.col0
        tf = np.empty((cols, 5), np.float32)
        tf[:] = (self.adc_std, self.adc_var, self.out_step, self.out_bound, 0.0)
        tf[:, 4] = self.scale
        if self.col_gain is not None:
            g = self.col_gain
            tf[:, 0] = self.adc_std * g
            tf[:, 1] = tf[:, 0] ** 2
            tf[:, 2] = self.out_step * g
            tf[:, 3] = self.out_bound * g
        return tf


@dataclass
class DensePack:
    """A dense layer: ``dac = (in_L, row_step, row_bound)`` (the DAC of every weight row; the
    identity with per-vector input scaling, whose DAC is ``vec``), the tiles, their tables
    (``dense.DenseTiles``), the per-tap layout of a stride-1 layer (``dense.TapTiles``, or None;
    None with per-vector scaling) and the tiles that draw normals (plan order)."""

    dac: tuple
    vec: tuple                   # (on, in_L, step, bound): per-vector input scaling (dense.scale_piece)
    out_L: int
    tiles: list
    table: DenseTiles
    taps: TapTiles | None
    has_var: bool
    z_tiles: np.ndarray

    @property
    def rows(self) -> int:
        return self.dac[1].shape[0]


@dataclass
class DepthwisePack:
    """A depthwise layer: ``dense.DepthwiseTiles`` per channel, and the channel groups of its tiles."""

    table: DepthwiseTiles
    out_L: int
    groups: tuple                # (c0, c1) per tile, in programming order
    group_of: np.ndarray         # (C,) int64: each channel's tile (index into groups)
    rank: np.ndarray             # (C,) int64: c - c0 of its tile


def pack_layer(pl: ProgrammedLayer, hw: HardwareConfig, identity_dac: bool = False):
    """The arrays the kernels need, from the (calibrated) tiles of one layer: a ``DepthwisePack``
    or a ``DensePack``. ``identity_dac``: no DAC quantisation or clip (the first calibration pass).
    """
    in_L = 0 if identity_dac else _levels(hw.inp_bits)

    def dac(t):
        if identity_dac:
            return np.float32(1.0), INF
        return _step(hw.inp_bits, t.inp_bound), _bound(t.inp_bound)

    if pl.plan.depthwise:
        return _pack_depthwise(pl, hw, in_L, dac)
    return _pack_dense(pl, hw, in_L, dac)


def _pack_depthwise(pl: ProgrammedLayer, hw: HardwareConfig, in_L: int, dac) -> DepthwisePack:
    C = pl.layer.out_channels
    kk = pl.layer.kernel_size[0] * pl.layer.kernel_size[1]
    w, rv = np.zeros((C, kk), np.float32), np.zeros((C, kk), np.float32)
    cp = np.zeros((C, 7), np.float32)
    has_var = has_z = False
    groups = []
    for p, t in zip(pl.plan.pieces, pl.tiles):
        c = slice(p.col0, p.col1)
        groups.append((p.col0, p.col1))
        w[c] = t.w_eff.T
        if t.read_var is not None:
            rv[c] = t.read_var.T
            has_var = True
        a = adc_std(t, hw)
        has_z |= t.read_var is not None or a != 0
        cp[c, CP_IN_STEP], cp[c, CP_IN_BOUND] = dac(t)
        cp[c, :5] = (np.float32(a), np.float32(a) ** 2, _step(hw.out_bits, t.out_bound), _bound(t.out_bound), 0.0)
        cp[c, 4] = np.asarray(t.out_scale, np.float32)
        if t.col_gain is not None:  # per-column weight scaling: each channel's ADC range and noise
            cp[c, 0] = np.float32(a) * t.col_gain
            cp[c, 1] = cp[c, 0] ** 2
            cp[c, 2] = _step(hw.out_bits, t.out_bound) * t.col_gain
            cp[c, 3] = _bound(t.out_bound) * t.col_gain
    group_of, rank = np.zeros(C, np.int64), np.zeros(C, np.int64)
    for g, (c0, c1) in enumerate(groups):
        group_of[c0:c1] = g
        rank[c0:c1] = np.arange(c1 - c0)
    per_vector = np.array(groups, np.int64).reshape(-1, 2) if hw.inp_range == "per-vector" else NO_GROUPS
    return DepthwisePack(DepthwiseTiles(in_L, w, rv, cp, has_var, has_z, per_vector), _levels(hw.out_bits),
                         tuple(groups), group_of, rank)


def _pack_dense(pl: ProgrammedLayer, hw: HardwareConfig, in_L: int, dac) -> DensePack:
    rows = pl.plan.rows
    row_step = np.ones(rows, np.float32)
    row_bound = np.full(rows, INF, np.float32)
    tiles = []
    for p, t in zip(pl.plan.pieces, pl.tiles):
        s, b = dac(t)
        if p.col0 == 0:
            row_step[p.row0:p.row1], row_bound[p.row0:p.row1] = s, b
        elif row_bound[p.row0] != b:  # pragma: no cover - calibration gives a row piece one range
            raise ConfigError(f"{pl.name}: tiles of row piece [{p.row0}, {p.row1}) have different DAC ranges "
                              f"({row_bound[p.row0]} and {b}); the DAC drives all tiles of a row piece")
        a = adc_std(t, hw)
        tiles.append(TileExec(
            p.row0, p.row1, p.col0, p.col1, np.ascontiguousarray(t.w_eff.T),
            None if t.read_var is None else np.ascontiguousarray(t.read_var.T),
            t.read_var is not None or a != 0, np.float32(a), np.float32(a) ** 2,
            _step(hw.out_bits, t.out_bound), _bound(t.out_bound), np.asarray(t.out_scale, np.float32)[()],
            p.row0 != 0, t.col_gain))
    per_vector = hw.inp_range == "per-vector"
    if per_vector:  # unfold unquantised; scale_piece scales each piece's columns, then its DAC of range 1
        vec = (1, in_L, row_step[0], row_bound[0])
        dac_rows = (0, np.ones(rows, np.float32), np.full(rows, INF, np.float32))
    else:
        vec = (0, 0, np.float32(1.0), INF)
        dac_rows = (in_L, row_step, row_bound)
    table = _flatten(tiles)
    has_var = any(t.rvT is not None for t in tiles)
    # per-tap products for stride-1 kernels over 1x1 (a 1x1 im2col is just the DAC: no gain); not with per-vector
    # scaling (a plane value serves pixels of different scales: dense.conv_dense_scaled_nchw)
    taps = None
    if pl.layer.stride == 1 and pl.layer.kernel_size != (1, 1) and not per_vector:
        taps = _tap_tiles(dac_rows, tiles, table, has_var, pl.layer.kernel_size[0] * pl.layer.kernel_size[1])
    return DensePack(dac_rows, vec, _levels(hw.out_bits), tiles, table, taps, has_var,
                     np.array([t.has_z for t in tiles], bool))


def _flatten(tiles: list) -> DenseTiles:
    """The tiles as the tables of ``dense.conv_dense_tiles_nchw``: (ti, tf, w, rv)."""
    nt = len(tiles)
    ti = np.zeros((nt, 8), np.int64)
    tf = np.zeros((nt, max(t.col1 - t.col0 for t in tiles), 5), np.float32)  # per tile and column
    offs = np.cumsum([0] + [t.wT.size for t in tiles])
    w_flat = np.concatenate([t.wT.ravel() for t in tiles])
    rv_flat = np.zeros_like(w_flat)
    for i, t in enumerate(tiles):
        later = [u for u in tiles[i + 1:] if u.col0 == t.col0]  # later row pieces of these columns
        ti[i] = (t.row0, t.row1, t.col0, t.col1, offs[i], not t.accumulate, not later,
                 (t.rvT is not None) | (t.has_z << 1))
        tf[i, :t.col1 - t.col0] = t.columns()
        if t.rvT is not None:
            rv_flat[offs[i]:offs[i + 1]] = t.rvT.ravel()
    return DenseTiles(ti, tf, w_flat, rv_flat)


def _tap_tiles(dac: tuple, tiles: list, table: DenseTiles, has_var: bool, KK: int) -> TapTiles:
    """The per-tap layout of a stride-1 layer's tiles, KK = KH*KW taps.

    The rows (c, ky, kx) of a row piece [row0, row1) that belong to tap k = ky*KW + kx are
    those of the channels a_k = ceil((row0 - k) / KK) .. b_k = ceil((row1 - k) / KK): one
    contiguous channel range per tap, so tile t's product is a sum of one sgemm per tap.
    Each row piece quantises the planes of its channels [row0 // KK, (row1 - 1) // KK] with
    its own DAC into its own rows of the plane buffer.
    """
    in_L, row_step, row_bound = dac
    starts = sorted({t.row0 for t in tiles})
    piece_of = {r0: i for i, r0 in enumerate(starts)}
    plane_ch, plane_piece, first_row = [], [], {}
    piece_dac = np.zeros((len(starts), 2), np.float32)
    for t in tiles:
        i = piece_of[t.row0]
        if t.row0 in first_row:
            continue
        cA, cB = t.row0 // KK, (t.row1 - 1) // KK + 1
        first_row[t.row0] = len(plane_ch) - cA  # plane row of channel c: first_row + c
        plane_ch += range(cA, cB)
        plane_piece += [i] * (cB - cA)
        piece_dac[i] = row_step[t.row0], row_bound[t.row0]
    tt = np.zeros((len(tiles), KK, 4), np.int64)
    ws, rvs, off = [], [], 0
    for j, t in enumerate(tiles):
        for k in range(KK):
            a, b = -((k - t.row0) // KK), -((k - t.row1) // KK)  # ceil((row0 - k) / KK), ceil((row1 - k) / KK)
            rows = np.arange(a, b) * KK + k - t.row0            # this tap's rows inside the tile
            ws.append(np.ascontiguousarray(t.wT[:, rows]).ravel())
            rvs.append(np.ascontiguousarray(t.rvT[:, rows]).ravel() if t.rvT is not None
                       else np.zeros(t.wT.shape[0] * rows.size, np.float32))
            tt[j, k] = a, b, off, first_row[t.row0] + a
            off += ws[-1].size
    return TapTiles(in_L, np.array(plane_ch, np.int64), np.array(plane_piece, np.int64), piece_dac, table.ti,
                    table.tf, tt, np.concatenate(ws), np.concatenate(rvs), has_var)
