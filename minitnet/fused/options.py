"""The fused compiler's tuning knobs: one frozen, validated dataclass.

    net = minitnet.load("weights/camvid-shared-f51.h5")
    net.fused_options = FusedOptions(winograd_min_bytes=1 << 20)  # taps on small maps

The values only choose kernels and cut work into bands: any valid setting gives
the same network (sums may be ordered differently, within float32 rounding). The
defaults are the measured best for the f = 51 model on the reference machine
(``benchmarks/bench_conv.py``, ``bench_bottleneck.py``, ``bench_network.py``).
"""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["FusedOptions"]


@dataclass(frozen=True)
class FusedOptions:
    """How the fused compiler cuts work and which conv kernel it picks."""

    taps_run_pixels: int = 512
    """Pixels per sgemm run aimed at by a row band of a stride-1 conv run as one sgemm per
    tap (``padded.conv2d_nchwp_taps``): with ~0.5k columns the band's input panel, the
    weights and the output stay in L1/L2. >= 1."""

    bottleneck_band_rows: int = 8
    """Output rows per band of a fused bottleneck (``padded.bottleneck_nchwp``): the worker's
    expanded map, C_h x (rows + 2) x (W + 2) floats, stays in L2. >= 1."""

    im2col_scratch_elems: int = 1 << 17
    """Float32 elements of im2col scratch per worker for strided convs
    (``padded.conv2d_nchwp_im2col``); the row band is sized to fit it. >= 1."""

    winograd_band_tiles: int = 180
    """Winograd F(2x2, 3x3) tiles per band (``winograd.conv2d_nchwp_winograd``): the band's
    transformed input, 16 x C_in x tiles floats, stays in L2. >= 1."""

    winograd_min_bytes: int = 0
    """3x3 stride-1 convs whose padded input has more bytes than this run by Winograd, the
    others as one sgemm per tap. 0: Winograd everywhere; raise it to prefer taps on maps
    that fit the cache. >= 0."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            lo = 0 if f.name == "winograd_min_bytes" else 1
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
                raise ConfigError(f"FusedOptions.{f.name}={v!r}: expected an integer >= {lo}")

    def replace(self, **changes) -> "FusedOptions":
        """A copy with ``changes`` applied (validated like a new one); unknown names are listed."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"FusedOptions: unknown option(s) {unknown}; the options are {sorted(known)}")
        return dataclasses.replace(self, **changes)
