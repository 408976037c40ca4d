"""The fused runtime: a lowered ``Program`` with its buffers, scratch and weights, run on ``Graph.phases``.

``FusedPlan.run`` walks the loop exactly as the node-by-node executor does
(``Graph.phases``: the data block, the body for n = 1..last, the head at head
iterations) and runs each phase's lowered block: for every op, the kernel call of
its kind (``kinds.KINDS``) on the padded buffers the values were placed in.

Buffers are allocated on the first run (two alternating sets for the loop, so
iteration n never overwrites the state it reads) and reused by later runs; two
runs at once (interleaved generators, threads) each get their own. Logits arrays
are recycled once the caller has dropped them (``minitnet.buffers.Recycler``).
Weights in kernel layout are made once per layer and kept in a cache the caller
passes (the ``ItNet``'s, shared by the plans of every input size).
"""
from __future__ import annotations

import contextlib
import threading

import numba
import numpy as np

from ..buffers import Recycler
from ..graph import Graph
from ..kernels import blas
from ..kernels import winograd as WG
from .kinds import KINDS
from .lower import Block, Program
from .options import FusedOptions

__all__ = ["FusedPlan", "LAYOUTS"]

_WORKQUEUE_LOCK = threading.Lock()


def _exclusive():
    """A process-wide lock when numba runs on the workqueue layer (no concurrent parallel
    regions), else a no-op context."""
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run yet: the layer is not chosen
        layer = numba.config.THREADING_LAYER
    return _WORKQUEUE_LOCK if layer == "workqueue" else contextlib.nullcontext()


def _taps_layout(w):
    co, ci, kh, kw = w.shape
    return np.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(kh * kw, co, ci)


#: kernel layouts of conv weights (OIHW): "taps" (KH*KW, C_out, C_in), "winograd" (16, C_out, C_in),
#: "flat" (C_out, C_in*KH*KW): im2col, 1x1 (C_out, C_in) and depthwise (C, 9)
LAYOUTS = {"taps": _taps_layout, "winograd": WG.winograd_weights, "flat": lambda w: w.reshape(w.shape[0], -1)}


def _alloc(block: Block, B: int) -> dict:
    return {k: np.zeros((B, c, h + 2, w + 2), np.float32) for k, (c, h, w) in block.bufs.items()}


def _resolve(block: Block, env: dict, v: str):
    while v not in env and v in block.alias:
        v = block.alias[v]
    return env[v]


