"""DAC and ADC ranges of a chip's tiles, fixed once from a few images.

The float engine runs the images (``minitnet.executor.run`` with an ``ObserverBackend``), and
each tile takes the maximum |input| it receives (``inp_bound``), then, in a second pass with
the calibrated DAC, the maximum |noise-free ADC input| (``out_bound``): exactly
``crossbar.calibrate_tile`` with ``quantile=1`` over all executions of the tile (a shared
tile: all N iterations). Deterministic; draws no random numbers.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from minitnet.engine import ItNet
from minitnet.executor import ObserverBackend, run as run_graph

from .adc import Epilogue
from .analog import NO_RESIDUAL, conv_geometry, dense_chunks, chunk_rows, dw_bands, dw_scratch, out_size
from .config import HardwareConfig
from .depthwise import depthwise_absmax, depthwise_tiles_nchw
from .errors import ConfigError, ShapeError
from .packs import INF, DepthwisePack, pack_layer
from .programming import ProgrammedLayer

__all__ = ["CalibrationWarning", "needs_calibration", "needs_message", "as_images", "calibrated_layers"]


class CalibrationWarning(UserWarning):
    """A chip fixed its DAC/ADC ranges on the image it was asked to run (no calibration images given)."""


def needs_calibration(hw: HardwareConfig) -> bool:
    """Whether tiles of ``hw`` need DAC/ADC ranges that ``hw`` does not fix.

    A DAC range is needed by ``inp_bits`` and by ``out_noise_std`` (whose unit is
    ``w_max * inp_bound``), an ADC range by ``out_bits``.
    """
    need_inp = (hw.inp_bits is not None or hw.out_noise_std > 0) and hw.inp_bound is None
    need_out = hw.out_bits is not None and hw.out_bound is None
    return need_inp or need_out


def needs_message(hw: HardwareConfig) -> str:
    """What ``hw`` needs calibrated, for error and warning messages."""
    parts = []
    if (hw.inp_bits is not None or hw.out_noise_std > 0) and hw.inp_bound is None:
        parts.append(f"inp_bits={hw.inp_bits}, out_noise_std={hw.out_noise_std} need a DAC range (inp_bound)")
    if hw.out_bits is not None and hw.out_bound is None:
        parts.append(f"out_bits={hw.out_bits} needs an ADC range (out_bound)")
    return "; ".join(parts)


def as_images(net: ItNet, images, where: str) -> list[np.ndarray]:
    """One image / batch / list of them -> a list of NCHW float32 batches (``net.prepare``)."""
    if isinstance(images, np.ndarray):
        items = [images]
    else:
        try:
            items = list(images)
        except TypeError:
            raise ShapeError(f"{where}: expected an image array or a list of images, got {type(images).__name__}") \
                from None
    if not items:
        raise ShapeError(f"{where}: no calibration images given (an empty list); pass one or a few images")
    return [net.prepare(np.asarray(im)) for im in items]


def calibrated_layers(net: ItNet, layers: dict, hw: HardwareConfig, xs: list, chunk_elems: int) -> dict:
    """``layers`` with every tile's ``inp_bound`` and ``out_bound`` set from the images ``xs``
    (NCHW float32 batches); bounds fixed in ``hw`` are kept. A tile that saw only zeros (a dead
    channel group) takes the largest range of its layer; a layer that saw only zeros is an error."""
    # pass 1: largest |input| per DAC (a dense row piece; a depthwise tile)
    packs = {name: pack_layer(pl, hw, identity_dac=True) for name, pl in layers.items()}
    seen = _observe_all(net, layers, packs, xs, "input", chunk_elems)
    staged = {}
    for name, pl in layers.items():
        top = _fill_dead(seen[name], name, "input", "DAC", "inp_bound", len(xs))
        tiles = []
        for i, (p, t) in enumerate(zip(pl.plan.pieces, pl.tiles)):
            j = i if pl.plan.depthwise else [k for k, q in enumerate(pl.plan.pieces)
                                             if q.row0 == p.row0 and q.col0 == 0][0]
            b = hw.inp_bound if hw.inp_bound is not None else top[j]
            tiles.append(dataclasses.replace(t, inp_bound=float(b)))
        staged[name] = dataclasses.replace(pl, tiles=tuple(tiles))
    # pass 2: largest |noise-free ADC input| per tile, with the calibrated DAC
    packs = {name: pack_layer(pl, hw) for name, pl in staged.items()}
    seen = _observe_all(net, staged, packs, xs, "output", chunk_elems)
    done = {}
    for name, pl in staged.items():
        top = _fill_dead(seen[name], name, "output", "ADC", "out_bound", len(xs))
        tiles = tuple(dataclasses.replace(t, out_bound=float(top[i] if hw.out_bound is None else hw.out_bound))
                      for i, t in enumerate(pl.tiles))
        done[name] = dataclasses.replace(pl, tiles=tiles)
    return done


def _observe_all(net: ItNet, layers: dict, packs: dict, xs: list, what: str, chunk_elems: int) -> dict:
    """{name: per-tile maxima of |DAC input| (``what="input"``) or |noise-free ADC input|
    ("output")} over every execution of the layer on the float engine's run of ``xs``."""
    seen = {name: np.zeros(len(pl.tiles)) for name, pl in layers.items()}

    def observe(name, x):
        _observe_layer(layers[name], packs[name], x, what, seen[name], chunk_elems)

    obs = ObserverBackend(net.params, observe)
    for x in xs:
        g = net.graph(x.shape[2], x.shape[3])
        for _ in run_graph(g, obs, x):
            pass
    return seen


