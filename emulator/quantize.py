"""Uniform symmetric (mid-tread) quantisers for DAC inputs, ADC outputs and weights.

Definition, for ``bits = b`` and ``bound = B``::

    L    = 2**(b-1) - 1                    # levels per sign; 2L+1 = 2**b - 1 values, 0 included
    step = B / L                           # one least-significant bit, in the units of x
    q(x) = clip(step * clip(rint(x / step), -L, L), -B, B)

i.e. quantise to the nearest level (ties to even, ``np.rint``), then clip to
``±B`` (the final clip only removes the float rounding of ``L * step``).
Properties (tested): idempotent, ``|q(x)| <= B``, and ``|q(x) - x| <= step/2``
for ``|x| <= B``.  ``b = 1`` is rejected: it has no nonzero level.

``bits=None`` means unlimited precision: no quantisation, but still clipping to
``±bound`` when a bound is given; ``bits=None, bound=None`` is the identity.
Quantising (``bits`` set) without a bound is an error.

Values are computed in the dtype of ``x`` (float32 stays float32).
"""

from __future__ import annotations

import numbers

import numpy as np

from .config import MAX_BITS
from .errors import ConfigError, ShapeError

__all__ = ["levels_per_side", "quant_step", "quantize", "quantize_weights"]


def levels_per_side(bits: int) -> int:
    """Number of nonzero levels of one sign, ``2**(bits-1) - 1`` (127 for 8 bits)."""
    _check_bits(bits, "levels_per_side")
    return 2 ** (bits - 1) - 1


def quant_step(bits: int, bound: float) -> float:
    """Step (one LSB) of the ``bits``-bit quantiser on ``±bound``: ``bound / (2**(bits-1) - 1)``."""
    _check_bound(bound, "quant_step")
    return float(bound) / levels_per_side(bits)


def quantize(x, bits: int | None, bound: float | None, out: np.ndarray | None = None) -> np.ndarray:
    """Quantise ``x`` to ``bits`` bits on ``±bound`` (mid-tread), then clip to ``±bound``.

    Shapes:
        x: any shape, float32 or float64 (other dtypes are converted to float32)
        out: same shape and dtype as x (may be x itself: in place), or None (allocated)

    See the module docstring for the exact definition and the meaning of None.
    """
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    if out is None:
        out = np.empty_like(x)
    elif out.shape != x.shape or out.dtype != x.dtype:
        raise ShapeError(f"quantize: out has shape {out.shape} and dtype {out.dtype}, expected "
                         f"{x.shape} and {x.dtype} like x")
    if bound is not None:
        _check_bound(bound, "quantize")
    if bits is None:
        if bound is None:
            np.copyto(out, x)
        else:
            np.clip(x, -bound, bound, out=out)
        return out
    L = levels_per_side(bits)
    if bound is None:
        raise ConfigError(f"quantize: bits={bits} needs a bound (the full-scale range), got "
                          f"bound=None; calibrate the tile (calibrate_tile) or set *_bound")
    step = x.dtype.type(bound / L)
    np.divide(x, step, out=out)               # x in units of one LSB
    np.rint(out, out=out)                     # nearest level (ties to even)
    np.clip(out, -L, L, out=out)              # integer code in [-L, L]
    np.multiply(out, step, out=out)           # back to the units of x
    bound_x = x.dtype.type(bound)
    np.clip(out, -bound_x, bound_x, out=out)  # L*step may exceed bound by one float ulp
    return out


def quantize_weights(w, weight_bits: int | None, w_max: float) -> np.ndarray:
    """Quantise weights to the ``2**weight_bits - 1`` signed values on ``±w_max`` and clip.

    Equal to ``quantize(w, weight_bits, w_max)``: each device of the differential
    pair then holds one of ``2**(weight_bits-1)`` conductance levels ``0 .. g_max``.
    ``weight_bits=None``: no quantisation, only the clip to ``±w_max``.
    """
    return quantize(w, weight_bits, w_max)


def _check_bits(bits, where):
    if (not isinstance(bits, numbers.Integral) or isinstance(bits, bool)
            or not 2 <= bits <= MAX_BITS):
        raise ConfigError(f"{where}: bits={bits!r}, expected an integer in [2, {MAX_BITS}] or None "
                          f"(a mid-tread quantiser with 2**(bits-1)-1 levels per sign needs >= 2)")


def _check_bound(bound, where):
    if (not isinstance(bound, numbers.Real) or isinstance(bound, bool)
            or not np.isfinite(bound) or bound <= 0):
        raise ConfigError(f"{where}: bound={bound!r}, expected a finite number > 0 or None")
