"""Tests of the periphery choices of issue 15: weight_scaling, inp_range/inp_quantile,
read_noise_mode, drift_compensation="column", depthwise, the aihwkit presets.

Reference points: with noise off, per-column weights, per-vector input scaling and digital
depthwise layers all give the float engine's logits (<= 1e-5); each field changes what it
should, checked on statistics (sample mean within 4 sigma/sqrt(n), sample std within
4 sigma/sqrt(2n); seeds fixed, so deterministic) or exactly where the effect is
deterministic.  Networks are tiny (f=8, 2 scales, 3 iterations).
"""

import dataclasses

import numpy as np
import pytest
from conftest import ATOL

import emulator
from emulator import ConfigError, HardwareConfig, calibrate_tile, mvm, preset, program_tile
from emulator.report import mapping_report
from minitnet import ItNetConfig
from minitnet.engine import ItNet
from netutil import random_tensors
from emu_reference import assert_mean_std, image, rel

CFG = ItNetConfig(levels=2, blocks=1, iterations=3, width=8)
SMALL = dict(rows=16, cols=12)  # most layers split into several row and column pieces


def rng(seed=0):
    return np.random.default_rng(seed)


def make_net(cfg=CFG, seed=0):
    return ItNet(cfg, random_tensors(cfg, rng(seed)))


def chip_logits(net, hw, x, seed=0):
    chip = emulator.program(net, hw, rng(seed), calibration=[x])
    return chip, [lg for _, lg, _ in chip.run(x, rng(seed + 1), reference=False)]


# --- configuration -----------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, match", [
    ("weight_scaling", "colum", "did you mean 'column'"),
    ("inp_range", "per_vector", "did you mean 'per-vector'"),
    ("read_noise_mode", "frozn", "did you mean 'frozen'"),
    ("depthwise", "digitl", "did you mean 'digital'"),
    ("drift_compensation", "columns", "did you mean 'column'"),
    ("drift_compensation", 1, "expected False, True, 'global' or 'column'"),
    ("inp_quantile", 0.0, r"expected a number in \(0, 1\]"),
    ("inp_quantile", 1.5, r"expected a number in \(0, 1\]"),
])
def test_bad_periphery_fields(field, value, match):
    with pytest.raises(ConfigError, match=match):
        HardwareConfig(**{field: value})


def test_per_vector_refuses_a_fixed_dac_range_and_quantile():
    with pytest.raises(ConfigError, match="inp_bound=2.0 with inp_range='per-vector'"):
        HardwareConfig(inp_range="per-vector", inp_bound=2.0)
    with pytest.raises(ConfigError, match="inp_quantile=0.99 has no effect"):
        HardwareConfig(inp_range="per-vector", inp_quantile=0.99)


def test_drift_compensation_values():
    assert HardwareConfig(drift_compensation="global").drift_compensation is True
    assert HardwareConfig(drift_compensation="global") == HardwareConfig(drift_compensation=True)
    modes = {v: HardwareConfig(drift_compensation=v).drift_compensation_mode for v in (False, True, "column")}
    assert modes == {False: "none", True: "global", "column": "column"}


def test_new_presets_and_unchanged_old_ones():
    assert {"aihwkit-default", "pcm-hwa"} <= set(emulator.PRESETS)
    d = preset("aihwkit-default")
    assert (d.inp_bits, d.out_bits, d.out_noise_std, d.inp_range, d.weight_scaling, d.device_model,
            d.read_noise_mode, d.rows) == (7, 9, 0.06, "per-vector", "tile", "pcm", "frozen", 512)
    h = preset("pcm-hwa")
    assert (h.inp_bits, h.out_bits, h.out_noise_std, h.inp_range, h.weight_scaling, h.read_noise_mode,
            h.drift_compensation, h.rows, h.inp_quantile) == (8, 8, 0.04, "calibrated", "column", "frozen", True,
                                                              512, 0.9973)
    # pcm and ideal: today's periphery (the defaults of every new field)
    for name in ("pcm", "ideal"):
        p = preset(name)
        assert (p.weight_scaling, p.inp_range, p.inp_quantile, p.read_noise_mode, p.depthwise) == (
            "tile", "calibrated", 1.0, "per-mvm", "analog")
    assert preset("pcm").drift_compensation is True


