"""The runtime's op table: for each kind of lowered op, the scratch it needs and its kernel call.

``KINDS[op.kind]`` is an ``OpKind(run, scratch, kernels)``:

- ``run(plan, op, n, src, dst, res, ws, T)`` calls the kernel of ``op`` at iteration n:
  ``src`` (x, channel offset) and ``dst`` (out, channel offset) are padded buffers,
  ``res`` the residual's (array, offset) or None, ``ws`` the worker scratch arrays,
  ``T`` the numba workers; weights in kernel layout come from ``plan.weights``;
- ``scratch(info, T, options)`` -> {scratch name: float32 elements per worker};
- ``kernels``: the parallel kernels ``run`` calls (``kernels_of(program)``: what to compile).

The band rules (``*_bands``) are public so the benchmarks cut work as the engine does.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from ..kernels import padded as P
from ..kernels import winograd as WG
from ..kernels.resize import resize_bands
from .options import FusedOptions

__all__ = ["OpKind", "KINDS", "kernels_of", "nbands", "taps_bands", "winograd_bands", "im2col_bands",
           "bottleneck_bands"]

_NO_AFFINE = np.zeros(1, np.float32)


def nbands(H: int, rows: int, T: int) -> int:
    """Row bands of about ``rows`` rows over H rows, a multiple of T workers where H allows."""
    nb = max(1, -(-H // max(1, rows)))
    if T > 1:
        nb = T * -(-nb // T)
    return max(1, min(nb, H))


def taps_bands(H: int, W: int, T: int, options: FusedOptions) -> int:
    """Row bands of a conv run as one sgemm per tap (output H x W)."""
    return nbands(H, max(1, options.taps_run_pixels // (W + 2)), T)


def winograd_bands(H: int, W: int, T: int, options: FusedOptions) -> int:
    """Bands of tile rows of a Winograd conv (output H x W, tiles of 2x2)."""
    TH, TW = (H + 1) // 2, (W + 1) // 2
    return nbands(TH, options.winograd_band_tiles // TW, T)


def im2col_bands(OH: int, OW: int, K: int, T: int, options: FusedOptions) -> int:
    """Row bands of an im2col conv (output OH x OW, K = C_in*KH*KW unfolded rows)."""
    return nbands(OH, options.im2col_scratch_elems // (K * (OW + 2)), T)


def bottleneck_bands(H: int, T: int, options: FusedOptions) -> int:
    """Row bands of a fused bottleneck over H rows."""
    return nbands(H, options.bottleneck_band_rows, T)


class OpKind(NamedTuple):
    """A lowered-op kind: ``run`` its kernel call, ``scratch`` its scratch per worker (module docstring),
    ``kernels`` the parallel kernels ``run`` calls (compiled ahead of a plan's first run)."""

    run: Callable
    scratch: Callable
    kernels: tuple = ()


def _no_scratch(info, T, options) -> dict:
    return {}


def _run_winograd(plan, op, n, src, dst, res, ws, T):
    nd, i = op.nodes[0], op.info
    U, b = plan.weights("winograd", plan.graph.layer_name(nd, n))
    (x, cx), (out, co) = src, dst
    r, cr = res if res is not None else (out, 0)
    WG.conv2d_nchwp_winograd(x, cx, U, b, r, cr, res is not None, nd.act, out, co,
                             winograd_bands(i["H"], i["W"], T, plan.options), (ws["wt"], ws["V"], ws["Mw"]), T)


def _scratch_winograd(i, T, options) -> dict:
    TH, TW = (i["H"] + 1) // 2, (i["W"] + 1) // 2
    tiles = -(-TH // winograd_bands(i["H"], i["W"], T, options)) * TW
    return {"V": 16 * i["C_in"] * tiles, "Mw": 16 * i["C_out"] * tiles, "wt": 4 * (i["W"] + 4)}


def _run_taps(plan, op, n, src, dst, res, ws, T):
    nd, i = op.nodes[0], op.info
    wt, b = plan.weights("taps", plan.graph.layer_name(nd, n))
    (x, cx), (out, co) = src, dst
    r, cr = res if res is not None else (out, 0)
    P.conv2d_nchwp_taps(x, cx, wt, i["offs"], b, r, cr, res is not None, nd.act, out, co,
                        taps_bands(i["H"], i["W"], T, plan.options), T)


def _run_im2col(plan, op, n, src, dst, res, ws, T):
    nd, i = op.nodes[0], op.info
    lay = plan.graph.layer_of(nd, n)
    w2, b = plan.weights("flat", lay.name)
    (x, cx), (out, co) = src, dst
    P.conv2d_nchwp_im2col(x, cx, w2, (*lay.kernel_size, lay.stride, lay.padding), b, nd.act, out, co,
                          im2col_bands(i["H"], i["W"], i["K"], T, plan.options), ws["col"], T)


def _scratch_im2col(i, T, options) -> dict:
    nb = im2col_bands(i["H"], i["W"], i["K"], T, options)
    return {"col": i["K"] * -(-i["H"] // nb) * (i["W"] + 2)}


def _run_bottleneck(plan, op, n, src, dst, res, ws, T):
    (e, be), (d, bd), (p, bp) = (plan.weights("flat", plan.graph.layer_name(m, n)) for m in op.nodes)
    P.bottleneck_nchwp(src[0], e, be, d, bd, p, bp, dst[0], bottleneck_bands(op.info["H"], T, plan.options),
                       ws["hid"], ws["dwo"], T)


def _scratch_bottleneck(i, T, options) -> dict:
    rmax = -(-i["H"] // bottleneck_bands(i["H"], T, options))
    return {"hid": i["C_h"] * (rmax + 2) * (i["W"] + 2), "dwo": i["C_h"] * rmax * (i["W"] + 2)}


def _run_affine(plan, op, n, src, dst, res, ws, T):
    nd = op.nodes[0]
    s, t = plan.params[plan.graph.layer_name(nd, n)]
    P.affine_nchwp(src[0], src[1], s, t, nd.act, dst[0], dst[1], T)


def _run_pool(plan, op, n, src, dst, res, ws, T):
    nd, k = op.nodes[0], op.info["k"]
    if len(op.nodes) == 2:  # max pool + the folded BN after it
        s, t = plan.params[plan.graph.layer_name(op.nodes[1], n)]
        P.max_pool2d_nchwp(src[0], src[1], nd.shape[0], k, s, t, op.nodes[1].act, True, dst[0], dst[1], T)
    else:
        P.max_pool2d_nchwp(src[0], src[1], nd.shape[0], k, _NO_AFFINE, _NO_AFFINE, 0, False, dst[0], dst[1], T)


def _run_resize(plan, op, n, src, dst, res, ws, T):
    i = op.info
    ytab, xtab = i["tabs"]
    S = resize_bands(src[0].shape[0] * i["C"], len(ytab[0]), T)
    P.resize_bilinear_nchwp(src[0], src[1], i["C"], ytab, xtab, dst[0], dst[1], i["pad_out"], S, ws["rs"], T)


def _scratch_resize(i, T, options) -> dict:
    return {"rs": i["H"] * i["OW"]}


def _run_copy(plan, op, n, src, dst, res, ws, T):
    """An input into its concat slot (borders are zero on both sides)."""
    (x, cx), (out, co), C = src, dst, op.info["C"]
    o = co + op.info["off"]
    out[:, o:o + C] = x[:, cx:cx + C]


#: lowered-op kind -> OpKind(run, scratch, kernels)
KINDS: dict[str, OpKind] = {
    "winograd": OpKind(_run_winograd, _scratch_winograd, (WG.conv2d_nchwp_winograd,)),
    "taps": OpKind(_run_taps, _no_scratch, (P.conv2d_nchwp_taps,)),
    "im2col": OpKind(_run_im2col, _scratch_im2col, (P.conv2d_nchwp_im2col,)),
    "bottleneck": OpKind(_run_bottleneck, _scratch_bottleneck, (P.bottleneck_nchwp,)),
    "affine": OpKind(_run_affine, _no_scratch, (P.affine_nchwp,)),
    "pool": OpKind(_run_pool, _no_scratch, (P.max_pool2d_nchwp,)),
    "resize": OpKind(_run_resize, _scratch_resize, (P.resize_bilinear_nchwp,)),
    "copy": OpKind(_run_copy, _no_scratch),
}


def kernels_of(program) -> list:
    """The parallel kernels the ops of a lowered ``Program`` call, each once."""
    return list(dict.fromkeys(k for b in program.blocks() for op in b.ops for k in KINDS[op.kind].kernels))
