"""The Gaussian draws of the emulated MVMs: one 64-bit key per batch, expanded in the kernels.

Randomness comes from the caller: for every batch of MVMs of one tile (all its M = N*OH*OW
pixels of one layer call, however a kernel chunks them) ``draw_key`` takes one raw 64-bit
word from the caller's ``np.random.Generator``; the kernels expand the key into as many
normals as they need, so the draws depend only on the caller's generator and stay the same
whatever the thread count. Normal i of a batch (i = column * M + m: column-major over the
tile's outputs, ``crossbar.mvm``'s (M, cols) draw transposed) is
``normal_from_bits(word(key, i))``:

* ``word(key, i)`` = half of SplitMix64's output for the counter
  ``key + (i // 2 + 1) * 0x9E3779B97F4A7C15`` (Steele et al., OOPSLA 2014; the
  stream passes BigCrush as 64-bit words), the high half for even i, the low
  half for odd i: a counter-based generator, so any thread can compute any draw;
* ``normal_from_bits(u)`` = the inverse normal CDF of the low 31 bits, signed by
  the top bit: with v = u mod 2**31 and w = float32(float32(v) + 1/2) (exact for
  v < 2**23, rounded to 24 bits above, capped below 2**31), the draw is
  ``-Phi^-1(w / 2**32)`` if u's top bit is set, else its negative. ``-Phi^-1`` comes
  from a line per 1/256 of an octave of w: the float's exponent and top 8
  mantissa bits index a table of 8192 lines (64 KiB; 99.98 % of draws read the
  12 top octaves, 24 KiB, which stay in L1), its low 15 bits are the position on
  the line. No branch, so the loop vectorises (8 lines gathered at a time), and
  no separate tail: the octaves make the lines dense where the quantile curves.
  Error against the exact quantile (float64 ``ndtri``, tested on the extreme
  words and 2 million others): 5.6e-7 for |z| <= 2.5, 6.4e-7 anywhere; range
  ±6.34.

Why not ``rng.standard_normal``: the emulated f=51 network needs ~10**8 normals per
image (one per output of every tile MVM); NumPy's ziggurat costs an order of magnitude
more per draw than this counter-based transform, computed next to where it is used
instead of stored and re-read (``benchmarks/bench_emulator.py`` times the whole pass).
Tested: mean, std, tail fractions and symmetry within 4 sigma/sqrt(n), the transform
against ``ndtri``, the block generator against the word-by-word one, and equality with
``crossbar.mvm`` fed the same draws.
"""

import numba
import numpy as np
from llvmlite import ir as llvm_ir
from numba import types
from numba.extending import intrinsic

__all__ = ["draw_key", "draw_keys", "hash64", "word", "normal_from_bits", "words_into"]

_HALF = np.float32(0.5)
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def draw_key(rng: np.random.Generator) -> np.uint64:
    """The 64-bit key of one batch of MVMs of one tile: one raw draw of ``rng``. The kernels expand
    it into the batch's standard normals (``words_into``, ``normal_from_bits``)."""
    return np.uint64(rng.bit_generator.random_raw())


def draw_keys(rng: np.random.Generator, z_tiles: np.ndarray) -> np.ndarray:
    """``draw_key`` for every tile flagged in ``z_tiles`` (bool, plan order), in that order, 0
    for the others: the same keys as one ``draw_key`` per flagged tile, in one call."""
    keys = np.zeros(z_tiles.shape[0], np.uint64)
    k = int(np.count_nonzero(z_tiles))
    if k:
        keys[z_tiles] = rng.bit_generator.random_raw(k)
    return keys


@numba.njit(cache=True, error_model="numpy", inline="always")
def hash64(key, c):
    """SplitMix64's 64-bit output for the counter key + (c + 1) * gamma."""
    z = key + (np.uint64(c) + np.uint64(1)) * _GAMMA
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, error_model="numpy", inline="always")
def word(key, i):
    """32 random bits, the i-th of the stream ``key``: the high half of hash64(key, i // 2) for
    even i, its low half for odd i (both halves of one SplitMix64 output)."""
    h = hash64(key, np.uint64(i) >> np.uint64(1))
    return np.uint32(h >> np.uint64(32)) if (i & 1) == 0 else np.uint32(h & np.uint64(0xFFFFFFFF))


