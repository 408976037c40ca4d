"""Per-vector input scaling (``inp_range="per-vector"``) in the fused Numba kernels.

Reference: the tile-level pipeline ``crossbar.mvm`` run tile by tile (``emulator.tilewise``:
``conv_tilewise``, ``mvm_depthwise`` for the block-diagonal depthwise tiles), fed the
kernels' own normals (``KeyedNormals``), so noisy outputs are compared draw for draw.
Layers are built directly (any kernel, stride, padding) on small tiles so that dense layers
split into several row and column pieces and depthwise tiles hold several channels; inputs
have zero patches (a zero vector: scale 1) and values over many magnitudes (each vector's
own scale matters). Results must not depend on the chunk sizes or the thread count.
"""

import dataclasses

import numba
import numpy as np
import pytest

from emulator import AnalogOptions, HardwareConfig, preset, program_tile
from emulator.analog import conv_layer, out_size
from emulator.packs import pack_layer
from emulator.programming import ProgrammedLayer, tile_matrices
from emulator.quantize import quant_step
from emulator.tiles import plan_layer
from emulator.tilewise import conv_tilewise
from emu_reference import KeyedNormals, assert_mean_std
from minitnet.graph import Layer

# (kind, C_in, C_out, k, stride, padding), the tiles (rows, cols)
SPECS = {
    "dense-3x3": (("dense", 5, 20, 3, 1, 1), (16, 16)),     # 45 rows: 3 row pieces, 2 column pieces
    "dense-3x3-s2": (("dense", 6, 10, 3, 2, 1), (16, 16)),  # 54 rows: 4 row pieces (a piece splits a channel)
    "dense-1x1": (("dense", 40, 24, 1, 1, 0), (16, 16)),    # 3 row pieces, 2 column pieces
    "dense-5x5-p0": (("dense", 2, 3, 5, 1, 0), (16, 16)),
    "dw-3x3": (("dw", 7, 7, 3, 1, 1), (27, 16)),            # 3 channels per tile: groups 3, 2, 2
    "dw-3x3-s2": (("dw", 7, 7, 3, 2, 1), (27, 16)),
    "dw-3x3-p0": (("dw", 7, 7, 3, 1, 0), (27, 16)),
    "dw-5x5": (("dw", 5, 5, 5, 1, 2), (50, 16)),            # 2 channels per tile
}

# the periphery around per-vector scaling: DAC only (exact), + ADC, + noise
# (per-MVM read noise: the variance product; frozen: ADC noise only), per-column weights and drift
PERIPHERY = {
    "dac": dict(inp_bits=7),
    "adc": dict(inp_bits=7, out_bits=9, out_bound=1.0),
    "pcm-noisy": dict(device_model="pcm", g_max=25.0, inp_bits=7, out_bits=9, out_bound=1.0, out_noise_std=0.06,
                      t_inference=3600.0, drift_compensation=True),
    "aihwkit-default": dict(device_model="pcm", g_max=25.0, inp_bits=7, out_bits=9, out_bound=1.0,
                            out_noise_std=0.06, t_inference=86400.0, read_noise_mode="frozen",
                            drift_compensation=True),
    "column": dict(device_model="pcm", g_max=25.0, inp_bits=7, out_bits=9, out_bound=1.0, out_noise_std=0.06,
                   t_inference=3600.0, weight_scaling="column", drift_compensation="column"),
}


def rng(seed=0):
    return np.random.default_rng(seed)


