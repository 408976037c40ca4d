"""The inference engine: executes the graph IR (``minitnet.graph``) with the Numba ops.

    net = minitnet.load("weights/camvid-shared-f51.h5")
    for n, logits in net.iter_outputs(image):   # anytime: each output as soon as it is ready
        ...
    classes = net.predict(image, n=6)            # stops after iteration 6

Weights are folded at load time: every BatchNorm that follows a conv goes into
that conv's weights and bias; the BN of the max-pooled stem channels and the
BN between iterations become per-channel affines. Memory stays flat: only the
loop-carried state and the values of the block being run are alive.
"""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from . import ops
from .config import ItNetConfig
from .errors import ShapeError
from .graph import Graph, Node, build_graph
from .weights import BN_EPS, WeightFile, read_hdf5

__all__ = ["ItNet", "load", "fold_weights"]


def _bn_scale_shift(t: dict, prefix: str, eps: float, ch: tuple[int, int]):
    a, b = ch
    g = t[f"{prefix}.weight"][a:b].astype(np.float64)
    beta = t[f"{prefix}.bias"][a:b].astype(np.float64)
    mean = t[f"{prefix}.running_mean"][a:b].astype(np.float64)
    var = t[f"{prefix}.running_var"][a:b].astype(np.float64)
    s = g / np.sqrt(var + eps)
    return s, beta - mean * s


