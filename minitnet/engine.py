"""The inference engine: executes the graph IR (``minitnet.graph``) with the Numba ops.

    net = minitnet.load("weights/camvid-shared-f51.h5")
    for n, logits in net.iter_outputs(image):   # anytime: each output as soon as it is ready
        ...
    classes = net.predict(image, n=6)            # stops after iteration 6

Weights are folded at load time: every BatchNorm that follows a conv goes into
that conv's weights and bias; the BN of the max-pooled stem channels and the
BN between iterations become per-channel affines. Memory stays flat: only the
loop-carried state and the values of the block being run are alive.

Two executors run the same IR. The fused one (``minitnet.fused``, the default)
compiles each input size once into fused kernel calls on padded maps and keeps
its buffers between calls (logits arrays are recycled once the caller has
dropped them; ``ItNet.release()`` frees both); ``ItNet.fused_options`` tunes it.
The node-by-node one (``minitnet.executor.run`` with ``FloatBackend``) walks the
nodes with the validated ``ops`` on plain NCHW arrays; the emulator runs it with
its chip as the backend. ``ItNet.fused = False`` selects it; the tests check that
both agree (``tests/test_fused.py``).
"""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from .config import ItNetConfig
from .errors import ConfigError, ShapeError
from .executor import FloatBackend, run as run_graph
from .fused import FusedOptions, FusedPlan, compile_plan
from .fused.kinds import kernels_of
from .graph import Graph, build_graph
from .inputs import check_logits, prepare_input
from .jit import compile_kernels
from .weights import BN_EPS, WeightFile, fold_weights, read_hdf5

__all__ = ["ItNet", "load"]


