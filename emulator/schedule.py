"""A generic list scheduler at row granularity: resources, ops of rows, and their schedule.

Knows nothing of networks: an ``Op`` is ``rows`` output rows of ``row_cycles``
cycles each, run on one or more ``Resource``; its ``deps`` say which rows of
other ops each of its rows reads.  ``simulate`` turns a list of ops into a
``Schedule`` (start, end and resource of every row).  ``emulator.timing``
builds the ops of an ItNet from the graph IR; tests build small ones by hand.

Model
-----
* **Event-driven, one row at a time.**  An event is "a resource finishes a
  row" or "a row becomes readable".  Row r of an op runs on
  ``resources[r % len(resources)]`` for ``row_cycles`` cycles and becomes
  readable ``delay`` cycles after it ends.
* **Data dependencies.**  Row r of an op needs rows ``lo[r]..hi[r]`` of each
  dependency; rows are consumed in order, so row r is data-ready when rows
  ``0..hi[r]`` of every dependency are readable.  Ops without dependencies are
  ready at cycle 0.
* **Arbitration.**  A free resource takes, among the rows assigned to it that
  are data-ready now, the one of the op with the lowest ``priority``, never
  waiting for a busier future (greedy list scheduling, non-preemptive per row).
  Rows of one op start in order.
* **Line buffers** are unbounded: a row is stored from when it is readable until
  the last consumer row that reads it ends; ``line_buffer_peaks`` gives the
  peak occupancy so buffers can be sized, ``rows_read`` the rows each
  consumer reads.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError

__all__ = ["Resource", "Dep", "Op", "Schedule", "simulate", "line_buffer_peaks", "rows_read"]


@dataclass(frozen=True)
class Resource:
    """Something that does one row at a time: a layer's tiles, or a periphery unit (tiles=0)."""

    name: str
    tiles: int = 0
    block: str = ""


@dataclass(frozen=True)
class Dep:
    """Op ``op`` (index into the op list) supplies rows ``lo[r]..hi[r]`` to output row r."""

    op: int
    lo: np.ndarray = field(repr=False)
    hi: np.ndarray = field(repr=False)


@dataclass
class Op:
    """One execution of one node: ``rows`` output rows of ``row_cycles`` each.

    Row r runs on ``resources[r % len(resources)]``; it becomes readable ``delay``
    cycles after it ends.  Lower ``priority`` wins a contended resource.
    ``row_mvms``: MVMs per tile per row (OW for a conv, 0 for digital ops);
    ``row_elems``: values per output row (C * OW), for line-buffer sizes.
    ``frame``, ``block``, ``n``, ``node``, ``layer``: labels for reports;
    ``cost``: a per-row cost record for accounting (``emulator.energy.RowWork``),
    carried untouched by the scheduler.
    """

    name: str
    rows: int
    row_cycles: int
    resources: tuple[int, ...]
    deps: tuple[Dep, ...] = ()
    delay: int = 0
    priority: tuple = ()
    row_mvms: int = 0
    row_elems: int = 0
    frame: int = 0
    block: str = ""
    n: int = 0
    node: str = ""
    layer: str | None = None
    cost: object = None


@dataclass
class Schedule:
    """``start[i]``, ``end[i]``, ``resource[i]``: per output row of op i (int64 arrays, cycles)."""

    ops: list[Op]
    resources: list[Resource]
    start: list[np.ndarray]
    end: list[np.ndarray]
    resource: list[np.ndarray]

    @property
    def makespan(self) -> int:
        return int(max((int(e.max()) for e in self.end if e.size), default=0))

    def op_span(self, i: int) -> tuple[int, int]:
        return int(self.start[i].min()), int(self.end[i].max())

    def busy_cycles(self) -> np.ndarray:
        """Busy cycles of every resource."""
        busy = np.zeros(len(self.resources), np.int64)
        for s, e, r in zip(self.start, self.end, self.resource):
            np.add.at(busy, r, e - s)
        return busy

    def intervals(self, res: int) -> np.ndarray:
        """(k, 3) array of (start, end, op index) rows run on resource ``res``, sorted by start."""
        parts = [np.stack([s[r == res], e[r == res], np.full(int((r == res).sum()), i)], 1)
                 for i, (s, e, r) in enumerate(zip(self.start, self.end, self.resource)) if (r == res).any()]
        if not parts:
            return np.zeros((0, 3), np.int64)
        a = np.concatenate(parts).astype(np.int64)
        return a[np.argsort(a[:, 0], kind="stable")]


