"""Validated NCHW float32 operators: check once, allocate ``out`` if needed, call a kernel.

Every array argument must be a C-contiguous ``np.float32`` ndarray; nothing is
converted silently. Bad input raises :class:`minitnet.errors.ShapeError` naming
what was received and what was expected. Argument names follow PyTorch.
``act`` selects the fused activation: 0 none, 1 relu, 2 relu6.

``out`` (when given) must have the result's shape and must not overlap the
inputs of a conv, pool or resize; elementwise ops (``relu``, ``relu6``, ``add``,
``affine``) may write in place (``out`` is an input).

Threads: numba ``prange`` kernels and BLAS (dense convs) each use all cores
and spin-wait between calls; on a machine whose cores are busy with other work
pin them (e.g. ``NUMBA_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``) or performance
collapses.
"""
import functools
import operator

import numba
import numpy as np

from minitnet import kernels as K
from minitnet.errors import ShapeError
from minitnet.kernels.resize import resize_bands

__all__ = [
    "add",
    "affine",
    "concat",
    "conv2d",
    "interpolate_bilinear",
    "max_pool2d",
    "relu",
    "relu6",
]

ACTS = {0: "none", 1: "relu", 2: "relu6"}
#: im2col tile size in float32 elements (1 MiB): keeps the unfolded tile in L2.
GEMM_TILE_ELEMS = 1 << 18
_NO_RESIDUAL = np.zeros((1, 1, 1, 1), np.float32)


