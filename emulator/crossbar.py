"""One crossbar tile: program a weight matrix onto it, then run MVMs through the fixed pipeline.

Programming (once per tile; ``program_tile``), in this order::

    w --(quantise to weight_bits on ±w_max, clip)--> w_q
      --(differential pair: G+ = max(w_q,0) g_max/w_max, G- = max(-w_q,0) g_max/w_max)--> g_T
      --(programming noise)--> g_prog --(drift to t_inference)--> g_t
      --(stuck devices: G = 0 or g_max, in g_prog and g_t)-->
      w_eff = (G+ - G-) w_max / g_max,   read_var = (sigma+^2 + sigma-^2) (w_max/g_max)^2

RNG draws at programming, in order: programming noise (G+ then G-), drift
exponents (G+ then G-), stuck masks; each only when its term is on.

MVM (every call; ``mvm``), the fixed pipeline:

    1. DAC quantise (inp_bits, tile.inp_bound)  2. clip to ±inp_bound
    3. matmul with w_eff (np.dot, float32 BLAS)
    4. noise: read noise (per device, redrawn per MVM) and ADC-input noise
    5. ADC quantise (out_bits, tile.out_bound)  6. clip to ±out_bound
    then, digitally and exactly: the drift-compensation scale (1 when off).

The DAC/ADC ranges are fixed per tile (``tile.inp_bound``, ``tile.out_bound``):
taken from ``hw`` at programming, or set once by ``calibrate_tile`` on a few
calibration inputs; never derived from the input of an MVM.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass

import numpy as np

from . import noise
from .config import HardwareConfig
from .errors import ConfigError, ShapeError, WeightsError
from .quantize import quantize, quantize_weights

__all__ = ["ProgrammedTile", "program_tile", "calibrate_tile", "mvm", "MVM_FIELDS"]

MVM_FIELDS = frozenset({"inp_bits", "out_bits", "out_noise_std"})
"""HardwareConfig fields read by ``mvm``; all others are fixed when the tile is programmed."""


@dataclass(frozen=True, eq=False)
class ProgrammedTile:
    """A weight matrix programmed onto one tile: one draw of programming noise, drift
    and stuck devices, reused by every MVM.

    Shapes:
        w_eff: (rows, cols) float32, weight units: effective weights at ``hw.t_inference``
        read_var: (rows, cols) float32, weight units**2: per-weight read-noise variance
            (both devices of the pair), or None when read noise is off
        g_pos, g_neg: (rows, cols) float32, uS: conductances G+ and G- at ``hw.t_inference``
    rows <= hw.rows and cols <= hw.cols (a partly used tile).
    """

    w_eff: np.ndarray
    read_var: np.ndarray | None
    g_pos: np.ndarray
    g_neg: np.ndarray
    w_max: float
    """Weight mapped to g_max, in weight units."""
    out_scale: float
    """Digital drift-compensation scale applied after the ADC (1.0 when off)."""
    inp_bound: float | None
    """DAC full scale of this tile, in input units (None: no clip)."""
    out_bound: float | None
    """ADC full scale of this tile, in output units (None: no clip)."""
    hw: HardwareConfig
    """The config the tile was programmed with."""

    @property
    def rows(self) -> int:
        return self.w_eff.shape[0]

    @property
    def cols(self) -> int:
        return self.w_eff.shape[1]


def program_tile(w, hw: HardwareConfig, rng: np.random.Generator, *,
                 w_max: float | None = None) -> ProgrammedTile:
    """Program the weight matrix ``w`` onto one tile (see the module docstring for the steps).

    Shapes:
        w: (rows, cols), rows = inputs <= hw.rows, cols = outputs <= hw.cols
    w_max: the weight mapped to g_max, in weight units; default ``max|w|`` (1.0 if w == 0).
        Weights beyond ±w_max are clipped.
    """
    check_hw(hw, "program_tile")
    check_rng(rng, "program_tile")
    w = np.asarray(w)
    if w.ndim != 2 or not (1 <= w.shape[0] <= hw.rows and 1 <= w.shape[1] <= hw.cols):
        raise ShapeError(f"program_tile: w.shape={w.shape}, expected 2-D (rows=inputs, "
                         f"cols=outputs) with 1 <= rows <= {hw.rows} and 1 <= cols <= {hw.cols} "
                         f"(hw.rows x hw.cols); split larger matrices over several tiles")
    if not np.issubdtype(w.dtype, np.number) or np.iscomplexobj(w):
        raise ShapeError(f"program_tile: w.dtype={w.dtype}, expected a real float array")
    w = w.astype(np.float64)
    bad = np.count_nonzero(~np.isfinite(w))
    if bad:
        raise WeightsError(f"program_tile: w has {bad} non-finite values (NaN/inf) of {w.size}")
    if w_max is None:
        w_max = float(np.max(np.abs(w))) or 1.0
    elif not (np.isfinite(w_max) and w_max > 0):
        raise ConfigError(f"program_tile: w_max={w_max!r}, expected a finite number > 0")
    w_max = float(w_max)

    w_q = quantize_weights(w, hw.weight_bits, w_max)
    g_per_w = hw.g_max / w_max                        # uS per weight unit
    g_target = np.stack([np.maximum(w_q, 0.0), np.maximum(-w_q, 0.0)]) * g_per_w
    g_prog = noise.sample_programming(g_target, hw, rng)
    nu = noise.sample_drift_nu(g_target, hw, rng)
    g_t = noise.drift(g_prog, nu, hw)
    stuck = noise.sample_stuck(g_target.shape, hw, rng)
    if stuck is not None:
        for g in (g_prog, g_t):
            g[stuck[0]] = 0.0
            g[stuck[1]] = hw.g_max
    sigma = noise.read_noise_std(g_prog, g_t, hw)

    w_eff = ((g_t[0] - g_t[1]) / g_per_w).astype(np.float32)
    read_var = None
    if sigma is not None:
        read_var = ((sigma[0] ** 2 + sigma[1] ** 2) / g_per_w**2).astype(np.float32)
    out_scale = noise.global_drift_scale(g_prog, g_t) if hw.drift_compensation else 1.0
    return ProgrammedTile(
        w_eff=w_eff, read_var=read_var,
        g_pos=g_t[0].astype(np.float32), g_neg=g_t[1].astype(np.float32),
        w_max=w_max, out_scale=out_scale,
        inp_bound=hw.inp_bound, out_bound=hw.out_bound, hw=hw)


def calibrate_tile(tile: ProgrammedTile, x, *, quantile: float = 1.0) -> ProgrammedTile:
    """Fix the tile's DAC and ADC ranges from calibration inputs; returns a new tile.

    ``inp_bound`` = the ``quantile`` of ``|x|``; ``out_bound`` = the ``quantile`` of the
    noise-free ADC input ``|quantize(x, inp_bits, inp_bound) @ w_eff|`` (after drift,
    before drift compensation).  ``quantile=1`` takes the maxima (no clipping of the
    calibration data).  Deterministic: no read or ADC noise.

    Shapes: x: (P, rows), a few images' worth of this tile's input vectors.
    """
    if not (isinstance(quantile, numbers.Real) and 0 < quantile <= 1):
        raise ConfigError(f"calibrate_tile: quantile={quantile!r}, expected a number in (0, 1]")
    x = _as_batch(x, tile.rows, "calibrate_tile")
    inp_bound = _abs_quantile(x, quantile)
    if not inp_bound > 0:
        raise ConfigError(f"calibrate_tile: the calibration inputs give inp_bound={inp_bound} "
                          f"(x.shape={x.shape}, max|x|={np.max(np.abs(x))}); pass nonzero inputs")
    y = np.dot(quantize(x, tile.hw.inp_bits, inp_bound), tile.w_eff)
    out_bound = _abs_quantile(y, quantile)
    if not out_bound > 0:
        raise ConfigError(f"calibrate_tile: the tile's outputs on the calibration inputs give "
                          f"out_bound={out_bound} (max|w_eff|={np.max(np.abs(tile.w_eff))}); "
                          f"pass inputs that excite the tile, or set out_bound by hand")
    return dataclasses.replace(tile, inp_bound=inp_bound, out_bound=out_bound)


def mvm(tile: ProgrammedTile, x, hw: HardwareConfig, rng: np.random.Generator,
        out: np.ndarray | None = None) -> np.ndarray:
    """Analog matrix-vector products of a batch of input vectors on a programmed tile.

    Runs the fixed pipeline (module docstring): DAC quantise -> clip -> matmul ->
    noise -> ADC quantise -> clip, then the digital drift-compensation scale.
    With the ``ideal`` preset the result equals ``x @ w`` to float32 precision.
    ``hw`` may differ from ``tile.hw`` only in ``MVM_FIELDS``.  Each row of ``x``
    is one MVM: read and ADC noise are drawn independently per row.

    Shapes:
        x: (P, rows)  ->  out: (P, cols) float32, C-contiguous (allocated if None)
    """
    check_hw(hw, "mvm")
    check_rng(rng, "mvm")
    _check_same_device(tile.hw, hw)
    x = _as_batch(x, tile.rows, "mvm")
    shape = (x.shape[0], tile.cols)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif (out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous):
        raise ShapeError(f"mvm: out has shape {out.shape}, dtype {out.dtype}, C-contiguous="
                         f"{out.flags.c_contiguous}; expected {shape}, float32, C-contiguous")
    if hw.inp_bits is not None and tile.inp_bound is None:
        raise ConfigError(f"mvm: inp_bits={hw.inp_bits} but the tile has no DAC range "
                          f"(inp_bound=None); call calibrate_tile(tile, x_calib) or set inp_bound")
    if hw.out_bits is not None and tile.out_bound is None:
        raise ConfigError(f"mvm: out_bits={hw.out_bits} but the tile has no ADC range "
                          f"(out_bound=None); call calibrate_tile(tile, x_calib) or set out_bound")
    if hw.out_noise_std > 0 and tile.inp_bound is None:
        raise ConfigError(f"mvm: out_noise_std={hw.out_noise_std} is in units of w_max * inp_bound "
                          f"but the tile has inp_bound=None; call calibrate_tile or set inp_bound")

    # 1-2. DAC: quantise, clip (a no-op without bits and bound)
    if hw.inp_bits is None and tile.inp_bound is None:
        x_q = x
    else:
        x_q = quantize(x, hw.inp_bits, tile.inp_bound)
    # 3. matmul
    np.dot(x_q, tile.w_eff, out=out)
    # 4. noise: device read noise + noise at the ADC input (one draw, see add_mvm_noise)
    adc_std = hw.out_noise_std * tile.w_max * tile.inp_bound if hw.out_noise_std > 0 else 0.0
    noise.add_mvm_noise(out, x_q, tile.read_var, adc_std, rng)
    # 5-6. ADC: quantise, clip
    if hw.out_bits is not None or tile.out_bound is not None:
        quantize(out, hw.out_bits, tile.out_bound, out=out)
    # digital
    if tile.out_scale != 1.0:
        out *= np.float32(tile.out_scale)
    return out


# --- checks and helpers ---------------------------------------------------------------

def check_hw(hw, where):
    """Raise ``ConfigError`` unless ``hw`` is a ``HardwareConfig`` (``where``: the caller, for the message)."""
    if not isinstance(hw, HardwareConfig):
        raise ConfigError(f"{where}: hw must be an emulator.HardwareConfig (e.g. "
                          f"emulator.preset('pcm')), got {type(hw).__name__}")


def check_rng(rng, where):
    """Raise ``TypeError`` unless ``rng`` is a ``numpy.random.Generator``."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{where}: rng must be a numpy.random.Generator "
                        f"(np.random.default_rng(seed)), got {type(rng).__name__}")


def _check_same_device(programmed: HardwareConfig, hw: HardwareConfig) -> None:
    if hw is programmed:
        return
    differ = sorted(f.name for f in dataclasses.fields(HardwareConfig)
                    if f.name not in MVM_FIELDS
                    and getattr(hw, f.name) != getattr(programmed, f.name))
    if differ:
        detail = ", ".join(f"{n}: {getattr(programmed, n)!r} -> {getattr(hw, n)!r}" for n in differ)
        raise ConfigError(f"mvm: hw differs from the config the tile was programmed with in "
                          f"fields fixed at programming ({detail}); program the tile again, or "
                          f"change only {sorted(MVM_FIELDS)} between program_tile and mvm")


def _as_batch(x, rows, where):
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != rows:
        raise ShapeError(f"{where}: x.shape={x.shape}, expected (P, {rows}) with rows = the "
                         f"tile's inputs (reshape a single vector to (1, {rows}))")
    return np.ascontiguousarray(x, dtype=np.float32)


def _abs_quantile(a, q):
    a = np.abs(a)
    return float(np.max(a) if q == 1 else np.quantile(a, q))
