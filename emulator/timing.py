"""Cycle-level timing of the loop graph on fully-parallel crossbar tiles.

Every unique conv layer owns its tiles (``emulator.tiles.plan_layer``); all
tiles work at once.  A shared iterative block's tiles serve iteration n + 1
after iteration n, so the loop trades chip area for time.  This module
measures that trade-off row by row.

Model
-----
The scheduler is generic (``emulator.schedule``: rows, resources, greedy list
scheduling by priority, unbounded line buffers); this module says what an
ItNet is to it.

* **One op per node execution, one row per output row.**  Conv layers
  (``op_spec(op).mvm``) run on tiles: every tile of a layer (row pieces and
  column pieces, or depthwise channel groups) does one MVM per output pixel,
  all tiles of the layer in parallel, so an output row of width OW occupies
  all of the layer's tiles for ``OW * mvm_cycles`` cycles.  Partial sums of
  row pieces, bias, activation and residual are added in the digital
  epilogue, pipelined behind the ADCs: a finished row is readable by its
  consumers ``row_handoff_cycles`` later (epilogue plus line-buffer write).
* **Digital ops** (``affine``, ``maxpool``, ``resize``, ``concat``) run in
  periphery, exactly, one unit per node (shared like the tiles of its block),
  at ``*_cycles_per_pixel`` cycles per output pixel, all channels in parallel;
  their rows are readable when they end (fused into the data path).
* **Data dependencies** come from the op table: output row r of a node reads
  rows ``op_spec(op).input_rows(...)`` of each input (3x3 conv, stride 1:
  r-1..r+1; stride 2: 2r-1..2r+1; maxpool k: kr..kr+k-1; bilinear resize: the
  two source rows; concat, affine and residuals: row r).  The image is in
  memory at cycle 0 (the input is never the bottleneck).
* **Priority** is (frame, iteration, position in the schedule): shared tiles
  serve the iterations in order, and iteration n + 1 runs on the first rows
  only while iteration n waits for data (wavefront pipelining).
* **Energy**: every op carries the events of one of its rows
  (``emulator.energy.row_work``); ``time_mapping`` puts picojoules on them.

Mappings (``Mapping``)
----------------------
``shared``       one copy of the iterative block's tiles serves all N iterations.
``independent``  the loop unrolled: N bodies, each with its own tiles.
``replicated``   ``r`` copies of the shared block's tiles: with
                 ``split="iteration"`` (default) copy ``(n - 1) % r`` serves
                 iteration n (round robin over iterations, so copies pipeline
                 as a wavefront like unrolled bodies); with ``split="row"`` every
                 iteration's output row y goes to copy ``y % r``.
Every mapping can also replicate the data block's convs (output rows round
robin), the usual way to balance a pipeline whose first layers see more
pixels: a data conv gets ``min(data_replication, ceil(P / P_body))`` copies,
P its output pixels and P_body those of the largest iterative-block layer
(more copies could not speed up the pipeline).  Heads always own their tiles
(their weights differ).

API: ``extract(graph, hw, timing, mapping, frames) -> (ops, resources)``;
``emulator.schedule.simulate(ops, resources) -> Schedule``; ``time_mapping``
and ``time_graph`` for the reports (timing, energy, area).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from .config import HardwareConfig
from .energy import EnergyConfig, MappingEnergy, energy_of, energy_table, plot_energy, row_work
from .errors import ConfigError
from .schedule import Dep, Op, Resource, Schedule, line_buffer_peaks, simulate
from .tiles import on_tiles as tile_layer, plan_layer
from minitnet.graph import op_spec, unroll

__all__ = ["TimingConfig", "Mapping", "MAPPINGS", "MappingTiming", "TimingReport", "extract", "time_mapping",
           "time_graph", "plot"]

MAPPINGS = ("shared", "independent", "replicated")
SPLITS = ("iteration", "row")


# --- configuration ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimingConfig:
    """Timing of one tile MVM and of the digital periphery, in clock cycles.

    One MVM (one output pixel on one tile):

    * ``bit_serial=True``: the DAC applies the ``inp_bits`` input bits one pulse
      after the other (``inp_bits * input_pulse_cycles``); otherwise one multi-level
      pulse (``input_pulse_cycles``).
    * conversion: a tile has ``cols / cols_per_adc`` ADCs; each converts its
      ``cols_per_adc`` columns in turn, ``out_bits * adc_cycles_per_bit`` cycles
      each (SAR).  Every tile converts all its columns, used or not.
    * ``convert_per_bit=True`` (bit-serial only; ISAAC-style): every input bit is
      converted and shift-added digitally, so the conversion repeats per bit.

    ``mvm_cycles(hw)`` = input + conversion, or ``inp_bits * (input_pulse_cycles
    + conversion)`` with ``convert_per_bit``.  Bits come from ``hw.inp_bits`` /
    ``hw.out_bits``, or ``default_bits`` where those are None (unlimited).
    """

    bit_serial: bool = True
    """Inputs applied bit-serially, one pulse per DAC bit (else one multi-level pulse)."""
    input_pulse_cycles: int = 1
    """Cycles per input pulse (one bit when bit-serial, the whole input otherwise). >= 1."""
    adc_cycles_per_bit: int = 1
    """Cycles per output bit of one ADC conversion (SAR: one comparison per bit). >= 1."""
    cols_per_adc: int = 8
    """Crossbar columns multiplexed onto one ADC, converted one after the other. >= 1."""
    convert_per_bit: bool = False
    """Bit-serial only: convert (and shift-add) after every input bit instead of once."""
    default_bits: int = 8
    """DAC/ADC bits assumed where the HardwareConfig says None (unlimited), in bits. >= 1."""
    affine_cycles_per_pixel: int = 1
    """Digital periphery: cycles per output pixel of a BN affine (all channels in parallel). >= 0."""
    pool_cycles_per_pixel: int = 1
    """Digital periphery: cycles per output pixel of a max-pool. >= 0."""
    resize_cycles_per_pixel: int = 1
    """Digital periphery: cycles per output pixel of a bilinear resize. >= 0."""
    concat_cycles_per_pixel: int = 0
    """Digital periphery: cycles per output pixel of a concatenation (0: wiring). >= 0."""
    depthwise_cycles_per_pixel: int = 9
    """Digital periphery: cycles per output pixel of a depthwise conv run digitally
    (``HardwareConfig.depthwise="digital"``): all channels in parallel lanes, one
    multiply-accumulate per tap and cycle (9 for 3x3). >= 0."""
    row_handoff_cycles: int = 4
    """Cycles from a conv row's last MVM until consumers may read the row (digital
    epilogue: partial sums, bias, activation, residual; line-buffer write). >= 0."""
    clock_hz: float = 1e9
    """Clock frequency, in Hz: converts cycles to seconds in reports. > 0."""

    def __post_init__(self):
        for name in ("bit_serial", "convert_per_bit"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ConfigError(f"TimingConfig.{name}={getattr(self, name)!r}: expected True or False")
        for name, lo in (("input_pulse_cycles", 1), ("adc_cycles_per_bit", 1), ("cols_per_adc", 1),
                         ("default_bits", 1), ("affine_cycles_per_pixel", 0), ("pool_cycles_per_pixel", 0),
                         ("resize_cycles_per_pixel", 0), ("concat_cycles_per_pixel", 0),
                         ("depthwise_cycles_per_pixel", 0),
                         ("row_handoff_cycles", 0)):
            v = getattr(self, name)
            if not isinstance(v, numbers.Integral) or isinstance(v, (bool, np.bool_)) or v < lo:
                raise ConfigError(f"TimingConfig.{name}={v!r}: expected an integer >= {lo} (cycles)"
                                  if "cycles" in name else
                                  f"TimingConfig.{name}={v!r}: expected an integer >= {lo}")
        v = self.clock_hz
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
            raise ConfigError(f"TimingConfig.clock_hz={v!r}: expected a finite number > 0 (Hz)")
        if self.convert_per_bit and not self.bit_serial:
            raise ConfigError("TimingConfig: convert_per_bit=True needs bit_serial=True "
                              "(with one multi-level input pulse there is one conversion per MVM)")

    def bits(self, hw: HardwareConfig) -> tuple[int, int]:
        """(DAC bits, ADC bits) used for timing."""
        return (self.default_bits if hw.inp_bits is None else hw.inp_bits,
                self.default_bits if hw.out_bits is None else hw.out_bits)

    def mvm_cycles(self, hw: HardwareConfig) -> int:
        """Cycles of one tile MVM (see the class docstring)."""
        inp, out = self.bits(hw)
        conversion = self.cols_per_adc * out * self.adc_cycles_per_bit
        if self.bit_serial and self.convert_per_bit:
            return inp * (self.input_pulse_cycles + conversion)
        pulses = inp if self.bit_serial else 1
        return pulses * self.input_pulse_cycles + conversion

    def describe(self, hw: HardwareConfig) -> str:
        inp, out = self.bits(hw)
        conv = f"{self.cols_per_adc} cols/ADC x {out}-bit SAR x {self.adc_cycles_per_bit}"
        if self.bit_serial and self.convert_per_bit:
            how = f"{inp} input bits x ({self.input_pulse_cycles} + {conv})"
        elif self.bit_serial:
            how = f"{inp} input bits x {self.input_pulse_cycles} + {conv}"
        else:
            how = f"1 input pulse x {self.input_pulse_cycles} + {conv}"
        return (f"{self.mvm_cycles(hw)} cycles/MVM ({how}); row handoff {self.row_handoff_cycles}; "
                f"periphery cycles/pixel: affine {self.affine_cycles_per_pixel}, pool "
                f"{self.pool_cycles_per_pixel}, resize {self.resize_cycles_per_pixel}, concat "
                f"{self.concat_cycles_per_pixel}; clock {self.clock_hz / 1e9:g} GHz")

    def digital_cycles_per_pixel(self, op: str) -> int:
        return {"affine": self.affine_cycles_per_pixel, "maxpool": self.pool_cycles_per_pixel,
                "resize": self.resize_cycles_per_pixel, "concat": self.concat_cycles_per_pixel,
                "conv": self.depthwise_cycles_per_pixel}[op]  # a conv in the periphery: depthwise="digital"


@dataclass(frozen=True)
class Mapping:
    """How the graph's layers are laid onto tiles (see the module docstring)."""

    name: str = "shared"
    """``shared``, ``independent`` or ``replicated``."""
    replication: int = 1
    """Copies of the iterative block's tiles (``replicated`` only; 1 otherwise). >= 1."""
    split: str = "iteration"
    """How copies share the work: ``iteration`` (copy (n-1) % r serves iteration n) or ``row``."""
    data_replication: int = 1
    """Most copies of a data-block conv layer's tiles (output rows round robin); a layer
    gets ``min(data_replication, ceil(its pixels / largest body layer's pixels))``. >= 1."""

    def __post_init__(self):
        if self.name not in MAPPINGS:
            raise ConfigError(f"Mapping.name={self.name!r}: expected one of {list(MAPPINGS)}")
        if self.split not in SPLITS:
            raise ConfigError(f"Mapping.split={self.split!r}: expected one of {list(SPLITS)}")
        for nm in ("replication", "data_replication"):
            v = getattr(self, nm)
            if not isinstance(v, numbers.Integral) or isinstance(v, (bool, np.bool_)) or v < 1:
                raise ConfigError(f"Mapping.{nm}={v!r}: expected an integer >= 1 (copies)")
        if self.name != "replicated" and self.replication != 1:
            raise ConfigError(f"Mapping: replication={self.replication} only applies to the 'replicated' "
                              f"mapping, got name={self.name!r}")