def _fmt(shape):
    """(1, 16, 56, 56) -> '(1,16,56,56)'; (5,) -> '(5,)'."""
    return "(" + ",".join(str(int(s)) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _check_array(op, name, a, ndim=None):
    """Require a C-contiguous float32 ndarray (of rank ``ndim`` if given)."""
    if not isinstance(a, np.ndarray):
        raise ShapeError(f"{op}: {name} must be a numpy.ndarray, got {type(a).__name__}")
    if ndim is not None and a.ndim != ndim:
        layout = {1: "(C,)", 4: "(N, C, H, W)"}.get(ndim, f"{ndim}-D")
        raise ShapeError(
            f"{op}: {name} must be {ndim}-D {layout}, got ndim={a.ndim} ({name}.shape={_fmt(a.shape)})"
        )
    if a.dtype != np.float32:
        raise ShapeError(
            f"{op}: {name} must be float32, got dtype={a.dtype} ({name}.shape={_fmt(a.shape)}); "
            f"hint: {name}.astype(np.float32)"
        )
    if not a.flags.c_contiguous:
        raise ShapeError(
            f"{op}: {name} must be C-contiguous, got strides={a.strides} ({name}.shape={_fmt(a.shape)}); "
            f"hint: np.ascontiguousarray({name})"
        )
    return a


def _check_int(op, name, v, lo):
    """Require an integer (not bool) >= lo."""
    if isinstance(v, (bool, np.bool_)):
        raise ShapeError(f"{op}: {name} must be an int >= {lo}, got {v!r}")
    try:
        v = operator.index(v)
    except TypeError:
        raise ShapeError(f"{op}: {name} must be an int >= {lo}, got {v!r} ({type(v).__name__})") from None
    if v < lo:
        raise ShapeError(f"{op}: {name} must be an int >= {lo}, got {v}")
    return v


def _check_act(op, act):
    if isinstance(act, (bool, np.bool_)) or act not in ACTS:
        raise ShapeError(f"{op}: act must be one of 0 (none), 1 (relu), 2 (relu6), got {act!r}")
    return int(act)


def _check_same_shape(op, name, a, ref_name, shape):
    if a.shape != tuple(shape):
        raise ShapeError(
            f"{op}: {name} must have the shape of {ref_name} {_fmt(shape)}, got {name}.shape={_fmt(a.shape)}"
        )


def _get_out(op, out, shape, inputs=()):
    """Allocate ``out`` of ``shape`` or validate the given one (and that it overlaps none of ``inputs``)."""
    if out is None:
        return np.empty(shape, np.float32)
    _check_array(op, "out", out, len(shape))
    if not out.flags.writeable:
        raise ShapeError(f"{op}: out must be writeable (out.shape={_fmt(out.shape)}); pass a fresh array")
    _check_same_shape(op, "out", out, "the result", shape)
    for name, a in inputs:
        if a is not None and np.may_share_memory(out, a):
            raise ShapeError(f"{op}: out must not overlap {name} (out.shape={_fmt(out.shape)}); pass a fresh array")
    return out


def _conv_out_size(H, W, KH, KW, stride, padding, x, w):
    OH = (H + 2 * padding - KH) // stride + 1
    OW = (W + 2 * padding - KW) // stride + 1
    if OH < 1 or OW < 1:
        raise ShapeError(
            f"conv2d: input too small: (H, W)=({H}, {W}) with padding={padding} is smaller than the "
            f"kernel (KH, KW)=({KH}, {KW}) (x.shape={_fmt(x.shape)}, w.shape={_fmt(w.shape)})"
        )
    return OH, OW


def conv2d(x, w, b=None, *, stride=1, padding=0, groups=1, act=0, residual=None, out=None):
    """2-D convolution with a fused epilogue: ``out = act(conv2d(x, w, stride, padding, groups) + b + residual)``.

    Same semantics as ``torch.nn.functional.conv2d`` (square stride and padding,
    zero padding, no dilation). Dispatch: 1x1/stride 1/padding 0 -> ``np.dot``
    per image; groups == C_in == C_out -> direct depthwise kernel; otherwise
    tiled im2col + sgemm (see ``minitnet.kernels.conv``).

    Shapes:
      x: (N, C_in, H, W)  w: (C_out, C_in//groups, KH, KW)  b: (C_out,) or None
      residual: (N, C_out, OH, OW) or None
      out: (N, C_out, OH, OW), OH = (H + 2*padding - KH)//stride + 1, OW likewise
    """
    op = "conv2d"
    _check_array(op, "x", x, 4)
    _check_array(op, "w", w, 4)
    stride = _check_int(op, "stride", stride, 1)
    padding = _check_int(op, "padding", padding, 0)
    groups = _check_int(op, "groups", groups, 1)
    act = _check_act(op, act)
    N, C_in, H, W = x.shape
    C_out, Cig, KH, KW = w.shape
    shapes = f"(x.shape={_fmt(x.shape)}, w.shape={_fmt(w.shape)})"
    if C_in % groups or C_out % groups:
        raise ShapeError(f"{op}: groups={groups} must divide C_in={C_in} and C_out={C_out} {shapes}")
    if Cig * groups != C_in:
        hint = "" if groups == 1 else f" (w.shape[1]={Cig} x groups={groups})"
        raise ShapeError(f"{op}: x has C_in={C_in} but w expects {Cig * groups}{hint} {shapes}")
    if min(C_out, Cig, KH, KW) < 1:
        raise ShapeError(f"{op}: w must have C_out, C_in//groups, KH, KW >= 1 {shapes}")
    OH, OW = _conv_out_size(H, W, KH, KW, stride, padding, x, w)
    oshape = (N, C_out, OH, OW)
    if b is None:
        b = np.zeros(C_out, np.float32)
    else:
        _check_array(op, "b", b, 1)
        _check_same_shape(op, "b", b, "(C_out,)", (C_out,))
    has_res = residual is not None
    if has_res:
        _check_array(op, "residual", residual, 4)
        _check_same_shape(op, "residual", residual, "the output (N, C_out, OH, OW)", oshape)
    else:
        residual = _NO_RESIDUAL
    out = _get_out(op, out, oshape, [("x", x), ("residual", residual if has_res else None)])

    if groups == C_in == C_out and groups > 1:
        K.depthwise_conv2d_nchw(x, w, b, residual, has_res, stride, padding, act, out)
    elif groups == 1 and KH == KW == 1 and stride == 1 and padding == 0:
        K.conv2d_nchw_1x1(x, w.reshape(C_out, C_in), b, residual, has_res, act, out)
    else:
        k = Cig * KH * KW
        rows = max(1, min(OH, GEMM_TILE_ELEMS // (k * OW)))
        col = np.empty(k * rows * OW, np.float32)
        acc = np.empty((C_out // groups) * rows * OW, np.float32)
        w3 = w.reshape(groups, C_out // groups, k)
        K.conv2d_nchw_gemm(x, w3, b, residual, has_res, KH, KW, stride, padding, act, col, acc, out)
    return out


def max_pool2d(x, kernel_size, *, ceil_mode=True, out=None):
    """Max pooling with stride = kernel_size and no padding, like
    ``torch.nn.functional.max_pool2d(x, k, k, ceil_mode=ceil_mode)``.

    With ``ceil_mode`` the last partial window (clipped to the input) counts.
    ``kernel_size`` 1 is a copy. NaN propagates.

    Shapes:
      x: (N, C, H, W)  out: (N, C, OH, OW), OH = ceil(H/k) if ceil_mode else H//k, OW likewise
    """
    op = "max_pool2d"
    _check_array(op, "x", x, 4)
    k = _check_int(op, "kernel_size", kernel_size, 1)
    N, C, H, W = x.shape
    if ceil_mode:
        OH, OW = -(-H // k), -(-W // k)
    else:
        OH, OW = H // k, W // k
    if OH < 1 or OW < 1:
        raise ShapeError(
            f"{op}: input (H, W)=({H}, {W}) is smaller than kernel_size={k} with ceil_mode={ceil_mode} "
            f"(x.shape={_fmt(x.shape)}); hint: ceil_mode=True keeps the partial window"
        )
    out = _get_out(op, out, (N, C, OH, OW), [("x", x)])
    if k == 1:
        np.copyto(out, x)
    else:
        K.max_pool2d_nchw(x, k, out)
    return out


def _check_size(op, size):
    if isinstance(size, (bool, np.bool_)):
        raise ShapeError(f"{op}: size must be an int or (OH, OW) of ints >= 1, got {size!r}")
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise ShapeError(f"{op}: size must be an int or (OH, OW), got {size!r} (len {len(size)})")
        return tuple(_check_int(op, "size", s, 1) for s in size)
    s = _check_int(op, "size", size, 1)
    return s, s


@functools.lru_cache(maxsize=64)
def _bilinear_table(in_size, out_size, align_corners):
    """``K.bilinear_table``, kept per (in, out, align_corners): a network resizes between the same
    few sizes at every iteration (private: the arrays are shared, and only read)."""
    return K.bilinear_table(in_size, out_size, align_corners)


def interpolate_bilinear(x, size, *, align_corners=False, out=None):
    """Bilinear resize to ``size``, exactly ``torch.nn.functional.interpolate(x, size=size,
    mode="bilinear", align_corners=align_corners)`` (no antialiasing), up or down.

    Per axis, output index d, input size I, output size O (float32, as torch):
      align_corners=True:  src = d * (I - 1) / (O - 1)   (0 when O == 1)
      align_corners=False: src = max((d + 0.5) * I / O - 0.5, 0)
    See ``minitnet.kernels.resize`` for the weights.

    Shapes:
      x: (N, C, H, W)  size: int or (OH, OW)  out: (N, C, OH, OW)
    """
    op = "interpolate_bilinear"
    _check_array(op, "x", x, 4)
    OH, OW = _check_size(op, size)
    N, C, H, W = x.shape
    if H < 1 or W < 1:
        raise ShapeError(f"{op}: x must have H, W >= 1, got x.shape={_fmt(x.shape)}")
    out = _get_out(op, out, (N, C, OH, OW), [("x", x)])
    ac = bool(align_corners)
    iy0, iy1, ly0, ly1 = _bilinear_table(H, OH, ac)
    ix0, ix1, lx0, lx1 = _bilinear_table(W, OW, ac)
    S = resize_bands(N * C, OH, numba.get_num_threads())
    K.upsample_bilinear_nchw(x, iy0, iy1, ly0, ly1, ix0, ix1, lx0, lx1, S, out)
    return out


def affine(x, scale, shift, *, act=0, out=None):
    """Per-channel ``out = act(x * scale[c] + shift[c])`` (a folded BatchNorm); ``out`` may be ``x``.

    Shapes:
      x: (N, C, H, W)  scale: (C,)  shift: (C,)  out: (N, C, H, W)
    """
    op = "affine"
    _check_array(op, "x", x, 4)
    C = x.shape[1]
    for name, v in (("scale", scale), ("shift", shift)):
        _check_array(op, name, v, 1)
        if v.shape != (C,):
            raise ShapeError(f"{op}: x has C={C} but {name}.shape={_fmt(v.shape)}, expected ({C},)")
    act = _check_act(op, act)
    out = _get_out(op, out, x.shape)
    K.affine_nchw(x, scale, shift, act, out)
    return out


def _act(op, x, act, out):
    _check_array(op, "x", x)
    out = _get_out(op, out, x.shape)
    K.act_flat(x.reshape(-1), act, out.reshape(-1))
    return out


def relu(x, out=None):
    """``out = max(x, 0)`` elementwise, any shape; ``out`` may be ``x``."""
    return _act("relu", x, 1, out)


def relu6(x, out=None):
    """``out = min(max(x, 0), 6)`` elementwise, any shape; ``out`` may be ``x``."""
    return _act("relu6", x, 2, out)


def add(a, b, out=None):
    """``out = a + b`` elementwise (same shape, no broadcasting); ``out`` may be ``a`` or ``b``."""
    op = "add"
    _check_array(op, "a", a)
    _check_array(op, "b", b)
    _check_same_shape(op, "b", b, "a", a.shape)
    out = _get_out(op, out, a.shape)
    K.add_flat(a.reshape(-1), b.reshape(-1), 0, out.reshape(-1))
    return out


def concat(xs, out=None):
    """Concatenate NCHW arrays along the channel axis (``torch.cat(xs, dim=1)``).

    Shapes:
      xs[i]: (N, C_i, H, W)  out: (N, sum C_i, H, W)
    """
    op = "concat"
    xs = list(xs)
    if not xs:
        raise ShapeError(f"{op}: xs must hold at least one array, got an empty sequence")
    for i, x in enumerate(xs):
        _check_array(op, f"xs[{i}]", x, 4)
        if (x.shape[0], *x.shape[2:]) != (xs[0].shape[0], *xs[0].shape[2:]):
            raise ShapeError(
                f"{op}: xs[{i}].shape={_fmt(x.shape)} differs from xs[0].shape={_fmt(xs[0].shape)} "
                f"outside the channel axis (N, H, W must match)"
            )
    N, _, H, W = xs[0].shape
    out = _get_out(op, out, (N, sum(x.shape[1] for x in xs), H, W), [(f"xs[{i}]", x) for i, x in enumerate(xs)])
    c0 = 0
    for x in xs:  # a channel block of each image is one contiguous memcpy
        out[:, c0:c0 + x.shape[1]] = x
        c0 += x.shape[1]
    return out
