"""Tests of minitnet.ops and its numba kernels.

1. golden / impulse cases, 2. naive reference (tests/reference.py, always run),
3. torch.nn.functional oracle (skipped without torch), 4. properties, 5. bad input.
"""
import numpy as np
import pytest
import reference as ref
from conftest import ATOL, ATOL_REDUCTION, RTOL

from minitnet import ops
from minitnet.errors import ShapeError

F32 = np.float32


def rand(rng, *shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(F32)


def rand_conv(rng, C_in, C_out, KH, KW, groups=1):
    """Weights scaled by 1/sqrt(fan_in) so outputs stay O(1) and atol means something."""
    fan_in = C_in // groups * KH * KW
    return rand(rng, C_out, C_in // groups, KH, KW, scale=fan_in**-0.5), rand(rng, C_out)


def assert_close(got, want, atol=ATOL, rtol=RTOL):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"rtol={rtol}, atol={atol}")


POW2_3x3 = (2.0 ** np.arange(9)).astype(F32).reshape(3, 3)  # taps 1, 2, 4, ..., 256


# --------------------------------------------------------------------------- 1. golden / impulse


def test_conv_impulse_dense_3x3_pad1():
    # x: (1,1,5,6), a one at (y=2, x=3); w: (1,1,3,3) power-of-two taps.
    x = np.zeros((1, 1, 5, 6), F32)
    x[0, 0, 2, 3] = 1
    out = ops.conv2d(x, POW2_3x3.reshape(1, 1, 3, 3), padding=1)
    # cross-correlation: out[y, x] = sum w[ky, kx] * x[y+ky-1, x+kx-1] -> w flipped around (2, 3)
    want = np.zeros((5, 6), F32)
    want[1:4, 2:5] = POW2_3x3[::-1, ::-1]
    np.testing.assert_array_equal(out[0, 0], want)


def test_conv_impulse_stride2_pad0():
    # x: (1,1,7,5) one at (4, 2); out: (1,1,3,2); out[oy, ox] reads x[2oy+ky, 2ox+kx]
    x = np.zeros((1, 1, 7, 5), F32)
    x[0, 0, 4, 2] = 1
    out = ops.conv2d(x, POW2_3x3.reshape(1, 1, 3, 3), stride=2)
    want = np.zeros((3, 2), F32)
    want[2, 1] = POW2_3x3[0, 0]  # oy=2, ky=0; ox=1, kx=0
    want[1, 1] = POW2_3x3[2, 0]  # oy=1, ky=2
    want[2, 0] = POW2_3x3[0, 2]  # ox=0, kx=2
    want[1, 0] = POW2_3x3[2, 2]
    np.testing.assert_array_equal(out[0, 0], want)


def test_conv_impulse_channels_and_groups():
    # x: (1,2,3,3), one at the centre of channel 1 only; dense w: (2,2,1,1)
    x = np.zeros((1, 2, 3, 3), F32)
    x[0, 1, 1, 1] = 1
    w = np.array([1, 2, 4, 8], F32).reshape(2, 2, 1, 1)  # w[co, ci]
    out = ops.conv2d(x, w)
    np.testing.assert_array_equal(out[0, :, 1, 1], [2, 8])  # w[0, 1], w[1, 1]
    assert np.count_nonzero(out) == 2
    # depthwise: channel 1's taps are 2**9 .. 2**17, channel 0 must stay zero
    wd = np.stack([POW2_3x3, POW2_3x3 * 512])[:, None]  # (2,1,3,3)
    out = ops.conv2d(x, wd, padding=1, groups=2)
    np.testing.assert_array_equal(out[0, 0], np.zeros((3, 3)))
    np.testing.assert_array_equal(out[0, 1], POW2_3x3[::-1, ::-1] * 512)


def test_conv_golden_epilogue():
    # x: (1,1,1,3); w = 1 (1x1); b = -1; residual adds 5 -> act(x - 1 + 5)
    x = np.array([-10.0, 0.0, 3.0], F32).reshape(1, 1, 1, 3)
    w = np.ones((1, 1, 1, 1), F32)
    b = np.array([-1.0], F32)
    r = np.full((1, 1, 1, 3), 5.0, F32)
    for act, want in [(0, [-6, 4, 7]), (1, [0, 4, 7]), (2, [0, 4, 6])]:
        np.testing.assert_array_equal(ops.conv2d(x, w, b, act=act, residual=r).ravel(), want)


def test_max_pool_golden_ceil_and_floor():
    # x: (1,1,5,5) = 0..24; k=2 -> ceil 3x3 (last row/col partial), floor 2x2
    x = np.arange(25, dtype=F32).reshape(1, 1, 5, 5)
    want_ceil = [[6, 8, 9], [16, 18, 19], [21, 23, 24]]
    np.testing.assert_array_equal(ops.max_pool2d(x, 2)[0, 0], want_ceil)
    np.testing.assert_array_equal(ops.max_pool2d(x, 2, ceil_mode=False)[0, 0], [[6, 8], [16, 18]])
    np.testing.assert_array_equal(ops.max_pool2d(x, 1), x)  # kernel_size 1 is a copy


def test_bilinear_golden():
    x = np.array([0.0, 1.0], F32).reshape(1, 1, 1, 2)
    # align_corners=False, W 2 -> 4: src = (d + .5)/2 - .5 = -.25 (->0), .25, .75, 1.25 (clamped)
    np.testing.assert_array_equal(ops.interpolate_bilinear(x, (1, 4)).ravel(), [0, 0.25, 0.75, 1])
    # align_corners=True, W 2 -> 5: src = d/4
    np.testing.assert_array_equal(
        ops.interpolate_bilinear(x, (1, 5), align_corners=True).ravel(), [0, 0.25, 0.5, 0.75, 1]
    )


def test_elementwise_golden():
    x = np.array([-2.0, 0.5, 7.0, np.nan], F32).reshape(1, 1, 2, 2)
    np.testing.assert_array_equal(ops.relu(x).ravel(), [0, 0.5, 7, np.nan])
    np.testing.assert_array_equal(ops.relu6(x).ravel(), [0, 0.5, 6, np.nan])
    np.testing.assert_array_equal(ops.add(x, x).ravel(), [-4, 1, 14, np.nan])
    y = np.arange(8, dtype=F32).reshape(1, 2, 2, 2)
    got = ops.affine(y, np.array([2, -1], F32), np.array([1, 0.5], F32), act=1)
    np.testing.assert_array_equal(got.ravel(), [1, 3, 5, 7, 0, 0, 0, 0])
    got = ops.concat([y[:, :1].copy(), y, y[:, 1:].copy()])
    np.testing.assert_array_equal(got[0, :, 0, 0], [0, 0, 4, 4])


def test_max_pool_propagates_nan():
    x = np.zeros((1, 1, 4, 4), F32)
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 3, 3] = 5
    out = ops.max_pool2d(x, 2)
    assert np.isnan(out[0, 0, 0, 0]) and out[0, 0, 1, 1] == 5 and out[0, 0, 0, 1] == 0


