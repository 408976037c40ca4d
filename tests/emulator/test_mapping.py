"""Tests of the graph mapping: programming a chip from the graph IR and running it.

Reference points:
* ``preset("ideal")`` must reproduce the float engine (the same IR, the same digital ops);
* a conv on the chip must equal the tile-level pipeline ``crossbar.mvm`` run tile by tile
  with the same random draws (``KeyedNormals`` hands ``mvm`` the chip's normals);
* statistics: sample mean within 4 sigma/sqrt(n), sample std within 4 sigma/sqrt(2n)
  (seeds fixed, so deterministic; the bounds say how unlikely a false failure is).
Networks are tiny (f=8, 2 scales, 3 iterations) and tiles small (16 x 12) so most layers
split into several row and column pieces.
"""

import dataclasses
import math

import numpy as np
import pytest

import emulator
from emulator import ConfigError, calibrate_tile, mvm, preset
from emulator import AnalogOptions, CalibrationWarning, mapping_report
from emulator.analog import chunk_rows, dw_scratch, out_size, tap_chunk_rows
from emulator.chip import Chip
from emulator.depthwise import DepthwiseTiles, depthwise_tiles_nchw
from emulator.adc import Epilogue
from emulator.rng import word
from emu_reference import (KeyedNormals, act, assert_mean_std, draws_block, image, normals_from_key, normals_of_words,
                           patches, rel, to_nchw, unfused_dense)
from emulator.quantize import quant_step, quantize
from emulator.tiles import plan_layer
from minitnet import ItNetConfig
from minitnet.engine import ItNet
from minitnet.errors import ShapeError
from minitnet.graph import build_graph
from netutil import random_tensors

SHARED = ItNetConfig(levels=2, blocks=1, iterations=3, width=8)
INDEPENDENT = dataclasses.replace(SHARED, shared=False)
SMALL = dict(rows=16, cols=12)  # stem2: 72 rows -> 5 row pieces; expand: 24 cols -> 2 col pieces; dw: 1 channel/tile


def rng(seed=0):
    return np.random.default_rng(seed)


def make_net(cfg=SHARED, seed=0):
    return ItNet(cfg, random_tensors(cfg, rng(seed)))


def assert_within_one_adc_step(got, ref, pl, what, per_row_piece=True):
    """The chip's conv against a reference with the same draws: BLAS sums in another order, so a
    rare value may land on the other side of an ADC level. At most 0.1 % of values off by more
    than float32 rounding, none by more than one ADC step (times the row pieces summed)."""
    step = max(quant_step(8, t.out_bound) * t.out_scale for t in pl.tiles)
    step *= len(pl.plan.row_splits) if per_row_piece else 1
    diff = np.abs(got - ref)
    frac = np.mean(diff > 1e-5 * (1 + np.abs(ref)))
    assert frac <= 1e-3, f"{what}: {frac:.3%} of values differ by more than float32 rounding (allowed 0.1 %)"
    assert diff.max() <= step + 1e-5, f"{what}: max difference {diff.max():.3g} > one ADC step {step:.3g}"


# --- ideal = the float engine -----------------------------------------------------------

@pytest.mark.parametrize("cfg", [SHARED, INDEPENDENT], ids=["shared", "independent"])
@pytest.mark.parametrize("tiles,B,hw_size", [(SMALL, 1, (21, 30)), ({}, 2, (17, 13))])
def test_ideal_reproduces_float_engine(cfg, tiles, B, hw_size):
    net = make_net(cfg)
    x = image(shape=(B, 3, *hw_size))
    ref = list(net.iter_outputs(x))
    got = list(emulator.run(net, x, preset("ideal", **tiles), rng(5)))
    assert [n for n, *_ in got] == [n for n, _ in ref] == list(cfg.head_iterations)
    for (n, lg, err), (_, r) in zip(got, ref):
        assert lg.shape == r.shape and lg.dtype == np.float32
        assert rel(lg, r) <= 1e-5, f"output {n}: ideal vs float engine relative L2 {rel(lg, r):.2e} > 1e-5"
        assert err <= 1e-5, f"output {n}: state_error {err:.2e} > 1e-5 in the ideal preset"


# --- a conv on the chip = tile-level crossbar.mvm ---------------------------------------

@pytest.mark.parametrize("layer,a", [("stem2.conv", 1), ("bodies.0.brb.0.0.expand", 2),
                                     ("bodies.0.brb.0.0.project", 0), ("bodies.0.mix.0", 1)])