def _observe_layer(pl: ProgrammedLayer, pk, x: np.ndarray, what: str, seen: np.ndarray, chunk_elems: int):
    """seen[i] = max(seen[i], the max |input| or |noise-free output| of tile i on x)."""
    if pl.plan.depthwise:
        mi, mo = _depthwise_absmax(pl, pk, x)
        m = mi if what == "input" else mo
        for i, (c0, c1) in enumerate(pk.groups):
            seen[i] = max(seen[i], float(m[c0:c1].max()))
        return
    OH, OW = out_size(pl.layer, x)
    col = np.empty(pk.rows * chunk_rows(pk, OH, OW, chunk_elems) * OW, np.float32)
    for _, _, _, colv in dense_chunks(pl.layer, pk, x, OH, OW, col, chunk_elems):
        for i, (p, t) in enumerate(zip(pl.plan.pieces, pk.tiles)):
            if what == "output":
                seen[i] = max(seen[i], float(np.max(np.abs(np.dot(t.wT, colv[t.row0:t.row1])))))
            elif p.col0 == 0:  # a row piece's DAC: its first tile holds the range
                seen[i] = max(seen[i], float(np.max(np.abs(colv[p.row0:p.row1]))))


def _depthwise_absmax(pl: ProgrammedLayer, pk: DepthwisePack, x: np.ndarray):
    """Per channel: max |input| its taps read, max |noise-free ADC input| (the DAC of ``pk``)."""
    OH, OW = out_size(pl.layer, x)
    kh, kw = pl.layer.kernel_size
    C = pl.layer.out_channels
    t = pk.table
    if pl.layer.stride == 1 and pl.layer.padding < min(kh, kw):
        # stride 1: every input pixel is read by some tap, so the plane's max is the taps' max;
        # the outputs come from the run kernel without noise, ADC, bias or act
        mi = np.abs(x).max(axis=(0, 2, 3))
        y = np.empty((x.shape[0], C, OH, OW), np.float32)
        cp = t.cp.copy()
        cp[:, :5] = (0.0, 0.0, 1.0, INF, 1.0)  # no ADC noise, no quantisation or clip, scale 1
        clean = t._replace(cp=cp, has_var=False, has_z=False)
        depthwise_tiles_nchw(x, conv_geometry(pl.layer), clean, np.zeros(C, np.uint64), np.zeros(C, np.int64),
                             Epilogue(0, np.zeros(C, np.float32), NO_RESIDUAL, False, 0), dw_bands(OH),
                             dw_scratch(x, pl.layer.padding), y)
        return mi, np.abs(y).max(axis=(0, 2, 3))
    mi, mo = np.zeros(C, np.float32), np.zeros(C, np.float32)
    depthwise_absmax(x, conv_geometry(pl.layer), t.in_L, t.cp, t.w, mi, mo)
    return mi, mo


def _fill_dead(seen: np.ndarray, name: str, what: str, conv: str, field: str, images: int) -> np.ndarray:
    """Calibrated maxima of a layer's tiles; a tile that saw only zeros (a dead channel group)
    takes the largest range of its layer. A layer that saw only zeros is an error."""
    top = float(seen.max()) if seen.size else 0.0
    if not top > 0:
        raise ConfigError(f"Chip.calibrate: every tile of layer {name!r} saw only zero {what}s on the {images} "
                          f"calibration image(s), so its {conv} range would be 0; calibrate on images that "
                          f"excite it, or set {field} in the HardwareConfig")
    return np.where(seen > 0, seen, top)