# --------------------------------------------------------------------------- 2. naive reference

CONV_CASES = [  # (N, C_in, C_out, H, W, KH, KW, stride, padding, groups, act, residual)
    (1, 3, 4, 7, 5, 3, 3, 1, 1, 1, 0, False),
    (2, 3, 5, 7, 5, 3, 3, 2, 1, 1, 1, True),
    (1, 2, 3, 8, 6, 3, 3, 2, 0, 1, 2, False),
    (2, 5, 7, 4, 6, 1, 1, 1, 0, 1, 1, True),
    (1, 4, 3, 5, 7, 1, 1, 2, 1, 1, 0, False),
    (1, 4, 6, 6, 5, 3, 3, 1, 1, 2, 0, True),
    (2, 6, 6, 7, 9, 3, 3, 1, 1, 6, 2, True),
    (1, 5, 5, 9, 7, 3, 3, 2, 1, 5, 1, False),
    (1, 3, 6, 6, 5, 3, 3, 1, 0, 3, 0, False),  # depthwise with multiplier 2 -> grouped path
    (1, 2, 3, 6, 8, 5, 3, 1, 1, 1, 0, False),  # non-square kernel
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "N{}_{}to{}_{}x{}_k{}x{}_s{}_p{}_g{}_a{}_r{}".format(*c))
def test_conv2d_vs_reference(case):
    N, C_in, C_out, H, W, KH, KW, stride, padding, groups, act, has_res = case
    rng = np.random.default_rng(0)
    x = rand(rng, N, C_in, H, W, scale=3.0)
    w, b = rand_conv(rng, C_in, C_out, KH, KW, groups)
    want = ref.conv2d(x, w, b, stride, padding, groups, act=0)
    r = rand(rng, *want.shape) if has_res else None
    want = ref.conv2d(x, w, b, stride, padding, groups, act, r)
    got = ops.conv2d(x, w, b, stride=stride, padding=padding, groups=groups, act=act, residual=r)
    assert got.dtype == F32 and got.shape == want.shape
    assert_close(got, want)


