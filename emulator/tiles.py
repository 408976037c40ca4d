"""Tile plans: how each unique conv layer of the graph IR is laid onto crossbar tiles.

A conv layer with weights (C_out, C_in/groups, KH, KW) becomes a weight matrix
of ``rows = KH*KW*C_in`` inputs by ``cols = C_out`` outputs; its rows follow
the im2col order ``(c_in, ky, kx)``, i.e. ``w.reshape(C_out, -1).T``.

Dense layers are split into ``r = ceil(rows / tile rows)`` row pieces and
``c = ceil(cols / tile cols)`` column pieces of balanced sizes (sizes differ by
at most one), one tile per (row piece, column piece). Partial sums of the row
pieces are added digitally after each tile's ADC.

Depthwise layers (groups == C_in == C_out) are packed block-diagonally: a tile
holds ``g = min(tile rows // (KH*KW), tile cols)`` channels, each channel's
KH*KW taps in its own rows and its output in its own column; channels are
spread over ``ceil(C / g)`` tiles in balanced groups. Cells off the diagonal
blocks stay unused, which the utilisation reports.

A "cell" is one weight: a differential pair of devices at one (row, column).
Only ``conv`` layers go onto tiles; BN affines, activations, pooling,
resizing, concatenation and additions run in digital periphery, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import HardwareConfig

__all__ = ["on_tiles", "TilePiece", "LayerPlan", "balanced_splits", "plan_layer", "plan_graph"]


def balanced_splits(n: int, parts: int) -> tuple[tuple[int, int], ...]:
    """``parts`` contiguous ranges covering 0..n whose sizes differ by at most one."""
    base, extra = divmod(n, parts)
    out, start = [], 0
    for i in range(parts):
        size = base + (1 if i < extra else 0)
        out.append((start, start + size))
        start += size
    return tuple(out)


@dataclass(frozen=True)
class TilePiece:
    """One tile's share of a layer's weight matrix: rows [row0, row1) x cols [col0, col1).

    For a depthwise layer the piece is a channel group [col0, col1) whose rows are
    the taps of those channels, [col0*KK, col1*KK) with KK = KH*KW.
    """

    row0: int
    row1: int
    col0: int
    col1: int

    @property
    def rows(self) -> int:
        return self.row1 - self.row0

    @property
    def cols(self) -> int:
        return self.col1 - self.col0


@dataclass(frozen=True)
class LayerPlan:
    """The tiles of one unique conv layer."""

    layer: str
    rows: int
    cols: int
    depthwise: bool
    pieces: tuple[TilePiece, ...]
    row_splits: tuple[tuple[int, int], ...]
    col_splits: tuple[tuple[int, int], ...]
    tile_rows: int
    tile_cols: int
    weights: int  # cells holding a weight

    @property
    def tiles(self) -> int:
        return len(self.pieces)

    @property
    def cells(self) -> int:
        """Cells of the tiles allotted to this layer (used or not)."""
        return self.tiles * self.tile_rows * self.tile_cols

    @property
    def utilisation(self) -> float:
        """Fraction of the allotted cells that hold a weight."""
        return self.weights / self.cells

    @property
    def mvms_per_pixel(self) -> int:
        """Tile MVMs per output pixel: every tile of the layer works once per pixel."""
        return self.tiles


def plan_layer(layer, hw: HardwareConfig) -> LayerPlan:
    """Tile plan of one ``minitnet.graph.Layer`` (kind "conv") on tiles of ``hw``."""
    if layer.kind != "conv":
        raise ValueError(f"plan_layer: only conv layers go onto tiles, {layer.name!r} is {layer.kind!r}")
    kh, kw = layer.kernel_size
    kk = kh * kw
    R, C = hw.rows, hw.cols
    if layer.depthwise:
        ch = layer.out_channels
        per_tile = min(R // kk, C)
        if per_tile < 1:
            raise ValueError(f"plan_layer: a {kh}x{kw} depthwise channel needs {kk} rows, tiles have {R}")
        groups = balanced_splits(ch, -(-ch // per_tile))
        pieces = tuple(TilePiece(c0 * kk, c1 * kk, c0, c1) for c0, c1 in groups)
        return LayerPlan(layer.name, kk * ch, ch, True, pieces, tuple((p.row0, p.row1) for p in pieces), groups,
                         R, C, kk * ch)
    if layer.groups != 1:
        raise ValueError(f"plan_layer: grouped conv {layer.name!r} (groups={layer.groups}) is not supported")
    rows = kk * layer.in_channels
    cols = layer.out_channels
    rs = balanced_splits(rows, -(-rows // R))
    cs = balanced_splits(cols, -(-cols // C))
    pieces = tuple(TilePiece(r0, r1, c0, c1) for r0, r1 in rs for c0, c1 in cs)
    return LayerPlan(layer.name, rows, cols, False, pieces, rs, cs, R, C, rows * cols)


def plan_graph(graph, hw: HardwareConfig) -> dict[str, LayerPlan]:
    """Plans of every unique conv layer of a ``minitnet.graph.Graph``, in execution order.

    A shared iterative block's layers appear once (programmed once, reused N
    times); independent weights give N sets.  With ``hw.depthwise == "digital"``
    depthwise layers run in the periphery and have no plan.
    """
    return {lay.name: plan_layer(lay, hw) for lay in graph.conv_layers() if on_tiles(lay, hw)}


def on_tiles(layer, hw: HardwareConfig) -> bool:
    """Whether conv ``layer`` runs on tiles of ``hw`` (not a depthwise layer with ``depthwise="digital"``)."""
    return not (layer.depthwise and hw.depthwise == "digital")
