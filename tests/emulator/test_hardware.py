"""Tests of the tile-level hardware model: config, quantisers, noise statistics, MVM pipeline.

Statistical checks compare a sample mean with its expectation within
4 sigma / sqrt(n), and a sample std within 4 sigma / sqrt(2 n) (the standard
error of a Gaussian sample std).  Seeds are fixed, so the tests are
deterministic; the bounds say how unlikely a failure of a correct model is.
"""

import dataclasses

import numpy as np
import pytest
from conftest import ATOL, ATOL_REDUCTION, RTOL

import emulator
from emulator import ConfigError, HardwareConfig, calibrate_tile, mvm, preset, program_tile
from emulator import noise
from emulator.quantize import levels_per_side, quant_step, quantize
from minitnet.errors import MinitnetError, ShapeError


def rng(seed=0):
    return np.random.default_rng(seed)


def assert_mean_std(sample, mean, std, what):
    """Sample mean within 4 std/sqrt(n) of ``mean`` and sample std within 4 std/sqrt(2n)."""
    sample = np.asarray(sample, dtype=np.float64).ravel()
    n = sample.size
    tol_mean = 4 * std / np.sqrt(n)
    tol_std = 4 * std / np.sqrt(2 * n)
    assert abs(sample.mean() - mean) <= tol_mean, (
        f"{what}: mean {sample.mean():.6g}, expected {mean:.6g} +- {tol_mean:.3g} (4 sigma/sqrt(n), n={n})")
    assert abs(sample.std() - std) <= tol_std, (
        f"{what}: std {sample.std():.6g}, expected {std:.6g} +- {tol_std:.3g} (4 sigma/sqrt(2n), n={n})")


# --- ideal: equals the float matmul -------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 1), (37, 23), (256, 256)])
@pytest.mark.parametrize("P", [1, 3])
def test_ideal_equals_float_matmul(shape, P):
    # w: (rows, cols)  x: (P, rows)  ->  y: (P, cols)
    g = rng(1)
    w = g.standard_normal(shape).astype(np.float32)
    x = g.standard_normal((P, shape[0])).astype(np.float32)
    hw = preset("ideal")
    tile = program_tile(w, hw, rng(2))
    np.testing.assert_array_equal(tile.w_eff, w)  # the pair encodes w exactly
    y = mvm(tile, x, hw, rng(3))
    ref = x.astype(np.float64) @ w.astype(np.float64)
    # 256-term float32 sums of N(0,1) products are a big reduction (conftest.ATOL_REDUCTION)
    atol = ATOL if shape[0] < 100 else ATOL_REDUCTION
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=atol,
                               err_msg=f"ideal mvm vs float64 matmul, rtol={RTOL} atol={atol}")


def test_mvm_writes_into_out():
    w = rng(1).standard_normal((5, 4)).astype(np.float32)
    x = rng(2).standard_normal((3, 5)).astype(np.float32)
    hw = preset("ideal")
    tile = program_tile(w, hw, rng(0))
    out = np.full((3, 4), np.nan, dtype=np.float32)
    assert mvm(tile, x, hw, rng(0), out=out) is out
    np.testing.assert_allclose(out, x @ w, rtol=RTOL, atol=ATOL)
    with pytest.raises(ShapeError, match="out has shape"):
        mvm(tile, x, hw, rng(0), out=np.empty((3, 5), np.float32))
    with pytest.raises(ShapeError, match=r"x.shape=\(3, 4\)"):
        mvm(tile, x[:, :4], hw, rng(0))


# --- quantiser --------------------------------------------------------------------------

def test_quantize_golden():
    # bits=3: L = 3 levels per sign, step = 1/3 on bound 1
    x = np.array([0.26, -1.3, 0.74, 0.0, -0.16, 0.5], dtype=np.float64)
    q = quantize(x, 3, 1.0)
    np.testing.assert_allclose(q, [1 / 3, -1.0, 2 / 3, 0.0, 0.0, 2 / 3], rtol=0, atol=1e-15)
    # tie 0.5/step = 1.5 rounds to even (2); -0.16/step = -0.48 -> 0
    assert levels_per_side(8) == 127 and quant_step(8, 2.54) == pytest.approx(0.02)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bits,bound", [(2, 1.0), (4, 0.7), (8, 3.0), (12, 1e-3)])
