"""One crossbar tile: program a weight matrix onto it, then run MVMs through the fixed pipeline.

Programming (once per tile; ``program_tile``), in this order::

    w --(quantise to weight_bits on ±w_max, clip)--> w_q
      --(differential pair: G+ = max(w_q,0) g_max/w_max, G- = max(-w_q,0) g_max/w_max)--> g_T
      --(programming noise)--> g_prog --(drift to t_inference)--> g_t
      --(stuck devices: G = 0 or g_max, in g_prog and g_t)-->
      w_eff = (G+ - G-) w_max / g_max,   read_var = (sigma+^2 + sigma-^2) (w_max/g_max)^2

RNG draws at programming, in order: programming noise (G+ then G-), drift
exponents (G+ then G-), stuck masks; each only when its term is on.

With ``read_noise_mode="frozen"`` one more draw follows (after the stuck masks): the
1/f read noise of every device, added once to ``g_t`` and clamped at 0; ``read_var`` is
then None (aihwkit's ``drift_analog_weights``).  With ``weight_scaling="column"`` each
column maps its own ``w_max_c`` to ``g_max``; ``col_gain = w_max_c / w_max`` scales the
column's ADC range and noise (one converter range in current for the tile).

MVM (every call; ``mvm``), the fixed pipeline:

    0. per-vector input scaling only: x /= s, s = max|x| of the vector (1 if x == 0)
    1. DAC quantise (inp_bits, tile.inp_bound)  2. clip to ±inp_bound
    3. matmul with w_eff (np.dot, float32 BLAS)
    4. noise: read noise (per device, redrawn per MVM) and ADC-input noise
    5. ADC quantise (out_bits, tile.out_bound)  6. clip to ±out_bound
    then, digitally and exactly: x s (per-vector), the drift-compensation scale (1 when off).
Column c's ADC-input noise std is ``out_noise_std * w_max * col_gain_c * inp_bound`` and
its ADC range ``±out_bound * col_gain_c`` (``col_gain`` = 1 with one ``w_max`` per tile).

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

__all__ = ["ProgrammedTile", "program_tile", "calibrate_tile", "mvm", "vector_scales", "MVM_FIELDS"]

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
    """Weight mapped to g_max, in weight units (with per-column scaling: the largest column's)."""
    out_scale: float | np.ndarray
    """Digital drift-compensation scale applied after the ADC (1.0 when off): a float, or
    (cols,) float64 with ``drift_compensation="column"``."""
    inp_bound: float | None
    """DAC full scale of this tile, in input units (None: no clip); 1.0 with
    ``inp_range="per-vector"`` (inputs scaled to max |x| = 1)."""
    out_bound: float | None
    """ADC full scale of this tile, in output units (None: no clip), for a column with
    ``w_max_c = w_max`` and, with per-vector scaling, a vector with max |x| = 1."""
    hw: HardwareConfig
    """The config the tile was programmed with."""
    col_gain: np.ndarray | None = None
    """(cols,) float32 ``w_max_c / w_max`` with ``weight_scaling="column"`` (None: all 1)."""

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

    col_gain = None
    if hw.weight_scaling == "column":
        w_max_c = np.minimum(np.max(np.abs(w), axis=0), w_max)
        w_max_c[w_max_c == 0] = w_max                 # an all-zero column: nothing to scale
        w_q = quantize_weights(w / w_max_c, hw.weight_bits, 1.0) * w_max_c
        g_per_w = hw.g_max / w_max_c                  # uS per weight unit, per column
        col_gain = (w_max_c / w_max).astype(np.float32)
    else:
        w_q = quantize_weights(w, hw.weight_bits, w_max)
        g_per_w = hw.g_max / w_max                    # uS per weight unit
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
    if sigma is not None and hw.read_noise_mode == "frozen":
        g_t = noise.sample_frozen_read(g_t, sigma, rng)
        sigma = None

    w_eff = ((g_t[0] - g_t[1]) / g_per_w).astype(np.float32)
    read_var = None
    if sigma is not None:
        read_var = ((sigma[0] ** 2 + sigma[1] ** 2) / g_per_w**2).astype(np.float32)
    mode = hw.drift_compensation_mode
    out_scale = 1.0
    if mode == "global":
        out_scale = noise.global_drift_scale(g_prog, g_t)
    elif mode == "column":
        out_scale = noise.column_drift_scale(g_prog, g_t)
    inp_bound = 1.0 if hw.inp_range == "per-vector" else hw.inp_bound
    return ProgrammedTile(
        w_eff=w_eff, read_var=read_var,
        g_pos=g_t[0].astype(np.float32), g_neg=g_t[1].astype(np.float32),
        w_max=w_max, out_scale=out_scale,
        inp_bound=inp_bound, out_bound=hw.out_bound, hw=hw, col_gain=col_gain)


def calibrate_tile(tile: ProgrammedTile, x, *, quantile: float | None = None) -> ProgrammedTile:
    """Fix the tile's DAC and ADC ranges from calibration inputs; returns a new tile.

    ``inp_bound`` = the ``quantile`` of ``|x|``; ``out_bound`` = the ``quantile`` of the
    noise-free ADC input ``|quantize(x, inp_bits, inp_bound) @ w_eff| / col_gain`` (after
    drift, before drift compensation).  ``quantile=1`` takes the maxima (no clipping of the
    calibration data); None (default): ``hw.inp_quantile`` for ``inp_bound`` and the maximum
    for ``out_bound``.  With ``inp_range="per-vector"`` the DAC range stays 1 and the
    outputs are those of the inputs scaled to max |x| = 1.  Deterministic: no read or ADC noise.

    Shapes: x: (P, rows), a few images' worth of this tile's input vectors.
    """
    if quantile is not None and not (isinstance(quantile, numbers.Real) and 0 < quantile <= 1):
        raise ConfigError(f"calibrate_tile: quantile={quantile!r}, expected a number in (0, 1] or None")
    q_inp = tile.hw.inp_quantile if quantile is None else quantile
    q_out = 1.0 if quantile is None else quantile
    x = _as_batch(x, tile.rows, "calibrate_tile")
    if tile.hw.inp_range == "per-vector":
        x, inp_bound = x / vector_scales(x)[:, None], 1.0
    else:
        inp_bound = _abs_quantile(x, q_inp)
    if not inp_bound > 0:
        raise ConfigError(f"calibrate_tile: the calibration inputs give inp_bound={inp_bound} "
                          f"(x.shape={x.shape}, max|x|={np.max(np.abs(x))}); pass nonzero inputs")
    y = np.dot(quantize(x, tile.hw.inp_bits, inp_bound), tile.w_eff)
    if tile.col_gain is not None:
        y /= tile.col_gain
    out_bound = _abs_quantile(y, q_out)
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

    # 0. per-vector input scaling (digital): each vector to max|x| = 1
    s = None
    if tile.hw.inp_range == "per-vector":
        s = vector_scales(x)
        x = x / s[:, None]
    # 1-2. DAC: quantise, clip (a no-op without bits and bound)
    if hw.inp_bits is None and tile.inp_bound is None:
        x_q = x
    else:
        x_q = quantize(x, hw.inp_bits, tile.inp_bound)
    # 3. matmul
    np.dot(x_q, tile.w_eff, out=out)
    # 4. noise: device read noise + noise at the ADC input (one draw, see add_mvm_noise)
    adc_std = hw.out_noise_std * tile.w_max * tile.inp_bound if hw.out_noise_std > 0 else 0.0
    if tile.col_gain is not None and adc_std:
        adc_std = np.float32(adc_std) * tile.col_gain
    noise.add_mvm_noise(out, x_q, tile.read_var, adc_std, rng)
    # 5-6. ADC: quantise, clip (per-column ranges: in the units of the largest column)
    if hw.out_bits is not None or tile.out_bound is not None:
        if tile.col_gain is None:
            quantize(out, hw.out_bits, tile.out_bound, out=out)
        else:
            out /= tile.col_gain
            quantize(out, hw.out_bits, tile.out_bound, out=out)
            out *= tile.col_gain
    # digital
    if s is not None:
        out *= s[:, None]
    if np.any(np.asarray(tile.out_scale) != 1.0):
        out *= np.asarray(tile.out_scale, np.float32)
    return out


def vector_scales(x: np.ndarray) -> np.ndarray:
    """Per-vector input scales of ``inp_range="per-vector"``: max |x| of each row (1 where 0).

    Shapes: x: (P, rows) -> (P,) float32
    """
    s = np.max(np.abs(x), axis=1).astype(np.float32)
    s[s == 0] = 1.0
    return s


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
