"""Naive NumPy reference operators: slow, loop-by-loop, obviously correct.

They mirror ``minitnet.ops`` (and torch.nn.functional) in float64 so the fast
kernels can be checked against them without torch. Keep them simple; speed
does not matter here, only that a reader can verify each line.
"""
import math

import numpy as np


def conv2d(x, w, b=None, stride=1, padding=0, groups=1, act=0, residual=None):
    """act(conv2d(x, w) + b + residual) with explicit loops over every output and tap.

    x: (N, C_in, H, W)  w: (C_out, C_in//groups, KH, KW)  -> (N, C_out, OH, OW)
    """
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    N, C_in, H, W = x.shape
    C_out, Cig, KH, KW = w.shape
    Cog = C_out // groups
    OH = (H + 2 * padding - KH) // stride + 1
    OW = (W + 2 * padding - KW) // stride + 1
    xp = np.zeros((N, C_in, H + 2 * padding, W + 2 * padding))
    xp[:, :, padding:padding + H, padding:padding + W] = x
    out = np.zeros((N, C_out, OH, OW))
    for n in range(N):
        for co in range(C_out):
            g = co // Cog
            for oy in range(OH):
                for ox in range(OW):
                    s = 0.0
                    for ci in range(Cig):
                        for ky in range(KH):
                            for kx in range(KW):
                                s += w[co, ci, ky, kx] * xp[n, g * Cig + ci, oy * stride + ky, ox * stride + kx]
                    out[n, co, oy, ox] = s
    if b is not None:
        out += np.asarray(b, np.float64)[None, :, None, None]
    if residual is not None:
        out += residual
    return activation(out, act)


def activation(x, act):
    """0 none, 1 relu, 2 relu6."""
    if act >= 1:
        x = np.maximum(x, 0)
    if act == 2:
        x = np.minimum(x, 6)
    return x


def max_pool2d(x, k, ceil_mode=True):
    """Max over k x k windows with stride k, no padding; ceil_mode keeps the last partial window."""
    N, C, H, W = x.shape
    rnd = math.ceil if ceil_mode else math.floor
    OH, OW = rnd(H / k), rnd(W / k)
    out = np.empty((N, C, OH, OW), x.dtype)
    for n in range(N):
        for c in range(C):
            for oy in range(OH):
                for ox in range(OW):
                    out[n, c, oy, ox] = x[n, c, oy * k:oy * k + k, ox * k:ox * k + k].max()
    return out


def source_coord(d, in_size, out_size, align_corners):
    """The (real-valued) input coordinate sampled by output index d along one axis."""
    if align_corners:
        return d * (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    return max((d + 0.5) * in_size / out_size - 0.5, 0.0)


def interpolate_bilinear(x, size, align_corners=False):
    """Bilinear resize to size=(OH, OW), one output pixel at a time (no antialiasing)."""
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    OH, OW = size
    out = np.empty((N, C, OH, OW))
    for oy in range(OH):
        sy = source_coord(oy, H, OH, align_corners)
        y0 = min(int(math.floor(sy)), H - 1)
        y1 = min(y0 + 1, H - 1)
        wy = sy - y0
        for ox in range(OW):
            sx = source_coord(ox, W, OW, align_corners)
            x0 = min(int(math.floor(sx)), W - 1)
            x1 = min(x0 + 1, W - 1)
            wx = sx - x0
            top = x[:, :, y0, x0] * (1 - wx) + x[:, :, y0, x1] * wx
            bottom = x[:, :, y1, x0] * (1 - wx) + x[:, :, y1, x1] * wx
            out[:, :, oy, ox] = top * (1 - wy) + bottom * wy
    return out