def test_conv2d_gemm_tiles(monkeypatch):
    # a tiny tile forces many row tiles, the last one partial (OH=13 is prime)
    monkeypatch.setattr(ops, "GEMM_TILE_ELEMS", 1)
    rng = np.random.default_rng(1)
    x = rand(rng, 2, 4, 13, 9)
    for groups in (1, 2):
        w, b = rand_conv(rng, 4, 6, 3, 3, groups)
        r = rand(rng, 2, 6, 13, 9)
        got = ops.conv2d(x, w, b, padding=1, groups=groups, act=1, residual=r)
        assert_close(got, ref.conv2d(x, w, b, 1, 1, groups, 1, r))


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("ceil_mode", [True, False])
def test_max_pool2d_vs_reference(k, ceil_mode):
    x = rand(np.random.default_rng(k), 2, 3, 9, 7)
    np.testing.assert_array_equal(ops.max_pool2d(x, k, ceil_mode=ceil_mode), ref.max_pool2d(x, k, ceil_mode))


@pytest.mark.parametrize("size", [(14, 10), (3, 2), (1, 1), (7, 5), (16, 3)])
@pytest.mark.parametrize("align_corners", [False, True])
def test_interpolate_vs_reference(size, align_corners):
    x = rand(np.random.default_rng(0), 2, 3, 7, 5)
    got = ops.interpolate_bilinear(x, size, align_corners=align_corners)
    assert_close(got, ref.interpolate_bilinear(x, size, align_corners))


# --------------------------------------------------------------------------- 3. torch oracle

SIZES = [(7, 5), (13, 9), (75, 100), (97, 131)]
CONV_KINDS = {  # name: (C_in, C_out, K, groups)
    "dense3x3": (5, 7, 3, 1),
    "pointwise": (5, 7, 1, 1),
    "depthwise": (6, 6, 3, 6),
    "grouped": (6, 9, 3, 3),
}


def torch_conv(x, w, b, stride, padding, groups, act, residual):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    y = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride, padding, 1, groups)
    if residual is not None:
        y = y + torch.from_numpy(residual)
    y = {0: y, 1: F.relu(y), 2: F.relu6(y)}[act]
    return y.numpy()