def _check_ops(ops: list[Op], nres: int) -> None:
    """ConfigError naming the first op whose rows, cycles, dependencies or resources are invalid."""
    nops = len(ops)
    for i, op in enumerate(ops):
        if op.rows < 1 or op.row_cycles < 0 or op.delay < 0 or not op.resources:
            raise ConfigError(f"simulate: op {i} {op.name!r} has rows={op.rows}, row_cycles={op.row_cycles}, "
                              f"delay={op.delay}, resources={op.resources}: expected rows >= 1, cycles >= 0 "
                              f"and at least one resource")
        for d in op.deps:
            if not 0 <= d.op < nops or d.op == i or len(d.hi) != op.rows or len(d.lo) != op.rows:
                raise ConfigError(f"simulate: op {i} {op.name!r} has a bad dependency on op {d.op} "
                                  f"(lo/hi lengths {len(d.lo)}/{len(d.hi)}, expected {op.rows})")
            if int(np.max(d.hi)) >= ops[d.op].rows or int(np.min(d.lo)) < 0:
                raise ConfigError(f"simulate: op {i} {op.name!r} reads rows up to {int(np.max(d.hi))} of op "
                                  f"{d.op} {ops[d.op].name!r}, which has {ops[d.op].rows} rows")
        if any(not 0 <= r < nres for r in op.resources):
            raise ConfigError(f"simulate: op {i} {op.name!r} names resources {op.resources}, have {nres}")


def _index(ops: list[Op], nres: int) -> tuple[list[list[int]], list[list[tuple]], list[set[int]]]:
    """Per resource, its ops by priority; per op, ``(dependency, hi as a list)``; per op, the
    resources of its consumers (woken when one of its rows becomes readable)."""
    res_ops: list[list[int]] = [[] for _ in range(nres)]
    for i in sorted(range(len(ops)), key=lambda i: (ops[i].priority, i)):
        for r in dict.fromkeys(ops[i].resources):
            res_ops[r].append(i)
    deps = [[(d.op, d.hi.tolist()) for d in op.deps] for op in ops]
    consumers: list[set[int]] = [set() for _ in ops]
    for op in ops:
        for d in op.deps:
            consumers[d.op].update(op.resources)
    return res_ops, deps, consumers


