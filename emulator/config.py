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
  passed to ``mvm`` (so an ADC sweep needs no re-programming);
* at calibration (``calibrate_tile``, ``Chip.calibrate``): ``inp_quantile``.

The periphery choices (issue 15) are named fields: ``weight_scaling`` (one ``w_max``
per tile or per column), ``inp_range`` (a calibrated DAC range per tile, or each input
vector scaled by its own max |x|), ``read_noise_mode`` (1/f read noise redrawn per MVM,
or frozen per programmed device as aihwkit draws it), ``drift_compensation`` (off,
global, per column) and ``depthwise`` (analog block-diagonal tiles, or digital).
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

__all__ = ["HardwareConfig", "PRESETS", "preset", "with_overrides", "DEVICE_MODELS", "MAX_BITS", "WEIGHT_SCALINGS",
           "INP_RANGES", "READ_NOISE_MODES", "DRIFT_COMPENSATIONS", "DEPTHWISE_MAPPINGS"]

DEVICE_MODELS = ("gaussian", "pcm")
"""Statistical device models; see ``HardwareConfig.device_model``."""
WEIGHT_SCALINGS = ("tile", "column")
"""Where ``w_max`` is taken; see ``HardwareConfig.weight_scaling``."""
INP_RANGES = ("calibrated", "per-vector")
"""How the DAC range is set; see ``HardwareConfig.inp_range``."""
READ_NOISE_MODES = ("per-mvm", "frozen")
"""When read noise is drawn; see ``HardwareConfig.read_noise_mode``."""
DRIFT_COMPENSATIONS = (False, True, "global", "column")
"""Accepted values of ``HardwareConfig.drift_compensation`` ("global" is stored as True)."""
DEPTHWISE_MAPPINGS = ("analog", "digital")
"""Where depthwise convs run; see ``HardwareConfig.depthwise``."""

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
    input; aihwkit's normalised output unit).  The unit follows the normalisation:
    ``w_max`` of the column with ``weight_scaling="column"``, and ``inp_bound`` = the
    vector's own max |x| with ``inp_range="per-vector"`` (exactly as aihwkit).  >= 0."""

    # --- periphery choices (issue 15) ---------------------------------------------------
    weight_scaling: str = "tile"
    """Which weight maps to ``g_max``: ``"tile"``: ``w_max = max|w|`` of the tile;
    ``"column"``: each output column maps its own max |w| to ``g_max`` and a digital
    per-column scale after the ADC restores it (aihwkit ``weight_scaling_columnwise``).
    The ADC range and its noise then scale with the column's ``w_max`` (one converter
    range in current)."""
    inp_range: str = "calibrated"
    """How the DAC range is set: ``"calibrated"``: fixed per tile (row piece), from
    calibration images at ``inp_quantile`` (or ``inp_bound``); ``"per-vector"``: each
    input vector is scaled digitally by its own max |x| before the DAC and back after the
    ADC (aihwkit's abs-max noise management).  With per-vector scaling the tile's ranges
    are those of a vector with max |x| = 1: ``inp_bound`` must be None (it is 1),
    ``out_bound`` is in output units at max |x| = 1, and every MVM scales both and the
    ADC-input noise by its vector's max |x|."""
    inp_quantile: float = 1.0
    """Quantile of the calibration inputs' |x| that sets a tile's DAC range
    (``inp_range="calibrated"``), dimensionless, in (0, 1]; 1 = the maximum (no clipping
    of the calibration data); < 1 clips outliers, as learned input ranges do (0.9973 is
    the 3-sigma point of a normal).  The ADC range stays the maximum of the noise-free ADC
    inputs with that DAC."""
    learned_ranges: bool = True
    """With ``inp_range="calibrated"`` and no ``inp_bound``: a layer whose weights file carries
    a learned DAC range (``ItNet.input_ranges``: format version 2, written by hardware-aware
    training) takes it as the DAC range of all its tiles instead of a calibrated one; False:
    calibrate every layer.  No effect on files without learned ranges."""
    read_noise_mode: str = "per-mvm"
    """When device read noise is drawn: ``"per-mvm"``: redrawn at every MVM (trial-to-trial
    read noise); ``"frozen"``: drawn once per programmed device and added to its
    conductance at ``t_inference`` (the 1/f noise accumulated since programming, as
    aihwkit's ``drift_analog_weights``), then clamped at 0; every MVM sees the same draw."""
    depthwise: str = "analog"
    """Where depthwise convs run: ``"analog"``: block-diagonal tiles (a group of channels
    per tile); ``"digital"``: exactly, in the periphery (as many IMC designs do for
    depthwise layers), on no tile.  The mapping report and the timing model follow."""

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
    drift_compensation: bool | str = False
    """Drift compensation, a digital scale applied to the ADC output: ``False`` (none);
    ``True`` or ``"global"`` (stored as True; aihwkit's GlobalDriftCompensation): one scale
    per tile, ``mean|G+ - G-|`` just after programming over ``mean|G+ - G-|`` at
    ``t_inference``; ``"column"`` (aihwkit's PerColumnDriftCompensation): one scale per
    column from the same read.  The read is ideal (no read or ADC noise) and sees the
    frozen read noise when ``read_noise_mode="frozen"`` (as aihwkit's does)."""

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
        dc = self.drift_compensation
        if isinstance(dc, (bool, np.bool_)):
            object.__setattr__(self, "drift_compensation", bool(dc))
        elif isinstance(dc, str) and dc in ("global", "column"):
            if dc == "global":
                object.__setattr__(self, "drift_compensation", True)
        else:
            raise ConfigError(f"HardwareConfig.drift_compensation={dc!r}: expected False, True, "
                              f"'global' or 'column'" + _did_you_mean(dc, ("global", "column")))
        for name, choices in (("weight_scaling", WEIGHT_SCALINGS), ("inp_range", INP_RANGES),
                              ("read_noise_mode", READ_NOISE_MODES), ("depthwise", DEPTHWISE_MAPPINGS)):
            value = getattr(self, name)
            if not (isinstance(value, str) and value in choices):
                raise ConfigError(f"HardwareConfig.{name}={value!r}: expected one of {list(choices)}"
                                  + _did_you_mean(value, choices))
        if not isinstance(self.learned_ranges, (bool, np.bool_)):
            raise ConfigError(f"HardwareConfig.learned_ranges={self.learned_ranges!r}: expected True or False")
        object.__setattr__(self, "learned_ranges", bool(self.learned_ranges))
        q = self.inp_quantile
        if not (isinstance(q, numbers.Real) and not isinstance(q, bool) and 0 < q <= 1):
            raise ConfigError(f"HardwareConfig.inp_quantile={q!r}: expected a number in (0, 1] "
                              f"(1 = the maximum |x| of the calibration inputs)")
        if self.inp_range == "per-vector":
            if self.inp_bound is not None:
                raise ConfigError(f"HardwareConfig.inp_bound={self.inp_bound!r} with inp_range='per-vector': "
                                  f"each input vector is scaled to max |x| = 1, so the DAC range is 1 in "
                                  f"those units; set inp_bound=None, or use inp_range='calibrated'")
            if q != 1:
                raise ConfigError(f"HardwareConfig.inp_quantile={q!r} has no effect with inp_range='per-vector' "
                                  f"(no calibrated DAC range): leave it at 1.0")

    @property
    def drift_compensation_mode(self) -> str:
        """``"none"``, ``"global"`` or ``"column"``."""
        if self.drift_compensation is False:
            return "none"
        return "column" if self.drift_compensation == "column" else "global"

    @property
    def weight_levels(self) -> int | None:
        """Number of distinct signed weight values, ``2**weight_bits - 1`` (None: unlimited)."""
        return None if self.weight_bits is None else 2 ** self.weight_bits - 1


