"""The inference engine: executes the graph IR (``minitnet.graph``) with the Numba ops.

    net = minitnet.load("weights/camvid-shared-f51.h5")
    for n, logits in net.iter_outputs(image):   # anytime: each output as soon as it is ready
        ...
    classes = net.predict(image, n=6)            # stops after iteration 6

Weights are folded at load time: every BatchNorm that follows a conv goes into
that conv's weights and bias; the BN of the max-pooled stem channels and the
BN between iterations become per-channel affines. Memory stays flat: only the
loop-carried state and the values of the block being run are alive.

Two executors run the same IR. The node-by-node one (``minitnet.executor.run``
with ``FloatBackend``) walks the nodes with the validated ``ops`` on plain NCHW
arrays; the emulator runs it with its chip as the backend. The fused one
(``_FusedPlan``, the default) lowers each block of the IR once per input size
into a list of fused kernel calls on padded maps (``minitnet.kernels.padded``,
``.winograd``):

- producers write straight into the channel slot of the concatenation that
  consumes them (the mixing and head concats are never copied together);
- 3x3 stride-1 convs run as Winograd F(2x2, 3x3) (sgemm per tap without
  im2col is kept for 1x1 convs and as an option), strided ones as band-wise
  im2col; bias, residual and activation are the kernels' epilogue;
- each bottleneck (expand, depthwise, project) is one kernel over row bands
  whose 150-channel map stays in L2; a max pool and the BN after it are one;
- every kernel splits its work over ``numba.get_num_threads()`` workers,
  with BLAS single-threaded inside them.

The fused plan's buffers are allocated on the first call (two alternating
sets for the loop) and reused by every iteration and later call; logits
arrays are recycled once the caller has dropped them (``ItNet.release()``
frees both). ``ItNet.fused = False`` selects the reference executor; the
tests check that both agree (``tests/test_fused.py``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator

import numba
import numpy as np

from . import kernels as K
from . import ops
from .buffers import Recycler
from .kernels import blas as _blas
from .kernels import padded as P
from .kernels import winograd as WG
from .kernels.resize import resize_bands
from .config import ItNetConfig
from .errors import ShapeError
from .graph import ACT_NONE, ACT_RELU6, Graph, Node, build_graph
from .executor import FloatBackend, run as run_graph
from .inputs import check_logits, prepare_input
from .weights import BN_EPS, WeightFile, fold_weights, read_hdf5

__all__ = ["ItNet", "load"]


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
        self._plans: dict[tuple[int, int], "_FusedPlan | None"] = {}
        self._prepared: dict[tuple[str, str], tuple] = {}
        #: run the fused plan (True) or the node-by-node reference executor (False)
        self.fused = True
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
    def prepare(self, x, layout: str | None = None) -> np.ndarray:
        """Model input (B, 3, H, W) float32: ``minitnet.inputs.prepare_input`` (layouts, bounds)."""
        return prepare_input(x, self.norm_scale, self.norm_offset, layout)

    # -- running ---------------------------------------------------------------------
    def _plan(self, graph: Graph) -> "_FusedPlan | None":
        """The fused plan of ``graph`` (cached per size), or None when a node has no fused lowering."""
        key = (graph.height, graph.width)
        if key not in self._plans:
            self._plans[key] = _FusedPlan.build(self, graph)
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

    def iter_outputs(self, x, last: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(n, logits)`` for every head iteration n <= last, as soon as it is computed.

        logits: (B, C, H, W) float32. ``last`` defaults to the last iteration N; no
        iteration after ``last`` is computed.
        """
        x = self.prepare(x)
        g = self.graph(x.shape[2], x.shape[3])
        last = g.check_last(g.iterations if last is None else last)
        plan = self._plan(g) if self.fused else None
        if plan is not None:
            yield from plan.run(x, last)
            return
        for n, _, logits in run_graph(g, FloatBackend(self.params), x, last):
            if logits is not None:
                yield n, logits

    def iter_states(self, x, last: int | None = None):
        """Yield ``(n, state, logits)`` at every head iteration n <= last: the loop-carried
        state after iteration n as ``{"state.{l}": (B, C, H_l, W_l)}`` (views valid until the
        next step; copy to keep them) and the logits, from the fused plan when the graph has
        one, else from the node-by-node executor (the emulator's float reference)."""
        x = self.prepare(x)
        g = self.graph(x.shape[2], x.shape[3])
        last = g.check_last(g.iterations if last is None else last)
        plan = self._plan(g) if self.fused else None
        if plan is not None:
            for n, logits, state in plan.run(x, last, with_state=True):
                yield n, state, logits
            return
        for n, state, logits in run_graph(g, FloatBackend(self.params), x, last):
            if logits is not None:
                yield n, state, logits

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


