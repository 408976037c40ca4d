"""A programmed chip: program an ItNet's graph onto crossbar tiles and run images through it.

    chip = emulator.program(net, emulator.preset("pcm", t_inference=3600.0), rng,
                            calibration=[img_a, img_b])      # one draw of programming noise
    for n, logits, state_error in chip.run(img, rng):        # like ItNet.iter_outputs
        ...

Layout of the emulator's mapping code: ``programming.py`` (what goes on which tile, one
programming draw per tile), ``packs.py`` (the kernels' parameter tables), ``analog.py``
(the conv paths on tiles), ``calibration.py`` (DAC/ADC ranges), ``backend.py`` (the chip as
a backend of ``minitnet.executor.run``), ``report.py`` (the mapping report); the Numba
kernels in ``rng.py``, ``adc.py``, ``dense.py`` and ``depthwise.py``.

Execution follows the engine exactly: the graph runs on the engine's executor with
``ChipBackend``, whose conv runs on tiles. Read and ADC noise are drawn at every MVM from
the ``rng`` passed to ``Chip.run``.
"""

from __future__ import annotations

import math
import warnings
from typing import Iterator

import numpy as np

from minitnet.buffers import Recycler
from minitnet.engine import ItNet
from minitnet.executor import run as run_graph

from .analog import AnalogOptions, conv_layer
from .backend import ChipBackend
from .calibration import CalibrationWarning, as_images, calibrated_layers, needs_calibration, needs_message
from .config import HardwareConfig
from .crossbar import check_hw, check_rng
from .errors import ConfigError, ShapeError
from .packs import pack_layer
from .programming import ProgrammedLayer, program_layers
from .report import mapping_report

__all__ = ["Chip", "program", "run"]


