"""Numba kernels: pure ``@njit(cache=True)`` functions on C-contiguous float32 arrays.

They write into a caller-provided ``out``, never validate and never allocate
large buffers (scratch comes from the caller). Use them through ``minitnet.ops``,
which checks the inputs once. Names follow ``<op>_<layout>[_<variant>]``.

The fused engine (``minitnet.fused``) uses three more modules directly (not re-exported):
``padded`` (kernels on maps with a one-pixel zero border, layout ``nchwp``),
``winograd`` (3x3 convs by F(2x2, 3x3)) and ``blas`` (sgemm with strides and
offsets from numba, and the BLAS thread guard).
"""
from minitnet.kernels.conv import conv2d_nchw_1x1, conv2d_nchw_gemm, im2col_nchw
from minitnet.kernels.depthwise import depthwise_conv2d_nchw
from minitnet.kernels.elementwise import act_flat, add_flat, affine_nchw
from minitnet.kernels.pool import max_pool2d_nchw
from minitnet.kernels.resize import bilinear_table, upsample_bilinear_nchw

__all__ = [
    "act_flat",
    "add_flat",
    "affine_nchw",
    "bilinear_table",
    "conv2d_nchw_1x1",
    "conv2d_nchw_gemm",
    "depthwise_conv2d_nchw",
    "im2col_nchw",
    "max_pool2d_nchw",
    "upsample_bilinear_nchw",
]
