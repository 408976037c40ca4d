"""IBM aihwkit as an oracle for the emulator (issue 15, item 7): one small ItNet on aihwkit tiles.

The network runs on minitnet's own node-by-node executor (``minitnet.executor.run``) with
an ``AihwkitBackend``: every conv layer is one aihwkit ``TorchInferenceTile`` (aihwkit's
pure-PyTorch tile; its compiled RPUCuda tiles do not work with our torch), fed the
im2col'd input (rows in ``(c_in, ky, kx)`` order, as the emulator's tiles); everything
else (bias, BN affines, activations, pooling, resizing, concatenation, residuals) is the
float engine's exact digital op. So aihwkit and the emulator run the same graph with the
same folded weights (``net.params``: BN folded at load) and differ only in their tiles.

What aihwkit does per tile (``aihwkit==1.1.0``, read from its source):

* ``program_weights()``: ``PCMLikeNoiseModel`` maps ``max|w|`` of the tile to ``g_max``
  (``SinglePairConductanceConverter``), draws programming noise (clamped at 0) and the
  drift exponents, once per programming;
* ``drift_weights(t)``: drifts the programmed conductances to ``t`` and adds the 1/f noise
  accumulated up to ``t`` **once** (a frozen draw, redrawn at every call), then clamps at 0;
  with ``GlobalDriftCompensation`` the scale is ``mean|W @ I|`` after programming over the
  same readout after drift (one-hot inputs through the tile's own forward);
* forward: the IO pipeline of ``IOParameters`` (``is_perfect=True``: an exact matmul).

Random numbers: aihwkit draws from torch's global generator; every function here seeds
it explicitly (``torch.manual_seed``) so a run is reproducible.

Depthwise convs (blocks K >= 1) run as one ``(C, KH*KW)`` tile per layer whose row c
holds channel c's taps, each channel's patches going through the whole tile and the
diagonal kept: the emulator's block-diagonal tile with unprogrammed off-diagonal cells
(aihwkit would program a zero weight as two noisy zero-target devices). With
per-vector input scaling the abs-max is then per channel patch instead of per pixel.

Run ``python tests/emulator/aihwkit_oracle.py`` for the table of issue 15.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from minitnet.executor import FloatBackend, run as run_graph

__all__ = ["rpu_config", "AihwkitChip", "AihwkitBackend", "float_logits", "aihwkit_logits",
           "emulator_logits", "relative_errors", "small_net", "small_image", "SMALL_CONFIG",
           "HOUR", "DAY"]

HOUR, DAY = 3600.0, 86400.0


def rpu_config(*, device_noise: bool = True, read_noise_scale: float = 1.0, prog_noise_scale: float = 1.0,
               drift_scale: float = 1.0, drift_compensation: bool = True, g_max: float = 25.0,
               periphery: str = "ideal", out_noise: float = 0.0, inp_bits: int | None = None,
               out_bits: int | None = None, columnwise: bool = False):
    """An aihwkit ``TorchInferenceRPUConfig`` with the settings matched to the emulator.

    device_noise: the PCM model (``PCMLikeNoiseModel(g_max)`` with the three scales) or none
    (``noise_model=None``-like: all scales 0, weights programmed exactly).
    periphery: ``"ideal"`` (``forward.is_perfect = True``: exact matmul) or ``"per-vector"``
    (abs-max noise management, no bound management, out noise ``out_noise`` in units of the
    normalised output, DAC/ADC of ``inp_bits``/``out_bits`` or none, bounds 1 and +inf).
    Weights are scaled per tile (``weight_scaling_omega = 1``) or per column (``columnwise``).
    """
    from aihwkit.inference import GlobalDriftCompensation, PCMLikeNoiseModel
    from aihwkit.simulator.configs import TorchInferenceRPUConfig
    from aihwkit.simulator.parameters.enums import BoundManagementType, NoiseManagementType

    cfg = TorchInferenceRPUConfig()
    cfg.mapping.max_input_size = 0    # no splitting: one tile per layer
    cfg.mapping.max_output_size = 0
    cfg.mapping.weight_scaling_omega = 1.0
    cfg.mapping.weight_scaling_columnwise = columnwise
    scales = (prog_noise_scale, read_noise_scale, drift_scale) if device_noise else (0.0, 0.0, 0.0)
    cfg.noise_model = PCMLikeNoiseModel(g_max=g_max, prog_noise_scale=scales[0], read_noise_scale=scales[1],
                                        drift_scale=scales[2])
    cfg.drift_compensation = GlobalDriftCompensation() if drift_compensation else None
    fwd = cfg.forward
    if periphery == "ideal":
        fwd.is_perfect = True
    elif periphery == "per-vector":
        fwd.is_perfect = False
        fwd.noise_management = NoiseManagementType.ABS_MAX
        fwd.bound_management = BoundManagementType.NONE
        fwd.out_noise = float(out_noise)
        fwd.inp_bound = 1.0
        fwd.inp_res = -1.0 if inp_bits is None else 2.0 ** inp_bits - 2   # aihwkit: steps over [-1, 1]
        fwd.out_bound = -1.0                                              # no ADC clip
        fwd.out_res = -1.0 if out_bits is None else 2.0 ** out_bits - 2
        fwd.w_noise = 0.0
        fwd.inp_noise = 0.0
    else:
        raise ValueError(f"rpu_config: periphery={periphery!r}, expected 'ideal' or 'per-vector'")
    return cfg


class AihwkitChip:
    """The conv layers of ``net`` on aihwkit tiles, one ``TorchInferenceTile`` per layer.

    ``program(seed)`` draws one programming (torch seeded with ``seed``); ``drift(t, seed)``
    drifts it to ``t`` seconds with a fresh frozen 1/f draw (torch seeded with ``seed``).
    """

    def __init__(self, net, rpu):
        from aihwkit.simulator.tiles.inference_torch import TorchInferenceTile

        g = net.graph(64, 64)
        self.net, self.tiles, self.depthwise = net, {}, {}
        for name, lay in g.layers.items():
            if lay.kind != "conv":
                continue
            w = torch.from_numpy(np.asarray(net.params[name][0], np.float32))
            dw = lay.groups != 1
            if dw and lay.groups != lay.in_channels:
                raise NotImplementedError(f"AihwkitChip: layer {name!r} has groups={lay.groups} (only dense or "
                                          f"depthwise convs)")
            mat = w.reshape(lay.out_channels, -1)                        # (C_out, K) or (C, KH*KW)
            tile = TorchInferenceTile(mat.shape[0], mat.shape[1], rpu_config=copy.deepcopy(rpu))
            tile.set_weights(mat.clone())
            tile.eval()
            self.tiles[name], self.depthwise[name] = tile, dw

    @torch.no_grad()
    def program(self, seed: int) -> "AihwkitChip":
        torch.manual_seed(seed)
        for tile in self.tiles.values():
            tile.program_weights()
        return self

    @torch.no_grad()
    def drift(self, t_inference: float, seed: int) -> "AihwkitChip":
        torch.manual_seed(seed)
        for tile in self.tiles.values():
            tile.drift_weights(float(t_inference))
        return self

    def effective_weight(self, name: str) -> np.ndarray:
        """The tile's weights now (after programming / drift), in weight units, (C_out, K)."""
        tile = self.tiles[name]
        w = tile.tile.get_weights() if hasattr(tile.tile, "get_weights") else tile.tile.weight
        scales = tile.get_scales()
        w = w.detach().clone()
        if scales is not None:
            w = w * scales.view(-1, 1)
        return (w * tile.alpha).numpy()


