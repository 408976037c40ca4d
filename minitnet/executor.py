"""The node-by-node executor: runs the graph IR's loop on a backend.

    for n, state, logits in run(graph, FloatBackend(net.params), x):
        ...

``run`` walks ``Graph.phases`` (the loop's one definition): the data block, then
the body for n = 1..last and the head at head iterations, handing the loop-carried
state from phase to phase. A backend supplies what differs between a float
engine and a chip: the conv, the buffers, and the context a block runs in.
Digital ops (affine, max pool, resize, concat) run with the validated exact ops of
``minitnet.ops`` on every backend.

Backends
--------
``FloatBackend``  the float engine's convs (``ops.conv2d`` with folded weights)
``ObserverBackend`` a float backend that shows every conv input to a callback
                  (the emulator's calibration)
The emulator's chip is ``emulator.ChipBackend``. A backend is any object with the
attributes of ``Backend``; subclassing ``FloatBackend`` gives the digital ops.

Memory stays flat: only the loop-carried state and the values of the block being
run are alive. A concat's inputs made in the block by an op in
``backend.placed_ops`` are written straight into their channel slice of the
concat's output (a view; with one image the slice is contiguous), so the concat
copies only the others.
"""

from __future__ import annotations

from typing import Callable, Iterator, Protocol

import numpy as np

from . import ops
from .graph import OPS, Graph, Layer, Node, Phase
from .kernels import blas

__all__ = ["Backend", "FloatBackend", "ObserverBackend", "run", "run_phase", "concat_slots"]


class Backend(Protocol):
    """What ``run`` asks of a backend."""

    #: ops whose output the executor may hand as a channel slice of a concat (``out=``)
    placed_ops: frozenset

    def block(self):
        """A context manager entered around each phase (threads, buffers)."""

    def alloc(self, shape: tuple) -> np.ndarray:
        """A float32 array of ``shape`` for a node's output."""

    def conv(self, node: Node, layer: Layer, x: np.ndarray, residual, out) -> np.ndarray:
        """``act(conv(x) + b + residual)`` of ``layer``, into ``out`` if given."""

    def digital(self, node: Node, layer: Layer | None, args: list, out) -> np.ndarray:
        """A node of any other op (affine, maxpool, resize, concat), into ``out`` if given."""


class FloatBackend:
    """The float engine: convs and digital ops with the exact validated ``minitnet.ops``.

    params: {layer name: (w, b) for a conv, (scale, shift) for an affine}, BN folded
    (``minitnet.weights.fold_weights``).
    """

    placed_ops = frozenset(op for op, spec in OPS.items() if spec.writes_into)

    def __init__(self, params: dict):
        self.params = params

    def block(self):
        # the ops call BLAS from numba code beside ``prange`` loops: a multi-threaded
        # OpenBLAS spinning next to numba's workers is several times slower
        return blas.single_threaded_blas()

    def alloc(self, shape) -> np.ndarray:
        return np.empty(shape, np.float32)

    def conv(self, node, layer, x, residual, out=None):
        w, b = self.params[layer.name]
        return ops.conv2d(x, w, b, stride=layer.stride, padding=layer.padding, groups=layer.groups,
                          act=node.act, residual=residual, out=out)

    def digital(self, node, layer, args, out=None):
        if node.op == "affine":
            s, t = self.params[layer.name]
            return ops.affine(args[0], s, t, act=node.act, out=out)
        if node.op == "maxpool":
            k = node.attrs["kernel_size"]
            return args[0] if k == 1 else ops.max_pool2d(args[0], k, ceil_mode=True, out=out)
        if node.op == "resize":
            return ops.interpolate_bilinear(args[0], node.attrs["size"], align_corners=False, out=out)
        if node.op == "concat":
            return ops.concat(args, out=out)
        raise ValueError(f"FloatBackend: node {node.name!r} has op {node.op!r}; digital ops are "
                         f"affine, maxpool, resize, concat")


class ObserverBackend(FloatBackend):
    """A float backend that calls ``observe(layer_name, x)`` with every conv's input first."""

    def __init__(self, params: dict, observe: Callable[[str, np.ndarray], None]):
        super().__init__(params)
        self.observe = observe

    def conv(self, node, layer, x, residual, out=None):
        self.observe(layer.name, x)
        return super().conv(node, layer, x, residual, out)