@pytest.mark.parametrize("kind", CONV_KINDS)
@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("N", [1, 3])
@pytest.mark.parametrize("hw", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_conv2d_vs_torch_geometry(hw, N, stride, padding, kind):
    C_in, C_out, k, groups = CONV_KINDS[kind]
    rng = np.random.default_rng([*hw, N, stride, padding, list(CONV_KINDS).index(kind)])
    x = rand(rng, N, C_in, *hw)
    w, b = rand_conv(rng, C_in, C_out, k, k, groups)
    got = ops.conv2d(x, w, b, stride=stride, padding=padding, groups=groups)
    assert_close(got, torch_conv(x, w, b, stride, padding, groups, 0, None))


@pytest.mark.parametrize("kind", CONV_KINDS)
@pytest.mark.parametrize("has_res", [False, True])
@pytest.mark.parametrize("act", [0, 1, 2])
def test_conv2d_vs_torch_epilogue(act, has_res, kind):
    C_in, C_out, k, groups = CONV_KINDS[kind]
    rng = np.random.default_rng(act + 3 * has_res)
    x = rand(rng, 3, C_in, 13, 9, scale=4.0)  # large enough for relu6 to clip
    w, b = rand_conv(rng, C_in, C_out, k, k, groups)
    r = rand(rng, 3, C_out, 13, 9, scale=4.0) if has_res else None
    got = ops.conv2d(x, w, b, padding=k // 2, groups=groups, act=act, residual=r)
    assert_close(got, torch_conv(x, w, b, 1, k // 2, groups, act, r))


@pytest.mark.parametrize(
    "C_in, C_out, k, groups", [(102, 25, 3, 1), (25, 150, 1, 1), (150, 150, 3, 150)], ids=["3x3", "1x1", "dw"]
)
def test_conv2d_vs_torch_network_layers(C_in, C_out, k, groups):
    # the typical ItNet layers at 1/4 of 90x120; sums of up to 918 products
    rng = np.random.default_rng(C_in)
    x = rand(rng, 1, C_in, 45, 60)
    w, b = rand_conv(rng, C_in, C_out, k, k, groups)
    got = ops.conv2d(x, w, b, padding=k // 2, groups=groups, act=1)
    assert_close(got, torch_conv(x, w, b, 1, k // 2, groups, 1, None), atol=ATOL_REDUCTION)


@pytest.mark.parametrize("ceil_mode", [True, False])
@pytest.mark.parametrize("k", [2, 4, 8])
@pytest.mark.parametrize("N", [1, 3])
@pytest.mark.parametrize("hw", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_max_pool2d_vs_torch(hw, N, k, ceil_mode):
    torch = pytest.importorskip("torch")
    x = rand(np.random.default_rng(k), N, 3, *hw)
    if not ceil_mode and min(hw) < k:
        with pytest.raises(ShapeError, match="smaller than kernel_size"):
            ops.max_pool2d(x, k, ceil_mode=False)
        return
    want = torch.nn.functional.max_pool2d(torch.from_numpy(x), k, k, ceil_mode=ceil_mode).numpy()
    np.testing.assert_array_equal(ops.max_pool2d(x, k, ceil_mode=ceil_mode), want)


RESIZES = [  # (N, C, H, W) -> (OH, OW)
    ((1, 3, 7, 5), (13, 9)),  # up, odd
    ((3, 2, 13, 9), (7, 5)),  # down
    ((1, 2, 97, 131), (75, 100)),  # down, non-integer ratio
    ((3, 2, 9, 7), (9, 20)),  # one axis identity
    ((1, 2, 5, 6), (1, 1)),
    ((1, 11, 45, 60), (360, 480)),  # the network's 8x upsampling
]


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("shape, size", RESIZES, ids=lambda v: "x".join(map(str, v)))
def test_interpolate_vs_torch(shape, size, align_corners):
    torch = pytest.importorskip("torch")
    x = rand(np.random.default_rng(0), *shape)
    want = torch.nn.functional.interpolate(
        torch.from_numpy(x), size=size, mode="bilinear", align_corners=align_corners
    ).numpy()
    assert_close(ops.interpolate_bilinear(x, size, align_corners=align_corners), want)


# --------------------------------------------------------------------------- 4. properties


@pytest.mark.parametrize("groups", [1, 4])
def test_conv_is_linear(groups):
    rng = np.random.default_rng(5)
    x, y = rand(rng, 2, 4, 9, 7), rand(rng, 2, 4, 9, 7)
    w, _ = rand_conv(rng, 4, 4, 3, 3, groups)
    a, c = F32(1.5), F32(-0.25)
    lhs = ops.conv2d(a * x + c * y, w, padding=1, groups=groups)
    rhs = a * ops.conv2d(x, w, padding=1, groups=groups) + c * ops.conv2d(y, w, padding=1, groups=groups)
    assert_close(lhs, rhs)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size", [(40, 24), (3, 2)])
def test_resize_constant_stays_constant(size, align_corners):
    x = np.full((2, 3, 5, 3), 0.7, F32)
    out = ops.interpolate_bilinear(x, size, align_corners=align_corners)
    assert_close(out, np.full(out.shape, 0.7, F32))


def test_align_corners_keeps_corners():
    x = rand(np.random.default_rng(6), 1, 2, 7, 5)
    for size in [(13, 9), (3, 2), (40, 61)]:
        out = ops.interpolate_bilinear(x, size, align_corners=True)
        np.testing.assert_array_equal(out[..., [0, -1], :][..., [0, -1]], x[..., [0, -1], :][..., [0, -1]])


@pytest.mark.parametrize("groups", [1, 6])
@pytest.mark.parametrize("k", [1, 3])
def test_fused_equals_unfused(k, groups):
    rng = np.random.default_rng(7)
    x = rand(rng, 2, 6, 11, 8, scale=4.0)
    w, b = rand_conv(rng, 6, 6, k, k, groups)
    r = rand(rng, 2, 6, 11, 8, scale=4.0)
    plain = ops.conv2d(x, w, b, padding=k // 2, groups=groups)
    for act, fn in [(1, ops.relu), (2, ops.relu6)]:
        fused = ops.conv2d(x, w, b, padding=k // 2, groups=groups, act=act, residual=r)
        assert_close(fused, fn(ops.add(plain, r)))
    ones = np.ones(6, F32)
    assert_close(ops.affine(plain, ones, np.zeros(6, F32), act=2), ops.relu6(plain))


def test_out_argument_and_in_place():
    rng = np.random.default_rng(8)
    x = rand(rng, 1, 3, 6, 5)
    w, b = rand_conv(rng, 3, 4, 3, 3)
    out = np.empty((1, 4, 6, 5), F32)
    assert ops.conv2d(x, w, b, padding=1, out=out) is out
    want = np.maximum(x, 0)
    assert ops.relu(x, out=x) is x
    np.testing.assert_array_equal(x, want)


# --------------------------------------------------------------------------- 5. bad input


def test_conv_channel_mismatch_message():
    x = np.zeros((1, 16, 8, 8), F32)
    w = np.zeros((64, 32, 3, 3), F32)
    msg = r"conv2d: x has C_in=16 but w expects 32 \(x.shape=\(1,16,8,8\), w.shape=\(64,32,3,3\)\)"
    with pytest.raises(ShapeError, match=msg):
        ops.conv2d(x, w)
    with pytest.raises(ShapeError, match="C_in=16 but w expects 8"):
        ops.conv2d(x, np.zeros((8, 4, 3, 3), F32), groups=2)


X = np.zeros((1, 4, 6, 5), F32)
W = np.zeros((4, 4, 3, 3), F32)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ops.conv2d(X[0], W), "x must be 4-D"),
        (lambda: ops.conv2d(X, W[0]), "w must be 4-D"),
        (lambda: ops.conv2d(X.astype(np.float64), W), "float32, got dtype=float64"),
        (lambda: ops.conv2d(X, W.astype(np.float16)), "w must be float32"),
        (lambda: ops.conv2d(X[..., ::2], W), "C-contiguous"),
        (lambda: ops.conv2d(X.tolist(), W), "numpy.ndarray"),
        (lambda: ops.conv2d(X, W, np.zeros(3, F32)), r"b must have the shape of \(C_out,\) \(4,\)"),
        (lambda: ops.conv2d(X, W, residual=X), r"residual must have the shape of the output .*\(1,4,4,3\)"),
        (lambda: ops.conv2d(X, W, padding=1, residual=X[:, :, :, :4].copy()), "residual"),
        (lambda: ops.conv2d(X, W, stride=0), "stride must be an int >= 1"),
        (lambda: ops.conv2d(X, W, padding=-1), "padding"),
        (lambda: ops.conv2d(X, W, padding=1.0), "padding"),
        (lambda: ops.conv2d(X, W, groups=3), "groups=3 must divide"),
        (lambda: ops.conv2d(X, W, act=3), "act must be one of"),
        (lambda: ops.conv2d(X, np.zeros((4, 4, 7, 3), F32)), "input too small"),
        (lambda: ops.conv2d(X, W, padding=1, out=np.zeros((1, 4, 6, 6), F32)), "out must have the shape"),
        (lambda: ops.conv2d(X, W[:, :, :1, :1].copy(), out=X), "out must not overlap x"),
        (lambda: ops.relu(X, out=np.broadcast_to(X, X.shape)), "out must be writeable"),
        (lambda: ops.max_pool2d(X, 0), "kernel_size must be an int >= 1"),
        (lambda: ops.max_pool2d(X, 8, ceil_mode=False), r"\(H, W\)=\(6, 5\) is smaller than kernel_size=8"),
        (lambda: ops.max_pool2d(X, 2, out=np.zeros((1, 4, 3, 2), F32)), "out must have the shape"),
        (lambda: ops.interpolate_bilinear(X, 0), "size must be an int >= 1"),
        (lambda: ops.interpolate_bilinear(X, (4, 5, 6)), "size must be an int or"),
        (lambda: ops.interpolate_bilinear(X, (4, -1)), "size"),
        (lambda: ops.interpolate_bilinear(X.astype(np.float64), 4), "float32"),
        (lambda: ops.affine(X, np.ones(3, F32), np.ones(4, F32)), r"x has C=4 but scale.shape=\(3,\)"),
        (lambda: ops.add(X, X[:, :2].copy()), "b must have the shape of a"),
        (lambda: ops.relu(X.astype(np.float64)), "relu: x must be float32"),
        (lambda: ops.concat([X, X[:, :, :5].copy()]), "outside the channel axis"),
        (lambda: ops.concat([]), "at least one"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_input_raises_shape_error(call, match):
    with pytest.raises(ShapeError, match=match):
        call()


def test_shape_error_is_value_error():
    with pytest.raises(ValueError):
        ops.relu(np.zeros(3, np.int32))