# --- the graph IR -> ops ------------------------------------------------------------------------
class _Layout:
    """The resources of a mapping: a layer's tiles or one periphery unit per node, named and
    shared across iterations as the mapping says (``resources_of``)."""

    def __init__(self, graph, hw: HardwareConfig, mapping: Mapping):
        self.hw, self.mapping = hw, mapping
        self.resources: list[Resource] = []
        self.index: dict[str, int] = {}
        self.plans: dict[str, object] = {}
        px = [nd.shape[1] * nd.shape[2] for nd in graph.body + graph.head if op_spec(nd.op).mvm]
        self.body_px = max(px, default=1)

    def plan(self, layer):
        if layer.name not in self.plans:
            self.plans[layer.name] = plan_layer(layer, self.hw)
        return self.plans[layer.name]

    def _get(self, name: str, tiles: int, block: str) -> int:
        if name not in self.index:
            self.index[name] = len(self.resources)
            self.resources.append(Resource(name, tiles, block))
        return self.index[name]

    def resources_of(self, st, layer) -> tuple[int, ...]:
        """Resource indices of one step (the same for every frame)."""
        nd, mp = st.node, self.mapping
        on_tiles = op_spec(nd.op).mvm and tile_layer(layer, self.hw)
        tiles = self.plan(layer).tiles if on_tiles else 0
        tag = "" if on_tiles else " (periphery)"
        if st.block == "data":
            copies = min(mp.data_replication, -(-nd.shape[1] * nd.shape[2] // self.body_px)) if on_tiles else 1
            if copies > 1:
                return tuple(self._get(f"{nd.name}#{k}", tiles, "data") for k in range(copies))
            return (self._get(nd.name + tag, tiles, "data"),)
        if st.block == "head":
            return (self._get(f"head{st.n}/{nd.name}{tag}", tiles, "head"),)
        if mp.name == "shared":
            return (self._get(f"body/{nd.name}{tag}", tiles, "body"),)
        if mp.name == "independent":
            return (self._get(f"body{st.n}/{nd.name}{tag}", tiles, "body"),)
        r = mp.replication
        if mp.split == "iteration":
            return (self._get(f"body#{(st.n - 1) % r}/{nd.name}{tag}", tiles, "body"),)
        return tuple(self._get(f"body#{k}/{nd.name}{tag}", tiles, "body") for k in range(r))


def _step_rows(st, preds, layer, shapes) -> list[tuple]:
    """``(pred key, lo, hi)`` for every input of a step read from a line buffer (not the image)."""
    nd = st.node
    kinds = ["input"] * len(nd.inputs) + (["residual"] if nd.residual else [])
    out = []
    for pk, kind in zip(preds, kinds):
        if pk == ("image",):
            continue  # in memory from cycle 0
        lo, hi = op_spec(nd.op).input_rows(nd, layer, shapes[pk][1], nd.shape[1], residual=kind == "residual")
        out.append((pk, lo, hi))
    return out


def extract(graph, hw: HardwareConfig, timing: TimingConfig, mapping: Mapping,
            frames: int = 1) -> tuple[list[Op], list[Resource]]:
    """The row-level ops of ``frames`` images streamed through ``graph`` laid out by ``mapping``.

    Walks ``minitnet.graph.unroll(graph)`` (``graph.schedule`` with the loop's
    ``carry`` and ``first_alias`` resolved) once per frame.  Resources: a
    layer's tiles (``plan_layer(...).tiles``) or one periphery unit per node,
    shared across iterations as the mapping says.  Every op carries the
    ``emulator.energy.RowWork`` of one of its rows in ``cost``.
    """
    if isinstance(frames, bool) or not isinstance(frames, numbers.Integral) or frames < 1:
        raise ConfigError(f"extract: frames={frames!r}: expected an integer >= 1")
    mvm = timing.mvm_cycles(hw)
    dag = unroll(graph)
    shapes = {("image",): (3, graph.height, graph.width)}
    for st, key, _ in dag:
        shapes[key] = st.node.shape
    lay = _Layout(graph, hw, mapping)
    steps = []
    for pos, (st, key, preds) in enumerate(dag):
        nd = st.node
        layer = graph.layer_of(nd, st.n) if op_spec(nd.op).mvm else None
        OW = nd.shape[2]
        if op_spec(nd.op).mvm and tile_layer(layer, hw):
            row = dict(row_cycles=OW * mvm, delay=timing.row_handoff_cycles, row_mvms=OW)
        else:
            row = dict(row_cycles=OW * timing.digital_cycles_per_pixel(nd.op), delay=0, row_mvms=0)
        work = row_work(nd, layer, lay.plan(layer) if layer is not None and tile_layer(layer, hw) else None, hw,
                        timing)
        steps.append((st, key, pos, row, work, _step_rows(st, preds, layer, shapes), lay.resources_of(st, layer)))

    ops: list[Op] = []
    for f in range(frames):
        index: dict[tuple, int] = {}
        for st, key, pos, row, work, dep_rows, res in steps:
            deps = tuple(Dep(index[pk], lo, hi) for pk, lo, hi in dep_rows)
            index[key] = len(ops)
            ops.append(Op(name=f"f{f}/{st.block}{st.n if st.block != 'data' else ''}/{st.node.name}",
                          rows=st.node.shape[1], resources=res, deps=deps, priority=(f, st.n, pos),
                          row_elems=st.node.shape[0] * st.node.shape[2], frame=f, block=st.block, n=st.n,
                          node=st.node.name, layer=st.layer, cost=work, **row))
    return ops, lay.resources


# --- reports -------------------------------------------------------------------------------------
@dataclass
class MappingTiming:
    """Timing of one mapping.  Cycles are clock cycles; latencies count from cycle 0,
    when the image is in memory, for one frame alone; ``frame_interval_cycles`` is
    the steady-state spacing of finished frames (the median spacing of consecutive
    frames) when ``frames`` are streamed back to back.  ``bottleneck_cycles``, the
    busiest resource's cycles per frame, is its lower bound in the steady state."""

    mapping: Mapping
    tiles: int
    body_tiles: int
    mvm_cycles: int
    heads: tuple[int, ...]
    output_latency_cycles: tuple[int, ...]
    frame_interval_cycles: float
    frame_finish_cycles: tuple[int, ...]
    bottleneck_cycles: int
    bottleneck: str
    tile_utilisation: float
    tile_utilisation_stream: float
    line_buffer_kib: float
    executions: list[dict]
    resources: list[dict]
    schedule: Schedule = field(repr=False)
    clock_hz: float = 1e9
    note: str = ""
    energy: MappingEnergy | None = None

    @property
    def frames_per_second(self) -> float:
        return self.clock_hz / self.frame_interval_cycles

    def to_dict(self, detail: bool = True) -> dict:
        d = {
            "mapping": self.mapping.name,
            "replication": self.mapping.replication,
            "split": self.mapping.split,
            "data_replication": self.mapping.data_replication,
            "tiles": self.tiles,
            "body_tiles": self.body_tiles,
            "mvm_cycles": self.mvm_cycles,
            "heads": list(self.heads),
            "output_latency_cycles": list(self.output_latency_cycles),
            "output_latency_s": [c / self.clock_hz for c in self.output_latency_cycles],
            "frame_interval_cycles": self.frame_interval_cycles,
            "frames_per_second": self.frames_per_second,
            "frame_finish_cycles": list(self.frame_finish_cycles),
            "bottleneck": self.bottleneck,
            "bottleneck_cycles": self.bottleneck_cycles,
            "tile_utilisation": self.tile_utilisation,
            "tile_utilisation_stream": self.tile_utilisation_stream,
            "line_buffer_kib": self.line_buffer_kib,
        }
        if self.energy is not None:
            d.update(self.energy.to_dict())
        if self.note:
            d["note"] = self.note
        if detail:
            d["executions"] = self.executions
            d["resources"] = self.resources
        return d


def _frame_finish(s: Schedule, frames: int) -> list[int]:
    fin = [0] * frames
    for i, op in enumerate(s.ops):
        fin[op.frame] = max(fin[op.frame], int(s.end[i].max()))
    return fin


def _executions(s: Schedule, peaks: np.ndarray) -> list[dict]:
    """Start and end cycle of every op of a one-frame schedule, with its line-buffer peak."""
    out = []
    for i, op in enumerate(s.ops):
        a, b = s.op_span(i)
        out.append({"block": op.block, "n": op.n, "node": op.node, "layer": op.layer,
                    "resource": s.resources[op.resources[0]].name if len(op.resources) == 1 else
                    [s.resources[r].name for r in op.resources],
                    "rows": op.rows, "start_cycle": a, "end_cycle": b, "line_buffer_rows": int(peaks[i])})
    return out


def time_mapping(graph, hw: HardwareConfig | None = None, timing: TimingConfig | None = None,
                 mapping: Mapping | None = None, frames: int = 4,
                 energy: EnergyConfig | None = None) -> MappingTiming:
    """Schedule one frame alone (latencies, per-execution spans, utilisation, line buffers)
    and ``frames`` frames back to back (steady-state frame interval); the energy and area
    of both under ``energy`` (default ``EnergyConfig()``)."""
    energy = EnergyConfig() if energy is None else energy
    hw = HardwareConfig() if hw is None else hw
    timing = TimingConfig() if timing is None else timing
    mapping = Mapping() if mapping is None else mapping
    if isinstance(frames, bool) or not isinstance(frames, numbers.Integral) or frames < 2:
        raise ConfigError(f"time_mapping: frames={frames!r}: expected an integer >= 2 "
                          f"(a steady-state interval needs at least two finished frames)")
    ops, res = extract(graph, hw, timing, mapping, 1)
    s = simulate(ops, res)
    heads = graph.heads
    lat = {op.n: int(s.end[i].max()) for i, op in enumerate(ops) if op.block == "head" and op.node == "logits"}
    busy = s.busy_cycles()
    tiles = np.array([r.tiles for r in res], np.int64)
    makespan = s.makespan
    peaks, kib = line_buffer_peaks(s, timing.bits(hw)[0])
    b_i = int(np.argmax(busy))

    ops_f, res_f = extract(graph, hw, timing, mapping, frames)
    sf = simulate(ops_f, res_f)
    fin = _frame_finish(sf, frames)
    # median spacing of consecutive finished frames: robust to the start-up and to the
    # last frame, which finishes early because nothing follows it
    interval = float(np.median(np.diff(fin)))
    busy_f = sf.busy_cycles() / frames
    resources = [{"name": r.name, "block": r.block, "tiles": r.tiles, "busy_cycles": int(busy[k]),
                  "utilisation": busy[k] / makespan if makespan else 0.0,
                  "utilisation_stream": float(busy_f[k] / interval) if interval else 0.0}
                 for k, r in enumerate(res)]
    note = ""
    if not graph.config.shared and mapping.name != "independent":
        note = ("this network has independent weights per iteration: a shared or replicated body "
                "would need re-programming; timed as the same structure with shared weights")
    total_tiles = int(tiles.sum())
    return MappingTiming(
        mapping=mapping, tiles=total_tiles,
        body_tiles=int(sum(r.tiles for r in res if r.block == "body")),
        mvm_cycles=timing.mvm_cycles(hw), heads=tuple(heads),
        output_latency_cycles=tuple(lat[n] for n in heads),
        frame_interval_cycles=float(interval), frame_finish_cycles=tuple(fin),
        bottleneck_cycles=int(busy[b_i]), bottleneck=res[b_i].name,
        tile_utilisation=float((busy * tiles).sum() / (total_tiles * makespan)) if total_tiles else 0.0,
        tile_utilisation_stream=float((busy_f * tiles).sum() / (total_tiles * interval)) if total_tiles else 0.0,
        line_buffer_kib=kib, executions=_executions(s, peaks), resources=resources, schedule=s,
        clock_hz=timing.clock_hz, note=note,
        energy=energy_of(s, hw, timing, energy, tuple(heads), tuple(lat[n] for n in heads), interval))


@dataclass
class TimingReport:
    """The three mappings of one network (``mappings``: name -> MappingTiming)."""

    config: object
    height: int
    width: int
    hw: HardwareConfig
    timing: TimingConfig
    frames: int
    mappings: dict[str, MappingTiming]
    energy: EnergyConfig = field(default_factory=EnergyConfig)

    def to_dict(self, detail: bool = True) -> dict:
        return {
            "config": self.config.to_dict(),
            "height_px": self.height,
            "width_px": self.width,
            "hardware": {"rows": self.hw.rows, "cols": self.hw.cols, "inp_bits": self.hw.inp_bits,
                         "out_bits": self.hw.out_bits},
            "timing": dataclasses.asdict(self.timing),
            "mvm_cycles": self.timing.mvm_cycles(self.hw),
            "energy": dataclasses.asdict(self.energy),
            "frames": self.frames,
            "mappings": {k: v.to_dict(detail) for k, v in self.mappings.items()},
        }

    def to_json(self, detail: bool = True) -> str:
        return json.dumps(self.to_dict(detail), indent=2)

    def table(self, outputs: tuple[int, ...] | None = None) -> str:
        """A text table: tiles, latency of some outputs, frame interval per mapping."""
        heads = next(iter(self.mappings.values())).heads
        if outputs is None:
            outputs = heads if len(heads) <= 4 else tuple(sorted({heads[0], *heads[5::5], heads[-1]}))
        outputs = tuple(n for n in outputs if n in heads)
        mc = 1e6
        hdr = (f"  {'mapping':<16} {'tiles':>6} {'body':>5} "
               + " ".join(f"{'m' + str(n):>7}" for n in outputs)
               + f" {'interval':>9} {'fps':>7} {'util':>5}  bottleneck")
        lines = [f"  latency and frame interval in Mcycles ({self.timing.clock_hz / 1e9:g} GHz: "
                 f"1 Mcycle = {1e6 / self.timing.clock_hz * 1e3:g} ms); util = tile utilisation streamed",
                 hdr]
        for name, m in self.mappings.items():
            label = name if name != "replicated" else f"replicated r={m.mapping.replication}"
            if m.mapping.data_replication > 1:
                label += f" d={m.mapping.data_replication}"
            lat = [m.output_latency_cycles[heads.index(n)] / mc for n in outputs]
            lines.append(f"  {label:<16} {m.tiles:>6} {m.body_tiles:>5} " + " ".join(f"{v:>7.2f}" for v in lat)
                         + f" {m.frame_interval_cycles / mc:>9.2f} {m.frames_per_second:>7.1f}"
                         f" {m.tile_utilisation_stream:>5.2f}  {m.bottleneck}")
        return "\n".join(lines)

    def energy_table(self, outputs: tuple[int, ...] | None = None) -> str:
        """Energy of some outputs and per frame, TOPS/W, area and shares (``energy.energy_table``)."""
        return energy_table({k: m.energy for k, m in self.mappings.items()},
                            {k: m.mapping.replication for k, m in self.mappings.items()}, outputs)

    def output_table(self) -> str:
        """Latency of every output per mapping, in Mcycles."""
        names = list(self.mappings)
        heads = self.mappings[names[0]].heads
        lines = ["  " + f"{'output':>6} " + " ".join(f"{n[:12]:>12}" for n in names)]
        for k, n in enumerate(heads):
            lines.append("  " + f"{n:>6} " + " ".join(
                f"{self.mappings[m].output_latency_cycles[k] / 1e6:>12.3f}" for m in names))
        return "\n".join(lines)


def time_graph(graph, hw: HardwareConfig | None = None, timing: TimingConfig | None = None, frames: int = 4,
               replication: int = 4, split: str = "iteration", data_replication: int = 1,
               energy: EnergyConfig | None = None) -> TimingReport:
    """Time the three mappings of ``graph``: shared, independent, replicated (``replication`` copies),
    with their energy and area under ``energy`` (default ``EnergyConfig()``)."""
    hw = HardwareConfig() if hw is None else hw
    timing = TimingConfig() if timing is None else timing
    energy = EnergyConfig() if energy is None else energy
    maps = {"shared": Mapping("shared", data_replication=data_replication),
            "independent": Mapping("independent", data_replication=data_replication),
            "replicated": Mapping("replicated", replication, split, data_replication)}
    return TimingReport(graph.config, graph.height, graph.width, hw, timing, frames,
                        {k: time_mapping(graph, hw, timing, m, frames, energy) for k, m in maps.items()}, energy)


def _plot_activity(ax, name: str, m: MappingTiming, N: int, cmap) -> None:
    """One mapping's tile activity of one frame: a line per tile group, coloured by iteration."""
    from matplotlib.collections import LineCollection

    def colour(op):
        if op.block == "data":
            return (0.55, 0.55, 0.55, 1.0)
        if op.block == "head":
            return (0.85, 0.2, 0.2, 1.0)
        return cmap((op.n - 1) / max(N - 1, 1))

    s = m.schedule
    tiled = [k for k, r in enumerate(s.resources) if r.tiles > 0]
    ypos = {k: y for y, k in enumerate(tiled)}
    segs, cols = [], []
    for i, op in enumerate(s.ops):
        if op.row_mvms == 0:
            continue
        st, en, rs = s.start[i], s.end[i], s.resource[i]
        for k in np.unique(rs):
            sel = rs == k
            a, b = st[sel], en[sel]
            brk = np.nonzero(a[1:] != b[:-1])[0] + 1  # merge back-to-back rows
            for lo, hi in zip(np.r_[0, brk], np.r_[brk, len(a)]):
                y = ypos[int(k)]
                segs.append([(a[lo] / 1e6, y), (b[hi - 1] / 1e6, y)])
                cols.append(colour(op))
    ax.add_collection(LineCollection(segs, colors=cols, linewidths=max(0.5, min(4.0, 300 / len(tiled)))))
    ax.set_xlim(0, s.makespan / 1e6 * 1.02)
    ax.set_ylim(-1, len(tiled))
    ax.invert_yaxis()
    label = name if name != "replicated" else f"replicated r={m.mapping.replication}"
    ax.set_title(f"{label}: {m.tiles} tiles, one frame; grey data block, colour iteration 1..{N}, red heads")
    ax.set_ylabel(f"tile groups ({len(tiled)})")
    ax.set_xlabel("Mcycles")
    if len(tiled) <= 40:
        ax.set_yticks(range(len(tiled)))
        ax.set_yticklabels([s.resources[k].name for k in tiled], fontsize=6)


def plot(report: TimingReport, path) -> None:
    """Tile activity over time (one panel per mapping, one line per resource with tiles,
    coloured by iteration), the latency and the energy of every output, and where a
    frame's energy goes; saved to ``path`` (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("plot: matplotlib is not installed (pip install matplotlib)") from None
    names = list(report.mappings)
    rows = len(names) + 3
    fig, axes = plt.subplots(rows, 1, figsize=(11, 3.2 * rows), constrained_layout=True)
    cmap = plt.get_cmap("viridis")
    for ax, name in zip(axes, names):
        _plot_activity(ax, name, report.mappings[name], report.config.iterations, cmap)
    ax = axes[len(names)]
    for name in names:
        m = report.mappings[name]
        ax.plot(m.heads, np.array(m.output_latency_cycles) / 1e6, "o-", label=name)
    ax.set_xlabel("output n")
    ax.set_ylabel("latency of m_n (Mcycles)")
    ax.set_title(f"anytime latency ({report.timing.clock_hz / 1e9:g} GHz clock: Mcycles = ms)")
    ax.legend()
    ax.grid(alpha=0.3)
    plot_energy(axes[-2], axes[-1], {k: m.energy for k, m in report.mappings.items()})
    fig.savefig(path, dpi=120)
    plt.close(fig)