def _did_you_mean(value, choices) -> str:
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


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
    # Worst-case periphery: one calibrated DAC range and one w_max per tile, 1/f read
    # noise redrawn at every MVM.  Kept as it was before issue 15 (outputs bit-identical).
    "pcm": HardwareConfig(device_model="pcm", g_max=25.0, inp_bits=8, out_bits=8,
                          out_noise_std=0.04, drift_compensation=True),
    # aihwkit 1.1.0 InferenceRPUConfig defaults (IOParameters, MappingParameter,
    # PCMLikeNoiseModel, GlobalDriftCompensation): 7-bit DAC (inp_res 1/126), 9-bit ADC
    # (out_res 1/510), out_noise 0.06, abs-max noise management (per-vector input
    # scaling), one w_max per tile, PCM devices, 1/f noise drawn once per inference time,
    # global drift compensation, 512 x 512 tiles.  Not modelled: bound management
    # (aihwkit re-runs a clipping MVM with halved inputs; here the ADC range is calibrated).
    "aihwkit-default": HardwareConfig(device_model="pcm", g_max=25.0, rows=512, cols=512, inp_bits=7,
                                      out_bits=9, out_noise_std=0.06, inp_range="per-vector",
                                      weight_scaling="tile", read_noise_mode="frozen",
                                      drift_compensation=True),
    # aihwkit StandardHWATrainingPreset (Rasch et al., Nat. Commun. 14, 5282, 2023): 8-bit
    # DAC/ADC, out_noise 0.04, per-column weight scaling, a learned (here: calibrated at the
    # 3-sigma quantile) input range, PCM devices, frozen 1/f, global drift compensation,
    # 512 x 512 tiles.
    "pcm-hwa": HardwareConfig(device_model="pcm", g_max=25.0, rows=512, cols=512, inp_bits=8, out_bits=8,
                              out_noise_std=0.04, weight_scaling="column", inp_range="calibrated",
                              inp_quantile=0.9973, read_noise_mode="frozen", drift_compensation=True),
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


def parse_field(type_name: str, text: str, label: str):
    """``text`` (a flag or ``FIELD=V`` value) as a config field's annotated type ``type_name``
    (``"int | None"``, ``"float"``, ``"bool | str"``, ...): ``none`` where the type allows None;
    ``label`` names the value in the error (``--out-bits 'six'``, ``out_bits='six'``)."""
    s = str(text).strip()
    kinds = [k.strip() for k in str(type_name).split("|")]
    if "None" in kinds and s.lower() == "none":
        return None
    base = next(k for k in kinds if k != "None")
    try:
        if base == "int":
            return int(s)
        if base == "float":
            return float(s)
        if base == "bool":
            if s.lower() in ("1", "true", "yes", "on"):
                return True
            if s.lower() in ("0", "false", "no", "off"):
                return False
            if "str" in kinds:  # "bool | str" (drift_compensation): the config validates the word
                return s
            raise ValueError(s)
    except ValueError:
        kind = {"int": "an integer", "float": "a number", "bool": "true or false"}[base]
        raise ConfigError(f"{label}: expected {kind}" + (" or none" if "None" in kinds else "")) from None
    return s