# -- fused execution ---------------------------------------------------------------------

#: sgemm run length (pixels) aimed at per row band of a stride-1 conv: with ~0.5k
#: columns the band's A panel, the weights and C stay in L1/L2 (measured: 256-1024 fastest).
_TAPS_RUN = 512
#: rows per bottleneck band: the worker's expanded map, C_h x (rows + 2) x (W + 2) floats, stays in L2
#: (6, 8, 10 and 12 rows measured within noise of each other at 90x120; 4 was slower).
_BRB_ROWS = 8
#: im2col scratch per worker (float32 elements, 512 KiB).
_COL_ELEMS = 1 << 17
#: Winograd F(2x2, 3x3) tiles per band: V (16 x C_in x tiles floats, ~0.9 MiB at C_in = 75) stays in L2.
_WINO_TILES = 180
#: 3x3 stride-1 convs whose padded input has more bytes than this use Winograd, the others one
#: sgemm per tap. Single-threaded, taps won on maps that fit L2 (45x60x75: 0.71 vs 0.75 ms), but
#: with both cores busy Winograd was faster on every map of the f = 51 model (whole network
#: 104 vs 110 ms, 2-core Xeon), so the threshold is 0; raise it to prefer taps on small maps.
_WINO_MIN_BYTES = 0

_NO_AFFINE = np.zeros(1, np.float32)
_WORKQUEUE_LOCK = threading.Lock()


def _exclusive():
    """A process-wide lock when numba runs on the workqueue layer (no concurrent parallel
    regions), else a no-op context."""
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run yet: the layer is not chosen
        layer = numba.config.THREADING_LAYER
    return _WORKQUEUE_LOCK if layer == "workqueue" else contextlib.nullcontext()