# --- noise off: the float engine -------------------------------------------------------------

@pytest.mark.parametrize("fields", [
    dict(weight_scaling="column"),
    dict(inp_range="per-vector"),
    dict(depthwise="digital"),
    dict(weight_scaling="column", inp_range="per-vector", depthwise="digital", drift_compensation="column"),
    dict(read_noise_mode="frozen", drift_compensation="column"),
], ids=["column", "per-vector", "dw-digital", "all", "frozen"])
def test_no_noise_equals_float_engine(fields):
    net, x = make_net(), image()
    ref = [lg for _, lg in net.iter_outputs(x)]
    _, out = chip_logits(net, HardwareConfig(**SMALL, **fields), x)
    for n, (a, b) in enumerate(zip(out, ref), 1):
        assert rel(a, b) <= ATOL, f"{fields}: output {n} relative error {rel(a, b):.3g} > {ATOL}"


# --- weight_scaling ----------------------------------------------------------------------------

def test_column_scaling_maps_each_column_to_g_max():
    w = rng(3).standard_normal((40, 6)) * np.array([1, 0.5, 0.1, 2, 0.01, 1])
    tile = program_tile(w, HardwareConfig(weight_scaling="column", g_max=25.0), rng(4))
    g = np.maximum(tile.g_pos, tile.g_neg)
    np.testing.assert_allclose(g.max(axis=0), 25.0, rtol=1e-6)
    np.testing.assert_allclose(tile.col_gain, np.abs(w).max(axis=0) / np.abs(w).max(), rtol=1e-6)
    np.testing.assert_allclose(tile.w_eff, w, rtol=1e-5, atol=1e-7)
    assert program_tile(w, HardwareConfig(), rng(4)).col_gain is None


def test_column_scaling_adc_noise_follows_each_column_mvm():
    # out noise std of column c: out_noise_std * w_max_c * inp_bound
    w = np.zeros((8, 4))
    w[0] = (1.0, 0.5, 0.1, 0.02)
    hw = HardwareConfig(weight_scaling="column", out_noise_std=0.05, inp_bound=2.0)
    tile = program_tile(w, hw, rng(5))
    x = np.zeros((20_000, 8), np.float32)
    y = mvm(tile, x, hw, rng(6))
    for c in range(4):
        assert_mean_std(y[:, c], 0.0, 0.05 * abs(w[0, c]) * 2.0, f"column {c} ADC noise")


@pytest.mark.parametrize("name, C_in, stride", [("stem2.conv", 8, 2), ("scales.0.conv", 16, 1)],
                         ids=["im2col", "per-tap"])
def test_column_scaling_adc_noise_on_the_chip(name, C_in, stride):
    # the fused kernels (per-column tf table): noise of output channel c ~ out_noise_std * w_max_c * inp_bound
    from minitnet import ops
    net, x = make_net(), image()
    hw = HardwareConfig(rows=4096, cols=4096, weight_scaling="column", out_noise_std=0.02)
    chip = emulator.program(net, hw, rng(0), calibration=[x])
    (t,) = chip.layers[name].tiles
    h = np.abs(rng(2).standard_normal((2, C_in, 40, 60))).astype(np.float32)
    y = chip.conv(name, h, rng(1))
    w, b = net.params[name]
    e = (y - ops.conv2d(h, w, b, stride=stride, padding=1)).transpose(1, 0, 2, 3).reshape(y.shape[1], -1)
    w_max_c = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    assert w_max_c.max() > 2 * w_max_c.min()
    for c in range(w.shape[0]):
        assert_mean_std(e[c], 0.0, 0.02 * w_max_c[c] * t.inp_bound, f"{name} channel {c} ADC noise")


# --- inp_range, inp_quantile -------------------------------------------------------------------