def test_quantize_properties(bits, bound, dtype):
    x = (rng(bits).uniform(-1.5, 1.5, 10_000) * bound).astype(dtype)
    q = quantize(x, bits, bound)
    step = quant_step(bits, bound)
    assert q.dtype == dtype
    np.testing.assert_array_equal(quantize(q, bits, bound), q, err_msg="not idempotent")
    assert np.all(np.abs(q) <= dtype(bound)), f"|q| exceeds bound={bound}"
    inside = np.abs(x) <= bound
    err = np.abs(q[inside].astype(np.float64) - x[inside])
    tol = step / 2 * (1 + 1e-5)  # + float rounding of x/step
    assert err.max() <= tol, f"error {err.max():.3g} > step/2 = {step / 2:.3g}"
    assert np.unique(q).size <= 2**bits - 1
    codes = q.astype(np.float64) / step
    np.testing.assert_allclose(codes, np.rint(codes), atol=1e-3, err_msg="q is not on the grid")


def test_quantize_none_semantics():
    x = np.array([-3.0, -0.3, 0.123456, 2.5])
    np.testing.assert_array_equal(quantize(x, None, None), x)                 # identity
    np.testing.assert_array_equal(quantize(x, None, 1.0), np.clip(x, -1, 1))  # clip only
    with pytest.raises(ConfigError, match="needs a bound"):
        quantize(x, 8, None)
    with pytest.raises(ConfigError, match="bits=1"):
        quantize(x, 1, 1.0)
    with pytest.raises(ConfigError, match="bound=-1"):
        quantize(x, 8, -1.0)


def test_mvm_pipeline_order_without_noise():
    # DAC quantise -> clip -> matmul -> ADC quantise -> clip, checked stage by stage
    g = rng(5)
    w = g.uniform(-1, 1, (20, 7)).astype(np.float32)
    x = g.normal(0, 1, (50, 20)).astype(np.float32)
    hw = preset("ideal", inp_bits=5, out_bits=6, inp_bound=1.5, out_bound=2.0)
    tile = program_tile(w, hw, rng(0))
    y = mvm(tile, x, hw, rng(0))
    x_q = quantize(x, 5, 1.5)
    expected = quantize(x_q @ w, 6, 2.0)
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-6)
    # each stage within half a step where it does not clip
    y_float = x_q.astype(np.float64) @ w
    inside = np.abs(y_float) <= 2.0
    assert np.max(np.abs(y - y_float)[inside]) <= quant_step(6, 2.0) / 2 + 1e-6


def test_weight_quantization():
    w = rng(0).uniform(-1, 1, (30, 30))
    w[0, 0] = 1.0  # w_max = 1
    tile = program_tile(w, preset("ideal", weight_bits=4), rng(0))
    step = quant_step(4, 1.0)  # 1/7
    np.testing.assert_allclose(tile.w_eff, quantize(w, 4, 1.0), atol=1e-6)
    assert np.max(np.abs(tile.w_eff - w)) <= step / 2 + 1e-6
    assert np.unique(tile.w_eff).size <= preset("ideal", weight_bits=4).weight_levels == 15
    # each device of the pair holds one of 2**(4-1) = 8 conductance levels 0..g_max
    g = tile.g_pos / (25.0 / 7)
    np.testing.assert_allclose(g, np.rint(g), atol=1e-4)


def test_calibrate_tile_fixes_ranges():
    g = rng(3)
    w = g.standard_normal((16, 8)).astype(np.float32)
    x_cal = g.standard_normal((40, 16)).astype(np.float32)
    hw = preset("8bit")
    tile = program_tile(w, hw, rng(0))
    assert tile.inp_bound is None and tile.out_bound is None
    with pytest.raises(ConfigError, match="calibrate_tile"):
        mvm(tile, x_cal, hw, rng(0))
    cal = calibrate_tile(tile, x_cal)
    assert cal.inp_bound == pytest.approx(np.max(np.abs(x_cal)))
    y_cal = quantize(x_cal, 8, cal.inp_bound) @ tile.w_eff
    assert cal.out_bound == pytest.approx(np.max(np.abs(y_cal)), rel=1e-6)
    # ranges stay fixed: a 10x larger input is clipped at the calibrated bounds
    y = mvm(cal, 10 * x_cal, hw, rng(0))
    assert np.max(np.abs(y)) <= cal.out_bound * (1 + 1e-6)


