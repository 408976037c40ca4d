"""DAC and ADC ranges of a chip's tiles, fixed once from a few images.

The float engine runs the images (``minitnet.executor.run`` with an ``ObserverBackend``), and
each tile takes the maximum |input| it receives (``inp_bound``; the ``hw.inp_quantile`` of
|input| when < 1), then, in a second pass with the calibrated DAC, the maximum |noise-free
ADC input| (``out_bound``, divided by the column's ``col_gain`` with per-column weights):
``crossbar.calibrate_tile`` with ``quantile=None`` over all executions of the tile (a shared
tile: all N iterations). With ``inp_range="per-vector"`` the DAC range is 1 (each vector
scaled to max |x| = 1) and the second pass sees the scaled vectors. Deterministic; draws no
random numbers.

Quantiles < 1 are taken over a strided subsample of each DAC's inputs (at most
``QUANTILE_SAMPLES`` values per execution of a layer), so memory stays flat.
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

__all__ = ["CalibrationWarning", "needs_calibration", "needs_message", "as_images", "calibrated_layers",
           "QUANTILE_SAMPLES"]

QUANTILE_SAMPLES = 1 << 16
"""Largest number of |input| values kept per DAC and layer execution for ``inp_quantile`` < 1."""


class CalibrationWarning(UserWarning):
    """A chip fixed its DAC/ADC ranges on the image it was asked to run (no calibration images given)."""


def needs_calibration(hw: HardwareConfig) -> bool:
    """Whether tiles of ``hw`` need DAC/ADC ranges that ``hw`` does not fix.

    A DAC range is needed by ``inp_bits`` and by ``out_noise_std`` (whose unit is
    ``w_max * inp_bound``), an ADC range by ``out_bits``.
    """
    need_inp = ((hw.inp_bits is not None or hw.out_noise_std > 0) and hw.inp_bound is None
                and hw.inp_range == "calibrated")
    need_out = hw.out_bits is not None and hw.out_bound is None
    return need_inp or need_out


def needs_message(hw: HardwareConfig) -> str:
    """What ``hw`` needs calibrated, for error and warning messages."""
    parts = []
    if (hw.inp_bits is not None or hw.out_noise_std > 0) and hw.inp_bound is None and hw.inp_range == "calibrated":
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
    (NCHW float32 batches); bounds fixed in ``hw`` are kept, and a layer with a learned DAC
    range (``net.input_ranges``, with ``hw.learned_ranges``) takes it as every tile's ``inp_bound``. A tile that saw only zeros (a dead
    channel group) takes the largest range of its layer; a layer that saw only zeros is an error."""
    if hw.inp_range == "per-vector":
        staged = layers  # the DAC range is 1 (programmed so)
    else:
        # pass 1: largest |input| (or its quantile) per DAC (a dense row piece; a depthwise tile)
        packs = {name: pack_layer(pl, hw, identity_dac=True) for name, pl in layers.items()}
        seen = _observe_all(net, layers, packs, xs, "input", chunk_elems, hw.inp_quantile)
        learned = net.input_ranges if hw.learned_ranges else {}  # hardware-aware training's DAC ranges
        staged = {}
        for name, pl in layers.items():
            top = _fill_dead(seen[name], name, "input", "DAC", "inp_bound", len(xs))
            tiles = []
            for i, (p, t) in enumerate(zip(pl.plan.pieces, pl.tiles)):
                j = i if pl.plan.depthwise else [k for k, q in enumerate(pl.plan.pieces)
                                                 if q.row0 == p.row0 and q.col0 == 0][0]
                b = hw.inp_bound if hw.inp_bound is not None else learned.get(name, top[j])
                tiles.append(dataclasses.replace(t, inp_bound=float(b)))
            staged[name] = dataclasses.replace(pl, tiles=tuple(tiles))
    # pass 2: largest |noise-free ADC input| per tile, with the calibrated DAC
    packs = {name: pack_layer(pl, hw) for name, pl in staged.items()}
    if hw.inp_range == "per-vector":
        seen = _observe_per_vector(net, staged, hw, xs)
    else:
        seen = _observe_all(net, staged, packs, xs, "output", chunk_elems)
    done = {}
    for name, pl in staged.items():
        top = _fill_dead(seen[name], name, "output", "ADC", "out_bound", len(xs))
        tiles = tuple(dataclasses.replace(t, out_bound=float(top[i] if hw.out_bound is None else hw.out_bound))
                      for i, t in enumerate(pl.tiles))
        done[name] = dataclasses.replace(pl, tiles=tiles)
    return done


