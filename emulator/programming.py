"""Programming the graph's conv layers onto tiles: one ``ProgrammedLayer`` per unique layer.

What goes where (the conventions of ``emulator/tiles.py``):

* every unique conv layer of the graph IR (``Graph.layers``) becomes a weight matrix of
  ``KH*KW*C_in`` rows by ``C_out`` columns (rows in im2col order ``(c_in, ky, kx)``), split
  over tiles in balanced pieces; the folded BN goes into the programmed weights
  (``minitnet.weights.fold_weights``), the bias stays digital;
* depthwise layers are packed block-diagonally: a tile holds a group of channels, each
  channel's taps in its own rows and its output in its own column; the off-diagonal cells
  are left unprogrammed and carry no current, so a column sees its own taps only.

Programmed tiles are keyed by the *resolved* layer name (``Graph.layer_name(node, n)``):
with shared weights every iteration resolves to the same layer and so runs on the same
tiles, with the same fixed-pattern noise, drift and stuck devices; independent weights
resolve to N programmed bodies, each its own draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minitnet.graph import Graph, Layer

from .config import HardwareConfig
from .crossbar import ProgrammedTile, program_tile
from .tiles import LayerPlan, plan_graph

__all__ = ["ProgrammedLayer", "tile_matrices", "program_layers"]


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


def tile_matrices(layer: Layer, plan: LayerPlan, w: np.ndarray) -> list[np.ndarray]:
    """The (rows, cols) matrix each tile of ``plan`` holds, from the layer's OIHW weights ``w``:
    a dense piece ``W[row0:row1, col0:col1]`` of ``W = w.reshape(C_out, -1).T``, a depthwise
    group of channels as (KH*KW, channels)."""
    if plan.depthwise:
        kk = layer.kernel_size[0] * layer.kernel_size[1]
        return [w[p.col0:p.col1].reshape(p.cols, kk).T for p in plan.pieces]
    W = w.reshape(layer.out_channels, -1).T
    return [W[p.row0:p.row1, p.col0:p.col1] for p in plan.pieces]


def program_layers(g: Graph, params: dict, hw: HardwareConfig, rng: np.random.Generator) -> dict:
    """Every unique conv layer of ``g`` programmed onto tiles of ``hw``: {name: ProgrammedLayer}.

    One draw per tile from ``rng`` (``crossbar.program_tile``), in a fixed order: layers in
    execution order, tiles in plan order. ``params``: {name: (w OIHW, b)}, BN folded.
    """
    layers = {}
    for name, plan in plan_graph(g, hw).items():
        lay = g.layers[name]
        w, b = params[name]
        tiles = tuple(program_tile(m, hw, rng) for m in tile_matrices(lay, plan, w))
        layers[name] = ProgrammedLayer(lay, plan, tiles, np.ascontiguousarray(b, np.float32))
    return layers