@pytest.mark.parametrize("name", ["ideal", "8bit", "pcm", "rram"])
def test_every_preset_runs_noise_before_adc(name):
    # every preset runs end to end; with out_bits set, noise is added before the ADC,
    # so outputs (before the digital drift-compensation scale) lie on the ADC grid
    hw = preset(name, t_inference=3600.0)
    g = rng(21)
    w = g.standard_normal((64, 10)).astype(np.float32)
    x = np.maximum(g.standard_normal((30, 64)), 0).astype(np.float32)  # post-ReLU-like
    tile = calibrate_tile(program_tile(w, hw, rng(22)), x)
    y = mvm(tile, x, hw, rng(23))
    assert y.shape == (30, 10) and y.dtype == np.float32 and np.all(np.isfinite(y))
    rel = np.linalg.norm(y - x @ w) / np.linalg.norm(x @ w)
    assert rel < 0.5, f"{name}: relative error {rel:.3g} >= 0.5 vs the float matmul"
    if hw.out_bits is not None:
        codes = y / np.float32(tile.out_scale) / quant_step(hw.out_bits, tile.out_bound)
        np.testing.assert_allclose(codes, np.rint(codes), atol=1e-3,
                                   err_msg="outputs are not on the ADC grid: noise after the ADC?")


# --- noise statistics -------------------------------------------------------------------