def _observe_all(net: ItNet, layers: dict, packs: dict, xs: list, what: str, chunk_elems: int,
                 quantile: float = 1.0) -> dict:
    """{name: per-tile maxima of |DAC input| (``what="input"``; their ``quantile`` when < 1) or
    |noise-free ADC input| ("output")} over every execution of the layer on the float engine's
    run of ``xs``."""
    seen = {name: np.zeros(len(pl.tiles)) for name, pl in layers.items()}
    samples = {name: [[] for _ in pl.tiles] for name, pl in layers.items()} if quantile < 1 else None

    def observe(name, x):
        if name not in layers:  # a digital layer (depthwise="digital")
            return
        _observe_layer(layers[name], packs[name], x, what, seen[name], chunk_elems,
                       None if samples is None else samples[name])

    _run_observed(net, xs, observe)
    if samples is not None:
        for name, per_tile in samples.items():
            for i, parts in enumerate(per_tile):
                if parts:  # a quantile of 0 (mostly zeros: ReLU, padding) falls back to the maximum
                    a = np.concatenate(parts)
                    seen[name][i] = float(np.quantile(a, quantile)) or float(a.max())
    return seen


def _run_observed(net: ItNet, xs: list, observe) -> None:
    obs = ObserverBackend(net.params, observe)
    for x in xs:
        g = net.graph(x.shape[2], x.shape[3])
        for _ in run_graph(g, obs, x):
            pass


def _subsample(a: np.ndarray, total: int) -> np.ndarray:
    """|a| with a stride that keeps about QUANTILE_SAMPLES of the ``total`` values of one execution."""
    return np.abs(a).ravel()[::max(1, -(-total // QUANTILE_SAMPLES))].copy()


def _observe_per_vector(net: ItNet, layers: dict, hw: HardwareConfig, xs: list) -> dict:
    """{name: per-tile maxima of |noise-free ADC input| / col_gain} with per-vector input
    scaling: each tile's input vectors scaled to max |x| = 1, then the DAC."""
    from .crossbar import vector_scales
    from .quantize import quantize
    from .tilewise import unfold_nchw

    seen = {name: np.zeros(len(pl.tiles)) for name, pl in layers.items()}

    def observe(name, x):
        if name not in layers:
            return
        pl, lay = layers[name], layers[name].layer
        cols = unfold_nchw(x, lay.kernel_size, lay.stride, lay.padding)
        kk = lay.kernel_size[0] * lay.kernel_size[1]
        for i, (p, t) in enumerate(zip(pl.plan.pieces, pl.tiles)):
            if pl.plan.depthwise:
                v = cols.reshape(cols.shape[0], -1, kk)[:, p.col0:p.col1]
                v = quantize(v / vector_scales(v.reshape(v.shape[0], -1))[:, None, None], hw.inp_bits, 1.0)
                y = np.einsum("pck,kc->pc", v, t.w_eff)
            else:
                v = cols[:, p.row0:p.row1]
                y = np.dot(quantize(v / vector_scales(v)[:, None], hw.inp_bits, 1.0), t.w_eff)
            if t.col_gain is not None:
                y = y / t.col_gain
            seen[name][i] = max(seen[name][i], float(np.max(np.abs(y))))

    _run_observed(net, xs, observe)
    return seen


def _observe_layer(pl: ProgrammedLayer, pk, x: np.ndarray, what: str, seen: np.ndarray, chunk_elems: int,
                   samples: list | None = None):
    """seen[i] = max(seen[i], the max |input| or |noise-free output| of tile i on x); with
    ``samples`` (inputs only) a subsample of |input| is appended to samples[i] instead."""
    if pl.plan.depthwise:
        if samples is not None and what == "input":  # the planes of the tile's channels
            for i, (p, t) in enumerate(zip(pl.plan.pieces, pl.tiles)):
                samples[i].append(_subsample(x[:, p.col0:p.col1], x[:, p.col0:p.col1].size))
            return
        mi, mo = _depthwise_absmax(pl, pk, x)
        m = mi if what == "input" else mo
        for i, (c0, c1) in enumerate(pk.groups):
            if what == "output" and pl.tiles[i].col_gain is not None:
                seen[i] = max(seen[i], float((mo[c0:c1] / pl.tiles[i].col_gain).max()))
            else:
                seen[i] = max(seen[i], float(m[c0:c1].max()))
        return
    OH, OW = out_size(pl.layer, x)
    col = np.empty(pk.rows * chunk_rows(pk, OH, OW, chunk_elems) * OW, np.float32)
    for _, _, _, colv in dense_chunks(pl.layer, pk, x, OH, OW, col, chunk_elems):
        for i, (p, t) in enumerate(zip(pl.plan.pieces, pk.tiles)):
            if what == "output":
                y = np.abs(np.dot(t.wT, colv[t.row0:t.row1]))
                if t.col_gain is not None:
                    y /= t.col_gain[:, None]
                seen[i] = max(seen[i], float(np.max(y)))
            elif p.col0 == 0:  # a row piece's DAC: its first tile holds the range
                if samples is not None:
                    samples[i].append(_subsample(colv[p.row0:p.row1], (p.row1 - p.row0) * x.shape[0] * OH * OW))
                else:
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
