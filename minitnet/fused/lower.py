"""The fused compiler's last pass: a block of the IR to a list of kernel calls.

``lower_graph(graph, options)`` lowers the four blocks a run executes (the data
block, the body at n = 1 with its mixing skipped, the body at n >= 2, the head)
once per input size into a ``Program``. Each block is lowered by composing the
passes that return data: ``fuse.find_fusions`` (bottleneck chains, pool + affine),
``place.place_values`` (buffers and concat slots), ``select.select_conv`` (the
conv kernel), then one ``LoweredOp`` per kernel call in node order. A block with
a node that has no fused form makes the whole program None (the engine then runs
the node-by-node executor).

LoweredOp kinds (the runtime's table, ``minitnet.fused.kinds``): winograd, taps,
im2col, bottleneck (expand, depthwise, project), affine, pool (a max pool, with
the affine after it when fused), resize, copy (an input into its concat slot).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .. import kernels as K
from ..graph import Graph, Node
from .fuse import Fusions, find_fusions
from .options import FusedOptions
from .place import Placement, place_values
from .select import select_conv

__all__ = ["LoweredOp", "Block", "Program", "lower_block", "lower_graph"]


@dataclass(frozen=True)
class LoweredOp:
    """One fused kernel call: ``kind`` (see the module docstring) on the graph ``nodes`` it
    runs, reading value ``src`` (and residual ``res``), writing value ``dst``; ``info``:
    sizes and tables the runtime needs (layers are resolved at run time: the body's block
    runs for every n)."""

    kind: str
    nodes: tuple
    src: str
    dst: str
    res: str | None = None
    info: dict | None = None


@dataclass(frozen=True)
class Block:
    """A lowered block: ``ops`` in order, padded buffers ``bufs`` {key: (C, H, W)}, value
    placement ``place`` {value: (buffer key, channel offset)}, ``alias`` {value: value}."""

    ops: tuple
    bufs: dict
    place: dict
    alias: dict


@dataclass(frozen=True)
class Program:
    """The lowered blocks of one input size (``body`` is None when N = 1)."""

    data: Block
    first: Block
    body: Block | None
    head: Block

    def blocks(self):
        return [b for b in (self.data, self.first, self.body, self.head) if b is not None]


@dataclass(frozen=True)
class _Ctx:
    """What lowering one node may look at."""

    graph: Graph
    nodes: tuple
    n: int
    shape: dict
    fusions: Fusions
    placement: Placement
    plain: frozenset
    options: FusedOptions


def _lower_conv(c: _Ctx, nd: Node):
    choice = select_conv(c.graph.layer_of(nd, c.n), nd, c.options, nd.inputs[0] in c.plain)
    if choice is None:
        return None
    return [LoweredOp(choice.kind, (nd,), nd.inputs[0], nd.name, nd.residual, choice.info)]


def _lower_affine(c: _Ctx, nd: Node):
    return [LoweredOp("affine", (nd,), nd.inputs[0], nd.name)]


def _lower_maxpool(c: _Ctx, nd: Node):
    if nd.name in c.fusions.alias:
        return []
    # ceil-mode pooling composes exactly: pool_{a*b}(x) = pool_b(pool_a(x)), so a pool of x
    # already computed in the block with a kernel dividing k is a 4x (or more) smaller input
    k, src = nd.attrs["kernel_size"], nd.inputs[0]
    prev = [m for m in c.nodes[:c.nodes.index(nd)] if m.op == "maxpool" and m.inputs == nd.inputs
            and m.name not in c.fusions.alias and k % m.attrs["kernel_size"] == 0 and m.name in c.placement.place]
    if prev:
        m = max(prev, key=lambda m: m.attrs["kernel_size"])
        k, src = k // m.attrs["kernel_size"], m.name
    return [LoweredOp("pool", (nd,), src, nd.name, info=dict(k=k))]


def _lower_resize(c: _Ctx, nd: Node):
    (C, hi, wi), (oh, ow) = c.shape[nd.inputs[0]], nd.attrs["size"]
    tabs = (K.bilinear_table(hi, oh, False), K.bilinear_table(wi, ow, False))
    return [LoweredOp("resize", (nd,), nd.inputs[0], nd.name,
                      info=dict(C=C, tabs=tabs, H=hi, OW=ow, pad_out=0 if nd.name in c.plain else 1))]


def _lower_concat(c: _Ctx, nd: Node):
    return [LoweredOp("copy", (nd,), v, nd.name, info=dict(off=off, C=C))
            for v, off, C in c.placement.copies[nd.name]]


def _lower_group(c: _Ctx, nd: Node):
    """The op of the fused group ``nd`` starts ([] for a node inside a group), or None."""
    if nd.name in c.fusions.pool_affine:
        u = c.fusions.pool_affine[nd.name]
        return [LoweredOp("pool", (nd, u), nd.inputs[0], u.name, info=dict(k=nd.attrs["kernel_size"]))]
    if nd.name in c.fusions.chains:
        e, d, p = c.fusions.chains[nd.name]
        return [LoweredOp("bottleneck", (e, d, p), e.inputs[0], p.name, info=dict(H=p.shape[1], W=p.shape[2],
                                                                                  C_h=e.shape[0]))]
    return [] if nd.name in c.fusions.inner else None


#: op -> the lowering of one node not in a fused group: a list of LoweredOp, or None
LOWER_OP: dict[str, Callable] = {"conv": _lower_conv, "affine": _lower_affine, "maxpool": _lower_maxpool,
                                 "resize": _lower_resize, "concat": _lower_concat}


def lower_block(graph: Graph, nodes, n: int, shapes: dict, outputs: set, plain: set,
                options: FusedOptions) -> Block | None:
    """Lower ``nodes`` (run at iteration n) to fused ops; None if some node has no fused form.

    shapes: (C, H, W) of every value read from outside the block; outputs: values read
    after the block; plain: values produced as plain NCHW arrays (the logits).
    """
    nodes = tuple(nodes)
    shape = dict(shapes, **{nd.name: nd.shape for nd in nodes})
    fusions = find_fusions(graph, nodes, n, outputs, plain)
    placement = place_values(nodes, shape, fusions, plain)
    c = _Ctx(graph, nodes, n, shape, fusions, placement, frozenset(plain), options)
    ops = []
    for nd in nodes:
        if nd.name in fusions.tails:
            continue
        lowered = _lower_group(c, nd)
        if lowered is None:
            rule = LOWER_OP.get(nd.op)
            lowered = None if rule is None else rule(c, nd)
        if lowered is None:
            return None
        ops.extend(lowered)
    return Block(tuple(ops), placement.bufs, placement.place, fusions.alias)


def lower_graph(graph: Graph, options: FusedOptions) -> Program | None:
    """The ``Program`` of ``graph``, or None when a node has no fused lowering."""
    g, cfg = graph, graph.config
    init_shapes = {nd.name: nd.shape for nd in g.data}
    state = {f"state.{l}": init_shapes[v] for l, v in enumerate(g.init)}
    carry = set(g.carry)
    data = lower_block(g, g.data, 0, {"image": (3, g.height, g.width)}, set(g.init), set(), options)
    first_in = dict(state, **{a: state[v] for a, v in g.first_alias.items()})
    first = lower_block(g, g.body_nodes(1), 1, first_in, carry, set(), options)
    body = lower_block(g, g.body_nodes(2), 2, state, carry, set(), options) if cfg.iterations > 1 else None
    head = lower_block(g, g.head, cfg.head_iterations[0], state, {"logits"}, {"logits"}, options)
    if data is None or first is None or head is None or (cfg.iterations > 1 and body is None):
        return None
    return Program(data, first, body, head)
