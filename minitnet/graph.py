"""The graph IR: an ItNet as a data block, ONE iterative body run in a loop, and heads.

This is the one representation that the engine executes, the metrics count
and the emulator maps onto crossbar tiles. It is built for a configuration
and an input size by ``build_graph(config, height, width)``.

Structure
---------
``Graph.data``  nodes of the data block, run once per image. Reads the value
                ``"image"`` (B, 3, H, W); its outputs ``Graph.init`` (``"scale.{l}"``)
                are the state entering iteration 1.
``Graph.body``  nodes of the iterative block, run for n = 1..N (the loop). Reads
                the loop-carried values ``"state.{l}"``; after the body,
                ``state.{l} <- Graph.carry[l]``. Nodes with ``first=False`` (the
                between-iteration BN and the scale mixing) are skipped at n = 1,
                where reading one of their values resolves through
                ``Graph.first_alias`` (``"mix.{l}" -> "state.{l}"``: the paper's
                injection of A~, B~, C~ straight into the BRBs).
``Graph.head``  the classification block, run after iteration n for every head
                iteration n; reads ``"state.{l}"`` (the iteration's output) and
                produces ``"logits"`` (B, C, H, W).

Nodes
-----
A ``Node`` is one operation: ``op`` in ``conv`` (dense, 1x1 or depthwise, with a
folded BN, bias, an optional residual add and an activation epilogue),
``affine`` (a folded BN alone, per channel), ``maxpool`` (kernel = stride, ceil
mode), ``resize`` (bilinear, align_corners=False) and ``concat`` (channels).
``node.layer`` names the weights it uses as a template: ``{body}`` is replaced
by the body index used at iteration n (0 when shared, n - 1 when independent)
and ``{n}`` by n. ``Graph.layer_name(node, n)`` resolves it; ``Graph.layers``
maps every resolved name to a ``Layer`` (shapes, parameter and MAC counts).
With shared weights the body's conv layers appear once in ``Graph.layers`` and
are executed N times; with independent weights there are N copies.

The loop
--------
The loop's semantics live here and nowhere else. ``Graph.phases(last)`` is the
run as a sequence of block executions (``Phase``): the data block, then for
n = 1..last the body and, at head iterations, the head, each with the values
it reads from the loop (``Phase.reads``) and the values it hands on
(``Phase.result``). ``Graph.schedule(last)`` flattens the phases into steps
(``Step(block, n, node, layer)``) and ``unroll(graph)`` resolves every step's
inputs to the step that made them (the DAG the metrics count and the timing
model schedules). The executors (``minitnet.executor.run``, the fused
runtime) run the phases.

The op table
------------
``OPS`` describes each op once (``OpSpec``): whether it is a matrix-vector
product (the MACs, the emulator's tiles), whether an executor may hand it an
output slice, and which input rows each output row reads (``OpSpec.input_rows``; the timing model's row dependencies).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from .config import ItNetConfig
from .errors import ShapeError

__all__ = ["Layer", "Node", "Step", "Phase", "Graph", "build_graph", "unroll", "OpSpec", "OPS", "op_spec",
           "rows_same", "rows_conv", "rows_pool", "rows_resize", "ACT_NONE", "ACT_RELU", "ACT_RELU6"]

ACT_NONE, ACT_RELU, ACT_RELU6 = 0, 1, 2


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Layer:
    """A unique parameterised layer: one set of weights in the weights file.

    kind "conv": weights ``{name}.weight`` (out_channels, in_channels//groups, *kernel_size),
    ``{name}.bias`` if ``bias``; ``bn`` names a BatchNorm (tensor prefix) folded into
    its output channels ``bn_channels`` (start, stop) at load time.
    kind "affine": a BatchNorm applied alone, ``bn`` and ``bn_channels`` as above.
    Sizes are per image: ``in_size``/``out_size`` are (H, W).
    """

    name: str
    kind: str
    in_channels: int
    out_channels: int
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    kernel_size: tuple[int, int] = (1, 1)
    stride: int = 1
    padding: int = 0
    groups: int = 1
    bias: bool = False
    bn: str | None = None
    bn_channels: tuple[int, int] | None = None

    @property
    def params(self) -> int:
        """Weights and biases (a folded BN is not counted; BN is reported apart)."""
        if self.kind != "conv":
            return 0
        kh, kw = self.kernel_size
        return self.out_channels * (self.in_channels // self.groups) * kh * kw + (self.out_channels if self.bias else 0)

    @property
    def bn_params(self) -> int:
        """Learned BN parameters (weight and bias) of the channels this layer owns."""
        return 0 if self.bn is None else 2 * (self.bn_channels[1] - self.bn_channels[0])

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one execution on one image."""
        if self.kind != "conv":
            return 0
        kh, kw = self.kernel_size
        oh, ow = self.out_size
        return self.out_channels * (self.in_channels // self.groups) * kh * kw * oh * ow

    @property
    def in_elems(self) -> int:
        return self.in_channels * self.in_size[0] * self.in_size[1]

    @property
    def out_elems(self) -> int:
        return self.out_channels * self.out_size[0] * self.out_size[1]

    @property
    def depthwise(self) -> bool:
        return self.kind == "conv" and self.groups > 1 and self.groups == self.in_channels == self.out_channels


@dataclass(frozen=True)
class Node:
    """One operation. ``shape`` is the output (C, H, W) per image.

    attrs: conv -> ``act``, ``residual`` (a value name or None); affine -> ``act``;
    maxpool -> ``kernel_size``; resize -> ``size`` (H, W).
    """

    name: str
    op: str
    inputs: tuple[str, ...]
    shape: tuple[int, int, int]
    layer: str | None = None
    attrs: dict = field(default_factory=dict, hash=False, compare=False)
    first: bool = True

    @property
    def act(self) -> int:
        return self.attrs.get("act", ACT_NONE)

    @property
    def residual(self) -> str | None:
        return self.attrs.get("residual")


# -- the op table ---------------------------------------------------------------
def rows_same(OH: int) -> tuple[np.ndarray, np.ndarray]:
    """Row r reads row r (concat, affine, residual). Returns (lo, hi), each (OH,)."""
    r = np.arange(OH, dtype=np.int64)
    return r, r.copy()


def rows_conv(H: int, OH: int, KH: int, stride: int = 1, padding: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Input rows of a conv's output row r: ``r*stride - padding + (0..KH-1)``, clipped to 0..H-1."""
    r = np.arange(OH, dtype=np.int64)
    top = r * stride - padding
    return np.clip(top, 0, H - 1), np.clip(top + KH - 1, 0, H - 1)


def rows_pool(H: int, OH: int, kernel_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Input rows of a max-pool (stride = kernel, ceil mode): ``k*r .. k*r + k - 1``, clipped."""
    return rows_conv(H, OH, kernel_size, kernel_size, 0)


def rows_resize(H: int, OH: int) -> tuple[np.ndarray, np.ndarray]:
    """Source rows (i0, i1) of bilinear resize, align_corners=False, in float32 as torch:
    ``src = max((r + 0.5) * H / OH - 0.5, 0)``, ``i0 = min(floor(src), H - 1)``,
    ``i1 = min(i0 + 1, H - 1)``; identity when OH == H."""
    if OH == H:
        return rows_same(OH)
    f32 = np.float32
    src = np.maximum(f32(H) / f32(OH) * (np.arange(OH, dtype=f32) + f32(0.5)) - f32(0.5), f32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), H - 1)
    return i0, np.minimum(i0 + 1, H - 1)


def _same_rows(node, layer, H, OH):
    if H != OH:
        raise ShapeError(f"input_rows: node {node.name!r} ({node.op}) reads a value of height {H} and writes "
                         f"height {OH}; expected equal")
    return rows_same(OH)


@dataclass(frozen=True)
class OpSpec:
    """What every reader of the IR needs to know of one op.

    mvm:       a matrix-vector product: counts MACs, runs on crossbar tiles in the emulator
    writes_into: the float op can write its output into an array it is given (a concat's slice)
    rows:      ``rows(node, layer, H, OH) -> (lo, hi)``: the input rows output row r reads,
               lo[r]..hi[r] (an input of height H; a residual always reads row r)
    """

    name: str
    mvm: bool
    writes_into: bool
    rows: Callable[[Node, "Layer | None", int, int], tuple[np.ndarray, np.ndarray]]

    def input_rows(self, node: Node, layer: "Layer | None", H: int, OH: int, residual: bool = False):
        """``rows`` for an input, ``rows_same`` (checked) for a residual."""
        return _same_rows(node, layer, H, OH) if residual else self.rows(node, layer, H, OH)

    def macs(self, layer: "Layer | None") -> int:
        """Multiply-accumulates of one execution on one image."""
        return layer.macs if self.mvm else 0


OPS: dict[str, OpSpec] = {
    "conv": OpSpec("conv", True, True,
                   lambda nd, l, H, OH: rows_conv(H, OH, l.kernel_size[0], l.stride, l.padding)),
    "affine": OpSpec("affine", False, True, _same_rows),
    "maxpool": OpSpec("maxpool", False, False, lambda nd, l, H, OH: rows_pool(H, OH, nd.attrs["kernel_size"])),
    "resize": OpSpec("resize", False, True, lambda nd, l, H, OH: rows_resize(H, OH)),
    "concat": OpSpec("concat", False, False, _same_rows),
}


def op_spec(op: str) -> OpSpec:
    """The ``OpSpec`` of ``op``; ShapeError naming the known ops otherwise."""
    try:
        return OPS[op]
    except KeyError:
        raise ShapeError(f"graph: unknown op {op!r}; the IR's ops are {sorted(OPS)}") from None


@dataclass(frozen=True)
class Phase:
    """One execution of a block in the loop: ``block`` "data", "body" or "head" at iteration
    ``n`` (0 for data), running ``nodes`` in order.

    reads:  {value name inside the block: loop value} with loop values ``"image"`` and
            ``"state.{l}"`` (the state entering the block; at n = 1 the aliases of the
            skipped mixing nodes read the state too)
    result: the block's values handed on: the new state ``state.{l} <- result[l]``
            (data, body), or ``("logits",)`` (head)
    """

    block: str
    n: int
    nodes: tuple[Node, ...]
    reads: dict
    result: tuple[str, ...]


@dataclass(frozen=True)
class Step:
    """One node executed in one iteration: block is "data", "body" or "head";
    n is the iteration (0 for the data block); layer the resolved layer name or None."""

    block: str
    n: int
    node: Node
    layer: str | None


@dataclass
class Graph:
    config: ItNetConfig
    height: int
    width: int
    data: list[Node]
    body: list[Node]
    head: list[Node]
    init: tuple[str, ...]
    carry: tuple[str, ...]
    first_alias: dict[str, str]
    layers: dict[str, Layer]

    # -- resolution ------------------------------------------------------------
    def layer_name(self, node: Node, n: int = 0) -> str | None:
        if node.layer is None:
            return None
        return node.layer.format(body=self.config.body_index(n) if n else 0, n=n)

    def layer_of(self, node: Node, n: int = 0) -> Layer | None:
        name = self.layer_name(node, n)
        return None if name is None else self.layers[name]

    def body_nodes(self, n: int) -> list[Node]:
        """The body nodes that run at iteration n (mixing skipped at n = 1)."""
        return self.body if n > 1 else [nd for nd in self.body if nd.first]

    @property
    def heads(self) -> tuple[int, ...]:
        return self.config.head_iterations

    @property
    def iterations(self) -> int:
        return self.config.iterations

    def phases(self, last: int | None = None, heads: bool = True) -> Iterator[Phase]:
        """The loop up to iteration ``last`` (default N) as block executions, in order: the
        data block; then for n = 1..last the body (its mixing nodes skipped at n = 1) and,
        when ``heads`` and n is a head iteration, the head."""
        last = self.iterations if last is None else self.config.check_last(last, "Graph.phases")
        L = len(self.init)
        state = {f"state.{l}": f"state.{l}" for l in range(L)}
        yield Phase("data", 0, tuple(self.data), {"image": "image"}, self.init)
        hs = set(self.heads) if heads else set()
        first = dict(state, **self.first_alias)
        for n in range(1, last + 1):
            yield Phase("body", n, tuple(self.body_nodes(n)), first if n == 1 else state, self.carry)
            if n in hs:
                yield Phase("head", n, tuple(self.head), state, ("logits",))

    def schedule(self, last: int | None = None, heads: bool = True) -> Iterator[Step]:
        """Every step in execution order up to iteration ``last`` (default N), heads included."""
        for ph in self.phases(last, heads):
            for nd in ph.nodes:
                yield Step(ph.block, ph.n, nd, self.layer_name(nd, ph.n))

    def conv_layers(self) -> list[Layer]:
        """Unique conv layers in first-execution order."""
        return [l for l in self.layers.values() if l.kind == "conv"]

    def summary(self) -> str:
        """A readable listing of the IR: blocks, nodes, shapes and layers."""
        cfg = self.config
        lines = [f"ItNet graph {cfg} at {self.height}x{self.width}",
                 f"  loop: body runs {cfg.iterations}x, {'shared' if cfg.shared else 'independent'} weights, "
                 f"heads at {list(self.heads)}"]
        for title, nodes in (("data block (once)", self.data), ("iterative body (loop)", self.body),
                             ("head (per output)", self.head)):
            lines.append(f"  {title}:")
            for nd in nodes:
                extra = "" if nd.first else "  [n>1]"
                lay = f"  <{nd.layer}>" if nd.layer else ""
                lines.append(f"    {nd.name:<24} {nd.op:<8} {str(nd.shape):<16} <- {', '.join(nd.inputs)}{lay}{extra}")
        lines.append(f"  carry: {list(self.carry)}; n=1 aliases: {self.first_alias}")
        return "\n".join(lines)


Key = tuple  # ("image",) or (block, n, node name)
IMAGE: Key = ("image",)


def unroll(graph: Graph, last: int | None = None, heads: bool = True) -> list[tuple[Step, Key, tuple[Key, ...]]]:
    """The DAG that running ``graph`` up to iteration ``last`` executes, one entry per step
    of ``graph.schedule(last)`` in that (topological) order: ``(step, key, preds)``.

    ``key`` is ``(block, n, node name)``; ``preds`` are the keys of the values the step
    reads (its inputs, then its residual), resolved through ``Graph.phases``: a value a
    phase reads from the loop is the key that made that loop value.
    """
    loop: dict[str, Key] = {"image": IMAGE}
    out = []
    for ph in graph.phases(last, heads):
        made = {nd.name for nd in ph.nodes}

        def key_of(name: str) -> Key:
            if name in made:
                return (ph.block, ph.n, name)
            if name in ph.reads:
                return loop[ph.reads[name]]
            raise ShapeError(f"unroll: {ph.block} node input {name!r} at iteration {ph.n} resolves to no value")

        for nd in ph.nodes:
            names = nd.inputs + ((nd.residual,) if nd.residual else ())
            out.append((Step(ph.block, ph.n, nd, graph.layer_name(nd, ph.n)), (ph.block, ph.n, nd.name),
                        tuple(key_of(nm) for nm in names)))
        if ph.block != "head":
            loop = {"image": IMAGE, **{f"state.{l}": key_of(v) for l, v in enumerate(ph.result)}}
    return out


class _Builder:
    """Nodes of one block, in order."""

    def __init__(self):
        self.nodes: list[Node] = []

    def add(self, name, op, inputs, shape, layer=None, first=True, **attrs) -> str:
        self.nodes.append(Node(name, op, tuple(inputs), tuple(shape), layer, attrs, first))
        return name


class _Layers(dict):
    """The unique layers {name: Layer}, in the order they are declared."""

    def conv(self, name, cin, cout, in_size, out_size, k, stride, pad, groups=1, bias=False, bn=None, bn_ch=None):
        self[name] = Layer(name, "conv", cin, cout, in_size, out_size, (k, k), stride, pad, groups, bias, bn, bn_ch)

    def affine(self, name, c, size, bn, bn_ch):
        self[name] = Layer(name, "affine", c, c, size, size, bn=bn, bn_channels=bn_ch)


def _data_block(cfg: ItNetConfig, layers: _Layers, height: int, width: int, sizes) -> tuple[list, list]:
    """The stems and the scale convs: (nodes, init) with init the values entering iteration 1."""
    f, fr = cfg.width, cfg.f_r
    H2, W2 = _cdiv(height, 2), _cdiv(width, 2)
    H4, W4 = _cdiv(H2, 2), _cdiv(W2, 2)
    d = _Builder()
    layers.conv("stem1.conv", 3, f - 3, (height, width), (H2, W2), 3, 2, 1, bn="stem1.bn", bn_ch=(0, f - 3))
    d.add("stem1.conv", "conv", ["image"], (f - 3, H2, W2), "stem1.conv", act=ACT_RELU)
    d.add("stem1.pool", "maxpool", ["image"], (3, H2, W2), kernel_size=2)
    layers.affine("stem1.bn.pool", 3, (H2, W2), "stem1.bn", (f - 3, f))
    d.add("stem1.pool.bn", "affine", ["stem1.pool"], (3, H2, W2), "stem1.bn.pool", act=ACT_RELU)
    d.add("stem1", "concat", ["stem1.conv", "stem1.pool.bn"], (f, H2, W2))
    layers.conv("stem2.conv", f, f, (H2, W2), (H4, W4), 3, 2, 1, bn="stem2.bn", bn_ch=(0, f))
    d.add("stem2.conv", "conv", ["stem1"], (f, H4, W4), "stem2.conv", act=ACT_RELU)
    d.add("stem2.pool", "maxpool", ["stem1"], (f, H4, W4), kernel_size=2)
    layers.affine("stem2.bn.pool", f, (H4, W4), "stem2.bn", (f, 2 * f))
    d.add("stem2.pool.bn", "affine", ["stem2.pool"], (f, H4, W4), "stem2.bn.pool", act=ACT_RELU)
    d.add("stem2", "concat", ["stem2.conv", "stem2.pool.bn"], (2 * f, H4, W4))
    init = []
    for l in range(cfg.levels):
        src = "stem2"
        if l > 0:
            src = d.add(f"scales.{l}.pool", "maxpool", ["stem2"], (2 * f, *sizes[l]), kernel_size=2**l)
        name = f"scales.{l}.conv"
        layers.conv(name, 2 * f, fr, sizes[l], sizes[l], 3, 1, 1, bn=f"scales.{l}.bn", bn_ch=(0, fr))
        init.append(d.add(f"scale.{l}", "conv", [src], (fr, *sizes[l]), name, act=ACT_RELU))
    return d.nodes, init


def _mixing(b: _Builder, cfg: ItNetConfig, sizes) -> None:
    """The between-iteration BN and the scale mixing (skipped at n = 1)."""
    L, fr = cfg.levels, cfg.f_r
    for l in range(L):
        b.add(f"bn.{l}", "affine", [f"state.{l}"], (fr, *sizes[l]), f"inter_bn.{{n}}.{l}", first=False,
              act=ACT_NONE)
    for l in range(L):
        parts = []
        for j in range(L):
            if sizes[j] == sizes[l]:
                parts.append(f"bn.{j}")
            else:
                parts.append(b.add(f"mix.{l}.resize.{j}", "resize", [f"bn.{j}"], (fr, *sizes[l]), first=False,
                                   size=sizes[l]))
        b.add(f"mix.{l}.cat", "concat", parts, (L * fr, *sizes[l]), first=False)
        b.add(f"mix.{l}", "conv", [f"mix.{l}.cat"], (fr, *sizes[l]), f"bodies.{{body}}.mix.{l}", first=False,
              act=ACT_RELU, residual=f"bn.{l}")


def _body_block(cfg: ItNetConfig, layers: _Layers, sizes) -> tuple[list, list, dict]:
    """The iterative block: (nodes, carry, first_alias), and its layers for every weight set."""
    L, fr, hid = cfg.levels, cfg.f_r, cfg.hidden
    b = _Builder()
    if cfg.iterations > 1:
        _mixing(b, cfg, sizes)
    alias, carry = {}, []
    for l in range(L):
        alias[f"mix.{l}"] = f"state.{l}"
        x = f"mix.{l}" if cfg.iterations > 1 else f"state.{l}"
        for k in range(cfg.blocks):
            p, lp = f"brb.{l}.{k}", f"bodies.{{body}}.brb.{l}.{k}"
            b.add(f"{p}.expand", "conv", [x], (hid, *sizes[l]), f"{lp}.expand", act=ACT_RELU6)
            b.add(f"{p}.dw", "conv", [f"{p}.expand"], (hid, *sizes[l]), f"{lp}.dw", act=ACT_RELU6)
            x = b.add(p, "conv", [f"{p}.dw"], (fr, *sizes[l]), f"{lp}.project", act=ACT_NONE, residual=x)
        carry.append(x)
    for bi in range(cfg.bodies):
        for l in range(L):
            sz = sizes[l]
            if cfg.body_has_mix(bi):
                layers.conv(f"bodies.{bi}.mix.{l}", L * fr, fr, sz, sz, 3, 1, 1)
            for k in range(cfg.blocks):
                p = f"bodies.{bi}.brb.{l}.{k}"
                layers.conv(f"{p}.expand", fr, hid, sz, sz, 1, 1, 0)
                layers.conv(f"{p}.dw", hid, hid, sz, sz, 3, 1, 1, groups=hid)
                layers.conv(f"{p}.project", hid, fr, sz, sz, 1, 1, 0)
    for n in range(2, cfg.iterations + 1):
        for l in range(L):
            layers.affine(f"inter_bn.{n}.{l}", fr, sizes[l], f"inter_bn.{n}.{l}", (0, fr))
    return b.nodes, carry, (alias if cfg.iterations > 1 else {})


def _head_block(cfg: ItNetConfig, layers: _Layers, height: int, width: int, sizes) -> list:
    """The classifier run after every head iteration: the scales resized to 1/8, one 1x1 conv,
    bilinear up to the input size."""
    L, fr, C = cfg.levels, cfg.f_r, cfg.classes
    H8, W8 = _cdiv(height, 8), _cdiv(width, 8)
    h = _Builder()
    parts = []
    for l in range(L):
        if sizes[l] == (H8, W8):
            parts.append(f"state.{l}")
        else:
            parts.append(h.add(f"head.resize.{l}", "resize", [f"state.{l}"], (fr, H8, W8), size=(H8, W8)))
    h.add("head.cat", "concat", parts, (L * fr, H8, W8))
    h.add("head.conv", "conv", ["head.cat"], (C, H8, W8), "heads.{n}", act=ACT_NONE)
    h.add("logits", "resize", ["head.conv"], (C, height, width), size=(height, width))
    for n in cfg.head_iterations:
        layers.conv(f"heads.{n}", L * fr, C, (H8, W8), (H8, W8), 1, 1, 0, bias=True)
    return h.nodes


def build_graph(config: ItNetConfig, height: int, width: int) -> Graph:
    """The IR of ``config`` for input images of ``height`` x ``width`` pixels."""
    for nm, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ShapeError(f"build_graph: {nm} must be a positive int, got {v!r}")
    H4, W4 = _cdiv(_cdiv(height, 2), 2), _cdiv(_cdiv(width, 2), 2)
    sizes = [(_cdiv(H4, 2**l), _cdiv(W4, 2**l)) for l in range(config.levels)]
    layers = _Layers()
    data, init = _data_block(config, layers, height, width, sizes)
    body, carry, alias = _body_block(config, layers, sizes)
    head = _head_block(config, layers, height, width, sizes)
    g = Graph(config, height, width, data, body, head, tuple(init), tuple(carry), alias, dict(layers))
    # order layers by first execution (stable for reports)
    ordered = {}
    for st in g.schedule():
        if st.layer is not None and st.layer not in ordered:
            ordered[st.layer] = layers[st.layer]
    for k, v in layers.items():  # layers no output depends on (none today) keep their place at the end
        ordered.setdefault(k, v)
    g.layers = ordered
    return g
