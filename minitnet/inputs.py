"""Checks at the edges of the engine: the input array going in, the logits coming out.

``prepare_input`` turns what a user passes to ``ItNet`` into the model input, a
float32 NCHW array, and refuses anything it would have to guess:

- layouts: without ``layout=``, a uint8 array is an image (H, W, 3) or a batch
  (B, H, W, 3) of RGB pixels, and a float array is an already normalised batch
  (B, 3, H, W). A shape that fits the other layout too (a uint8 (3, H, 3) could be
  CHW with W = 3; a float (B, 3, W, 3) could be NHWC with H = 3) or only the other
  layout is refused with a message that says how to pass it: ``layout="HWC"``,
  ``"NHWC"``, ``"CHW"`` or ``"NCHW"`` states the axis order (any dtype: uint8 is
  normalised, float is taken as normalised), or transpose the array.
- magnitude: the normalised input must satisfy ``|x| <= INPUT_BOUND`` (1e4) and be
  finite. Trained models see values in [0, 1] (CamVid) or [-1, 1] (Cityscapes);
  even raw 0..255 pixels passed as float stay 40x under the bound. Far beyond it
  the float32 activations overflow (3e38 gave inf/NaN logits), so a bigger input is
  a caller's mistake, not data.

``check_logits`` is the last line of defence: the class map of output n is never
made from non-finite logits (``NumericalError`` names n and how many values are
NaN/inf). It costs one reduction over the logits when they are finite.
"""

from __future__ import annotations

import numpy as np

from .errors import NumericalError, ShapeError

__all__ = ["INPUT_BOUND", "LAYOUTS", "prepare_input", "check_logits"]

#: largest |x| accepted after normalisation (see the module docstring)
INPUT_BOUND = 1e4
#: explicit axis orders ``layout=`` accepts
LAYOUTS = ("HWC", "NHWC", "CHW", "NCHW")

_HINT = ("pass layout='HWC' / 'NHWC' (channels last) or 'CHW' / 'NCHW' (channels first) to say which, "
         "or transpose the array")


def _to_nchw(x: np.ndarray, layout: str, shape0: tuple) -> np.ndarray:
    if layout not in LAYOUTS:
        raise ShapeError(f"ItNet: layout must be one of {LAYOUTS} or None, got {layout!r}")
    if x.ndim != len(layout):
        raise ShapeError(f"ItNet: layout={layout!r} needs a {len(layout)}-d array, got shape {shape0}")
    if len(layout) == 3:
        x = x[None]
    if layout.endswith("HWC"):
        x = x.transpose(0, 3, 1, 2)
    if x.shape[1] != 3:
        raise ShapeError(f"ItNet: layout={layout!r} gives {x.shape[1]} channels, expected 3 (RGB); "
                         f"shape {shape0}")
    return x


def _default_layout(x: np.ndarray) -> str:
    """The layout of ``x`` without ``layout=``, or ShapeError when it is ambiguous or the other one."""
    s = x.shape
    if x.dtype == np.uint8:
        if x.ndim not in (3, 4):
            raise ShapeError(f"ItNet: a uint8 image must be (H, W, 3) RGB or a batch (B, H, W, 3), got shape {s}")
        last, first = s[-1] == 3, s[-3] == 3
        if last and first:
            raise ShapeError(
                f"ItNet: uint8 input of shape {s} is ambiguous: channels last (H={s[-3]}, W={s[-2]}) or channels "
                f"first (C=3, H={s[-2]}, W={s[-1]}); {_HINT}")
        if not last:
            hint = (f"it looks channels-first: pass layout='{'CHW' if x.ndim == 3 else 'NCHW'}' or "
                    f"transpose it to channels last" if first else "expected 3 channels (RGB) on the last axis")
            raise ShapeError(f"ItNet: a uint8 image must be (H, W, 3) RGB or a batch (B, H, W, 3), got shape {s}; "
                             f"{hint}")
        return "HWC" if x.ndim == 3 else "NHWC"
    if not np.issubdtype(x.dtype, np.floating):
        raise ShapeError(f"ItNet: input must be uint8 (H, W, 3) or float NCHW, got dtype {x.dtype} shape {s}")
    if x.ndim != 4:
        hint = " (a single image: add the batch axis, x[None])" if x.ndim == 3 else ""
        raise ShapeError(f"ItNet: float input must be NCHW (B, 3, H, W), got shape {s}{hint}")
    first, last = s[1] == 3, s[3] == 3
    if first and last:
        raise ShapeError(
            f"ItNet: float input of shape {s} is ambiguous: NCHW (H={s[2]}, W=3) or NHWC (H=3, W={s[2]}); {_HINT}")
    if not first:
        hint = ("it looks channels-last: pass layout='NHWC' or transpose it, x.transpose(0, 3, 1, 2)"
                if last else "expected 3 channels (RGB) on axis 1")
        raise ShapeError(f"ItNet: float input must be NCHW (B, 3, H, W), got shape {s}; {hint}")
    return "NCHW"


def prepare_input(x, norm_scale, norm_offset, layout: str | None = None) -> np.ndarray:
    """Model input (B, 3, H, W) float32 from ``x`` (see the module docstring).

    uint8 pixels are normalised, ``x * norm_scale + norm_offset`` per RGB channel;
    float input is taken as already normalised. Raises ShapeError for a wrong or
    ambiguous shape, an empty array, or values that are non-finite or beyond
    ``INPUT_BOUND``.
    """
    x = np.asarray(x)
    shape0 = x.shape
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise ShapeError(f"ItNet: input must be uint8 (H, W, 3) or float NCHW, got dtype {x.dtype} shape {shape0}")
    x = _to_nchw(x, layout if layout is not None else _default_layout(x), shape0)
    if 0 in x.shape:
        raise ShapeError(f"ItNet: empty input, shape {shape0}")
    pixels = x.dtype == np.uint8
    if pixels:
        scale = np.asarray(norm_scale, np.float32).reshape(1, 3, 1, 1)
        offset = np.asarray(norm_offset, np.float32).reshape(1, 3, 1, 1)
        x = x.astype(np.float32) * scale + offset
    x = np.ascontiguousarray(x, dtype=np.float32)
    m = float(np.max(np.abs(x)))  # NaN propagates: one reduction checks finiteness and the bound
    if not m <= INPUT_BOUND:
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        if bad:
            raise ShapeError(f"ItNet: input has {bad} non-finite values (NaN/inf), shape {shape0}")
        what = "after normalisation (norm_scale/norm_offset of the weights file) " if pixels else ""
        raise ShapeError(f"ItNet: input magnitude {m:.3g} is beyond the bound |x| <= {INPUT_BOUND:g} "
                         f"{what}(model inputs are normalised pixels, about [-1, 1]; see minitnet.inputs)")
    return x


def check_logits(logits: np.ndarray, n, where: str = "ItNet") -> np.ndarray:
    """``logits`` unchanged if finite; NumericalError naming output ``n`` and the count of NaN/inf otherwise.

    One float32 sum on the fast path; the detailed count only when the sum is not finite
    (a sum that overflows from finite values is a false alarm and passes).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(logits.sum()):
            return logits
    bad = int(np.size(logits) - np.count_nonzero(np.isfinite(logits)))
    if bad:
        nan = int(np.count_nonzero(np.isnan(logits)))
        raise NumericalError(
            f"{where}: output n={n} has {bad} non-finite logits of {np.size(logits)} ({nan} NaN, {bad - nan} inf), "
            f"so no class map is made; the weights or the input overflow float32 (check the weights file, "
            f"e.g. with minitnet info --weights, and that the input is normalised)")
    return logits