def concat_slots(nodes, placeable, channels) -> dict:
    """{value: (concat node, c0, c1)} for the inputs of the concats in ``nodes`` that a node
    of the block makes with an op in ``placeable``: channels c0..c1 of the concat's output.
    Each value gets at most one slot (its first concat; an input listed twice is copied the
    second time). ``channels(name)``: the channel count of a value made outside the block."""
    made = {nd.name: nd for nd in nodes}
    slots: dict = {}
    for nd in nodes:
        if nd.op != "concat":
            continue
        c0 = 0
        for i in nd.inputs:
            p = made.get(i)
            c = p.shape[0] if p is not None else channels(i)
            if p is not None and p.op in placeable and i not in slots and p.shape[1:] == nd.shape[1:]:
                slots[i] = (nd, c0, c0 + c)
            c0 += c
    return slots


def _fill_concat(nd: Node, buf: np.ndarray, args: list, slots: dict, placed: set) -> np.ndarray:
    """Copy into ``buf`` the inputs of concat ``nd`` not already written into their slice."""
    c0 = 0
    for i, a in zip(nd.inputs, args):
        if not (i in placed and slots[i][0] is nd and slots[i][1] == c0):
            buf[:, c0:c0 + a.shape[1]] = a
        c0 += a.shape[1]
    return buf


def run_phase(graph: Graph, backend, phase: Phase, values: dict) -> dict:
    """Run the nodes of ``phase`` in order on ``values`` (the loop values it reads, by the
    names the block uses), which it updates and returns."""
    n, nodes = phase.n, phase.nodes
    slots = concat_slots(nodes, backend.placed_ops, lambda name: values[name].shape[1])
    cats: dict = {}      # concat name -> its output, allocated when its first input is placed
    placed: set = set()  # values already in their concat's slice
    for nd in nodes:
        args = [values[i] for i in nd.inputs]
        if nd.op == "concat" and nd.name in cats:
            values[nd.name] = _fill_concat(nd, cats.pop(nd.name), args, slots, placed)
            continue
        out = None
        if nd.name in slots:
            cat, c0, c1 = slots[nd.name]
            if cat.name not in cats:
                cats[cat.name] = backend.alloc((args[0].shape[0], *cat.shape))
            out = cats[cat.name][:, c0:c1]
            if not out.flags.c_contiguous:  # several images: the kernels want contiguous outputs
                out = None
        layer = graph.layer_of(nd, n)
        if nd.op == "conv":
            res = values[nd.residual] if nd.residual else None
            values[nd.name] = backend.conv(nd, layer, args[0], res, out)
        else:
            values[nd.name] = backend.digital(nd, layer, args, out)
        if out is not None and values[nd.name] is out:
            placed.add(nd.name)
    return values


def run(graph: Graph, backend, x: np.ndarray, last: int | None = None,
        heads: bool = True) -> Iterator[tuple[int, dict, np.ndarray | None]]:
    """The loop of ``graph`` on ``backend``: yields ``(n, state, logits or None)`` for
    n = 1..last (default N).

    x: (B, 3, H, W) float32, prepared (``ItNet.prepare``). state: the loop-carried values
    after iteration n, ``{"state.{l}": (B, C, H_l, W_l)}``; logits: (B, classes, H, W) at
    head iterations (None elsewhere, and everywhere when ``heads`` is False).
    """
    loop = {"image": x}
    pending = None  # (n, state) of the last body phase, until it is yielded
    for ph in graph.phases(last, heads):
        if pending is not None and ph.block == "body":
            yield (*pending, None)
            pending = None
        with backend.block():
            values = run_phase(graph, backend, ph, {name: loop[src] for name, src in ph.reads.items()})
        if ph.block == "head":
            yield ph.n, pending[1], values["logits"]
            pending = None
            continue
        loop = {f"state.{l}": values[v] for l, v in enumerate(ph.result)}
        del values
        if ph.block == "body":
            pending = (ph.n, loop)
    if pending is not None:
        yield (*pending, None)
