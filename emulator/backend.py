"""The chip as a backend of the engine's executor (``minitnet.executor.run``).

``ChipBackend`` runs the graph with every conv on the chip's tiles (read and ADC noise from
the run's ``rng``) and the digital ops exact, in the float engine's own ops: bias, BN
affines, activations, pooling, resizing, concatenation, residual additions and the sum of
the partial outputs of row pieces after their ADCs, and depthwise convs with
``depthwise="digital"``. So ``preset("ideal")`` reproduces the float engine's logits.
"""

from __future__ import annotations

import numpy as np

from minitnet.executor import FloatBackend

from .analog import blas_for_workers

__all__ = ["ChipBackend"]


class ChipBackend(FloatBackend):
    """Runs the graph with every conv on the chip's tiles (read and ADC noise from ``rng``)
    and the digital ops exact, in the float engine's ops; outputs come from the chip's
    recycled buffers (``chip.pool``)."""

    placed_ops = frozenset({"affine", "resize"})  # convs come from the chip's own buffers

    def __init__(self, chip, rng: np.random.Generator):
        super().__init__(chip.net.params)
        self.chip, self.rng = chip, rng
        self.pool = chip.pool

    def block(self):
        return blas_for_workers()  # once per block, not per conv

    def alloc(self, shape):
        return self.pool.empty(shape)

    def conv(self, node, layer, x, residual, out=None):
        if layer.name not in self.chip.layers:  # on no tile (depthwise="digital"): exact, in the periphery
            return super().conv(node, layer, x, residual, self.pool.empty((x.shape[0], *node.shape)))
        return self.chip.run_conv(layer.name, x, residual, node.act, self.rng, self.pool)

    def digital(self, node, layer, args, out=None):
        if node.op == "maxpool" and node.attrs["kernel_size"] == 1:
            return args[0]
        if out is None:
            out = self.pool.empty((args[0].shape[0], *node.shape))
        return super().digital(node, layer, args, out)
