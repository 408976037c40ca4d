"""Hardware-aware training (emulator.hwa): the noise it injects is the emulator's, and what it
learns (the DAC ranges) travels in the weights file to the emulator."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import emulator  # noqa: E402
import minitnet  # noqa: E402
from emulator.config import ConfigError, preset  # noqa: E402
from emulator.hwa import HWA, from_args  # noqa: E402
from minitnet import ItNetConfig  # noqa: E402
from minitnet.torch import TorchItNet, export_hdf5  # noqa: E402

CFG = ItNetConfig(levels=2, blocks=1, iterations=3, width=8, classes=5)


def _model(seed=0):
    torch.manual_seed(seed)
    m = TorchItNet(CFG)
    with torch.no_grad():  # non-trivial BN statistics, so folding matters
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
    return m.eval()


def _net(m, ranges=None):
    t = {k: v.detach().numpy().copy() for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}
    return minitnet.ItNet(CFG, t, input_ranges=ranges)


def _warm(h, m, x):
    """One HWA forward: sets the learned ranges from x."""
    m.train()
    h.freeze_bn()
    h.resample()
    h.enabled = True
    with torch.no_grad():
        m(x)


def test_the_weight_draw_is_the_emulators():
    # same rng state -> HWA's per-step weights, folded, are exactly the chip's effective weights
    m = _model()
    hw = preset("pcm-hwa", t_inference=86400.0)
    h = HWA(m, hw, np.random.default_rng(5))
    h.resample()
    chip = emulator.program(_net(m), hw, np.random.default_rng(5))
    assert set(h.layers) == set(chip.layers)
    for name, st in h.layers.items():
        w = st.module.weight.detach().double().numpy() + st.delta.double().numpy()
        folded = w * st.scale.double().numpy()[:, None, None, None]
        ref = chip.layers[name].effective_weight()
        # float32 rounding of delta and of the BN scale: relative 1e-6 of the layer's largest weight
        np.testing.assert_allclose(folded, ref, rtol=0, atol=1e-6 * np.abs(ref).max(), err_msg=name)
        assert np.abs(folded - _net(m).params[name][0]).max() > 0, f"{name}: no noise drawn"


def test_a_step_draws_anew_and_shared_iterations_share_the_draw():
    m = _model()
    h = from_args(m, "pcm-hwa", seed=0)
    x = torch.rand(2, 3, 48, 64)
    _warm(h, m, x)
    d1 = {n: st.delta.clone() for n, st in h.layers.items()}
    seen = []
    mod = h.layers["bodies.0.brb.0.0.expand"].module
    hook = mod.register_forward_hook(lambda *a: seen.append(h.layers["bodies.0.brb.0.0.expand"].delta.clone()))
    with torch.no_grad():
        m(x)
    hook.remove()
    assert len(seen) == CFG.iterations and all(torch.equal(s, seen[0]) for s in seen)  # one draw, N calls
    h.resample()
    assert all(not torch.equal(d1[n], st.delta) for n, st in h.layers.items())


def test_adc_noise_has_the_emulators_moments():
    # no device noise and no converters: HWA's and the chip's outputs differ from the float conv
    # by the ADC-input noise alone; per column its std must agree
    m = _model(1)
    r = 0.8
    hw = preset("pcm-hwa", prog_noise_scale=0.0, read_noise_scale=0.0, inp_bits=None, out_bits=None,
                inp_bound=r, inp_quantile=1.0)
    name = "bodies.0.brb.0.0.project"  # 1x1, BN-free: outputs in folded units
    h = HWA(m, hw, np.random.default_rng(0), clip_sigma=None)
    h.resample()
    h.enabled = True
    with torch.no_grad():
        h.ranges[name.replace(".", "/")].fill_(r)
    st = h.layers[name]
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, st.layer.in_channels, 40, 50, generator=g) * 0.5
    torch.manual_seed(1)
    with torch.no_grad():
        y_hwa = st.module(x).numpy()
        y_ref = torch.nn.functional.conv2d(x, st.module.weight).numpy()
    chip = emulator.program(_net(m), hw, np.random.default_rng(0))
    y_chip = chip.conv(name, x.numpy(), np.random.default_rng(1))
    s_hwa = (y_hwa - y_ref).std((0, 2, 3))
    s_chip = (y_chip - y_ref).std((0, 2, 3))
    expected = hw.out_noise_std * r * st.wmax[0].numpy()
    n = y_ref.size // y_ref.shape[1]  # 8000 samples per column: the std's relative error is ~1/sqrt(2n) = 0.8 %
    for got in (s_hwa, s_chip):
        np.testing.assert_allclose(got, expected, rtol=5 / np.sqrt(2 * n))


def test_learned_ranges_travel_to_the_emulator(tmp_path):
    m = _model(2)
    h = from_args(m, "pcm-hwa", seed=0)
    x = torch.rand(2, 3, 48, 64)
    _warm(h, m, x)
    ranges = h.input_ranges()
    assert set(ranges) == set(h.layers) and all(v > 0 for v in ranges.values())
    path = tmp_path / "hwa.h5"
    export_hdf5(m.eval(), path, input_ranges=ranges)
    net = minitnet.load(path)
    assert net.input_ranges == pytest.approx(ranges, rel=1e-7)
    hw = preset("pcm-hwa", t_inference=3600.0)
    img = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    chip = emulator.program(net, hw, np.random.default_rng(7), calibration=[img])
    for name, pl in chip.layers.items():
        assert all(t.inp_bound == pytest.approx(ranges[name], rel=1e-7) for t in pl.tiles), name
    # the same chip from the in-memory weights and ranges: the same emulated outputs, bit for bit
    twin = emulator.program(_net(m, ranges), hw, np.random.default_rng(7), calibration=[img])
    a = [o for _, o, _ in chip.run(net.prepare(img), np.random.default_rng(3))]
    b = [o for _, o, _ in twin.run(net.prepare(img), np.random.default_rng(3))]
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    # learned_ranges=False calibrates instead
    cal = emulator.program(net, preset("pcm-hwa", learned_ranges=False), np.random.default_rng(7), calibration=[img])
    assert any(t.inp_bound != pytest.approx(ranges[n]) for n, pl in cal.layers.items() for t in pl.tiles)


def test_unsupported_presets_and_options_are_refused():
    m = _model()
    with pytest.raises(ConfigError, match="read_noise_mode='frozen'"):
        from_args(m, "pcm", seed=0)
    with pytest.raises(ConfigError, match="inp_range='calibrated'"):
        from_args(m, "aihwkit-default", seed=0)
    with pytest.raises(ConfigError, match="noise_scale"):
        from_args(m, "pcm-hwa", seed=0, noise_scale=-1.0)
    with pytest.raises(ConfigError, match="clip_sigma"):
        from_args(m, "pcm-hwa", seed=0, clip_sigma=0.0)
    with pytest.raises(ConfigError, match="unknown hardware preset"):
        from_args(m, "pcm-hwaa", seed=0)
    h = from_args(m, "pcm-hwa", seed=0)
    with pytest.raises(ConfigError, match="no learned input range"):
        h.input_ranges()