def test_dense_layer_equals_tile_mvm(layer, a):
    # stem2.conv (stride 2) and the 1x1 layers run im2col + sgemm, mix.0 (3x3, stride 1) the per-tap
    # products; with 16-row tiles its row pieces split channels between them (each its own DAC)
    net = make_net()
    hw = preset("pcm", t_inference=3600.0, **SMALL)
    chip = emulator.program(net, hw, rng(0), calibration=image(),
                            options=AnalogOptions(chunk_elems=1 << 30))  # one chunk: mvm draws per tile, so do we
    pl = chip.layers[layer]
    lay = pl.layer
    x = np.abs(image(3, (1, lay.in_channels, 11, 14)))
    got = chip.conv(layer, x, rng(7), act=a)
    P, OH, OW = patches(x, *lay.kernel_size, lay.stride, lay.padding)
    shim = KeyedNormals(np.random.PCG64(7))
    acc = np.zeros((P.shape[0], lay.out_channels), np.float32)
    for p, t in zip(pl.plan.pieces, pl.tiles):
        acc[:, p.col0:p.col1] += mvm(t, P[:, p.row0:p.row1], hw, shim)
    ref = act(to_nchw(acc, 1, OH, OW) + pl.bias[None, :, None, None], a)
    assert_within_one_adc_step(got, ref, pl, f"{layer}: chip vs tile-level mvm")


def test_depthwise_layer_equals_block_diagonal_tile_mvm():
    # 27-row tiles hold 3 channels each: tile = block-diagonal (27, 3); a column sees its own 9 taps only
    net = make_net()
    hw = preset("pcm", t_inference=86400.0, rows=27, cols=12)
    chip = emulator.program(net, hw, rng(0), calibration=image())
    name = "bodies.0.brb.0.0.dw"
    pl = chip.layers[name]
    assert pl.plan.depthwise and len(pl.tiles) == 8 and all(t.w_eff.shape == (9, 3) for t in pl.tiles)
    x = np.abs(image(4, (1, 24, 9, 13)))
    got = chip.conv(name, x, rng(11), act=2)
    shim = KeyedNormals(np.random.PCG64(11))
    out = np.zeros((1, 24, 9, 13), np.float32)
    for p, t in zip(pl.plan.pieces, pl.tiles):
        g = p.col1 - p.col0
        bd = np.zeros((9 * g, g), np.float32)
        bv = np.zeros((9 * g, g), np.float32)
        for j in range(g):
            bd[9 * j:9 * j + 9, j] = t.w_eff[:, j]
            bv[9 * j:9 * j + 9, j] = t.read_var[:, j]
        tile_bd = dataclasses.replace(t, w_eff=bd, read_var=bv)  # the physical tile: zeros off the blocks
        P, OH, OW = patches(x, 3, 3, 1, 1, channels=range(p.col0, p.col1))
        out[:, p.col0:p.col1] = to_nchw(mvm(tile_bd, P, hw, shim), 1, OH, OW)
    ref = act(out + pl.bias[None, :, None, None], 2)
    assert_within_one_adc_step(got, ref, pl, "chip vs block-diagonal mvm", per_row_piece=False)


@pytest.mark.parametrize("k,stride,padding,with_res", [(3, 1, 1, False), (3, 1, 1, True), (3, 1, 0, False),
                                                     (3, 1, 2, True), (3, 2, 1, True), (5, 1, 2, False),
                                                     (1, 1, 0, False)])