class Chip:
    """An ItNet programmed onto crossbar tiles: one draw of programming noise, drift and stuck
    devices, reusable over many images. Make one with :func:`program`.

    ``layers`` maps every unique (resolved) conv layer name to its ``ProgrammedLayer``; a shared
    iterative block appears once and runs on the same tiles in every iteration. ``options``
    (``AnalogOptions``) sets how the conv paths cut their work; outputs do not depend on it.
    ``pool`` recycles node outputs, planes and scratch once the caller drops them.
    """

    def __init__(self, net: ItNet, hw: HardwareConfig, layers: dict[str, ProgrammedLayer],
                 options: AnalogOptions | None = None):
        self.net = net
        self.hw = hw
        self.layers = layers
        self.options = AnalogOptions() if options is None else options
        self.calibration_images = 0
        self._packs: dict = {}
        self.pool = Recycler()

    def __repr__(self):
        cal = f"calibrated on {self.calibration_images} image(s)" if self.calibration_images else "not calibrated"
        return f"Chip({self.net.config}, {len(self.layers)} conv layers on {self.tiles} tiles, {cal})"

    @property
    def config(self):
        return self.net.config

    @property
    def tiles(self) -> int:
        """Programmed tiles (a shared block's tiles count once)."""
        return sum(len(pl.tiles) for pl in self.layers.values())

    @property
    def needs_calibration(self) -> bool:
        """True while the tiles lack a DAC/ADC range that ``hw`` needs (see :meth:`calibrate`)."""
        return needs_calibration(self.hw) and self.calibration_images == 0

    def calibrate(self, images) -> "Chip":
        """Fix every tile's DAC and ADC ranges from a few images; returns self.

        ``images``: one image or a few: uint8 (H, W, 3), a uint8 batch (B, H, W, 3), float
        NCHW (B, 3, H, W) as ``ItNet.prepare`` takes, or a list of those (sizes may differ).
        The float engine runs them through every iteration; each tile's ``inp_bound`` is the
        largest |input| it receives, then its ``out_bound`` the largest |noise-free ADC input|
        (quantised inputs times ``w_eff``, before drift compensation): ``calibrate_tile`` with
        ``quantile=1`` over all executions of the tile. Bounds fixed in ``hw`` are kept.
        Deterministic; draws no random numbers.
        """
        xs = as_images(self.net, images, "Chip.calibrate")
        self.layers.update(calibrated_layers(self.net, self.layers, self.hw, xs, self.options.chunk_elems))
        self.calibration_images = sum(x.shape[0] for x in xs)
        self._packs.clear()
        return self

    # -- running -------------------------------------------------------------------------
    def release(self):
        """Free the arrays kept between runs for reuse (activations and logits the caller has
        dropped); the next run allocates them again."""
        self.pool = Recycler()

    def pack(self, name: str):
        """The kernels' arrays of layer ``name`` (``packs.pack_layer``), built once per calibration."""
        pk = self._packs.get(name)
        if pk is None:
            pk = self._packs[name] = pack_layer(self.layers[name], self.hw)
        return pk

    def run_conv(self, name, x, residual, act, rng, pool=None) -> np.ndarray:
        """``conv`` without its checks (x C-contiguous float32 NCHW, calibrated chip): the
        executor's path (``ChipBackend``)."""
        return conv_layer(self.layers[name], self.pack(name), x, residual, act, rng, self.options, pool)

    def conv(self, name: str, x, rng: np.random.Generator, *, act: int = 0, residual=None) -> np.ndarray:
        """One conv layer of the chip on its tiles: ``act(tiles(x) + b + residual)``.

        Shapes: x: (N, C_in, H, W) float32  ->  (N, C_out, OH, OW) float32
        """
        if name not in self.layers:
            raise ShapeError(f"Chip.conv: no programmed layer {name!r}; layers are {sorted(self.layers)[:8]}...")
        check_rng(rng, "Chip.conv")
        if self.needs_calibration:
            raise ConfigError(f"Chip.conv: {needs_message(self.hw)}; call chip.calibrate(images) first")
        x = np.ascontiguousarray(x, np.float32)
        if x.ndim != 4:
            raise ShapeError(f"Chip.conv: x must be (N, C, H, W), got shape {x.shape}")
        if residual is not None:
            residual = np.ascontiguousarray(residual, np.float32)
        return self.run_conv(name, x, residual, act, rng)

    def run(self, x, rng: np.random.Generator, last: int | None = None,
            reference: bool = True) -> Iterator[tuple[int, np.ndarray, float]]:
        """Yield ``(n, logits, state_error)`` for every head iteration n <= last, like
        ``ItNet.iter_outputs``.

        logits: (B, C, H, W) float32 of the emulated chip. state_error: relative L2 error of the
        loop-carried state after iteration n (all L scales together) against the float engine
        run alongside on the same input, ``||s_emu - s_float|| / ||s_float||``; NaN when
        ``reference=False`` (which skips the float run). Read and ADC noise are drawn from
        ``rng`` at every MVM. If the chip still needs DAC/ADC ranges it calibrates them on
        ``x`` first (a ``CalibrationWarning``); they then stay fixed for later images.
        """
        net = self.net
        check_rng(rng, "Chip.run")
        cfg = net.config
        last = cfg.check_last(cfg.iterations if last is None else last, "Chip.run")
        x = net.prepare(x)
        if self.needs_calibration:
            warnings.warn(f"Chip.run: {needs_message(self.hw)} and no calibration images were given: calibrating "
                          f"on the image being run (ranges then stay fixed); pass calibration=[...] to "
                          f"emulator.program for ranges independent of the input", CalibrationWarning,
                          stacklevel=2)
            self.calibrate(x)
        return self._run(x, rng, int(last), reference)

    def _run(self, x, rng, last, reference):
        g = self.net.graph(x.shape[2], x.shape[3])
        emu = run_graph(g, ChipBackend(self, rng), x, last)
        ref = self.net.iter_states(x, last) if reference else None  # the fused float engine when it can
        for n, state, logits in emu:
            if logits is None:
                continue
            err = math.nan
            if ref is not None:
                k, fstate, _ = next(ref)
                if k != n:  # both yield at the head iterations
                    raise RuntimeError(f"Chip.run: the float reference yielded output {k}, the chip {n}")
                err = _relative_state_error(state, fstate)
            yield n, logits, err

    def logits(self, x, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
        """Emulated logits (B, C, H, W) of output n (default: the last), no float reference."""
        n = self.net.config.head_iterations[-1] if n is None else self.net.check_output(n)
        for k, lg, _ in self.run(x, rng, last=n, reference=False):
            if k == n:
                return lg
        raise AssertionError("unreachable")  # pragma: no cover

    # -- inspection ----------------------------------------------------------------------
    def effective_params(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``net.params`` with every conv's weights replaced by the chip's effective weights
        (``ProgrammedLayer.effective_weight``): a float engine with these params computes what
        the chip computes without read noise, DAC and ADC."""
        params = dict(self.net.params)
        for name, pl in self.layers.items():
            params[name] = (pl.effective_weight(), params[name][1])
        return params

    def effective_net(self) -> ItNet:
        """A float ``ItNet`` running the chip's effective weights (see ``effective_params``)."""
        net = self.net
        # a fresh ItNet (not a copy): the engine caches prepared weights and plans per instance
        twin = ItNet(net.config, net.tensors, net.norm_scale, net.norm_offset, net.bn_eps, net.metadata, net.source)
        twin.params = self.effective_params()
        return twin

    def report(self, height: int | None = None, width: int | None = None) -> dict:
        """``mapping_report`` of this chip's network and tile size."""
        return mapping_report(self.net, self.hw, height, width)


def _relative_state_error(emu: dict, ref: dict) -> float:
    num = sum(float(np.sum((emu[k].astype(np.float64) - ref[k]) ** 2)) for k in ref)
    den = sum(float(np.sum(ref[k].astype(np.float64) ** 2)) for k in ref)
    return math.sqrt(num / den) if den > 0 else (0.0 if num == 0 else math.inf)


def _require_itnet(net, where):
    if not isinstance(net, ItNet):
        raise TypeError(f"{where}: net must be a minitnet ItNet (minitnet.load('W.h5')), got {type(net).__name__}")


def program(net: ItNet, hw: HardwareConfig, rng: np.random.Generator, calibration=None,
            options: AnalogOptions | None = None) -> Chip:
    """Program every unique conv layer of ``net``'s graph onto tiles of ``hw``: one chip.

    One draw of programming noise, drift and stuck devices per tile, from ``rng``, in a
    fixed order (layers in execution order, tiles in plan order). A shared iterative
    block is programmed once; independent weights give N programmed bodies.
    ``calibration``: a few images (see ``Chip.calibrate``) that fix the tiles' DAC/ADC
    ranges where ``hw`` needs them (``needs_calibration``: DAC/ADC bits or ADC-input noise
    without a fixed bound); otherwise they are not used, so no clipping is added (call
    ``chip.calibrate`` to clip anyway). If ``hw`` needs ranges and none are given, the chip
    calibrates on the first image it runs and warns (``CalibrationWarning``).
    ``options``: ``AnalogOptions`` (chunk sizes; no effect on the outputs).
    """
    _require_itnet(net, "program")
    check_hw(hw, "program")
    check_rng(rng, "program")
    g = net.graph(64, 64)  # layer shapes (and so the tiles) do not depend on the input size
    chip = Chip(net, hw, program_layers(g, net.params, hw, rng), options)
    if calibration is not None and needs_calibration(hw):
        chip.calibrate(calibration)
    return chip


def run(net: ItNet, x, hw: HardwareConfig, rng: np.random.Generator, last: int | None = None,
        reference: bool = True) -> Iterator[tuple[int, np.ndarray, float]]:
    """Program a chip and run one image (batch) through it: ``program(...).run(x, rng)``.

    If ``hw`` needs DAC/ADC ranges they are calibrated on ``x`` itself (no warning:
    that is what this one-shot helper does); for ranges fixed on other images, use
    ``program(net, hw, rng, calibration=...)`` and ``Chip.run``.
    """
    _require_itnet(net, "run")
    chip = program(net, hw, rng, calibration=x)
    return chip.run(x, rng, last=last, reference=reference)