class AihwkitBackend(FloatBackend):
    """minitnet's executor backend with every conv on the ``AihwkitChip``'s tiles."""

    def __init__(self, chip: AihwkitChip):
        super().__init__(chip.net.params)
        self.chip = chip

    @torch.no_grad()
    def conv(self, node, layer, x, residual, out=None):
        tile = self.chip.tiles[layer.name]
        b = self.params[layer.name][1]
        N, _, H, W = x.shape
        kh, kw = layer.kernel_size
        OH = (H + 2 * layer.padding - kh) // layer.stride + 1
        OW = (W + 2 * layer.padding - kw) // layer.stride + 1
        cols = F.unfold(torch.from_numpy(np.ascontiguousarray(x)), (kh, kw), padding=layer.padding,
                        stride=layer.stride)                                   # (N, C_in*KH*KW, L)
        L = cols.shape[-1]
        if self.chip.depthwise[layer.name]:
            C = layer.out_channels
            rows = cols.reshape(N, C, kh * kw, L).permute(0, 3, 1, 2).reshape(-1, kh * kw)
            y = tile(rows).reshape(N, L, C, C).diagonal(dim1=2, dim2=3)      # channel c through its own row
        else:
            y = tile(cols.transpose(1, 2).reshape(N * L, -1)).reshape(N, L, -1)
        y = y.transpose(1, 2).reshape(N, layer.out_channels, OH, OW).numpy().astype(np.float32)
        y += b[None, :, None, None]
        if residual is not None:
            y += residual
        if node.act == 1:
            np.maximum(y, 0, out=y)
        elif node.act == 2:
            np.clip(y, 0, 6, out=y)
        if out is not None:
            out[...] = y
            return out
        return np.ascontiguousarray(y)