@pytest.mark.parametrize("nb", [1, 3])
def test_depthwise_kernel_shapes_against_numpy(k, stride, padding, with_res, nb):
    # the 3x3 stride-1 fast path and the general tap loop: DAC, taps, read-noise variance (through
    # the ADC-input noise being off and the variance feeding a fixed z: checked as the noisy output
    # with z recovered from the same draws), ADC, bias, act -- against a NumPy loop over taps
    g = rng(21)
    N, C, H, W = 2, 5, 9, 11
    x = g.normal(0, 1, (N, C, H, W)).astype(np.float32)
    w = g.normal(0, 0.5, (C, k * k)).astype(np.float32)
    rv = g.uniform(0.01, 0.05, (C, k * k)).astype(np.float32)
    OH, OW = (H + 2 * padding - k) // stride + 1, (W + 2 * padding - k) // stride + 1
    in_step, in_bound = np.full(C, 0.02, np.float32), np.full(C, 2.0, np.float32)
    out_step, out_bound = np.full(C, 0.05, np.float32), np.full(C, 4.0, np.float32)
    scale, b = np.full(C, 1.5, np.float32), g.normal(0, 1, C).astype(np.float32)
    keys = np.arange(1, C + 1, dtype=np.uint64) * np.uint64(977)
    kbase = np.zeros(C, np.int64)
    zeros = np.zeros(C, np.float32)
    got = np.empty((N, C, OH, OW), np.float32)
    res = g.normal(0, 1, (N, C, OH, OW)).astype(np.float32) if with_res else np.zeros((1, 1, 1, 1), np.float32)
    cp = np.stack([zeros, zeros, out_step, out_bound, scale, in_step, in_bound], axis=1)  # adc.TF_*, then the DAC
    depthwise_tiles_nchw(x, (k, k, stride, padding), DepthwiseTiles(127, w, rv, cp, True, True), keys, kbase,
                         Epilogue(127, b, res, with_res, 2), nb, dw_scratch(x, padding), got)  # nb bands per image
    xq = np.clip(np.clip(np.rint(x / 0.02), -127, 127) * np.float32(0.02), -2, 2).astype(np.float32)
    xp = np.pad(xq, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    a = np.zeros((N, C, OH, OW), np.float64)
    v = np.zeros((N, C, OH, OW), np.float64)
    for ky in range(k):
        for kx in range(k):
            patch = xp[:, :, ky:ky + stride * OH:stride, kx:kx + stride * OW:stride].astype(np.float64)
            a += patch * w[None, :, ky * k + kx, None, None]
            v += patch ** 2 * rv[None, :, ky * k + kx, None, None]
    z = np.empty((C, N * OH * OW), np.float32)
    for c in range(C):
        normals_from_key(keys[c], z[c])
    a += z.reshape(C, N, OH, OW).transpose(1, 0, 2, 3) * np.sqrt(v)
    ref = np.clip(np.clip(np.rint(a / 0.05), -127, 127) * 0.05, -4, 4) * 1.5 + b[None, :, None, None]
    ref = np.clip(ref + (res if with_res else 0), 0, 6)  # the residual before the act
    diff = np.abs(got - ref)
    # float32 vs float64 sums: a rare value may land on the other side of an ADC level (0.05 * 1.5)
    assert np.mean(diff > 1e-4) <= 0.01 and diff.max() <= 0.075 + 1e-4, f"k={k} stride={stride}: {diff.max():.3g}"


@pytest.mark.parametrize("layer,a,with_res,chunk", [
    ("stem2.conv", 1, False, 700), ("bodies.0.brb.0.0.expand", 2, False, 50),
    ("bodies.0.brb.0.0.project", 0, True, 100), ("bodies.0.brb.0.0.project", 0, True, 1 << 30),
    ("bodies.0.mix.0", 1, True, 30), ("bodies.0.mix.0", 2, False, 1 << 30)])
def test_fused_dense_kernel_equals_unfused_pipeline(layer, a, with_res, chunk):
    # conv_dense_tiles_nchw (chunks of a few output rows, sgemm, rows squared in place, fused
    # epilogue into out) and, for mix.0, conv_dense_taps_nchw (per-tap sgemm on padded DAC planes)
    # = the stages run one by one on a single chunk (im2col) with the same draws
    net = make_net()
    hw = preset("pcm", t_inference=3600.0, **SMALL)
    chip = emulator.program(net, hw, rng(0), calibration=image(),
                            options=AnalogOptions(chunk_elems=chunk, tap_chunk_pixels=chunk))
    pl = chip.layers[layer]
    lay = pl.layer
    x = np.abs(image(3, (1, lay.in_channels, 13, 10)))
    OH, OW = out_size(lay, x)
    res = image(4, (1, lay.out_channels, OH, OW)) if with_res else None
    got = chip.conv(layer, x, rng(7), act=a, residual=res)
    ref = unfused_dense(chip, layer, x, rng(7), a, res)
    pk = chip.pack(layer)
    assert (pk.taps is not None) == (layer == "bodies.0.mix.0"), "the per-tap path runs the stride-1 3x3 layers"
    rows = tap_chunk_rows(x.shape[3] + 2 * lay.padding, OH, chunk) if pk.taps else chunk_rows(pk, OH, OW, chunk)
    assert rows < OH or chunk > 1 << 20, "test needs several chunks"
    assert_within_one_adc_step(got, ref, pl, f"{layer}: fused kernel vs the unfused stages")


# --- quantisation: within half a step per stage -------------------------------------------

def test_quantisation_within_half_a_step_per_stage():
    # 8-bit, no noise. stem2.conv: 72 rows in 5 row pieces, each with its own DAC and ADC.
    net = make_net()
    hw = preset("8bit", **SMALL)
    chip = emulator.program(net, hw, rng(0), calibration=image())
    pl = chip.layers["stem2.conv"]
    x = 0.5 * np.abs(image(6, (1, 8, 20, 24)))  # inside the calibrated ranges (no clipping)
    got = chip.conv("stem2.conv", x, rng(0)) - pl.bias[None, :, None, None]
    P, OH, OW = patches(x, 3, 3, 2, 1)
    exact = np.zeros((P.shape[0], 8))          # noise-free products of the DAC outputs
    floaty = np.zeros((P.shape[0], 8))         # products of the unquantised inputs
    adc_half = np.zeros(8)
    dac_bound = np.zeros((P.shape[0], 8))
    for p, t in zip(pl.plan.pieces, pl.tiles):
        xs = P[:, p.row0:p.row1].astype(np.float64)
        assert np.max(np.abs(xs)) <= t.inp_bound, "test input must stay inside the DAC range"
        xq = quantize(xs, 8, t.inp_bound)
        assert np.max(np.abs(xq - xs)) <= quant_step(8, t.inp_bound) / 2 + 1e-12  # stage DAC
        y = xq @ t.w_eff
        assert np.max(np.abs(y)) <= t.out_bound
        exact[:, p.col0:p.col1] += y
        floaty[:, p.col0:p.col1] += xs @ t.w_eff
        adc_half[p.col0:p.col1] += quant_step(8, t.out_bound) / 2
        dac_bound[:, p.col0:p.col1] += quant_step(8, t.inp_bound) / 2 * np.abs(t.w_eff).sum(0)
    got_m = got.transpose(0, 2, 3, 1).reshape(-1, 8)
    err_adc = np.abs(got_m - exact)
    assert np.all(err_adc <= adc_half + 1e-5), (
        f"ADC stage: max error {np.max(err_adc - adc_half):.3g} over half a step per row piece")
    err_all = np.abs(got_m - floaty)
    assert np.all(err_all <= adc_half + dac_bound + 1e-5), "DAC + ADC error over half a step per stage"
    assert np.max(err_adc) > 0.1 * np.max(adc_half), "the ADC did not quantise (test would be vacuous)"


# --- statistics -----------------------------------------------------------------------------

@pytest.mark.parametrize("layer", ["bodies.0.brb.0.0.project", "bodies.0.brb.0.0.dw", "bodies.0.mix.0"])
def test_read_and_adc_noise_match_stated_std(layer):
    # gaussian read noise (per device, fresh per MVM) + ADC-input noise, no quantisation, no drift:
    # output = noise-free + N(0, sqrt(sum_t x_q**2 @ read_var_t + adc_std_t**2)) summed over row pieces
    net = make_net()
    hw = preset("ideal", read_noise_std=1.5, out_noise_std=0.05, inp_bound=8.0, **SMALL)  # no clipping
    chip = emulator.program(net, hw, rng(0))
    pl = chip.layers[layer]
    lay = pl.layer
    x = np.abs(image(8, (1, lay.in_channels, 40, 40)))
    y = chip.conv(layer, x, rng(9))
    P, OH, OW = patches(x, *lay.kernel_size, lay.stride, lay.padding)
    var = np.zeros((P.shape[0], lay.out_channels))
    for p, t in zip(pl.plan.pieces, pl.tiles):
        adc = hw.out_noise_std * t.w_max * t.inp_bound
        if pl.plan.depthwise:
            for j, c in enumerate(range(p.col0, p.col1)):
                var[:, c] += P[:, 9 * c:9 * c + 9].astype(np.float64) ** 2 @ t.read_var[:, j] + adc**2
        else:
            var[:, p.col0:p.col1] += P[:, p.row0:p.row1].astype(np.float64) ** 2 @ t.read_var + adc**2
    clean = chip.effective_net().params[layer]
    from minitnet import ops
    y0 = ops.conv2d(x, clean[0], clean[1], stride=lay.stride, padding=lay.padding, groups=lay.groups)
    zscore = (y - y0).transpose(0, 2, 3, 1).reshape(-1, lay.out_channels) / np.sqrt(var)
    assert_mean_std(zscore, 0.0, 1.0, f"{layer}: (chip - noise-free) / stated std")


def K_normals(u):
    out = np.empty(u.size, np.float32)
    normals_of_words(np.ascontiguousarray(u, np.uint32), out)
    return out


def test_normal_draws():
    z = np.empty(2_000_000, np.float32)
    normals_from_key(np.uint64(12345), z)
    assert_mean_std(z, 0.0, 1.0, "kernel normals")
    n = z.size
    for k, p in ((1.0, 0.31731), (2.0, 0.04550), (3.0, 0.0026998)):  # two-sided tail probabilities
        frac = np.mean(np.abs(z) > k)
        tol = 4 * math.sqrt(p * (1 - p) / n)
        assert abs(frac - p) <= tol, f"P(|z| > {k}) = {frac:.5g}, expected {p} +- {tol:.2g}"
    assert abs(np.mean(z > 0) - 0.5) <= 4 * 0.5 / math.sqrt(n)
    assert np.max(np.abs(z)) <= 6.4
    # the transform is the inverse normal CDF of the word's low 31 bits, signed by its top bit: a line per
    # 1/256 of an octave of p; the bound is the lines' interpolation error (measured 5.6e-7 for |z| <= 2.5,
    # 6.4e-7 anywhere, float32 rounding included) with room for float32 rounding
    from scipy.special import ndtri
    g = rng(3)
    u = np.concatenate([np.arange(1 << 16), (1 << 32) - 1 - np.arange(1 << 16), g.integers(0, 1 << 32, 1 << 20),
                        np.arange(0, 1 << 32, 4099), (1 << 31) + np.arange(-(1 << 16), 1 << 16)]).astype(np.uint32)
    got = np.empty(u.size, np.float32)
    normals_of_words(u, got)
    exact = -ndtri(((u & 0x7FFFFFFF).astype(np.float64) + 0.5) / 2**32) * np.where(u >> 31, 1.0, -1.0)
    err = np.abs(got - exact)
    assert err.max() <= 1e-6, f"max |z - Phi^-1(p)| = {err.max():.3g} at u = {u[err.argmax()]}"
    np.testing.assert_array_equal(got[u >> 31 == 1], -K_normals(u[u >> 31 == 1] & 0x7FFFFFFF), "symmetric")
    # the block generator (two words per hash, any first index) = the word-by-word transform
    words = np.array([word(np.uint64(12345), i) for i in range(5001)], np.uint32)
    one = K_normals(words)
    np.testing.assert_array_equal(z[:words.size], one)
    odd = np.empty(777, np.float32)
    draws_block(np.uint64(12345), 3, odd)  # an odd first index, an odd length
    np.testing.assert_array_equal(odd, one[3:780])


def test_programming_noise_on_the_chip_matches_its_stated_std():
    # gaussian: every programmed device with a target well above 0 is off by N(0, prog_noise_std)
    net = make_net(ItNetConfig(levels=2, iterations=2, width=16))
    hw = preset("ideal", g_max=40.0, prog_noise_std=1.0)
    chip = emulator.program(net, hw, rng(3))
    z = []
    for name, pl in chip.layers.items():
        for t, m in zip(pl.tiles, _tile_matrices(net, pl)):
            g_t = np.abs(m) * hw.g_max / t.w_max
            g = np.where(m > 0, t.g_pos, t.g_neg)
            keep = g_t > 6.0  # 6 sigma from the clamp at 0
            z.append((g - g_t)[keep])
    assert_mean_std(np.concatenate(z), 0.0, 1.0, "programming error of active devices (uS)")


def test_pcm_programming_noise_on_the_chip_follows_the_polynomial():
    net = make_net(ItNetConfig(levels=2, iterations=2, width=24))
    hw = preset("pcm")  # t_inference = 0: the conductances are the programmed ones
    chip = emulator.program(net, hw, rng(4))
    gts, gs = [], []
    for name, pl in chip.layers.items():
        for t, m in zip(pl.tiles, _tile_matrices(net, pl)):
            gts.append(np.abs(m).ravel() * hw.g_max / t.w_max)
            gs.append(np.where(m > 0, t.g_pos, t.g_neg).ravel())
    g_t, g = np.concatenate(gts), np.concatenate(gs)
    gr = g_t / hw.g_max
    sigma = 0.26348 + 1.9650 * gr - 1.1731 * gr**2  # uS at g_max = 25 uS
    for lo, hi in ((0.25, 0.4), (0.4, 0.6), (0.6, 1.01)):  # >= 10 sigma above the clamp at 0
        sel = (gr >= lo) & (gr < hi)
        assert sel.sum() > 300
        assert_mean_std((g - g_t)[sel] / sigma[sel], 0.0, 1.0,
                        f"PCM programming error / polynomial, gr in [{lo}, {hi})")


def _tile_matrices(net, pl):
    w = net.params[pl.name][0]
    kk = pl.layer.kernel_size[0] * pl.layer.kernel_size[1]
    if pl.plan.depthwise:
        return [w[p.col0:p.col1].reshape(p.cols, kk).T for p in pl.plan.pieces]
    W = w.reshape(pl.layer.out_channels, -1).T
    return [W[p.row0:p.row1, p.col0:p.col1] for p in pl.plan.pieces]


# --- reproducibility, shared vs independent fixed-pattern noise --------------------------------

def test_same_seed_same_output():
    net = make_net()
    hw = preset("pcm", t_inference=3600.0, **SMALL)
    x = image()
    a = [lg for _, lg, _ in emulator.program(net, hw, rng(0), calibration=x).run(x, rng(1))]
    b = [lg for _, lg, _ in emulator.program(net, hw, rng(0), calibration=x).run(x, rng(1))]
    c = [lg for _, lg, _ in emulator.program(net, hw, rng(0), calibration=x).run(x, rng(2))]
    d = [lg for _, lg, _ in emulator.program(net, hw, rng(3), calibration=x).run(x, rng(1))]
    for i in range(len(a)):
        np.testing.assert_array_equal(a[i], b[i])
        assert not np.array_equal(a[i], c[i]), "another read-noise seed must change the output"
        assert not np.array_equal(a[i], d[i]), "another programming seed must change the output"


def test_recycled_buffers_never_touch_arrays_the_caller_holds():
    # a chip reuses dropped activations and logits between runs (``minitnet.buffers.Recycler``): held logits must
    # survive later runs, and a run must give the same numbers whether its buffers are new or reused
    net = make_net()
    hw = preset("pcm", t_inference=3600.0, **SMALL)
    x = image()
    chip = emulator.program(net, hw, rng(0), calibration=x)
    first = [lg for _, lg, _ in chip.run(x, rng(1))]
    kept = [a.copy() for a in first]
    again = [lg for _, lg, _ in chip.run(x, rng(1))]          # the pool holds arrays the first run used
    other = [lg for _, lg, _ in chip.run(image(2), rng(5))]   # different values through the same buffers
    for a, k, b, o in zip(first, kept, again, other):
        np.testing.assert_array_equal(a, k)                   # untouched while held
        np.testing.assert_array_equal(b, k)                   # reused buffers, same result
        assert not np.shares_memory(a, b) and not np.shares_memory(a, o)
    del first, again, other
    reused = [lg for _, lg, _ in chip.run(x, rng(1))]
    assert any(any(r is p for p in chip.pool.free[r.shape]) for r in reused), "dropped logits are recycled"
    for r, k in zip(reused, kept):
        np.testing.assert_array_equal(r, k)


FIXED_PATTERN = dict(g_max=40.0, prog_noise_std=1.0, drift_nu_mean=0.05, drift_nu_std=0.02, t_inference=3600.0,
                     stuck_at_0_fraction=0.01, stuck_at_gmax_fraction=0.005)


@pytest.mark.parametrize("cfg", [SHARED, INDEPENDENT], ids=["shared", "independent"])
def test_every_iteration_runs_on_its_programmed_weights(cfg):
    # Only fixed-pattern non-idealities (programming noise, drift, stuck devices; no read/ADC noise,
    # no quantisation): the chip must equal the float engine running the chip's effective weights.
    # A shared block has ONE set of effective weights, so if any iteration drew its own
    # fixed-pattern noise the outputs would differ; independent bodies each have their own set.
    net = make_net(cfg)
    chip = emulator.program(net, preset("ideal", **FIXED_PATTERN, **SMALL), rng(0))
    x = image()
    twin = chip.effective_net()
    for (n, lg, err), (_, r) in zip(chip.run(x, rng(1)), twin.iter_outputs(x)):
        assert rel(lg, r) <= 1e-5, f"output {n}: chip vs its effective weights, rel {rel(lg, r):.2e}"
        assert err > 1e-3, "fixed-pattern noise should move the state away from the float engine"


def test_shared_block_programmed_once_independent_bodies_drawn_apart(monkeypatch):
    # independent bodies with identical weights: different programming draws
    t = random_tensors(INDEPENDENT, rng(0))
    for k in list(t):
        if k.startswith("bodies.2."):
            t[k] = t[k.replace("bodies.2.", "bodies.1.")]
    net_i = ItNet(INDEPENDENT, t)
    chip_i = emulator.program(net_i, preset("ideal", **FIXED_PATTERN), rng(0))
    a = chip_i.layers["bodies.1.brb.0.0.expand"]
    b = chip_i.layers["bodies.2.brb.0.0.expand"]
    np.testing.assert_array_equal(net_i.params[a.name][0], net_i.params[b.name][0])
    assert not np.allclose(a.effective_weight(), b.effective_weight()), "independent bodies share a draw"
    # shared: one programmed copy, reused by every iteration (the calls are recorded)
    net_s = make_net(SHARED)
    chip_s = emulator.program(net_s, preset("ideal", **FIXED_PATTERN), rng(0))
    assert not any(k.startswith("bodies.1.") for k in chip_s.layers)
    used = []
    orig = Chip.run_conv

    def spy(self, name, *args):
        used.append((name, id(self.layers[name])))
        return orig(self, name, *args)

    monkeypatch.setattr(Chip, "run_conv", spy)
    list(chip_s.run(image(), rng(1), reference=False))
    runs = [u for u in used if u[0] == "bodies.0.brb.0.0.expand"]
    assert len(runs) == SHARED.iterations and len(set(runs)) == 1
    assert sum(u[0] == "bodies.0.mix.0" for u in used) == SHARED.iterations - 1


# --- calibration ------------------------------------------------------------------------------

def test_calibration_equals_calibrate_tile_on_the_layer_inputs():
    # stem1.conv runs once, on the normalised image: its tiles must get exactly calibrate_tile's ranges
    net = make_net()
    hw = preset("8bit", **SMALL)
    x = image(2, (2, 3, 21, 30))
    raw = emulator.program(net, hw, rng(0))
    cal = emulator.program(net, hw, rng(0), calibration=[x[:1], x[1:]])
    assert cal.calibration_images == 2 and not cal.needs_calibration and raw.needs_calibration
    P, _, _ = patches(x, 3, 3, 2, 1)
    pl = raw.layers["stem1.conv"]
    assert len(pl.tiles) == 2
    for p, t, c in zip(pl.plan.pieces, pl.tiles, cal.layers["stem1.conv"].tiles):
        ref = calibrate_tile(t, P[:, p.row0:p.row1])
        assert c.inp_bound == pytest.approx(ref.inp_bound, rel=1e-6)
        assert c.out_bound == pytest.approx(ref.out_bound, rel=1e-5)
        np.testing.assert_array_equal(c.w_eff, t.w_eff)  # calibration draws nothing


def test_uncalibrated_chip_calibrates_on_the_image_and_warns():
    net = make_net()
    chip = emulator.program(net, preset("pcm"), rng(0))
    assert chip.needs_calibration
    with pytest.raises(ConfigError, match="calibrate"):
        chip.conv("stem1.conv", image(), rng(0))
    with pytest.warns(CalibrationWarning, match="image being run"):
        out = list(chip.run(image(), rng(1)))
    assert not chip.needs_calibration and len(out) == SHARED.iterations
    for n, lg, err in out:
        assert np.all(np.isfinite(lg)) and 0 < err < math.inf
    _, _, err = next(chip.run(image(), rng(1), reference=False))
    assert math.isnan(err)


# --- the mapping report ------------------------------------------------------------------------

def test_hand_checked_layer_split():
    # f=51: scales.0.conv is 3x3, 102 -> 25: 918 rows x 25 cols on 256 x 256 tiles
    g = build_graph(ItNetConfig(), 360, 480)
    plan = plan_layer(g.layers["scales.0.conv"], preset("pcm"))
    assert plan.row_splits == ((0, 230), (230, 460), (460, 689), (689, 918)) and plan.col_splits == ((0, 25),)
    assert plan.utilisation == pytest.approx(918 * 25 / (4 * 65536))
    # depthwise 150 channels x 9 taps: floor(256/9) = 28 channels a tile -> 6 tiles of 25
    dw = plan_layer(g.layers["bodies.0.brb.0.0.dw"], preset("pcm"))
    assert dw.col_splits == tuple((25 * i, 25 * i + 25) for i in range(6))
    rep = mapping_report(g, preset("pcm"))
    row = {r["layer"]: r for r in rep["layers"]}
    assert row["scales.0.conv"]["tiles"] == 4 and row["bodies.0.brb.0.0.dw"]["tiles"] == 6
    assert row["bodies.0.brb.0.0.dw"]["utilisation"] == pytest.approx(1350 / (6 * 65536))
    assert row["bodies.0.brb.0.0.expand"]["executions"] == 16 and row["bodies.0.mix.0"]["executions"] == 15


@pytest.mark.parametrize("cfg", [SHARED, INDEPENDENT, ItNetConfig(iterations=16, width=29, shared=False)],
                         ids=["shared", "independent", "f29-independent"])
def test_shared_needs_fewer_tiles_by_the_reported_amount(cfg):
    hw = preset("pcm", **SMALL)
    rep = mapping_report(cfg, hw, 40, 56)
    N = cfg.iterations
    g = build_graph(dataclasses.replace(cfg, shared=True), 40, 56)
    plan = {name: plan_layer(lay, hw).tiles for name, lay in g.layers.items() if lay.kind == "conv"}
    brb = sum(v for k, v in plan.items() if ".brb." in k)
    mix = sum(v for k, v in plan.items() if ".mix." in k)
    sh, ind = rep["totals"]["shared"]["tiles"], rep["totals"]["independent"]["tiles"]
    # N bodies of BRBs instead of one, N - 1 mixing convs (iteration 1 has none) instead of one
    assert ind - sh == (N - 1) * brb + (N - 2) * mix > 0
    assert rep["saving"] == pytest.approx(ind / sh)
    this = rep["totals"]["this"]
    assert this["tiles"] == sum(r["tiles"] for r in rep["layers"]) == (sh if cfg.shared else ind)
    assert this["tiles"] == this["dense"]["tiles"] + this["depthwise"]["tiles"]
    if cfg.width == 8:  # the chip programs exactly the tiles the report counts
        assert emulator.program(make_net(cfg), hw, rng(0)).tiles == this["tiles"]
    assert "independent / shared tiles" in emulator.format_report(rep)


# --- bad input ----------------------------------------------------------------------------------

def test_bad_configurations_raise_clear_errors():
    with pytest.raises(ConfigError, match="unknown hardware preset 'nope'"):
        preset("nope")
    with pytest.raises(ConfigError, match="inp_bits=0"):
        preset("pcm", inp_bits=0)
    with pytest.raises(ConfigError, match="out_noise_std=-0.1"):
        preset("pcm", out_noise_std=-0.1)
    with pytest.raises(ConfigError, match="rows=0"):
        preset("ideal", rows=0)
    net = make_net()
    with pytest.raises(ConfigError, match="HardwareConfig"):
        emulator.program(net, "pcm", rng(0))
    with pytest.raises(TypeError, match="Generator"):
        emulator.program(net, preset("pcm"), 42)
    with pytest.raises(TypeError, match="ItNet"):
        emulator.program("weights.h5", preset("pcm"), rng(0))
    with pytest.raises(ShapeError, match="no calibration images"):
        emulator.program(net, preset("pcm"), rng(0), calibration=[])
    chip = emulator.program(net, preset("ideal"), rng(0))
    with pytest.raises(ShapeError, match="no programmed layer"):
        chip.conv("nope", image(), rng(0))
    with pytest.raises(ShapeError, match="last=0"):
        next(chip.run(image(), rng(0), last=0))
    with pytest.raises(ShapeError, match="C_in"):
        chip.conv("stem2.conv", image(), rng(0))


def test_effective_net_leaves_the_original_alone():
    net = make_net()
    x = image()
    before = [lg.copy() for _, lg in net.iter_outputs(x)]
    chip = emulator.program(net, preset("ideal", **FIXED_PATTERN), rng(0))
    twin = chip.effective_net()
    moved = [lg for _, lg in twin.iter_outputs(x)]
    after = [lg for _, lg in net.iter_outputs(x)]
    for b, m, a in zip(before, moved, after):
        np.testing.assert_array_equal(a, b)
        assert rel(m, b) > 1e-3