def test_gaussian_programming_noise_mean_std():
    # all weights +w_max/2: G+ targets g_max/2 = 20 uS, std 1 uS (clamp at 0 is 20 sigma away)
    hw = preset("ideal", g_max=40.0, prog_noise_std=1.0)
    w = np.full((256, 256), 0.5)
    tile = program_tile(w, hw, rng(7), w_max=1.0)
    assert_mean_std(tile.g_pos, 20.0, 1.0, "G+ programming noise (uS)")
    # G- targets 0 and is clamped at 0: max(sigma z, 0) has mean sigma/sqrt(2 pi)
    # and std sigma*sqrt(1/2 - 1/(2 pi))
    assert np.all(tile.g_neg >= 0)
    assert_mean_std(tile.g_neg, 1 / np.sqrt(2 * np.pi), np.sqrt(0.5 - 1 / (2 * np.pi)),
                    "G- programming noise clamped at 0 (uS)")
    # in weight units: w_eff = (G+ - G-) * w_max / g_max
    np.testing.assert_allclose(tile.w_eff, (tile.g_pos - tile.g_neg) / 40.0, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("g_rel", [0.2, 0.5, 0.8, 1.0])
def test_pcm_programming_noise_follows_polynomial(g_rel):
    hw = preset("pcm")
    g_t = np.full(40_000, g_rel * hw.g_max)
    sigma = 0.26348 + 1.9650 * g_rel - 1.1731 * g_rel**2  # uS, Nandakumar 2019 / aihwkit
    np.testing.assert_allclose(noise.prog_noise_std(g_t[:1], hw), sigma, rtol=1e-12)
    g_prog = noise.sample_programming(g_t, hw, rng(11))
    assert_mean_std(g_prog, g_t[0], sigma, f"PCM programming noise at g_T={g_t[0]} uS")


def test_pcm_programming_noise_scales_with_g_max_and_scale():
    g_rel = np.array([0.0, 0.5, 1.0])
    base = noise.prog_noise_std(g_rel * 25.0, preset("pcm"))
    np.testing.assert_allclose(noise.prog_noise_std(g_rel * 50.0, preset("pcm", g_max=50.0)),
                               2 * base, rtol=1e-12)
    np.testing.assert_allclose(noise.prog_noise_std(g_rel * 25.0, preset("pcm", prog_noise_scale=0.5)),
                               0.5 * base, rtol=1e-12)


def test_pcm_programming_noise_through_tile():
    hw = preset("pcm")
    w = np.full((256, 128), 0.8)
    tile = program_tile(w, hw, rng(4), w_max=1.0)  # G+ = 20 uS, t_inference 0: no drift
    sigma = 0.26348 + 1.9650 * 0.8 - 1.1731 * 0.64
    assert_mean_std(tile.g_pos, 20.0, sigma, "PCM G+ in a programmed tile")


def test_gaussian_read_noise_in_mvm_mean_std():
    # output noise of column j: sum_i x_i (e+_ij - e-_ij) / g_per_w, e ~ N(0, 0.5 uS)
    hw = preset("ideal", read_noise_std=0.5, g_max=25.0)
    g = rng(8)
    w = g.uniform(-1, 1, (64, 16))
    x_one = g.uniform(-1, 1, 64).astype(np.float32)
    x = np.tile(x_one, (4000, 1))  # 4000 MVMs of the same vector
    tile = program_tile(w, hw, rng(9), w_max=1.0)
    y = mvm(tile, x, hw, rng(10))
    err = y - (x_one @ tile.w_eff)
    expected_std = 0.5 / 25.0 * np.sqrt(2 * np.sum(x_one.astype(np.float64) ** 2))
    assert_mean_std(err, 0.0, expected_std, "read noise at the output")
    # redrawn per MVM: consecutive rows are not equal, and a new call differs
    assert not np.array_equal(y[0], y[1])
    assert not np.array_equal(y, mvm(tile, x, hw, rng(11)))


def test_read_noise_output_sampling_matches_per_device_sampling():
    # the per-output shortcut vs drawing every device, for a non-uniform read_var
    g = rng(12)
    x = g.uniform(-1, 1, (1, 32)).astype(np.float32)
    read_var = g.uniform(0, 0.01, (32, 3)).astype(np.float32)
    n = 20_000
    y = np.zeros((n, 3), np.float32)
    noise.add_mvm_noise(y, np.repeat(x, n, axis=0), read_var, 0.0, rng(13))
    e = rng(14).standard_normal((n, 32, 3)) * np.sqrt(read_var)  # per device
    y_dev = np.einsum("i,nij->nj", x[0].astype(np.float64), e)
    std = np.sqrt((x[0].astype(np.float64) ** 2) @ read_var)
    for j in range(3):
        assert_mean_std(y[:, j], 0.0, std[j], f"shortcut read noise, col {j}")
        assert_mean_std(y_dev[:, j], 0.0, std[j], f"per-device read noise, col {j}")


def test_pcm_read_noise_formula():
    hw = preset("pcm", t_inference=3600.0)
    g_prog = np.array([0.0, 2.5, 12.5, 25.0])
    g_t = 0.9 * g_prog
    t = 20.0 + 3600.0
    q_s = np.minimum(0.0088 / np.maximum((g_prog / 25.0) ** 0.65, 1e-3), 0.2)
    expected = g_t * q_s * np.sqrt(np.log((t + 250e-9) / (2 * 250e-9)))
    np.testing.assert_allclose(noise.read_noise_std(g_prog, g_t, hw), expected, rtol=1e-12)
    assert noise.read_noise_std(g_prog, g_t, preset("pcm", read_noise_scale=0.0)) is None


def test_adc_noise_mean_std():
    hw = preset("ideal", out_noise_std=0.1, inp_bound=2.0)
    w = np.zeros((8, 32))
    w[0, 0] = 3.0  # w_max = 3
    x = np.zeros((2000, 8), np.float32)
    tile = program_tile(w, hw, rng(0))
    y = mvm(tile, x, hw, rng(1))
    assert_mean_std(y, 0.0, 0.1 * 3.0 * 2.0, "ADC-input noise (0.1 * w_max * inp_bound)")


def test_read_and_adc_noise_add_in_variance():
    # std = sqrt(read part + ADC part), w_max = 2, g_max = 25, inp_bound = 1.5
    hw = preset("ideal", read_noise_std=0.5, out_noise_std=0.05, inp_bound=1.5)
    g = rng(30)
    w = g.uniform(-2, 2, (32, 8))
    w[0, 0] = 2.0
    x_one = g.uniform(-1.5, 1.5, 32).astype(np.float32)
    tile = program_tile(w, hw, rng(31))
    y = mvm(tile, np.tile(x_one, (5000, 1)), hw, rng(32))
    read_var = 2 * (0.5 * 2.0 / 25.0) ** 2 * np.sum(x_one.astype(np.float64) ** 2)
    adc_var = (0.05 * 2.0 * 1.5) ** 2
    assert_mean_std(y - x_one @ tile.w_eff, 0.0, np.sqrt(read_var + adc_var), "read + ADC noise")


@pytest.mark.parametrize("g_rel", [0.5, 1.0])
def test_pcm_drift_exponent_statistics(g_rel):
    hw = preset("pcm", t_inference=1.0)
    g_t = np.full(40_000, g_rel * 25.0)
    mean, std = noise.drift_nu_stats(g_t[:1], hw)
    mu = np.clip(-0.0155 * np.log(g_rel) + 0.0244, 0.049, 0.1)
    sd = np.clip(-0.0125 * np.log(g_rel) - 0.0059, 0.008, 0.045)
    np.testing.assert_allclose([mean[0], std[0]], [mu, sd], rtol=1e-12)
    nu = noise.sample_drift_nu(g_t, hw, rng(5))
    # mu/sd >= 6 here, so folding at 0 is negligible (< 1e-9 of the mass)
    assert_mean_std(nu, mu, sd, f"PCM drift exponent at g_T/g_max={g_rel}")


def test_drift_exponents_nonnegative_and_drift_law():
    hw = preset("pcm", t_inference=86400.0)
    g = np.geomspace(1e-3, 25.0, 50_000)
    nu = noise.sample_drift_nu(g, hw, rng(6))
    assert np.all(nu >= 0)
    g_t = noise.drift(g, nu, hw)
    np.testing.assert_allclose(g_t, g * ((20.0 + 86400.0) / 20.0) ** (-nu), rtol=1e-12)
    assert noise.sample_drift_nu(g, preset("pcm"), rng(6)) is None  # t_inference = 0: no drift


def test_drift_and_global_compensation():
    # constant nu: every conductance shrinks by the same factor, compensation undoes it
    w = rng(2).standard_normal((40, 12))
    x = rng(3).standard_normal((5, 40)).astype(np.float32)
    hw = preset("ideal", drift_nu_mean=0.05, t_inference=3600.0)
    factor = ((20.0 + 3600.0) / 20.0) ** -0.05
    tile = program_tile(w, hw, rng(0))
    np.testing.assert_allclose(tile.w_eff, factor * w, rtol=1e-6, atol=1e-7)
    comp = dataclasses.replace(hw, drift_compensation=True)
    tile_c = program_tile(w, comp, rng(0))
    assert tile_c.out_scale == pytest.approx(1 / factor, rel=1e-12)
    np.testing.assert_allclose(mvm(tile_c, x, comp, rng(0)), x.astype(np.float64) @ w,
                               rtol=RTOL, atol=ATOL)


def test_stuck_fractions_binomial():
    hw = preset("ideal", stuck_at_0_fraction=0.02, stuck_at_gmax_fraction=0.01)
    at_0, at_gmax = noise.sample_stuck((2, 256, 256), hw, rng(3))
    n = at_0.size
    assert not np.any(at_0 & at_gmax)
    for mask, p, what in ((at_0, 0.02, "stuck at 0"), (at_gmax, 0.01, "stuck at g_max")):
        tol = 4 * np.sqrt(n * p * (1 - p))
        assert abs(mask.sum() - n * p) <= tol, f"{what}: {mask.sum()} of {n}, expected {n * p} +- {tol:.0f}"
    # through a tile: all weights +w_max/2, so G+ = g_max/2 and G- = 0 unless stuck
    tile = program_tile(np.full((256, 256), 0.5), hw, rng(4), w_max=1.0)
    n = tile.g_pos.size
    counts = {"G+ at 0": (np.sum(tile.g_pos == 0), 0.02), "G+ at g_max": (np.sum(tile.g_pos == 25), 0.01),
              "G- at g_max": (np.sum(tile.g_neg == 25), 0.01)}
    for what, (count, p) in counts.items():
        tol = 4 * np.sqrt(n * p * (1 - p))
        assert abs(count - n * p) <= tol, f"{what}: {count} of {n}, expected {n * p} +- {tol:.0f}"


# --- reproducibility and the RNG -----------------------------------------------------------

def _noisy_run(seed_program, seed_mvm):
    hw = preset("pcm", t_inference=3600.0, stuck_at_0_fraction=0.01)
    w = rng(100).standard_normal((48, 20)).astype(np.float32)
    x = rng(101).standard_normal((6, 48)).astype(np.float32)
    tile = calibrate_tile(program_tile(w, hw, rng(seed_program)), x)
    return tile, mvm(tile, x, hw, rng(seed_mvm))


def test_same_seed_same_output_different_seed_differs():
    t1, y1 = _noisy_run(1, 2)
    t2, y2 = _noisy_run(1, 2)
    np.testing.assert_array_equal(t1.w_eff, t2.w_eff)
    np.testing.assert_array_equal(y1, y2)
    t3, y3 = _noisy_run(3, 2)
    assert not np.array_equal(t1.w_eff, t3.w_eff), "programming noise ignores the seed"
    _, y4 = _noisy_run(1, 4)
    assert not np.array_equal(y1, y4), "read/ADC noise ignores the seed"


def test_no_global_rng(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the emulator used NumPy's global random state")

    for name in ("random", "rand", "randn", "normal", "standard_normal", "uniform", "seed", "binomial"):
        monkeypatch.setattr(np.random, name, forbidden)
    _noisy_run(1, 2)
    _noisy_run(1, 2)  # and a second call draws nothing from hidden state
    with pytest.raises(TypeError, match="Generator"):
        program_tile(np.ones((2, 2)), preset("pcm"), rng=None)


# --- configuration and errors ---------------------------------------------------------------

def test_presets():
    assert set(emulator.PRESETS) == {"ideal", "pcm", "rram", "8bit", "aihwkit-default", "pcm-hwa"}
    ideal = preset("ideal")
    assert (ideal.rows, ideal.cols) == (256, 256)
    assert ideal.inp_bits is None and ideal.out_bits is None and ideal.weight_bits is None
    pcm = preset("pcm", t_inference=3600.0)
    assert pcm.t_inference == 3600.0 and pcm.device_model == "pcm" and pcm.g_max == 25.0
    assert preset("8bit").weight_levels == 255
    with pytest.raises(dataclasses.FrozenInstanceError):
        pcm.g_max = 1.0
    with pytest.raises(TypeError):
        emulator.PRESETS["mine"] = ideal  # read-only


def test_error_types():
    assert issubclass(ConfigError, MinitnetError) and issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("kwargs,match", [
    (dict(inp_bits=0), r"inp_bits=0.*>= 2"),
    (dict(out_bits=1), r"out_bits=1"),
    (dict(weight_bits=2.5), r"weight_bits=2.5"),
    (dict(read_noise_std=-0.1), r"read_noise_std=-0.1.*>= 0"),
    (dict(prog_noise_std=float("nan")), r"prog_noise_std=nan"),
    (dict(out_noise_std=-1.0), r"out_noise_std"),
    (dict(rows=0), r"rows=0.*>= 1"),
    (dict(cols=-3), r"cols=-3"),
    (dict(g_max=0.0), r"g_max=0.0.*> 0"),
    (dict(inp_bound=-1.0), r"inp_bound"),
    (dict(stuck_at_0_fraction=0.7, stuck_at_gmax_fraction=0.6), r"sum|<= 1"),
    (dict(device_model="flash"), r"device_model='flash'.*gaussian"),
    (dict(device_model="pcm", prog_noise_std=0.5), r"prog_noise_std.*prog_noise_scale"),
])
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        HardwareConfig(**kwargs)


def test_bad_preset_and_override():
    with pytest.raises(ConfigError, match=r"unknown hardware preset 'flash'.*'8bit', 'aihwkit-default', 'ideal', 'pcm', 'pcm-hwa', 'rram'"):
        preset("flash")
    with pytest.raises(ConfigError, match=r"adc_bits.*did you mean.*valid fields.*out_bits"):
        preset("pcm", adc_bits=8)
    with pytest.raises(ConfigError, match=r"inp_bits=0"):
        preset("pcm", inp_bits=0)


def test_mvm_rejects_changed_device_fields():
    hw = preset("pcm")
    tile = program_tile(np.ones((4, 4)), hw, rng(0))
    x = np.ones((1, 4), np.float32)
    tile = calibrate_tile(tile, x)
    mvm(tile, x, dataclasses.replace(hw, out_bits=4), rng(0))  # periphery may change
    with pytest.raises(ConfigError, match=r"t_inference: 0.0 -> 60.0"):
        mvm(tile, x, dataclasses.replace(hw, t_inference=60.0), rng(0))


def test_program_tile_rejects_oversized_and_bad_weights():
    hw = preset("ideal", rows=8, cols=4)
    with pytest.raises(ShapeError, match=r"w.shape=\(9, 4\).*8 x 4|w.shape=\(9, 4\)"):
        program_tile(np.ones((9, 4)), hw, rng(0))
    with pytest.raises(ShapeError, match=r"w.shape=\(8,\)"):
        program_tile(np.ones(8), hw, rng(0))
    w = np.ones((2, 2))
    w[0, 1] = np.nan
    with pytest.raises(MinitnetError, match="non-finite"):
        program_tile(w, hw, rng(0))