def test_per_vector_scaling_adc_noise_follows_each_vector():
    # per-vector: noise std of an MVM = out_noise_std * w_max * max|x| of its vector
    w = rng(7).standard_normal((16, 3))
    hw = HardwareConfig(inp_range="per-vector", out_noise_std=0.04)
    tile = program_tile(w, hw, rng(8))
    assert tile.inp_bound == 1.0
    n = 6000
    scale = np.repeat([0.1, 1.0, 30.0], n)
    x = (rng(9).uniform(-1, 1, (3 * n, 16)) * scale[:, None]).astype(np.float32)
    x[np.arange(3 * n), 0] = scale  # max|x| of each vector = its scale
    e = mvm(tile, x, hw, rng(10)) - x @ tile.w_eff
    for i, s in enumerate((0.1, 1.0, 30.0)):
        assert_mean_std(e[i * n:(i + 1) * n], 0.0, 0.04 * tile.w_max * s, f"vectors with max|x| = {s}")


def test_per_vector_dac_quantises_each_vector_on_its_own_range():
    w = np.eye(4)
    hw = HardwareConfig(inp_range="per-vector", inp_bits=3)   # 3 levels per sign: steps of max|x| / 3
    tile = program_tile(w, hw, rng(0))
    x = np.array([[3.0, 1.2, -0.4, 0.0], [300.0, 120.0, -40.0, 0.0]], np.float32)
    np.testing.assert_allclose(mvm(tile, x, hw, rng(1)), [[3, 1, 0, 0], [300, 100, 0, 0]], rtol=1e-6)


def test_inp_quantile_sets_the_dac_range():
    x = rng(11).standard_normal((2000, 10)).astype(np.float32)
    w = rng(12).standard_normal((10, 4))
    for q in (1.0, 0.9973, 0.9):
        tile = calibrate_tile(program_tile(w, HardwareConfig(inp_bits=8, inp_quantile=q), rng(0)), x)
        assert tile.inp_bound == pytest.approx(float(np.quantile(np.abs(x), q)), rel=1e-6)
    # on the chip: a smaller quantile gives every row piece a smaller DAC range
    net, img = make_net(), image()
    b = {}
    for q in (1.0, 0.99):
        chip = emulator.program(net, HardwareConfig(**SMALL, inp_bits=8, inp_quantile=q), rng(0), calibration=[img])
        b[q] = np.array([t.inp_bound for pl in chip.layers.values() for t in pl.tiles])
    assert np.all(b[0.99] <= b[1.0]) and np.any(b[0.99] < b[1.0])


# --- read_noise_mode ---------------------------------------------------------------------------

def test_frozen_read_noise_is_one_draw_clamped_at_zero():
    # gaussian read noise sigma: frozen, G+ = 20 + sigma z (far from 0), G- = max(sigma z, 0)
    hw = HardwareConfig(g_max=40.0, read_noise_std=1.0, read_noise_mode="frozen")
    w = np.full((256, 256), 0.5)
    tile = program_tile(w, hw, rng(13), w_max=1.0)
    assert tile.read_var is None
    assert_mean_std(tile.g_pos, 20.0, 1.0, "G+ with frozen read noise (uS)")
    assert np.all(tile.g_neg >= 0)
    assert_mean_std(tile.g_neg, 1 / np.sqrt(2 * np.pi), np.sqrt(0.5 - 1 / (2 * np.pi)),
                    "G- with frozen read noise, clamped at 0 (uS)")
    # every MVM sees the same draw: repeated MVMs are identical
    x = rng(14).standard_normal((5, 256)).astype(np.float32)
    np.testing.assert_array_equal(mvm(tile, x, hw, rng(15)), mvm(tile, x, hw, rng(16)))
    per_mvm = program_tile(w, dataclasses.replace(hw, read_noise_mode="per-mvm"), rng(13), w_max=1.0)
    assert per_mvm.read_var is not None and np.all(per_mvm.g_pos == 20.0)