def _logits(graph, backend, x) -> list[np.ndarray]:
    return [lg.copy() for _, _, lg in run_graph(graph, backend, x) if lg is not None]


def float_logits(net, x) -> list[np.ndarray]:
    """The float engine's logits of every head (node-by-node executor, folded weights)."""
    return _logits(net.graph(x.shape[2], x.shape[3]), FloatBackend(net.params), x)


def aihwkit_logits(chip: AihwkitChip, x) -> list[np.ndarray]:
    return _logits(chip.net.graph(x.shape[2], x.shape[3]), AihwkitBackend(chip), x)


def emulator_logits(chip, x, rng) -> list[np.ndarray]:
    return [lg.copy() for _, lg, _ in chip.run(x, rng, reference=False)]


def relative_errors(logits, ref) -> np.ndarray:
    """Relative L2 error per output, ``||y - y_ref|| / ||y_ref||``."""
    return np.array([np.linalg.norm((a - r).astype(np.float64)) / np.linalg.norm(r.astype(np.float64))
                     for a, r in zip(logits, ref)])


# --- the small ItNet of issue 15 ---------------------------------------------------------------

def _small_config():
    from minitnet import ItNetConfig
    return ItNetConfig(levels=3, blocks=0, iterations=4, width=24)


SMALL_CONFIG = _small_config()
"""K=0, N=4, f=24 (3 scales, a head at every iteration): the issue's network."""


def small_net(cfg=SMALL_CONFIG, seed: int = 0):
    """An ItNet with the random weights of ``tests/netutil.py`` (BN folded at load)."""
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "netutil.py")
    spec = importlib.util.spec_from_file_location("_oracle_netutil", path)
    netutil = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(netutil)  # not on sys.path: tests/ holds a package named emulator
    from minitnet.engine import ItNet
    random_tensors = netutil.random_tensors
    return ItNet(cfg, random_tensors(cfg, np.random.default_rng(seed)))


