"""Hardware description of an analog in-memory-computing tile: ``HardwareConfig`` and presets.

One frozen dataclass, validated on construction; every field states its unit.
Presets are ready-made configs; ``preset(name, **overrides)`` derives a new one
with :func:`dataclasses.replace`, so overrides are validated exactly like a
direct construction.

Which fields act when (see ``emulator/crossbar.py``):

* at programming (``program_tile``): geometry, weight encoding, the device model
  (programming noise, drift, read-noise statistics, stuck devices), the default
  DAC/ADC ranges and drift compensation;
* at every MVM (``mvm``): ``inp_bits``, ``out_bits``, ``out_noise_std``.  Only
  these may differ between the config a tile was programmed with and the one
  passed to ``mvm`` (so an ADC sweep needs no re-programming).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import types
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

__all__ = ["HardwareConfig", "PRESETS", "preset", "with_overrides", "DEVICE_MODELS", "MAX_BITS"]

DEVICE_MODELS = ("gaussian", "pcm")
"""Statistical device models; see ``HardwareConfig.device_model``."""

MAX_BITS = 24
"""Largest accepted bit depth: quantiser codes must stay exact in float32 (24-bit mantissa)."""


@dataclass(frozen=True)
class HardwareConfig:
    """An analog crossbar tile: geometry, weight encoding, DAC/ADC and device non-idealities.

    The defaults are the ``ideal`` preset: no noise, no drift, unlimited precision
    (``None`` bits), no clipping (``None`` bounds).

    Weight encoding: a tile holds a weight matrix ``w`` (rows = inputs, cols =
    outputs) as a differential pair per weight, ``w = (G+ - G-) * w_max / g_max``,
    with ``w_max = max|w|`` of the tile: a positive weight programs ``G+`` and
    leaves ``G-`` at 0, and vice versa.
    """

    # --- geometry -------------------------------------------------------------------
    rows: int = 256
    """Crossbar rows per tile (word lines = inputs of the MVM), in devices. >= 1."""
    cols: int = 256
    """Crossbar columns per tile (bit lines = outputs of the MVM), in device pairs. >= 1."""

    # --- weight encoding ------------------------------------------------------------
    g_max: float = 25.0
    """Largest target conductance of one device, in uS; ``w_max`` maps to it. > 0."""
    weight_bits: int | None = None
    """Signed weight precision, in bits, or None (unlimited, analog).  ``b`` bits give
    ``2**(b-1) - 1`` levels per sign (``2**b - 1`` signed values, 0 included), i.e.
    ``2**(b-1)`` conductance levels ``0 .. g_max`` per device.  >= 2."""

    # --- DAC (inputs) ---------------------------------------------------------------
    inp_bits: int | None = None
    """DAC precision, in bits (sign included), or None (unlimited).  Mid-tread,
    ``2**(inp_bits-1) - 1`` levels per sign within ``±inp_bound``.  >= 2."""
    inp_bound: float | None = None
    """DAC full scale: inputs are clipped to ``±inp_bound``, in input (activation) units.
    None: no fixed value; ``calibrate_tile`` sets one per tile from calibration data
    (required when ``inp_bits`` or ``out_noise_std`` is set).  > 0."""

    # --- ADC (outputs) --------------------------------------------------------------
    out_bits: int | None = None
    """ADC precision, in bits (sign included), or None (unlimited).  Mid-tread,
    ``2**(out_bits-1) - 1`` levels per sign within ``±out_bound``.  >= 2."""
    out_bound: float | None = None
    """ADC full scale: outputs are clipped to ``±out_bound``, in output units (those of
    ``x @ w``).  None: set per tile by ``calibrate_tile`` (required when ``out_bits``
    is set); without either, no clipping.  > 0."""
    out_noise_std: float = 0.0
    """Std of additive Gaussian noise at the ADC input, fresh at every MVM, in units
    of ``w_max * inp_bound`` (the output of one full-scale weight driven at full-scale
    input; aihwkit's normalised output unit).  >= 0."""

    # --- device model ---------------------------------------------------------------
    device_model: str = "gaussian"
    """Statistics of programming noise, drift exponents and read noise:
    ``"gaussian"``: conductance-independent, set by ``prog_noise_std``,
    ``read_noise_std``, ``drift_nu_mean``, ``drift_nu_std``;
    ``"pcm"``: the published PCM model (Nandakumar et al. 2019; Joshi et al. 2020;
    constants in ``emulator/noise.py``); the four gaussian fields must then be 0
    and the ``*_scale`` fields scale the model."""
    prog_noise_std: float = 0.0
    """Gaussian model: std of the programming error of each device, drawn once at
    programming, in uS.  >= 0."""
    read_noise_std: float = 0.0
    """Gaussian model: std of each device's read noise, redrawn at every MVM, in uS.  >= 0."""
    drift_nu_mean: float = 0.0
    """Gaussian model: mean of the per-device drift exponent nu, dimensionless.  >= 0."""
    drift_nu_std: float = 0.0
    """Gaussian model: std of the per-device drift exponent nu (drawn once per device,
    folded to nu >= 0), dimensionless.  >= 0."""
    prog_noise_scale: float = 1.0
    """Multiplier on the model's programming-noise std, dimensionless (1 = as published).  >= 0."""
    read_noise_scale: float = 1.0
    """Multiplier on the model's read-noise std, dimensionless.  >= 0."""
    drift_scale: float = 1.0
    """Multiplier on the drawn drift exponents nu, dimensionless.  >= 0."""

    # --- time -----------------------------------------------------------------------
    t_inference: float = 0.0
    """Time of inference after the reference read at ``drift_t0``, in s (0 = no drift).
    Conductance ``g = g_prog * ((drift_t0 + t_inference) / drift_t0) ** -nu``.  >= 0."""
    drift_t0: float = 20.0
    """Time after programming of the reference read that defines ``g_prog``, in s.  > 0."""
    t_read: float = 250e-9
    """Duration of one read pulse, in s (PCM 1/f read-noise model only).  > 0."""

    # --- defective devices ----------------------------------------------------------
    stuck_at_0_fraction: float = 0.0
    """Fraction of devices stuck at conductance 0 (drawn once at programming), dimensionless, in [0, 1]."""
    stuck_at_gmax_fraction: float = 0.0
    """Fraction of devices stuck at ``g_max``, dimensionless, in [0, 1]; the two fractions sum to <= 1."""

    # --- digital correction ---------------------------------------------------------
    drift_compensation: bool = False
    """Global drift compensation (aihwkit's GlobalDriftCompensation): one digital scale
    per tile, ``mean|G+ - G-|`` just after programming over ``mean|G+ - G-|`` at
    ``t_inference`` (an ideal calibration read), applied to the ADC output."""

    def __post_init__(self) -> None:
        for name in ("rows", "cols"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("weight_bits", "inp_bits", "out_bits"):
            value = getattr(self, name)
            if value is not None:
                _check_int(name, value, minimum=2, maximum=MAX_BITS,
                           hint="None means unlimited; a symmetric mid-tread quantiser with "
                                "2**(bits-1)-1 levels per sign needs bits >= 2")
        _check_real("g_max", self.g_max, positive=True)
        for name in ("inp_bound", "out_bound"):
            value = getattr(self, name)
            if value is not None:
                _check_real(name, value, positive=True,
                            hint="None lets calibrate_tile fix the range per tile")
        for name in ("out_noise_std", "prog_noise_std", "read_noise_std", "drift_nu_mean",
                     "drift_nu_std", "prog_noise_scale", "read_noise_scale", "drift_scale",
                     "t_inference", "stuck_at_0_fraction", "stuck_at_gmax_fraction"):
            _check_real(name, getattr(self, name), positive=False)
        for name in ("drift_t0", "t_read"):
            _check_real(name, getattr(self, name), positive=True)
        for name in ("stuck_at_0_fraction", "stuck_at_gmax_fraction"):
            if getattr(self, name) > 1:
                raise ConfigError(f"HardwareConfig.{name}={getattr(self, name)!r}: expected a "
                                  f"fraction in [0, 1]")
        stuck = self.stuck_at_0_fraction + self.stuck_at_gmax_fraction
        if stuck > 1:
            raise ConfigError(
                f"HardwareConfig: stuck_at_0_fraction + stuck_at_gmax_fraction = {stuck!r} "
                f"({self.stuck_at_0_fraction!r} + {self.stuck_at_gmax_fraction!r}): expected <= 1")
        if self.device_model not in DEVICE_MODELS:
            raise ConfigError(f"HardwareConfig.device_model={self.device_model!r}: expected one "
                              f"of {list(DEVICE_MODELS)}")
        if self.device_model == "pcm":
            for name, scale in (("prog_noise_std", "prog_noise_scale"),
                                ("read_noise_std", "read_noise_scale"),
                                ("drift_nu_mean", "drift_scale"), ("drift_nu_std", "drift_scale")):
                if getattr(self, name) != 0:
                    raise ConfigError(
                        f"HardwareConfig.{name}={getattr(self, name)!r} has no effect with "
                        f"device_model='pcm' (the published PCM statistics apply): set it to 0 "
                        f"and use {scale} to scale the PCM model, or use device_model='gaussian'")
        if not isinstance(self.drift_compensation, (bool, np.bool_)):
            raise ConfigError(f"HardwareConfig.drift_compensation={self.drift_compensation!r}: "
                              f"expected True or False")

    @property
    def weight_levels(self) -> int | None:
        """Number of distinct signed weight values, ``2**weight_bits - 1`` (None: unlimited)."""
        return None if self.weight_bits is None else 2 ** self.weight_bits - 1


def _check_int(name, value, *, minimum, maximum=None, hint=""):
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    ok = ok and value >= minimum and (maximum is None or value <= maximum)
    if not ok:
        expected = f"an integer >= {minimum}" + ("" if maximum is None else f" and <= {maximum}")
        raise ConfigError(f"HardwareConfig.{name}={value!r}: expected {expected}"
                          + (f" ({hint})" if hint else ""))


def _check_real(name, value, *, positive, hint=""):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > 0 if positive else value >= 0)
    if not ok:
        expected = "a finite number " + ("> 0" if positive else ">= 0")
        raise ConfigError(f"HardwareConfig.{name}={value!r}: expected {expected}"
                          + (f" ({hint})" if hint else ""))


# --- presets ------------------------------------------------------------------------
# Sources and the reasoning behind each number: emulator/README.md, "Presets".

PRESETS = types.MappingProxyType({
    # Noise off, unlimited precision: mvm equals the float matmul.
    "ideal": HardwareConfig(),
    # Quantisation only: 8-bit weights, DAC and ADC, no analog noise.  Isolates the
    # effect of precision from that of device noise.
    "8bit": HardwareConfig(weight_bits=8, inp_bits=8, out_bits=8),
    # The PCM statistical model of Nandakumar et al. (ICECS 2019) / Joshi et al.
    # (Nat. Commun. 11, 2473, 2020) as implemented by aihwkit's PCMLikeNoiseModel,
    # with the periphery of aihwkit's StandardHWATrainingPreset (Rasch et al.,
    # Nat. Commun. 14, 5282, 2023): 8-bit DAC/ADC, out_noise 0.04, global drift
    # compensation.  Conductances analog (no weight_bits), as in aihwkit.
    "pcm": HardwareConfig(device_model="pcm", g_max=25.0, inp_bits=8, out_bits=8,
                          out_noise_std=0.04, drift_compensation=True),
    # Multi-level RRAM with write-verify: illustrative round numbers of the order
    # reported by Yao et al. (Nature 577, 641, 2020) and Wan et al. (Nature 608,
    # 504, 2022); not a fitted model.  3-bit devices (8 conductance levels) in a
    # differential pair = 4-bit signed weights; programming error 2.5 % and read
    # noise 1 % of g_max; no power-law drift; 0.5 % / 0.2 % stuck devices.
    "rram": HardwareConfig(g_max=40.0, weight_bits=4, inp_bits=8, out_bits=8,
                           out_noise_std=0.04, prog_noise_std=1.0, read_noise_std=0.4,
                           stuck_at_0_fraction=0.005, stuck_at_gmax_fraction=0.002),
})
"""Named ready-made configs (read-only mapping); derive variants with :func:`preset`."""


def preset(name: str, **overrides) -> HardwareConfig:
    """Return the preset ``name`` with ``overrides`` applied (validated like a new config).

    >>> preset("pcm", t_inference=3600.0).t_inference
    3600.0
    """
    if not isinstance(name, str) or name not in PRESETS:
        raise ConfigError(f"unknown hardware preset {name!r}: expected one of {sorted(PRESETS)}")
    return with_overrides(PRESETS[name], overrides, f"preset({name!r})")


def with_overrides(config, overrides: dict, where: str):
    """``dataclasses.replace(config, **overrides)`` (validated like a new config), after checking
    that every override names a field of the config's dataclass: an unknown one raises
    ``ConfigError`` listing the valid fields, with a "did you mean" for near misses.
    ``where``: the caller, for the message (e.g. ``"preset('pcm')"``)."""
    valid = sorted(f.name for f in dataclasses.fields(config))
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        close = {k: difflib.get_close_matches(k, valid, n=1) for k in unknown}
        hints = "; ".join(f"{k!r}: did you mean {v[0]!r}?" for k, v in close.items() if v)
        raise ConfigError(f"{where}: unknown {type(config).__name__} field(s) {unknown}"
                          + (f" ({hints})" if hints else "") + f"; valid fields: {valid}")
    return dataclasses.replace(config, **overrides)
