"""Reference pieces for the emulator's tests: the kernels' draws as arrays, the dense
pipeline stage by stage (the stages the fused epilogue replaces), and naive NumPy helpers.

Test-only Numba kernels live here, next to the tests that use them, not in ``emulator/``.
"""

import numba
import numpy as np
from numba import prange

from emulator.adc import quantise
from emulator.analog import out_size
from emulator.rng import draw_key, normal_from_bits, word, words_into
from minitnet.kernels.elementwise import apply_act as act_value

_BLOCK = 512


@numba.njit(cache=True, error_model="numpy", inline="always")
def draws_into(key, i0, z):
    """z[j] = normal_from_bits(word(key, i0 + j)): the words into z's memory, then the transform in place."""
    u = z.view(np.uint32)
    words_into(key, i0, u)
    for j in range(z.shape[0]):
        z[j] = normal_from_bits(u[j])


@numba.njit(cache=True, error_model="numpy", parallel=True)
def normals_of_words(u, out):
    """out[i] = normal_from_bits(u[i]) (tests of the transform).

    Shapes: u: (S,) uint32  out: (S,) float32
    """
    for i in prange(u.shape[0]):
        out[i] = normal_from_bits(u[i])


@numba.njit(cache=True, error_model="numpy", parallel=True)
def normals_from_key(key, out):
    """out[i] = normal_from_bits(word(key, i)): a batch's draws as an array.

    Shapes: out: (S,) float32
    """
    for b in prange((out.shape[0] + _BLOCK - 1) // _BLOCK):
        draws_into(key, b * _BLOCK, out[b * _BLOCK:(b + 1) * _BLOCK])


@numba.njit(cache=True, error_model="numpy")
def draws_block(key, i0, z):
    """``draws_into`` as a callable kernel: z[j] = normal_from_bits(word(key, i0 + j))."""
    draws_into(key, i0, z)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def noise_adc_accumulate(y, var, has_var, key, has_z, tf, L, accumulate, acc):
    """Stages 4-6 of one tile and the digital partial sum, for a chunk of M MVMs.

    z = normal_from_bits(word(key, c*M + m))
    v = y[c, m] (+ z * sqrt(var[c, m] + adc_var), or + z * adc_std without read noise)
    v = quantise(v; L, step, bound) * scale
    acc[c, m] (+)= v      (+= when ``accumulate``: a later row piece of the same columns)

    Shapes:
      y, var: (cols, M) (var unused unless has_var)  tf: (5,) as emulator.adc.TF_*  acc: (cols, M)
    """
    cols, M = y.shape
    adc_std, adc_var, step, bound, scale = tf[0], tf[1], tf[2], tf[3], tf[4]
    for c in prange(cols):
        for m in range(M):
            v = y[c, m]
            if has_z:
                z = normal_from_bits(word(key, c * M + m))
                if has_var:
                    v += z * np.sqrt(var[c, m] + adc_var)
                else:
                    v += z * adc_std
            v = quantise(v, L, step, bound) * scale
            if accumulate:
                acc[c, m] += v
            else:
                acc[c, m] = v


@numba.njit(cache=True, error_model="numpy", parallel=True)
def epilogue_nchw(acc, b, residual, has_residual, act, out):
    """out[0, co, j // OW, j % OW] = act(acc[co, j] + b[co] (+ residual)), digital and exact.

    Shapes:
      acc: (C_out, OH*OW)  b: (C_out,)  residual: like out if has_residual  out: (1, C_out, OH, OW)
    """
    OW = out.shape[3]
    R = acc.shape[1] // OW
    for co in prange(acc.shape[0]):
        bias = b[co]
        for j in range(R):
            a = acc[co, j * OW:(j + 1) * OW]
            o = out[0, co, j]
            if has_residual:
                r = residual[0, co, j]
                for ox in range(OW):
                    o[ox] = act_value(a[ox] + bias + r[ox], act)
            else:
                for ox in range(OW):
                    o[ox] = act_value(a[ox] + bias, act)


class KeyedNormals(np.random.Generator):
    """A Generator whose ``standard_normal`` makes the chip's draws: one 64-bit key per call,
    expanded by the kernels' generator column-major, returned in ``mvm``'s (P, cols) layout."""

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        P, cols = size
        z = np.empty(P * cols, np.float32)
        normals_from_key(np.uint64(self.bit_generator.random_raw()), z)
        return np.ascontiguousarray(z.reshape(cols, P).T, dtype=dtype)


def patches(x, kh, kw, stride, padding, channels=None):
    """Naive im2col: (N*OH*OW, C*KH*KW) with columns in (c, ky, kx) order, rows in (n, oy, ox) order."""
    N, C, H, W = x.shape
    channels = range(C) if channels is None else channels
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    OH = (H + 2 * padding - kh) // stride + 1
    OW = (W + 2 * padding - kw) // stride + 1
    cols = []
    for c in channels:
        for ky in range(kh):
            for kx in range(kw):
                cols.append(xp[:, c, ky:ky + stride * OH:stride, kx:kx + stride * OW:stride].reshape(-1))
    return np.stack(cols, axis=1).astype(np.float32), OH, OW


def to_nchw(y, N, OH, OW):
    return y.reshape(N, OH, OW, -1).transpose(0, 3, 1, 2)


def act(v, a):
    return v if a == 0 else (np.maximum(v, 0) if a == 1 else np.clip(v, 0, 6))


def unfused_dense(chip, name, x, rng, act, residual):
    """The dense pipeline stage by stage, one chunk of all pixels: im2col + DAC, np.dot per tile
    (and for x**2 @ read_var), ``noise_adc_accumulate`` per tile, then ``epilogue_nchw``."""
    from emulator.dense import im2col_dac_nchw

    pl, pk = chip.layers[name], chip.pack(name)
    lay = pl.layer
    OH, OW = out_size(lay, x)
    M = OH * OW
    col = np.empty((pk.rows, M), np.float32)
    im2col_dac_nchw(x, 0, (*lay.kernel_size, lay.stride, lay.padding), 0, OH, pk.dac, col)
    sq = col * col
    acc = np.empty((lay.out_channels, M), np.float32)
    for t, tf in zip(pk.tiles, pk.table.tf):
        y = np.dot(t.wT, col[t.row0:t.row1])
        var = y if t.rvT is None else np.dot(t.rvT, sq[t.row0:t.row1])
        key = draw_key(rng) if t.has_z else np.uint64(0)
        tf = tf[0]  # one w_max per tile (weight_scaling="tile"): every column has the tile's parameters
        noise_adc_accumulate(y, var, t.rvT is not None, key, t.has_z, tf, pk.out_L, t.accumulate,
                             acc[t.col0:t.col1])
    out = np.empty((1, lay.out_channels, OH, OW), np.float32)
    res = residual if residual is not None else np.zeros((1, 1, 1, 1), np.float32)
    epilogue_nchw(acc, pl.bias, res, residual is not None, act, out)
    return out


# -- statistics and comparisons shared by the emulator's tests ----------------------------------
def image(seed=1, shape=(1, 3, 21, 30)):
    """A float32 NCHW input with standard normal values."""
    return np.random.default_rng(seed).normal(0, 1, shape).astype(np.float32)


def rel(a, b):
    """Relative L2 error ||a - b|| / ||b|| in float64."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(np.asarray(b, np.float64)))


def assert_mean_std(sample, mean, std, what):
    """The sample's mean and std within 4 sigma/sqrt(n) and 4 sigma/sqrt(2n) of ``mean`` and ``std``."""
    sample = np.asarray(sample, dtype=np.float64).ravel()
    n = sample.size
    tol_mean, tol_std = 4 * std / np.sqrt(n), 4 * std / np.sqrt(2 * n)
    assert abs(sample.mean() - mean) <= tol_mean, (
        f"{what}: mean {sample.mean():.5g}, expected {mean:.5g} +- {tol_mean:.3g} (4 sigma/sqrt(n), n={n})")
    assert abs(sample.std() - std) <= tol_std, (
        f"{what}: std {sample.std():.5g}, expected {std:.5g} +- {tol_std:.3g} (4 sigma/sqrt(2n), n={n})")