def simulate(ops: list[Op], resources: list[Resource]) -> Schedule:
    """Event-driven list scheduling at row granularity (see the module docstring).

    A free resource takes, among the rows assigned to it that are data-ready now,
    the one of the op with the lowest ``priority``; a row is data-ready when rows
    ``0..hi[r]`` of every dependency are readable.  Rows of one op start in order.
    """
    nops, nres = len(ops), len(resources)
    _check_ops(ops, nres)

    res_ops, deps, consumers = _index(ops, nres)
    rows = [op.rows for op in ops]
    cyc = [op.row_cycles for op in ops]
    delay = [op.delay for op in ops]
    ress = [op.resources for op in ops]
    nxt = [0] * nops
    avail: list[list[int]] = [[] for _ in range(nops)]  # readable time of rows 0..k (prefix max)
    start = [[0] * op.rows for op in ops]
    end = [[0] * op.rows for op in ops]
    rres = [[0] * op.rows for op in ops]
    free = [0] * nres
    heap = [(0, r) for r in range(nres)]
    heapq.heapify(heap)
    push, pop = heapq.heappush, heapq.heappop
    left = sum(rows)

    while heap:
        t, res = pop(heap)
        if free[res] > t:
            continue
        best, wake = -1, None
        lst = res_ops[res]
        j = 0
        while j < len(lst):
            o = lst[j]
            r = nxt[o]
            if r >= rows[o]:
                lst.pop(j)
                continue
            j += 1
            rs = ress[o]
            if rs[r % len(rs)] != res:
                continue
            rt = 0
            for p, hi in deps[o]:
                k = hi[r]
                if k >= nxt[p]:
                    rt = -1
                    break
                a = avail[p][k]
                if a > rt:
                    rt = a
            if rt < 0:
                continue
            if rt <= t:
                best = o
                break
            if wake is None or rt < wake:
                wake = rt
        if best < 0:
            if wake is not None:
                push(heap, (wake, res))
            continue
        o = best
        r = nxt[o]
        e = t + cyc[o]
        start[o][r], end[o][r], rres[o][r] = t, e, res
        nxt[o] = r + 1
        av = e + delay[o]
        avail[o].append(av if not r or av > avail[o][-1] else avail[o][-1])
        left -= 1
        free[res] = e
        push(heap, (e, res))
        if r + 1 < rows[o]:
            rs = ress[o]
            nr = rs[(r + 1) % len(rs)]
            if nr != res:
                push(heap, (max(t, free[nr]), nr))
        for c in consumers[o]:
            push(heap, (max(avail[o][-1], free[c]), c))
    if left:
        stuck = [ops[i].name for i in range(nops) if nxt[i] < rows[i]][:5]
        raise ConfigError(f"simulate: deadlock, {left} rows never became ready (first ops: {stuck}); "
                          f"a dependency cycle or a row read before it is produced")
    return Schedule(ops, list(resources), [np.asarray(s, np.int64) for s in start],
                    [np.asarray(e, np.int64) for e in end], [np.asarray(r, np.int64) for r in rres])

def line_buffer_peaks(s: Schedule, bits: int) -> tuple[np.ndarray, float]:
    """Peak rows held per op (its output rows readable and still needed) and the peak of
    all line buffers together, in KiB at ``bits`` per value."""
    ops = s.ops
    release: list[np.ndarray | None] = [None] * len(ops)
    for ci, op in enumerate(ops):
        for d in op.deps:
            p = ops[d.op]
            # row k of p is last read by the last consumer row r with lo[r] <= k
            last = np.searchsorted(d.lo, np.arange(p.rows), side="right") - 1
            rel = s.end[ci][np.clip(last, 0, None)]
            release[d.op] = rel if release[d.op] is None else np.maximum(release[d.op], rel)
    peaks = np.zeros(len(ops), np.int64)
    t_all, w_all = [], []
    for i, rel in enumerate(release):
        if rel is None:
            continue
        ready = np.maximum.accumulate(s.end[i] + ops[i].delay)
        rel = np.maximum(rel, ready)
        t = np.concatenate([ready, rel])
        w = np.concatenate([np.ones(len(ready), np.int64), -np.ones(len(rel), np.int64)])
        o = np.lexsort((w, t))  # at equal times release first
        peaks[i] = int(np.max(np.cumsum(w[o])))
        t_all.append(t)
        w_all.append(w * ops[i].row_elems)
    if not t_all:
        return peaks, 0.0
    t, w = np.concatenate(t_all), np.concatenate(w_all)
    o = np.lexsort((w, t))
    return peaks, float(np.max(np.cumsum(w[o]))) * bits / 8 / 1024


def rows_read(ops: list[Op]) -> list[list[tuple[int, int]]]:
    """Per op, ``(dependency op, rows read)`` for each of its dependencies: consumer row r
    reads rows ``lo[r]..hi[r]``, so ``rows read = sum(hi - lo + 1)`` over its rows."""
    return [[(d.op, int(np.sum(d.hi - d.lo + 1))) for d in op.deps] for op in ops]
