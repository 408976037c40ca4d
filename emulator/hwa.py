"""Hardware-aware training: a ``TorchItNet`` whose analog convs see a preset's non-idealities.

``HWA(model, hw, rng)`` puts the chip into the forward pass of a ``minitnet.torch.TorchItNet``
(the trainer's ``--hwa PRESET``; needs torch). Every conv the emulator maps onto tiles
(``emulator.tiles.plan_graph``: a preset's digital depthwise convs stay exact) then runs as
the chip runs it, in the emulator's own units:

* **weights**: once per training step (``resample``), every analog layer is programmed by
  the emulator itself: BN folded by ``minitnet.weights.fold_weights``, split by
  ``programming.tile_matrices``, each tile drawn by ``crossbar.program_tile`` (programming
  noise, drift to ``t_inference``, frozen 1/f read noise, stuck devices, drift compensation,
  per-column or per-tile ``w_max``), so the injected weight error *is* an emulator draw, not
  a second model of it. One draw serves all N iterations of a shared layer (fixed-pattern
  noise) and every image of the step. Gradients pass straight through (``w + delta``, delta
  a constant).
* **DAC**: inputs clipped to a learned range ``r`` per layer (``ranges``; initialised from the
  first batch at the preset's ``inp_quantile`` of |x|, as the emulator calibrates) and
  quantised on it (``inp_bits``, straight-through); r learns from the clipping and from the
  ADC noise that grows with it, plus aihwkit's decay (``RANGE_DECAY`` x r while more than
  ``RANGE_KEEP`` of the inputs are not clipped).
* **ADC**: per tile (row piece x column piece) its output in the folded (programmed) units,
  plus fresh Gaussian noise of std ``out_noise_std * w_max_c * r`` (``crossbar.mvm``'s
  ADC-input noise with ``inp_bound = r``), quantised (``out_bits``, straight-through) on a
  range set, as calibration does, by the largest noise-free |output| of the tile in the
  batch (per column ``x col_gain``); row pieces are summed digitally.

Backward is ideal. Batch norms are frozen (running statistics, so they fold as on the chip;
their affine parameters still learn). ``clip_weights`` clips each output column of the dense
analog layers at ``clip_sigma`` standard deviations after every optimiser step. Per-MVM read
noise and per-vector input scaling are not trained for: presets with ``read_noise_mode=
"per-mvm"`` or ``inp_range="per-vector"`` are refused (``pcm-hwa`` is the target preset).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from minitnet.graph import build_graph
from minitnet.weights import BN_EPS, fold_weights

from .config import HardwareConfig, preset
from .crossbar import program_tile
from .errors import ConfigError
from .programming import ProgrammedLayer, tile_matrices
from .tiles import plan_graph

__all__ = ["HWA", "from_args", "RANGE_DECAY", "RANGE_KEEP"]

RANGE_DECAY = 0.001
"""aihwkit ``InputRangeParameter.decay``: added gradient ``decay * r`` ..."""
RANGE_KEEP = 0.95
"""... while more than this fraction of a layer's inputs is not clipped (``input_min_percentage``)."""
_SAMPLE = 1 << 20  # |x| values kept to initialise a range (torch.quantile's input limit is 16M)


def _levels(bits) -> int:
    return 0 if bits is None else 2 ** (bits - 1) - 1


def _ste_quantise(v: torch.Tensor, L: int, bound: torch.Tensor) -> torch.Tensor:
    """v clipped to ±bound (gradient to bound where clipped) and rounded to L levels per side
    (straight-through: the rounding has gradient 1)."""
    v = torch.minimum(torch.maximum(v, -bound), bound)
    if L > 0:
        step = bound / L
        v = v + (torch.round(v / step) * step - v).detach()
    return v


class _Layer:
    """One analog conv of the model: its module, plan, folded-weight draw and ADC layout."""

    def __init__(self, name: str, module: nn.Conv2d, lay, plan):
        self.name, self.module, self.layer, self.plan = name, module, lay, plan
        cols = lay.out_channels
        # row pieces (dense) in plan order; tile index per (row piece, column)
        starts = [] if plan.depthwise else sorted({p.row0 for p in plan.pieces})
        self.row_pieces = [(r0, next(p.row1 for p in plan.pieces if p.row0 == r0)) for r0 in starts] or [None]
        self.tile_of = np.zeros((len(self.row_pieces), cols), np.int64)
        self.piece_of_tile = [0 if plan.depthwise else starts.index(p.row0) for p in plan.pieces]
        for i, p in enumerate(plan.pieces):
            self.tile_of[self.piece_of_tile[i], p.col0:p.col1] = i
        self.delta = None          # weight error of this step (unfolded units), a constant
        self.scale = None          # (C_out,) the folded BN scale (1 without BN)
        self.wmax = None           # (row pieces, C_out) w_max of each column's tile x col_gain
        self.gain = None           # (row pieces, C_out) col_gain (1 with one w_max per tile)
        self.masks = None          # row pieces' weight masks (dense, more than one piece)
        self.clipped = 0.0         # fraction of this step's inputs beyond ±r

    def masks_for(self, w: torch.Tensor):
        if self.masks is None and len(self.row_pieces) > 1:
            flat = torch.arange(w[0].numel(), device=w.device).reshape(w.shape[1:])
            self.masks = [((flat >= a) & (flat < b)).to(w.dtype) for a, b in self.row_pieces]
        return self.masks