@intrinsic
def _f32_bits(typingctx, x):
    """The IEEE bits of a float32 as a uint32 (a bitcast)."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], llvm_ir.IntType(32))
    return types.uint32(types.float32), codegen


_OCTAVES = 32      # w in [2**-1, 2**31): exponent fields 126..157
_SUB_BITS = 8     # 256 sub-bins per octave (the top mantissa bits)
_T_BITS = 23 - _SUB_BITS


def _octave_table() -> np.ndarray:
    """The lines of ``normal_from_bits``: for octave o (w = v + 1/2 in [2**(o-1), 2**o)) and sub-bin s
    (w = 2**(o-1) * (1 + (s + t) / 256), t in [0, 1)), a0 + a1 * t interpolates -Phi^-1(w / 2**32) (scipy's
    float64 ``ndtri``, rounded once) at the two Chebyshev nodes of [0, 1]. Flat float32 (32 * 256 * 2,):
    entry 2k holds a0, 2k + 1 holds a1 of line k = o * 256 + s. 64 KiB, but a draw reads octaves 20-31
    (w >= 2**19, 24 KiB of lines) with probability 1 - 2**-12: the lines in use stay in L1."""
    from scipy.special import ndtri

    sub = 1 << _SUB_BITS
    nodes = 0.5 - 0.5 * np.cos(np.array([1, 3]) * np.pi / 4)
    o = np.arange(_OCTAVES)[:, None, None]
    s = np.arange(sub)[None, :, None]
    w = 2.0 ** (o - 1.0) * (1.0 + (s + nodes) / sub)
    f = -ndtri(np.minimum(w / 2.0**32, 0.5)).reshape(-1, 2)        # values at the nodes
    a1 = (f[:, 1] - f[:, 0]) / (nodes[1] - nodes[0])
    a0 = f[:, 0] - a1 * nodes[0]
    return np.stack([a0, a1], axis=1).astype(np.float32).ravel()


_LINES = _octave_table()
_LINE0 = np.uint32((126 << 23) >> _T_BITS)    # exponent field 126 (w = 1/2), sub-bin 0
_LINE_MASK = np.uint32(_OCTAVES * (1 << _SUB_BITS) - 1)
_W_MAX = np.float32(2.0**31 - 128)  # the largest float32 below 2**31
_T_MASK = np.uint32((1 << _T_BITS) - 1)
_T_SCALE = np.float32(2.0**-_T_BITS)


@numba.njit(cache=True, error_model="numpy", inline="always")
def normal_from_bits(u):
    """A standard normal (float32) from one uniform 32-bit word, branch-free (vectorises): with
    v = u mod 2**31 and w = float32(float32(v) + 1/2), the value is -Phi^-1(w / 2**32) (>= 0) if
    u's top bit is set, else its negative; -Phi^-1 by the line of w's octave and sub-bin
    (``_octave_table``), read from w's IEEE bits (see the module docstring)."""
    w = min(np.float32(np.int32(u & np.uint32(0x7FFFFFFF))) + _HALF, _W_MAX)
    bits = _f32_bits(w)
    k = np.uint32(2) * (((bits >> np.uint32(_T_BITS)) - _LINE0) & _LINE_MASK)  # 32-bit: dword gathers
    t = (np.float32(np.int32(bits & _T_MASK)) + _HALF) * _T_SCALE
    a = _LINES[k] + _LINES[k + np.uint32(1)] * t
    return a if (u >> np.uint32(31)) != 0 else -a


@numba.njit(cache=True, error_model="numpy", inline="always")
def words_into(key, i0, u):
    """u[j] = word(key, i0 + j), two words per hash (vectorised)."""
    n = u.shape[0]
    j0 = 0
    if (i0 & 1) != 0 and n > 0:  # an odd first index: the low half of its hash
        u[0] = word(key, i0)
        j0 = 1
    c0 = np.uint64(i0 + j0) >> np.uint64(1)
    for q in range((n - j0) >> 1):
        h = hash64(key, c0 + np.uint64(q))
        u[j0 + 2 * q] = np.uint32(h >> np.uint64(32))
        u[j0 + 2 * q + 1] = np.uint32(h & np.uint64(0xFFFFFFFF))
    if ((n - j0) & 1) != 0:
        u[n - 1] = word(key, i0 + n - 1)