def _nbands(H: int, rows: int, T: int) -> int:
    """Row bands of about ``rows`` rows over H rows, a multiple of T workers where H allows."""
    nb = max(1, -(-H // max(1, rows)))
    if T > 1:
        nb = T * -(-nb // T)
    return max(1, min(nb, H))


class _Op:
    """One fused kernel call. ``kind``: conv (taps), convcol (im2col), brb, affine, pool, resize, copy."""

    __slots__ = ("kind", "nodes", "src", "dst", "res", "info")

    def __init__(self, kind, nodes, src, dst, res=None, **info):
        self.kind, self.nodes, self.src, self.dst, self.res, self.info = kind, nodes, src, dst, res, info


class _Block:
    """A lowered block: ops in order, padded buffers {key: (C, H, W)}, value placement
    {value: (buffer key, channel offset)}, aliases {value: value}, plain outputs."""

    def __init__(self, ops, bufs, place, alias, plain):
        self.ops, self.bufs, self.place, self.alias, self.plain = ops, bufs, place, alias, plain

    def alloc(self, B: int) -> dict:
        return {k: np.zeros((B, c, h + 2, w + 2), np.float32) for k, (c, h, w) in self.bufs.items()}

    def bind(self, env: dict, arrays: dict):
        for v, (key, off) in self.place.items():
            env[v] = (arrays[key], off)


def _lower(graph: Graph, nodes, n: int, shapes: dict, outputs: set, plain: set) -> "_Block | None":
    """Lower ``nodes`` (run at iteration n) to fused ops; None if some node has no fused form.

    shapes: (C, H, W) of every value read from outside the block; outputs: values read
    after the block; plain: values produced as plain NCHW arrays (the logits).
    """
    byname = {nd.name: nd for nd in nodes}
    shape = dict(shapes, **{nd.name: nd.shape for nd in nodes})
    uses: dict[str, list] = {}
    for nd in nodes:
        for i in nd.inputs + ((nd.residual,) if nd.residual else ()):
            uses.setdefault(i, []).append(nd)

    def lay(nd):
        return graph.layer_of(nd, n)

    def only_use(v):
        u = uses.get(v, [])
        return u[0] if len(u) == 1 and v not in outputs and v not in plain else None

    def is_1x1(nd):
        l = lay(nd)
        return l.kernel_size == (1, 1) and l.stride == 1 and l.padding == 0 and l.groups == 1

    chains, inner, tails = {}, set(), set()
    for nd in nodes:  # bottleneck: 1x1 relu6 -> depthwise 3x3 relu6 -> 1x1 linear + block input
        if nd.op != "conv" or not is_1x1(nd) or nd.act != ACT_RELU6 or nd.residual:
            continue
        dn = only_use(nd.name)
        if dn is None or dn.op != "conv" or dn.inputs != (nd.name,) or dn.act != ACT_RELU6 or dn.residual:
            continue
        ld = lay(dn)
        if not (ld.depthwise and ld.kernel_size == (3, 3) and ld.stride == 1 and ld.padding == 1):
            continue
        pn = only_use(dn.name)
        if (pn is None or pn.op != "conv" or pn.inputs != (dn.name,) or not is_1x1(pn) or pn.act != ACT_NONE
                or pn.residual != nd.inputs[0]):
            continue
        chains[nd.name] = (nd, dn, pn)
        inner.update((nd.name, dn.name))
        tails.add(pn.name)

    alias = {nd.name: nd.inputs[0] for nd in nodes if nd.op == "maxpool" and nd.attrs["kernel_size"] == 1}
    pool_affine = {}  # a max pool read only by a per-channel affine (the stems' BN): one kernel
    for nd in nodes:
        if nd.op == "maxpool" and nd.name not in alias:
            u = only_use(nd.name)
            if u is not None and u.op == "affine" and u.inputs == (nd.name,):
                pool_affine[nd.name] = u
                inner.add(nd.name)
                tails.add(u.name)
    place, bufs, copies = {}, {}, {}
    for nd in nodes:  # a concat owns its buffer; producers in this block write into their slot
        if nd.op != "concat":
            continue
        bufs[nd.name] = nd.shape
        place[nd.name] = (nd.name, 0)
        off, copies[nd.name] = 0, []
        for i in nd.inputs:
            if i in byname and i not in place and i not in alias and i not in inner and i not in plain:
                place[i] = (nd.name, off)
            else:
                copies[nd.name].append((i, off, shape[i][0]))
            off += shape[i][0]
    for nd in nodes:
        if nd.name in place or nd.name in alias or nd.name in inner or nd.name in plain:
            continue
        bufs[nd.name] = nd.shape
        place[nd.name] = (nd.name, 0)

    ops = []
    for nd in nodes:
        if nd.name in tails:
            continue
        if nd.name in pool_affine:
            u = pool_affine[nd.name]
            ops.append(_Op("pool", (nd, u), nd.inputs[0], u.name, k=nd.attrs["kernel_size"]))
            continue
        if nd.name in inner:
            if nd.name in chains:
                e, d, p = chains[nd.name]
                H, W = p.shape[1:]
                ops.append(_Op("brb", (e, d, p), e.inputs[0], p.name, H=H, W=W, C_h=e.shape[0]))
            continue
        if nd.op == "conv":
            l = lay(nd)
            kh, kw = l.kernel_size
            if l.groups != 1 or l.padding > 1 or nd.inputs[0] in plain:
                return None
            H, W = nd.shape[1:]
            if l.stride == 1 and kh == kw == 3 and l.padding == 1 and \
                    4 * l.in_channels * (H + 2) * (W + 2) > _WINO_MIN_BYTES:
                ops.append(_Op("wino", (nd,), nd.inputs[0], nd.name, nd.residual, H=H, W=W, C_in=l.in_channels,
                               C_out=l.out_channels))
            elif l.stride == 1 and kh == kw == 2 * l.padding + 1:
                Wp = W + 2
                offs = np.array([(ky - l.padding) * Wp + (kx - l.padding) for ky in range(kh) for kx in range(kw)],
                                np.int64)
                ops.append(_Op("conv", (nd,), nd.inputs[0], nd.name, nd.residual, offs=offs, H=H, W=W))
            elif nd.residual is None:
                k = l.in_channels * kh * kw
                ops.append(_Op("convcol", (nd,), nd.inputs[0], nd.name, H=H, W=W, K=k))
            else:
                return None
        elif nd.op == "affine":
            ops.append(_Op("affine", (nd,), nd.inputs[0], nd.name))
        elif nd.op == "maxpool":
            if nd.name not in alias:
                # ceil-mode pooling composes exactly: pool_{a*b}(x) = pool_b(pool_a(x)), so a pool
                # of x already computed here with a kernel dividing k is a 4x (or more) smaller input
                k, src = nd.attrs["kernel_size"], nd.inputs[0]
                prev = [m for m in nodes[:nodes.index(nd)] if m.op == "maxpool" and m.inputs == nd.inputs
                        and m.name not in alias and k % m.attrs["kernel_size"] == 0 and m.name in place]
                if prev:
                    m = max(prev, key=lambda m: m.attrs["kernel_size"])
                    k, src = k // m.attrs["kernel_size"], m.name
                ops.append(_Op("pool", (nd,), src, nd.name, k=k))
        elif nd.op == "resize":
            (c, hi, wi), (oh, ow) = shape[nd.inputs[0]], nd.attrs["size"]
            tabs = K.bilinear_table(hi, oh, False) + K.bilinear_table(wi, ow, False)
            ops.append(_Op("resize", (nd,), nd.inputs[0], nd.name, C=c, tabs=tabs, H=hi, OW=ow,
                           pad_out=0 if nd.name in plain else 1))
        elif nd.op == "concat":
            for v, off, c in copies[nd.name]:
                ops.append(_Op("copy", (nd,), v, nd.name, off=off, C=c))
        else:
            return None
    return _Block(ops, bufs, place, alias, plain)


class _FusedPlan:
    """The IR of one input size lowered to fused kernel calls (see the module docstring)."""

    def __init__(self, net: "ItNet", graph: Graph, data, first, body, head):
        # the net's folded parameters and its cache of kernel-layout weights (not the net
        # itself: no reference cycle, so dropping the net frees the buffers at once)
        self.params, self.prepared, self.graph = net.params, net._prepared, graph
        self.data, self.first, self.body, self.head = data, first, body, head
        self._scratch_size: dict[int, dict] = {}
        self._idle: dict | None = None  # the buffers of the last finished run, reused by the next
        self._outs = Recycler(cap=len(graph.heads))  # logits handed out, reused once the caller drops them
        shapes = {nd.name: nd.shape for nd in graph.data}  # the loop-carried state keeps its initial shape
        self._carry_channels = {f"state.{l}": shapes[v][0] for l, v in enumerate(graph.init)}  # _state_views
        self._lock = threading.Lock()

    @classmethod
    def build(cls, net: "ItNet", g: Graph) -> "_FusedPlan | None":
        cfg = g.config
        init_shapes = {nd.name: nd.shape for nd in g.data}
        state = {f"state.{l}": init_shapes[v] for l, v in enumerate(g.init)}
        carry = set(g.carry)
        data = _lower(g, g.data, 0, {"image": (3, g.height, g.width)}, set(g.init), set())
        first_in = dict(state, **{a: state[v] for a, v in g.first_alias.items()})
        first = _lower(g, g.body_nodes(1), 1, first_in, carry, set())
        body = _lower(g, g.body_nodes(2), 2, state, carry, set()) if cfg.iterations > 1 else None
        head = _lower(g, g.head, cfg.head_iterations[0], state, {"logits"}, {"logits"})
        if data is None or first is None or head is None or (cfg.iterations > 1 and body is None):
            return None
        _blas.warm_up()
        return cls(net, g, data, first, body, head)

    # -- weights in kernel layout ------------------------------------------------------
    def _weights(self, kind: str, lname: str):
        key = (kind, lname)
        cache = self.prepared
        if key not in cache:
            w, b = self.params[lname]
            co, ci, kh, kw = w.shape
            if kind == "taps":
                cache[key] = (np.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(kh * kw, co, ci), b)
            elif kind == "wino":
                cache[key] = (WG.winograd_weights(w), b)
            elif kind == "col":
                cache[key] = (w.reshape(co, ci * kh * kw), b)
            else:  # "dw": (C, 1, 3, 3) -> (C, 9); "1x1": (Co, Ci, 1, 1) -> (Co, Ci)
                cache[key] = (w.reshape(co, ci * kh * kw), b)
        return cache[key]

    # -- scratch ------------------------------------------------------------------------
    def _scratch(self, T: int) -> dict:
        if T not in self._scratch_size:
            need = {"col": 1, "hid": 1, "dwo": 1, "rs": 1, "V": 1, "Mw": 1, "wt": 1}
            blocks = [b for b in (self.data, self.first, self.body, self.head) if b is not None]
            for op in (op for b in blocks for op in b.ops):
                i = op.info
                if op.kind == "convcol":
                    nb = _nbands(i["H"], _COL_ELEMS // (i["K"] * (i["W"] + 2)), T)
                    need["col"] = max(need["col"], i["K"] * -(-i["H"] // nb) * (i["W"] + 2))
                elif op.kind == "brb":
                    rmax = -(-i["H"] // _nbands(i["H"], _BRB_ROWS, T))
                    need["hid"] = max(need["hid"], i["C_h"] * (rmax + 2) * (i["W"] + 2))
                    need["dwo"] = max(need["dwo"], i["C_h"] * rmax * (i["W"] + 2))
                elif op.kind == "resize":
                    need["rs"] = max(need["rs"], i["H"] * i["OW"])
                elif op.kind == "wino":
                    TH, TW = (i["H"] + 1) // 2, (i["W"] + 1) // 2
                    tiles = -(-TH // _nbands(TH, _WINO_TILES // TW, T)) * TW
                    need["V"] = max(need["V"], 16 * i["C_in"] * tiles)
                    need["Mw"] = max(need["Mw"], 16 * i["C_out"] * tiles)
                    need["wt"] = max(need["wt"], 4 * (i["W"] + 4))
            self._scratch_size[T] = need
        return {k: np.empty((T, v), np.float32) for k, v in self._scratch_size[T].items()}

    # -- running ------------------------------------------------------------------------
    def _workspace(self, B: int, T: int) -> dict:
        """Buffers of one run: taken from the idle cache (same B and T) or allocated.

        Borders are zero when allocated and every kernel keeps them so, so a
        workspace is reused as is; two runs at once (interleaved generators,
        threads) each get their own.
        """
        with self._lock:  # two threads must never take the same buffers
            ws, self._idle = self._idle, None
        if ws is not None and ws["key"] == (B, T):
            return ws
        g = self.graph
        return {"key": (B, T), "scratch": self._scratch(T), "data": self.data.alloc(B),
                "img": np.zeros((B, 3, g.height + 2, g.width + 2), np.float32), "head": self.head.alloc(B),
                # two alternating sets: iteration n never overwrites the state it reads
                "sets": [{**self.first.alloc(B), **(self.body.alloc(B) if self.body else {})} for _ in range(2)]}

    def _logits(self, shape) -> np.ndarray:
        """A logits array of ``shape``: one the caller has released, else a new one (at most one
        per head is kept; ``minitnet.buffers``; ``ItNet.release()`` drops them)."""
        return self._outs.empty(shape)

    def run(self, x: np.ndarray, last: int, with_state: bool = False):
        """Yield (n, logits) like ``ItNet.iter_outputs`` (x already prepared); with ``with_state``
        (n, logits, state), state the loop-carried values after iteration n as
        {"state.l": (B, C, H, W) view of the padded buffer's interior}, valid until the
        next step of this generator (the buffers alternate between iterations).

        The kernels release the GIL, so runs in several Python threads overlap; numba's
        ``workqueue`` threading layer cannot run two parallel regions at once, so under
        it the compute steps take a process-wide lock.
        """
        g, cfg = self.graph, self.graph.config
        B, T = x.shape[0], numba.get_num_threads()
        w = self._workspace(B, T)
        sc = w["scratch"]
        try:
            loop = {"image": (w["img"], 0)}
            for ph in g.phases(last):
                blk, arrays = self._lowered(ph, w)
                with _exclusive(), _blas.single_threaded_blas():
                    if ph.block == "data":
                        w["img"][:, :, 1:-1, 1:-1] = x
                    env = {name: loop[src] for name, src in ph.reads.items()}
                    if ph.block == "head":
                        logits = self._logits((B, cfg.classes, g.height, g.width))
                        env["logits"] = (logits, 0)
                    self._run(blk, env, arrays, ph.n, sc, T)
                    if ph.block != "head":
                        loop = {f"state.{l}": self._get(blk, env, v) for l, v in enumerate(ph.result)}
                if ph.block == "head":
                    yield (ph.n, logits, self._state_views(loop)) if with_state else (ph.n, logits)
        finally:
            self._idle = w

    def _lowered(self, ph, w: dict):
        """The lowered block of a phase and the buffers it writes (two sets alternate in the
        loop: iteration n never overwrites the state it reads)."""
        if ph.block == "data":
            return self.data, w["data"]
        if ph.block == "head":
            return self.head, w["head"]
        return (self.first if ph.n == 1 else self.body), w["sets"][ph.n % 2]

    def _state_views(self, state: dict) -> dict:
        views = {}
        for k, C in self._carry_channels.items():
            a, off = state[k]
            views[k] = a[:, off:off + C, 1:-1, 1:-1]
        return views

    @staticmethod
    def _get(blk: _Block, env: dict, v: str):
        while v not in env and v in blk.alias:
            v = blk.alias[v]
        return env[v]

    def _run(self, blk: _Block, env: dict, arrays: dict, n: int, ws: dict, T: int):
        blk.bind(env, arrays)
        g, params = self.graph, self.params
        for op in blk.ops:
            x, cx = self._get(blk, env, op.src)
            out, co = env[op.dst]
            nd, i = op.nodes[0], op.info
            if op.kind == "conv":
                wt, b = self._weights("taps", g.layer_name(nd, n))
                r, cr = self._get(blk, env, op.res) if op.res else (out, 0)
                P.conv2d_nchwp_taps(x, cx, wt, i["offs"], b, r, cr, op.res is not None, nd.act, out, co,
                                    _nbands(i["H"], max(1, _TAPS_RUN // (i["W"] + 2)), T), T)
            elif op.kind == "wino":
                U, b = self._weights("wino", g.layer_name(nd, n))
                r, cr = self._get(blk, env, op.res) if op.res else (out, 0)
                TH, TW = (i["H"] + 1) // 2, (i["W"] + 1) // 2
                WG.conv2d_nchwp_winograd(x, cx, U, b, r, cr, op.res is not None, nd.act, out, co,
                                         _nbands(TH, _WINO_TILES // TW, T), ws["wt"], ws["V"], ws["Mw"], T)
            elif op.kind == "convcol":
                lay = g.layer_of(nd, n)
                w2, b = self._weights("col", lay.name)
                kh, kw = lay.kernel_size
                nb = _nbands(i["H"], _COL_ELEMS // (i["K"] * (i["W"] + 2)), T)
                P.conv2d_nchwp_im2col(x, cx, w2, kh, kw, lay.stride, lay.padding, b, nd.act, out, co, nb,
                                      ws["col"], T)
            elif op.kind == "brb":
                e, d, p = (self._weights("1x1" if j != 1 else "dw", g.layer_name(m, n))
                           for j, m in enumerate(op.nodes))
                P.bottleneck_nchwp(x, e[0], e[1], d[0], d[1], p[0], p[1], out,
                                   _nbands(i["H"], _BRB_ROWS, T), ws["hid"], ws["dwo"], T)
            elif op.kind == "affine":
                s, t = params[g.layer_name(nd, n)]
                P.affine_nchwp(x, cx, s, t, nd.act, out, co)
            elif op.kind == "pool":
                if len(op.nodes) == 2:  # max pool + the folded BN after it
                    s, t = params[g.layer_name(op.nodes[1], n)]
                    P.max_pool2d_nchwp(x, cx, nd.shape[0], i["k"], s, t, op.nodes[1].act, True, out, co)
                else:
                    P.max_pool2d_nchwp(x, cx, nd.shape[0], i["k"], _NO_AFFINE, _NO_AFFINE, 0, False, out, co)
            elif op.kind == "resize":
                S = resize_bands(x.shape[0] * i["C"], len(i["tabs"][0]), T)
                P.resize_bilinear_nchwp(x, cx, i["C"], *i["tabs"], out, co, i["pad_out"], S, ws["rs"], T)
            else:  # copy into a concat slot (borders are zero on both sides)
                o = co + i["off"]
                out[:, o:o + i["C"]] = x[:, cx:cx + i["C"]]


def load(path) -> ItNet:
    """Load an ItNet from an HDF5 weights file (``weights/FORMAT.md``); raises WeightsError."""
    return ItNet.from_file(path)
