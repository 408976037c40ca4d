"""Pass 3 of the fused compiler: the kernel that runs each conv left after fusion.

- 3x3 stride 1 padding 1: Winograd F(2x2, 3x3) (``winograd.conv2d_nchwp_winograd``)
  when the padded input has more than ``FusedOptions.winograd_min_bytes`` bytes,
  else one sgemm per tap;
- any other stride-1 "same" conv (a 1x1): one sgemm per tap
  (``padded.conv2d_nchwp_taps``);
- strided convs without a residual: band-wise im2col + sgemm
  (``padded.conv2d_nchwp_im2col``).

Grouped convs outside a bottleneck chain, padding > 1, strided convs with a
residual and convs of a plain (unpadded) value have no fused kernel: ``None``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..graph import Layer, Node
from .options import FusedOptions

__all__ = ["ConvChoice", "select_conv"]


@dataclass(frozen=True)
class ConvChoice:
    """kind: "winograd", "taps" or "im2col"; info: what the runtime needs of it
    (output H, W; C_in and C_out for Winograd; the flat tap shifts ``offs`` for taps;
    K = C_in*KH*KW for im2col)."""

    kind: str
    info: dict


def select_conv(layer: Layer, node: Node, options: FusedOptions, plain_input: bool = False) -> ConvChoice | None:
    """The kernel for conv ``node`` of ``layer``; None if no fused kernel runs it."""
    kh, kw = layer.kernel_size
    if layer.groups != 1 or layer.padding > 1 or plain_input:
        return None
    H, W = node.shape[1:]
    if layer.stride == 1 and kh == kw == 3 and layer.padding == 1 and \
            4 * layer.in_channels * (H + 2) * (W + 2) > options.winograd_min_bytes:
        return ConvChoice("winograd", dict(H=H, W=W, C_in=layer.in_channels, C_out=layer.out_channels))
    if layer.stride == 1 and kh == kw == 2 * layer.padding + 1:
        return ConvChoice("taps", dict(H=H, W=W, offs=tap_offsets(kh, kw, layer.padding, W + 2)))
    if node.residual is None:
        return ConvChoice("im2col", dict(H=H, W=W, K=layer.in_channels * kh * kw))
    return None


def tap_offsets(KH: int, KW: int, padding: int, Wp: int) -> np.ndarray:
    """(KH*KW,) int64: the flat shift of tap (ky, kx) on padded rows of Wp floats,
    ``(ky - padding)*Wp + (kx - padding)``."""
    return np.array([(ky - padding) * Wp + (kx - padding) for ky in range(KH) for kx in range(KW)], np.int64)