def small_image(seed: int = 1, shape=(1, 3, 72, 96)) -> np.ndarray:
    """A smooth random image (NCHW float32, prepared): bilinear upsampling of 9x12 noise."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(shape[0], shape[1], shape[2] // 8, shape[3] // 8, generator=g)
    return F.interpolate(z, size=shape[2:], mode="bilinear", align_corners=False).numpy().astype(np.float32)


def emulator_hw(t_inference: float, **fields):
    """The emulator's config matched to ``rpu_config()``: PCM devices, one tile per layer,
    ideal periphery, global drift compensation; ``fields`` override."""
    from emulator import HardwareConfig
    base = dict(rows=4096, cols=4096, device_model="pcm", g_max=25.0, t_inference=float(t_inference),
                drift_compensation=True)
    base.update(fields)
    return HardwareConfig(**base)


# --- the table -----------------------------------------------------------------------------------

def compare(net, x, times=(0.0, HOUR, DAY), programmings: int = 30, seed: int = 0,
            aihwkit_kwargs: dict | None = None, emulator_fields: dict | None = None) -> dict:
    """Relative L2 logit error per output and time, aihwkit vs emulator, over ``programmings`` chips.

    Returns {t: {"aihwkit": (P, outputs), "emulator": (P, outputs)}}. Programming p of aihwkit
    seeds torch with ``seed * 100003 + p`` and drifts it to every t (one programming serves all
    times, as in aihwkit); the emulator programs a chip per (p, t) from
    ``SeedSequence([seed, p, t index])`` (its t is fixed at programming).
    """
    import emulator

    ref = float_logits(net, x)
    chip = AihwkitChip(net, rpu_config(**(aihwkit_kwargs or {})))
    res = {t: {"aihwkit": [], "emulator": []} for t in times}
    for p in range(programmings):
        chip.program(seed * 100003 + p)
        for i, t in enumerate(times):
            chip.drift(t, seed * 100003 + p + 7919 * (i + 1))
            res[t]["aihwkit"].append(relative_errors(aihwkit_logits(chip, x), ref))
            ss = np.random.SeedSequence([seed, p, i])
            r_prog, r_run = (np.random.default_rng(s) for s in ss.spawn(2))
            echip = emulator.program(net, emulator_hw(t, **(emulator_fields or {})), r_prog)
            res[t]["emulator"].append(relative_errors(emulator_logits(echip, x, r_run), ref))
    return {t: {k: np.array(v) for k, v in d.items()} for t, d in res.items()}


def format_table(res: dict, title: str) -> str:
    lines = [title, f"{'t':>8} {'output':>6} {'aihwkit':>16} {'emulator':>16} {'ratio':>6} {'z':>6}"]
    for t, d in res.items():
        a, e = d["aihwkit"], d["emulator"]
        for o in range(a.shape[1]):
            ma, me = a[:, o].mean(), e[:, o].mean()
            sa, se = a[:, o].std(ddof=1) / math.sqrt(len(a)), e[:, o].std(ddof=1) / math.sqrt(len(e))
            z = (me - ma) / math.hypot(sa, se)
            lines.append(f"{_t(t):>8} {o + 1:>6} {ma:9.4f} ±{sa:.4f} {me:9.4f} ±{se:.4f} {me / ma:6.3f} {z:+6.2f}")
    return "\n".join(lines)


def _t(t):
    return {0.0: "0", HOUR: "1 h", DAY: "1 day"}.get(t, f"{t:g} s")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--programmings", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    net, x = small_net(), small_image()
    cases = [
        ("PCM, programming noise + drift, no read noise (both the same model)",
         dict(read_noise_scale=0.0), dict(read_noise_scale=0.0)),
        ("PCM, all terms: aihwkit 1/f frozen per inference time, emulator 1/f per MVM",
         {}, {}),
    ]
    from emulator import HardwareConfig
    if "read_noise_mode" in {f.name for f in dataclasses.fields(HardwareConfig)}:
        cases.append(("PCM, all terms, 1/f frozen in both (read_noise_mode='frozen')", {},
                      dict(read_noise_mode="frozen")))
    if "inp_range" in {f.name for f in dataclasses.fields(HardwareConfig)}:
        cases.append(("Periphery only: exact devices, per-vector abs-max input scaling, out noise 0.06",
                      dict(device_noise=False, periphery="per-vector", out_noise=0.06, drift_compensation=False),
                      dict(device_model="gaussian", inp_range="per-vector", out_noise_std=0.06,
                           drift_compensation=False)))
    for title, ak, ef in cases:
        t0 = time.perf_counter()
        res = compare(net, x, programmings=args.programmings, seed=args.seed, aihwkit_kwargs=ak,
                      emulator_fields=ef)
        print(format_table(res, f"{title}; {args.programmings} programmings, "
                                f"mean ± s.e. of the relative L2 logit error") + f"\n({time.perf_counter() - t0:.0f} s)\n")


if __name__ == "__main__":
    main()