def programmed_layer(spec, hw, seed=0):
    """A conv layer of ``spec`` with random weights programmed onto tiles of ``hw``."""
    kind, C_in, C_out, k, stride, padding = spec
    groups = C_in if kind == "dw" else 1
    lay = Layer("t", "conv", C_in, C_out, (12, 15), (12, 15), (k, k), stride, padding, groups, True)
    plan = plan_layer(lay, hw)
    w = rng(seed).normal(0, 0.3, (C_out, C_in // groups, k, k))
    g = rng(seed + 1)
    tiles = tuple(program_tile(m, hw, g) for m in tile_matrices(lay, plan, w))
    return ProgrammedLayer(lay, plan, tiles, rng(seed + 2).normal(0, 0.1, C_out).astype(np.float32))


def layer_input(spec, N=2, H=12, W=15, seed=3):
    """Values over four decades (vectors of very different max |x|), zero patches (zero vectors)."""
    g = rng(seed)
    x = g.normal(0, 1, (N, spec[1], H, W)) * 10.0 ** g.integers(-2, 2, (N, 1, H, 1))
    x[0, :, 3:8, 4:10] = 0.0
    x[1, :, :, :6] = 0.0
    return x.astype(np.float32)


def run_both(name, periphery, act=0, with_res=True, opts=AnalogOptions(), seed=7):
    spec, (rows, cols) = SPECS[name]
    hw = HardwareConfig(rows=rows, cols=cols, inp_range="per-vector", **PERIPHERY[periphery])
    pl = programmed_layer(spec, hw)
    if spec[0] == "dense":
        assert len(pl.tiles) > 1 or spec[3] == 5, "the test needs several tiles"
    x = layer_input(spec)
    OH = (x.shape[2] + 2 * spec[5] - spec[3]) // spec[4] + 1
    OW = (x.shape[3] + 2 * spec[5] - spec[3]) // spec[4] + 1
    res = rng(4).normal(0, 1, (x.shape[0], spec[2], OH, OW)).astype(np.float32) if with_res else None
    got = conv_layer(pl, pack_layer(pl, hw), x, res, act, rng(seed), opts)
    ref = conv_tilewise(pl, x, res, act, hw, KeyedNormals(np.random.PCG64(seed)))
    return pl, hw, got, ref


@pytest.mark.parametrize("name", list(SPECS))
def test_per_vector_without_adc_equals_tile_mvm(name):
    # DAC only: both quantise the same float32 x / s (the same division, the same quantiser), so
    # they differ only in the order of the float32 sums of the products (sgemm / np.dot / einsum
    # vs the kernels' tap loops): 1e-6 of the largest output covers that rounding
    # (~K * 2**-24 relative, K <= 45 terms), and is far below a DAC step (1/63 of a vector's max)
    _, _, got, ref = run_both(name, "dac")
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6 * float(np.abs(ref).max()))


def assert_same_up_to_adc_flips(got, ref, pl, hw, s_max, what):
    """Equal to float32 rounding (1e-5 relative: a few roundings of sums of <= 45 terms, and the
    per-column ADC step ``out_step * col_gain`` where ``mvm`` divides by ``col_gain``) but where a
    rounding difference of the sums moved an ADC input across a level: at most 0.5 % of values
    (levels are 1/255 of the range apart), never by more than one ADC step times the largest
    vector scale ``s_max`` (max |x|), the drift-compensation scale and the row pieces summed."""
    diff = np.abs(got - ref)
    close = diff <= 1e-5 * (1 + np.abs(ref))
    assert np.mean(~close) <= 5e-3, f"{what}: {np.mean(~close):.3%} of values differ by more than float32 rounding"
    pieces = len(pl.plan.row_splits) if not pl.plan.depthwise else 1
    step = max(quant_step(hw.out_bits, t.out_bound) * float(np.max(t.out_scale))
               * float(np.max(t.col_gain if t.col_gain is not None else 1.0)) for t in pl.tiles)
    assert diff.max() <= pieces * step * s_max * 1.0001, f"{what}: max difference {diff.max():.3g}"


@pytest.mark.parametrize("periphery", ["adc", "pcm-noisy", "aihwkit-default", "column"])
@pytest.mark.parametrize("name", list(SPECS))
def test_per_vector_equals_tile_mvm_draw_for_draw(name, periphery):
    # the same normals (the kernels' keys, mvm's (P, cols) layout transposed): equal to float32
    # rounding, but for the rare ADC input that a different order of the sums moves across a level
    pl, hw, got, ref = run_both(name, periphery)
    assert np.all(np.isfinite(got))
    s_max = float(np.abs(layer_input(SPECS[name][0])).max())
    assert_same_up_to_adc_flips(got, ref, pl, hw, s_max, f"{name}, {periphery}")
    if periphery != "adc":  # the noise is there (and, being the same draws, cancels in the comparison)
        clean = run_both(name, "adc")[2]
        assert np.mean(np.abs(got - clean) > 1e-3) > 0.1


@pytest.mark.parametrize("name", ["dense-3x3", "dense-3x3-s2", "dense-1x1", "dw-3x3", "dw-3x3-s2"])
def test_per_vector_independent_of_chunks_and_threads(name):
    # the draws are indexed by pixel and the scales are per pixel: no dependence on how the
    # pixels are chunked (dense) or banded (depthwise: bands per worker), bit for bit
    base = run_both(name, "pcm-noisy")[2]
    for opts in (AnalogOptions(chunk_elems=1), AnalogOptions(chunk_elems=700), AnalogOptions(chunk_elems=1 << 30),
                 AnalogOptions(taps=False)):
        np.testing.assert_array_equal(run_both(name, "pcm-noisy", opts=opts)[2], base, err_msg=str(opts))
    old = numba.get_num_threads()
    try:
        for threads in {1, min(3, numba.config.NUMBA_NUM_THREADS)}:
            numba.set_num_threads(threads)
            np.testing.assert_array_equal(run_both(name, "pcm-noisy")[2], base, err_msg=f"{threads} threads")
    finally:
        numba.set_num_threads(old)


def test_per_vector_uses_the_im2col_path():
    # a value of a per-tap plane serves several pixels, each with its own scale: no per-tap layout
    spec, (rows, cols) = SPECS["dense-3x3"]
    hw = HardwareConfig(rows=rows, cols=cols, inp_bits=7)
    pl = programmed_layer(spec, hw)
    assert pack_layer(pl, hw).taps is not None and pack_layer(pl, hw).vec[0] == 0
    pv = pack_layer(pl, dataclasses.replace(hw, inp_range="per-vector"))
    assert pv.taps is None and pv.vec[0] == 1


def test_per_vector_adc_noise_follows_each_pixel_on_the_chip():
    # a 1x1 layer on one tile: the ADC-input noise of pixel p is out_noise_std * w_max * s_p with
    # s_p = max |x| of its vector (the noise is added to the normalised vector's output, then x s_p)
    hw = HardwareConfig(rows=64, cols=64, inp_range="per-vector", out_noise_std=0.05)
    spec = ("dense", 8, 4, 1, 1, 0)
    pl = programmed_layer(spec, hw)
    (t,) = pl.tiles
    scales = np.array([0.1, 1.0, 30.0], np.float32)
    x = rng(5).uniform(-1, 1, (1, 8, 3, 4000)).astype(np.float32) * scales[None, None, :, None]
    x[0, 0] = scales[:, None]  # max |x| of every vector of row i: scales[i]
    pk = pack_layer(pl, hw)
    noisy = conv_layer(pl, pk, x, None, 0, rng(6), AnalogOptions())
    clean = conv_layer(pl, pack_layer(pl, dataclasses.replace(hw, out_noise_std=0.0)), x, None, 0, rng(6),
                       AnalogOptions())
    for i, s in enumerate(scales):
        assert_mean_std(noisy[0, :, i] - clean[0, :, i], 0.0, 0.05 * t.w_max * s, f"pixels with max|x| = {s}")


def test_per_vector_chip_equals_tile_mvm_on_the_network():
    # the aihwkit-default preset on small tiles through Chip.conv: the fused path, no tile-by-tile fallback
    import emulator
    from emu_reference import image
    from minitnet import ItNetConfig
    from minitnet.engine import ItNet
    from netutil import random_tensors
    cfg = ItNetConfig(levels=2, blocks=1, iterations=3, width=8)
    net = ItNet(cfg, random_tensors(cfg, rng(0)))
    hw = preset("aihwkit-default", rows=27, cols=16, t_inference=3600.0)
    chip = emulator.program(net, hw, rng(0), calibration=[image()])
    for name in ("stem2.conv", "bodies.0.mix.0", "bodies.0.brb.0.0.dw", "bodies.0.brb.0.0.project"):
        pl = chip.layers[name]
        x = np.abs(image(3, (1, pl.layer.in_channels, 11, 14)))
        res = image(4, (1, pl.layer.out_channels, *out_size(pl.layer, x)))
        got = chip.conv(name, x, rng(7), act=2, residual=res)
        ref = conv_tilewise(pl, x, res, 2, hw, KeyedNormals(np.random.PCG64(7)))
        assert_same_up_to_adc_flips(got, ref, pl, hw, float(x.max()), name)