def test_frozen_pcm_read_noise_statistics():
    # PCM at t = 1 h, programming noise and drift off: G+ = g_T + |g_T| Q_s sqrt(ln(...)) z
    hw = preset("pcm", prog_noise_scale=0.0, drift_scale=0.0, t_inference=3600.0, read_noise_mode="frozen",
                inp_bits=None, out_bits=None, out_noise_std=0.0, drift_compensation=False)
    w = np.full((200, 200), 0.6)
    tile = program_tile(w, hw, rng(17), w_max=1.0)
    g_t = 0.6 * 25.0
    sigma = float(emulator.noise.read_noise_std(np.array([g_t]), np.array([g_t]), hw)[0])
    assert_mean_std(tile.g_pos, g_t, sigma, "frozen PCM 1/f noise on G+ (uS)")


# --- drift_compensation ------------------------------------------------------------------------

def test_column_drift_compensation_restores_each_column():
    hw = HardwareConfig(drift_nu_mean=0.1, drift_nu_std=0.05, t_inference=86400.0, drift_compensation="column")
    w = rng(18).standard_normal((64, 5)) * np.array([1, 0.3, 0.05, 1, 0.5])
    tile = program_tile(w, hw, rng(19))
    assert tile.out_scale.shape == (5,)
    hw0 = dataclasses.replace(hw, t_inference=0.0)
    prog = program_tile(w, hw0, rng(19))   # the same draws without drift: g_prog
    np.testing.assert_allclose(np.abs(tile.w_eff).mean(axis=0) * tile.out_scale, np.abs(prog.w_eff).mean(axis=0),
                               rtol=1e-5)
    glob = program_tile(w, dataclasses.replace(hw, drift_compensation=True), rng(19))
    assert np.ndim(glob.out_scale) == 0
    assert np.abs(glob.w_eff).mean() * glob.out_scale == pytest.approx(np.abs(prog.w_eff).mean(), rel=1e-5)


def test_column_drift_compensation_on_the_chip_equals_effective_weights():
    # no read/ADC noise: the chip computes with w_eff * out_scale (per column), its effective weights
    net, x = make_net(), image()
    hw = HardwareConfig(**SMALL, drift_nu_mean=0.06, drift_nu_std=0.03, t_inference=3600.0,
                        drift_compensation="column")
    chip, out = chip_logits(net, hw, x)
    ref = [lg for _, lg in chip.effective_net().iter_outputs(x)]
    for a, b in zip(out, ref):
        assert rel(a, b) <= ATOL


# --- depthwise ---------------------------------------------------------------------------------

def test_digital_depthwise_has_no_tiles():
    net = make_net()
    analog = emulator.program(net, HardwareConfig(**SMALL), rng(0))
    digital = emulator.program(net, HardwareConfig(**SMALL, depthwise="digital"), rng(0))
    dw = {n for n, pl in analog.layers.items() if pl.plan.depthwise}
    assert dw and not dw & set(digital.layers)
    assert digital.tiles == analog.tiles - sum(len(analog.layers[n].tiles) for n in dw)
    rep = mapping_report(net, HardwareConfig(**SMALL, depthwise="digital"), 21, 30)
    assert rep["totals"]["this"]["tiles"] == digital.tiles


# --- presets end to end ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["aihwkit-default", "pcm-hwa"])
def test_new_presets_run(name):
    net, x = make_net(), image()
    ref = [lg for _, lg in net.iter_outputs(x)]
    _, out = chip_logits(net, preset(name, rows=16, cols=12, t_inference=3600.0), x)
    for a, b in zip(out, ref):
        assert np.all(np.isfinite(a)) and a.shape == b.shape
        assert rel(a, b) < 2.0


def test_digital_depthwise_in_the_timing_model():
    from emulator.timing import Mapping, TimingConfig, extract
    from minitnet.graph import build_graph
    g = build_graph(CFG, 21, 30)
    dw = {nd.name for nd in g.body if nd.op == "conv" and g.layer_of(nd, 1).depthwise}
    assert dw
    res = {}
    for mode in ("analog", "digital"):
        _, resources = extract(g, HardwareConfig(**SMALL, depthwise=mode), TimingConfig(), Mapping("shared"))
        res[mode] = {r.name: r.tiles for r in resources}
    for name in dw:
        assert res["analog"][f"body/{name}"] > 0
        assert res["digital"][f"body/{name} (periphery)"] == 0
    assert sum(res["digital"].values()) < sum(res["analog"].values())