def fold_weights(graph: Graph, tensors: dict, bn_eps: float = BN_EPS) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per unique layer of ``graph``: conv -> (w, b) with BN folded; affine -> (scale, shift).

    Folding is done in float64 and rounded once to float32.
    """
    out = {}
    for name, lay in graph.layers.items():
        if lay.kind == "conv":
            w = tensors[f"{name}.weight"].astype(np.float64)
            b = tensors[f"{name}.bias"].astype(np.float64) if lay.bias else np.zeros(lay.out_channels)
            if lay.bn is not None:
                s, shift = _bn_scale_shift(tensors, lay.bn, bn_eps, lay.bn_channels)
                w = w * s[:, None, None, None]
                b = b * s + shift
            out[name] = (np.ascontiguousarray(w, np.float32), np.ascontiguousarray(b, np.float32))
        elif lay.kind == "affine":
            s, shift = _bn_scale_shift(tensors, lay.bn, bn_eps, lay.bn_channels)
            out[name] = (np.ascontiguousarray(s, np.float32), np.ascontiguousarray(shift, np.float32))
        else:  # pragma: no cover - graph.py defines the kinds
            raise ValueError(f"unknown layer kind {lay.kind!r}")
    return out


class ItNet:
    """An ItNet ready to run: configuration, folded weights and input normalisation."""

    def __init__(self, config: ItNetConfig, tensors: dict, norm_scale=(1 / 255,) * 3, norm_offset=(0.0,) * 3,
                 bn_eps: float = BN_EPS, metadata: dict | None = None, source: str | None = None):
        self.config = config
        self.tensors = tensors
        self.norm_scale = np.asarray(norm_scale, np.float32).reshape(3)
        self.norm_offset = np.asarray(norm_offset, np.float32).reshape(3)
        self.bn_eps = bn_eps
        self.metadata = metadata or {}
        self.source = source
        self._graphs: dict[tuple[int, int], Graph] = {}
        # folded parameters do not depend on the input size: fold once on a nominal graph
        self.params = fold_weights(self.graph(64, 64), tensors, bn_eps)

    @classmethod
    def from_file(cls, path) -> "ItNet":
        wf: WeightFile = read_hdf5(path)
        return cls(wf.config, wf.tensors, wf.norm_scale, wf.norm_offset, wf.bn_eps, wf.metadata, os.fspath(path))

    def __repr__(self):
        src = f" from {self.source!r}" if self.source else ""
        return f"ItNet({self.config}{src})"

    # -- graph -------------------------------------------------------------------
    def graph(self, height: int, width: int) -> Graph:
        """The IR for inputs of height x width (cached)."""
        key = (int(height), int(width))
        if key not in self._graphs:
            self._graphs[key] = build_graph(self.config, *key)
        return self._graphs[key]

    # -- input ---------------------------------------------------------------------
    def prepare(self, x) -> np.ndarray:
        """Model input (B, 3, H, W) float32 from a uint8 image (H, W, 3) / batch (B, H, W, 3),
        normalised as in training, or from an already normalised float NCHW array."""
        x = np.asarray(x)
        if x.dtype == np.uint8:
            if x.ndim == 3:
                x = x[None]
            if x.ndim != 4 or x.shape[-1] != 3:
                raise ShapeError(f"ItNet: a uint8 image must be (H, W, 3) RGB or a batch (B, H, W, 3), got shape {x.shape}")
            out = x.astype(np.float32) * self.norm_scale + self.norm_offset
            return np.ascontiguousarray(out.transpose(0, 3, 1, 2))
        if not np.issubdtype(x.dtype, np.floating):
            raise ShapeError(f"ItNet: input must be uint8 (H, W, 3) or float NCHW, got dtype {x.dtype} shape {x.shape}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ShapeError(f"ItNet: float input must be NCHW (B, 3, H, W), got shape {x.shape}")
        if x.shape[0] < 1 or x.shape[2] < 1 or x.shape[3] < 1:
            raise ShapeError(f"ItNet: empty input, shape {x.shape}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.all(np.isfinite(x)):
            raise ShapeError(f"ItNet: input has {int(np.size(x) - np.isfinite(x).sum())} non-finite values (NaN/inf)")
        return x

    # -- running ---------------------------------------------------------------------
    def _run_block(self, graph: Graph, nodes, values: dict, n: int, alias: dict | None = None):
        def get(name):
            if alias and name in alias and name not in values:
                name = alias[name]
            return values[name]

        for nd in nodes:
            args = [get(i) for i in nd.inputs]
            lname = graph.layer_name(nd, n)
            res = get(nd.residual) if nd.residual else None
            values[nd.name] = self._exec(graph, nd, lname, args, res)
        return values

    def _exec(self, graph: Graph, nd: Node, lname, args, res):
        if nd.op == "conv":
            lay = graph.layers[lname]
            w, b = self.params[lname]
            return ops.conv2d(args[0], w, b, stride=lay.stride, padding=lay.padding, groups=lay.groups,
                              act=nd.act, residual=res)
        if nd.op == "affine":
            s, t = self.params[lname]
            return ops.affine(args[0], s, t, act=nd.act)
        if nd.op == "maxpool":
            k = nd.attrs["kernel_size"]
            return args[0] if k == 1 else ops.max_pool2d(args[0], k, ceil_mode=True)
        if nd.op == "resize":
            return ops.interpolate_bilinear(args[0], nd.attrs["size"], align_corners=False)
        if nd.op == "concat":
            return ops.concat(args)
        raise ValueError(f"ItNet: unknown op {nd.op!r} in node {nd.name!r}")

    def _check_n(self, n, what="n"):
        heads = self.config.head_iterations
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) not in heads:
            raise ShapeError(f"ItNet: {what}={n!r} is not an output of this network; outputs are {list(heads)}")
        return int(n)

    def iter_outputs(self, x, last: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(n, logits)`` for every head iteration n <= last, as soon as it is computed.

        logits: (B, C, H, W) float32. ``last`` defaults to the last iteration N; no
        iteration after ``last`` is computed.
        """
        cfg = self.config
        last = cfg.iterations if last is None else last
        if isinstance(last, bool) or not isinstance(last, (int, np.integer)) or not 1 <= last <= cfg.iterations:
            raise ShapeError(f"ItNet: last={last!r} must be an iteration in 1..{cfg.iterations}")
        x = self.prepare(x)
        g = self.graph(x.shape[2], x.shape[3])
        values = self._run_block(g, g.data, {"image": x}, 0)
        state = {f"state.{l}": values[name] for l, name in enumerate(g.init)}
        del values
        heads = set(cfg.head_iterations)
        for n in range(1, last + 1):
            values = self._run_block(g, g.body_nodes(n), dict(state), n, g.first_alias if n == 1 else None)
            state = {f"state.{l}": values[g.first_alias.get(name, name)] if n == 1 and name not in values
                     else values[name] for l, name in enumerate(g.carry)}
            del values
            if n in heads:
                hv = self._run_block(g, g.head, dict(state), n)
                yield n, hv["logits"]

    def logits(self, x, n: int | None = None) -> np.ndarray:
        """Logits (B, C, H, W) of output n (default: the last head)."""
        n = self.config.head_iterations[-1] if n is None else self._check_n(n)
        for k, lg in self.iter_outputs(x, last=n):
            if k == n:
                return lg
        raise AssertionError("unreachable")  # pragma: no cover

    def predict(self, x, n: int | None = None) -> np.ndarray:
        """Class map of output n (default: the last), computing no later iteration.

        Returns (H, W) for a single uint8 image (H, W, 3), else (B, H, W); uint8.
        """
        single = isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 3
        cls = self.logits(x, n).argmax(axis=1).astype(np.uint8 if self.config.classes <= 256 else np.int32)
        return cls[0] if single else cls


def load(path) -> ItNet:
    """Load an ItNet from an HDF5 weights file (``weights/FORMAT.md``); raises WeightsError."""
    return ItNet.from_file(path)