class ItNet:
    """An ItNet ready to run: configuration, folded weights and input normalisation."""

    def __init__(self, config: ItNetConfig, tensors: dict, norm_scale=(1 / 255,) * 3, norm_offset=(0.0,) * 3,
                 bn_eps: float = BN_EPS, metadata: dict | None = None, source: str | None = None,
                 fused_options: FusedOptions | None = None, input_ranges: dict | None = None):
        self.config = config
        self.tensors = tensors
        self.norm_scale = np.asarray(norm_scale, np.float32).reshape(3)
        self.norm_offset = np.asarray(norm_offset, np.float32).reshape(3)
        self.bn_eps = bn_eps
        self.metadata = metadata or {}
        self.source = source
        #: {conv layer: learned DAC range} of a hardware-aware trained file (format version 2), else {}
        self.input_ranges = dict(input_ranges or {})
        self._graphs: dict[tuple[int, int], Graph] = {}
        self._plans: dict[tuple[int, int], FusedPlan | None] = {}
        self._prepared: dict[tuple[str, str], tuple] = {}  # conv weights in kernel layout, for every plan
        self.fused_options = FusedOptions() if fused_options is None else fused_options
        #: run the fused plan (True) or the node-by-node reference executor (False)
        self.fused = True
        # folded parameters do not depend on the input size: fold once on a nominal graph
        self.params = fold_weights(self.graph(64, 64), tensors, bn_eps)

    @classmethod
    def from_file(cls, path) -> "ItNet":
        wf: WeightFile = read_hdf5(path)
        return cls(wf.config, wf.tensors, wf.norm_scale, wf.norm_offset, wf.bn_eps, wf.metadata, os.fspath(path),
                   input_ranges=wf.input_ranges)

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
    def prepare(self, x, layout: str | None = None) -> np.ndarray:
        """Model input (B, 3, H, W) float32: ``minitnet.inputs.prepare_input`` (layouts, bounds)."""
        return prepare_input(x, self.norm_scale, self.norm_offset, layout)

    # -- running ---------------------------------------------------------------------
    @property
    def fused_options(self) -> FusedOptions:
        """The fused compiler's tuning (``minitnet.fused.FusedOptions``); setting it drops the
        compiled plans (the next call compiles with the new options)."""
        return self._fused_options

    @fused_options.setter
    def fused_options(self, options: FusedOptions):
        if not isinstance(options, FusedOptions):
            raise ConfigError(f"ItNet.fused_options: expected a minitnet.fused.FusedOptions, got "
                              f"{type(options).__name__} ({options!r})")
        self._fused_options = options
        self._plans.clear()

    def fused_plan(self, graph: Graph) -> FusedPlan | None:
        """The fused plan of ``graph`` (compiled once per size), or None when a node has no
        fused lowering (the node-by-node executor then runs it)."""
        key = (graph.height, graph.width)
        if key not in self._plans:
            plan = compile_plan(graph, self.params, self._prepared, self.fused_options)
            if plan is not None:  # its kernels, before the first run (a cold start: in parallel processes)
                compile_kernels(kernels_of(plan.program))
            self._plans[key] = plan
        return self._plans[key]

    def release(self):
        """Free the buffers kept between calls (per input size: the fused plan's workspace and
        the logits arrays the caller has dropped); the next call allocates them again."""
        self._plans.clear()

    def check_output(self, n, what="n") -> int:
        """``n`` as an int if it is an output (head iteration) of this network; ShapeError otherwise."""
        heads = self.config.head_iterations
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) not in heads:
            raise ShapeError(f"ItNet: {what}={n!r} is not an output of this network; outputs are {list(heads)}")
        return int(n)

    def _iter_heads(self, x, last, with_state: bool):
        """(n, state or None, logits) at every head iteration n <= last, from the fused plan
        when ``fused`` and the graph has one, else from the node-by-node executor."""
        x = self.prepare(x)
        g = self.graph(x.shape[2], x.shape[3])
        last = self.config.check_last(g.iterations if last is None else last)
        plan = self.fused_plan(g) if self.fused else None
        if plan is not None:
            yield from plan.run(x, last, with_state)
            return
        for n, state, logits in run_graph(g, FloatBackend(self.params), x, last):
            if logits is not None:
                yield n, state, logits

    def iter_outputs(self, x, last: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(n, logits)`` for every head iteration n <= last, as soon as it is computed.

        logits: (B, C, H, W) float32. ``last`` defaults to the last iteration N; no
        iteration after ``last`` is computed.
        """
        for n, _, logits in self._iter_heads(x, last, False):
            yield n, logits

    def iter_states(self, x, last: int | None = None):
        """Yield ``(n, state, logits)`` at every head iteration n <= last: the loop-carried
        state after iteration n as ``{"state.{l}": (B, C, H_l, W_l)}`` (views valid until the
        next step; copy to keep them) and the logits, from the fused plan when the graph has
        one, else from the node-by-node executor (the emulator's float reference)."""
        yield from self._iter_heads(x, last, True)

    def logits(self, x, n: int | None = None) -> np.ndarray:
        """Logits (B, C, H, W) of output n (default: the last head)."""
        n = self.config.head_iterations[-1] if n is None else self.check_output(n)
        for k, lg in self.iter_outputs(x, last=n):
            if k == n:
                return lg
        raise AssertionError("unreachable")  # pragma: no cover

    def predict(self, x, n: int | None = None) -> np.ndarray:
        """Class map of output n (default: the last), computing no later iteration.

        Returns (H, W) for a single uint8 image (H, W, 3), else (B, H, W); uint8.
        """
        single = isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 3
        n = self.config.head_iterations[-1] if n is None else self.check_output(n)
        logits = check_logits(self.logits(x, n), n, "ItNet.predict")
        cls = logits.argmax(axis=1).astype(np.uint8 if self.config.classes <= 256 else np.int32)
        return cls[0] if single else cls


def load(path) -> ItNet:
    """Load an ItNet from an HDF5 weights file (``weights/FORMAT.md``); raises WeightsError."""
    return ItNet.from_file(path)