class FusedPlan:
    """A ``Program`` of one input size ready to run (see the module docstring).

    params: the net's folded parameters; prepared: the cache of weights in kernel layout
    (not the net itself: no reference cycle, so dropping the net frees the buffers at once).
    """

    def __init__(self, program: Program, graph: Graph, params: dict, prepared: dict, options: FusedOptions):
        self.program, self.graph, self.params, self.prepared, self.options = program, graph, params, prepared, options
        self._scratch_size: dict[int, dict] = {}
        self._idle: dict | None = None  # the buffers of the last finished run, reused by the next
        self._outs = Recycler(cap=len(graph.heads))  # logits handed out, reused once the caller drops them
        shapes = {nd.name: nd.shape for nd in graph.data}  # the loop-carried state keeps its initial shape
        self._carry_channels = {f"state.{l}": shapes[v][0] for l, v in enumerate(graph.init)}
        self._lock = threading.Lock()
        #: the op table the runtime dispatches on (``kinds.KINDS``; a profiler may put a wrapped copy here)
        self.kinds = KINDS

    def weights(self, layout: str, lname: str):
        """(w in ``LAYOUTS[layout]``, b) of conv layer ``lname``, made once."""
        key = (layout, lname)
        if key not in self.prepared:
            w, b = self.params[lname]
            self.prepared[key] = (LAYOUTS[layout](w), b)
        return self.prepared[key]

    def scratch_elems(self, T: int) -> dict:
        """{scratch name: float32 elements per worker} for T workers: the most any op needs."""
        if T not in self._scratch_size:
            need = dict.fromkeys(("col", "hid", "dwo", "rs", "V", "Mw", "wt"), 1)
            for op in (op for b in self.program.blocks() for op in b.ops):
                for k, v in self.kinds[op.kind].scratch(op.info, T, self.options).items():
                    need[k] = max(need[k], v)
            self._scratch_size[T] = need
        return self._scratch_size[T]

    def _workspace(self, B: int, T: int) -> dict:
        """Buffers of one run: taken from the idle cache (same B and T) or allocated.

        Borders are zero when allocated and every kernel keeps them so, so a
        workspace is reused as is; two runs at once each get their own.
        """
        with self._lock:  # two threads must never take the same buffers
            ws, self._idle = self._idle, None
        if ws is not None and ws["key"] == (B, T):
            return ws
        g, p = self.graph, self.program
        return {"key": (B, T), "scratch": {k: np.empty((T, v), np.float32) for k, v in self.scratch_elems(T).items()},
                "data": _alloc(p.data, B), "img": np.zeros((B, 3, g.height + 2, g.width + 2), np.float32),
                "head": _alloc(p.head, B),
                "sets": [{**_alloc(p.first, B), **(_alloc(p.body, B) if p.body else {})} for _ in range(2)]}

    def run(self, x: np.ndarray, last: int, with_state: bool = False):
        """Yield (n, state, logits) at every head iteration n <= last (x already prepared, as
        ``ItNet.iter_states``): state None, or with ``with_state`` the loop-carried values after
        iteration n as {"state.l": (B, C, H, W) view of the padded buffer's interior}, valid
        until the next step of this generator (the buffers alternate between iterations).

        The kernels release the GIL, so runs in several Python threads overlap; numba's
        ``workqueue`` threading layer cannot run two parallel regions at once, so under
        it the compute steps take a process-wide lock.
        """
        g, cfg = self.graph, self.graph.config
        B, T = x.shape[0], numba.get_num_threads()
        w = self._workspace(B, T)
        try:
            loop = {"image": (w["img"], 0)}
            for ph in g.phases(last):
                blk, arrays = self._block_of(ph, w)
                with _exclusive(), blas.single_threaded_blas():
                    if ph.block == "data":
                        w["img"][:, :, 1:-1, 1:-1] = x
                    env = {name: loop[src] for name, src in ph.reads.items()}
                    if ph.block == "head":
                        logits = self._outs.empty((B, cfg.classes, g.height, g.width))
                        env["logits"] = (logits, 0)
                    self.run_block(blk, env, arrays, ph.n, w["scratch"], T)
                    if ph.block != "head":
                        loop = {f"state.{l}": _resolve(blk, env, v) for l, v in enumerate(ph.result)}
                if ph.block == "head":
                    yield ph.n, self._state_views(loop) if with_state else None, logits
        finally:
            self._idle = w

    def _block_of(self, ph, w: dict):
        """The lowered block of a phase and the buffers it writes (two sets alternate in the
        loop: iteration n never overwrites the state it reads)."""
        if ph.block == "data":
            return self.program.data, w["data"]
        if ph.block == "head":
            return self.program.head, w["head"]
        return (self.program.first if ph.n == 1 else self.program.body), w["sets"][ph.n % 2]

    def _state_views(self, state: dict) -> dict:
        views = {}
        for k, C in self._carry_channels.items():
            a, off = state[k]
            views[k] = a[:, off:off + C, 1:-1, 1:-1]
        return views

    def run_block(self, blk: Block, env: dict, arrays: dict, n: int, ws: dict, T: int):
        """Run the ops of ``blk`` at iteration n: ``env`` {value: (array, channel offset)} holds
        the values it reads and gets those it places in ``arrays`` (its buffers)."""
        for v, (key, off) in blk.place.items():
            env[v] = (arrays[key], off)
        for op in blk.ops:
            res = _resolve(blk, env, op.res) if op.res else None
            self.kinds[op.kind].run(self, op, n, _resolve(blk, env, op.src), env[op.dst], res, ws, T)