class HWA:
    """The chip of ``hw`` injected into ``model`` (see the module docstring).

    ``rng`` draws the programming of every step; torch's generator the ADC noise.
    ``t_inference`` (s) overrides the preset's (the time the model should hold at).
    """

    def __init__(self, model, hw: HardwareConfig, rng: np.random.Generator, *, noise_scale: float = 1.0,
                 clip_sigma: float | None = 3.0):
        if hw.read_noise_mode != "frozen" and (hw.read_noise_scale > 0 and (hw.read_noise_std > 0
                                                                            or hw.device_model == "pcm")):
            raise ConfigError(f"hardware-aware training draws read noise once per step (read_noise_mode="
                              f"'frozen'); this config has read_noise_mode={hw.read_noise_mode!r}: use the "
                              f"preset pcm-hwa or set read_noise_mode=frozen")
        if hw.inp_range != "calibrated":
            raise ConfigError(f"hardware-aware training learns one DAC range per layer (inp_range='calibrated'); "
                              f"this config has inp_range={hw.inp_range!r}")
        if not (np.isfinite(noise_scale) and noise_scale >= 0):
            raise ConfigError(f"HWA noise_scale={noise_scale!r}: expected a finite number >= 0")
        if clip_sigma is not None and not (np.isfinite(clip_sigma) and clip_sigma > 0):
            raise ConfigError(f"HWA clip_sigma={clip_sigma!r}: expected a number > 0, or None (no clipping)")
        self.model, self.hw, self.rng = model, hw, rng
        self.noise_scale, self.clip_sigma = float(noise_scale), clip_sigma
        self.graph = build_graph(model.config, 64, 64)
        self.layers = {}
        for name, plan in plan_graph(self.graph, hw).items():
            mod = model.get_submodule(name)
            if not isinstance(mod, nn.Conv2d):
                raise ConfigError(f"HWA: layer {name!r} of the graph is a {type(mod).__name__} in the model")
            self.layers[name] = _Layer(name, mod, self.graph.layers[name], plan)
        dev = next(model.parameters()).device
        #: learned DAC range per analog layer (input units); NaN until the first batch sets it
        self.ranges = nn.ParameterDict({_key(n): nn.Parameter(torch.tensor(float("nan"), device=dev))
                                        for n in self.layers})
        self.enabled = False
        for st in self.layers.values():
            st.module.forward = _forward_of(self, st)

    # -- per step -------------------------------------------------------------------------------
    def freeze_bn(self) -> None:
        """Batch norms to eval mode (running statistics): called after ``model.train()``."""
        for m in self.model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()

    def resample(self) -> None:
        """Program every analog layer anew (one emulator draw per tile, from ``rng``)."""
        tensors = {k: v.detach().float().cpu().numpy() for k, v in self.model.state_dict().items()
                   if not k.endswith("num_batches_tracked")}
        folded = fold_weights(self.graph, tensors, BN_EPS, where="HWA")
        for name, st in self.layers.items():
            w_fold = folded[name][0]
            tiles = tuple(program_tile(m, self.hw, self.rng) for m in tile_matrices(st.layer, st.plan, w_fold))
            w_eff = ProgrammedLayer(st.layer, st.plan, tiles, folded[name][1]).effective_weight()
            s = _bn_scale(tensors, st.layer)
            delta = (w_eff.astype(np.float64) - w_fold) / s[:, None, None, None] * self.noise_scale
            dev = st.module.weight.device
            st.delta = torch.from_numpy(np.nan_to_num(delta).astype(np.float32)).to(dev)
            st.scale = torch.from_numpy(s.astype(np.float32)).to(dev)
            wmax, gain = np.zeros(st.tile_of.shape), np.ones(st.tile_of.shape)
            for i, (t, p) in enumerate(zip(tiles, st.plan.pieces)):
                g = np.ones(t.cols) if t.col_gain is None else t.col_gain
                k = st.piece_of_tile[i]
                gain[k, p.col0:p.col1], wmax[k, p.col0:p.col1] = g, t.w_max * g
            st.wmax = torch.from_numpy(wmax.astype(np.float32)).to(dev)
            st.gain = torch.from_numpy(gain.astype(np.float32)).to(dev)

    def before_optimizer_step(self) -> None:
        """aihwkit's range decay: grad(r) += RANGE_DECAY * r while few inputs are clipped."""
        for name, st in self.layers.items():
            r = self.ranges[_key(name)]
            if r.grad is not None and st.clipped < 1 - RANGE_KEEP:
                r.grad.add_(RANGE_DECAY * r.detach())

    @torch.no_grad()
    def clip_weights(self) -> None:
        """Each output column of a dense analog layer clipped at ``clip_sigma`` std (after a step),
        and the ranges kept positive."""
        for name, st in self.layers.items():
            r = self.ranges[_key(name)]
            if torch.isfinite(r):
                r.clamp_(min=1e-6)
            if self.clip_sigma is None or st.plan.depthwise:
                continue
            w = st.module.weight
            lim = self.clip_sigma * w.reshape(len(w), -1).std(1).view(-1, 1, 1, 1)
            w.copy_(torch.maximum(torch.minimum(w, lim), -lim))

    def input_ranges(self) -> dict[str, float]:
        """{layer: learned DAC range} for the weights file (``export_hdf5(..., input_ranges=)``)."""
        out = {n: float(self.ranges[_key(n)].detach()) for n in self.layers}
        missing = [n for n, v in out.items() if not np.isfinite(v)]
        if missing:
            raise ConfigError(f"HWA: layers {missing[:4]} never ran with HWA on, so have no learned input range")
        return out

    # -- the forward of one analog conv ----------------------------------------------------------
    def conv(self, st: _Layer, x: torch.Tensor) -> torch.Tensor:
        mod = st.module
        if not self.enabled:
            return mod._conv_forward(x, mod.weight, mod.bias)
        r = self._range(st, x)
        xq = _ste_quantise(x, _levels(self.hw.inp_bits), r.to(x.dtype))
        st.clipped = float((x.detach().abs() > r.detach()).float().mean())
        w = mod.weight + st.delta.to(mod.weight.dtype)
        masks = st.masks_for(w)
        ys = [mod._conv_forward(xq, w, None)] if masks is None else [mod._conv_forward(xq, w * m, None)
                                                                    for m in masks]
        y = sum(self._adc(st, k, yk.float(), r) for k, yk in enumerate(ys))
        if mod.bias is not None:
            y = y + mod.bias.view(1, -1, 1, 1)
        return y.to(ys[0].dtype)

    def _range(self, st: _Layer, x: torch.Tensor) -> torch.Tensor:
        r = self.ranges[_key(st.name)]
        if not torch.isfinite(r):  # the first batch sets it, at the preset's quantile of |x|
            a = x.detach().abs().float().reshape(-1)
            if a.numel() > _SAMPLE:
                a = a[:: -(-a.numel() // _SAMPLE)]
            v = float(torch.quantile(a, self.hw.inp_quantile)) or float(a.max()) or 1.0
            with torch.no_grad():
                r.fill_(v)
        return r

    def _adc(self, st: _Layer, k: int, y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """Row piece k's output through ADC noise and quantisation, in folded units, then unfolded."""
        s = st.scale.view(1, -1, 1, 1)
        yf = y * s
        hw = self.hw
        if hw.out_noise_std > 0:
            std = hw.out_noise_std * st.wmax[k].view(1, -1, 1, 1) * r
            yf = yf + torch.randn_like(yf) * std
        L = _levels(hw.out_bits)
        if L > 0 or hw.out_bound is not None:
            gain = st.gain[k]
            if hw.out_bound is not None:
                ob = torch.full_like(gain, float(hw.out_bound))
            else:  # calibration's rule: the tile's largest noise-free |output| / col_gain, per tile
                col = ((y * s).detach().abs().amax((0, 2, 3)) / gain)
                tiles = torch.from_numpy(st.tile_of[k]).to(y.device)
                top = torch.zeros(len(st.plan.pieces), device=y.device).scatter_reduce(0, tiles, col, "amax")
                ob = top[tiles]
            yf = _ste_quantise(yf, L, (ob * gain).clamp_min(1e-12).view(1, -1, 1, 1))
        return yf / s


def _bn_scale(tensors: dict, lay) -> np.ndarray:
    """(C_out,) float64 the scale its BN folds into the layer's weights (``fold_weights``'), 1
    without BN; a zero scale (its channel is 0 after the BN anyway) as 1, so it can divide."""
    if lay.bn is None:
        return np.ones(lay.out_channels)
    a, b = lay.bn_channels
    g = tensors[f"{lay.bn}.weight"][a:b].astype(np.float64)
    s = g / np.sqrt(tensors[f"{lay.bn}.running_var"][a:b].astype(np.float64) + BN_EPS)
    return np.where(s == 0, 1.0, s)


def _key(name: str) -> str:
    return name.replace(".", "/")


def _forward_of(hwa: HWA, st: _Layer):
    def forward(x):
        return hwa.conv(st, x)
    return forward


def from_args(model, name: str, *, seed: int, t_inference: float | None = 86400.0, noise_scale: float = 1.0,
              clip_sigma: float | None = 3.0) -> HWA:
    """The trainer's entry (``--hwa PRESET``): the preset ``name`` at ``t_inference`` s."""
    over = {} if t_inference is None else {"t_inference": float(t_inference)}
    hw = preset(name, **over)
    return HWA(model, hw, np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(16,))),
               noise_scale=noise_scale, clip_sigma=clip_sigma)
