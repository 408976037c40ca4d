"""Energy and area of the loop graph on crossbar tiles, counted from the schedule.

The timing model's schedule (``emulator.timing.extract``) already knows every
MVM, conversion, digital op and buffered row of every output; this module puts
picojoules on them.  ``row_work`` counts, per output row of one node, the
events that cost energy (``RowWork``); ``energy_of`` multiplies them by the
per-event energies of an ``EnergyConfig`` and adds the leakage of every tile
and periphery unit over the time it is powered.

Events (per output row of a node; OW pixels, C output channels)
-------------------------------------------------------------
conv (``op_spec(op).mvm``), per pixel, on every tile of the layer at once:

* **DAC**: one pulse per driven row per input bit (bit-serial), or one
  multi-level pulse per row; the rows are those the tile plan fills.
* **array**: every cell holding a weight conducts once per pulse
  (``G * V**2 * t``: one device of its differential pair conducts).
* **ADC**: one conversion per used column (per input bit with
  ``convert_per_bit``).  Unused columns are not converted (the timing model
  charges their time, not their energy).
* **digital**: per output value, one multiply (ADC code -> value: the tile's
  scale and folded BN), adds for row-piece partial sums, bias and residual,
  and compares for the activation (ReLU 1, ReLU6 2); with ``convert_per_bit``
  the shift-adds of the bits.

digital ops, per output value (``DIGITAL_WORK``): affine 1 multiply + 1 add
(+ activation); max-pool k*k - 1 compares; bilinear resize 4 multiplies +
3 adds; concat nothing (wiring).

**Line buffers**: every node but a concat writes its output rows once; every
consumer row reads the input rows it needs (``lo[r]..hi[r]``, each row once per
consumer row: a 3x3 conv reads each input row 3 times; horizontal reuse is in
registers).  Values are ``inp_bits`` wide.  Reading the image and writing the
logits off chip are not counted.

**Static**: every tile leaks ``tile_static_mw`` and every periphery unit
``periphery_static_mw`` while the chip is powered: for an anytime output, from
cycle 0 until that output is written (one frame alone); per streamed frame,
over the frame interval (or ``frame_period_s`` when frames arrive slower than
the chip can take them).

TOPS/W counts 2 operations per MAC of the frame (every head included) over the
energy of a streamed frame, static included.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
from dataclasses import dataclass

import numpy as np

from .config import with_overrides
from .errors import ConfigError
from .schedule import Schedule, rows_read
from minitnet.graph import ACT_RELU, ACT_RELU6, op_spec

__all__ = ["EnergyConfig", "ENERGY_PRESETS", "energy_preset", "RowWork", "row_work", "MappingEnergy",
           "energy_of", "energy_table", "plot_energy", "COMPONENTS"]

COMPONENTS = ("dac", "array", "adc", "digital", "buffers", "static")


@dataclass(frozen=True)
class EnergyConfig:
    """Energy per event and area of the tiles and their periphery.

    Defaults: the ISAAC 32 nm components as tabulated by Accelergy
    (hwcomponents-library ``isaac.py``), Horowitz (ISSCC 2014) for the multiply
    and the SRAM, and stated assumptions for the read conditions and the
    leakage; sources in emulator/README.md, "Energy".  DAC and ADC bits come
    from the ``HardwareConfig`` (``TimingConfig.default_bits`` where unlimited).
    """

    dac_pulse_pj: float = 0.41667
    """Energy of one 1-bit DAC pulse on one crossbar row, in pJ.  A multi-level pulse
    (``bit_serial=False``) of b bits costs ``2**(b-1)`` times this.  >= 0."""
    cell_read_pj: float | None = None
    """Energy of one cell read by one pulse, in pJ; None: ``G * V**2 * t`` with
    ``G = conductance_fraction * hw.g_max``, ``V = read_voltage_v`` and ``t`` the input
    pulse (``input_pulse_cycles / clock_hz``).  >= 0."""
    conductance_fraction: float = 0.2
    """Mean conductance of a weight's conducting device as a fraction of ``g_max``,
    dimensionless, in [0, 1]."""
    read_voltage_v: float = 0.2
    """Read voltage across a cell during an input pulse, in V.  >= 0."""
    adc_pj_8bit: float = 1.67
    """Energy of one 8-bit ADC conversion, in pJ.  >= 0."""
    adc_linear_share: float = 0.937
    """Share of the 8-bit conversion energy that grows linearly with the bits (comparator
    and SAR logic); the rest (capacitive DAC) doubles per bit:
    ``E(b) = adc_pj_8bit * (s * b / 8 + (1 - s) * 2**(b - 8))``, dimensionless, in [0, 1]."""
    add_pj: float = 0.021
    """Energy of one digital add (partial sum, bias, residual, shift-add), in pJ.  >= 0."""
    mul_pj: float = 0.2
    """Energy of one digital multiply (ADC scale, BN affine, bilinear weight), in pJ.  >= 0."""
    compare_pj: float = 0.021
    """Energy of one digital compare (activation, max-pool), in pJ.  >= 0."""
    sram_read_pj_per_byte: float = 1.25
    """Energy of reading one byte from a line buffer (SRAM), in pJ.  >= 0."""
    sram_write_pj_per_byte: float = 1.25
    """Energy of writing one byte into a line buffer (SRAM), in pJ.  >= 0."""
    tile_static_mw: float = 0.1
    """Leakage of one tile with its DACs, ADCs and drivers while powered, in mW.  >= 0."""
    periphery_static_mw: float = 0.01
    """Leakage of one digital periphery unit (one per digital node), in mW.  >= 0."""
    tile_area_mm2: float = 0.00024
    """Area of one tile's array and row drivers (ADCs apart), in mm^2.  >= 0."""
    adc_area_mm2: float = 0.0012
    """Area of one ADC, in mm^2 (a tile has ``ceil(cols / cols_per_adc)``).  >= 0."""
    frame_period_s: float | None = None
    """Time between frames of the stream, in s (e.g. 1/30 for a 30 fps camera); None:
    frames arrive as fast as the chip takes them (the frame interval).  > 0."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None and f.name in ("cell_read_pj", "frame_period_s"):
                continue
            ok = isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v)
            positive = f.name == "frame_period_s"
            if not ok or (v <= 0 if positive else v < 0):
                unit = _unit(f.name)
                raise ConfigError(f"EnergyConfig.{f.name}={v!r}: expected a finite number "
                                  f"{'> 0' if positive else '>= 0'}" + (f" ({unit})" if unit else "")
                                  + (" or None" if f.name in ("cell_read_pj", "frame_period_s") else ""))
        for name in ("conductance_fraction", "adc_linear_share"):
            if getattr(self, name) > 1:
                raise ConfigError(f"EnergyConfig.{name}={getattr(self, name)!r}: expected a fraction in [0, 1]")

    # -- energy per event ---------------------------------------------------------------
    def adc_pj(self, bits: int) -> float:
        """One conversion at ``bits``, in pJ (see ``adc_linear_share``)."""
        s = self.adc_linear_share
        return self.adc_pj_8bit * (s * bits / 8 + (1 - s) * 2.0 ** (bits - 8))

    def dac_pj(self, bits: int, bit_serial: bool) -> float:
        """One input pulse on one row, in pJ."""
        return self.dac_pulse_pj if bit_serial else self.dac_pulse_pj * 2.0 ** (bits - 1)

    def cell_pj(self, hw, timing) -> float:
        """One cell read by one pulse, in pJ."""
        if self.cell_read_pj is not None:
            return self.cell_read_pj
        g = self.conductance_fraction * hw.g_max * 1e-6  # S
        t = timing.input_pulse_cycles / timing.clock_hz  # s
        return g * self.read_voltage_v ** 2 * t * 1e12

    def describe(self, hw, timing) -> str:
        inp, out = timing.bits(hw)
        return (f"DAC {self.dac_pj(inp, timing.bit_serial):.3g} pJ/pulse, cell {self.cell_pj(hw, timing):.3g} pJ/pulse, "
                f"ADC {self.adc_pj(out):.3g} pJ/{out}-bit conversion, add {self.add_pj:g} / mul {self.mul_pj:g} / "
                f"compare {self.compare_pj:g} pJ, SRAM {self.sram_read_pj_per_byte:g}/"
                f"{self.sram_write_pj_per_byte:g} pJ/B read/write, leakage {self.tile_static_mw:g} mW/tile, "
                f"{self.periphery_static_mw:g} mW/periphery unit")


ENERGY_PRESETS = types.MappingProxyType({
    # One set of CMOS periphery figures (ISAAC 32 nm, Accelergy) for every hardware preset:
    # the device enters through HardwareConfig.g_max (cell read energy) and the bits.
    "ideal": EnergyConfig(),
    "8bit": EnergyConfig(),
    "pcm": EnergyConfig(),
    "rram": EnergyConfig(),
})
"""Energy configs named like the hardware presets (``emulator.config.PRESETS``)."""


def energy_preset(name: str, **overrides) -> EnergyConfig:
    """The energy preset ``name`` with ``overrides`` applied (validated like a new config)."""
    if not isinstance(name, str) or name not in ENERGY_PRESETS:
        raise ConfigError(f"unknown energy preset {name!r}: expected one of {sorted(ENERGY_PRESETS)}")
    return with_overrides(ENERGY_PRESETS[name], overrides, f"energy_preset({name!r})")


def _unit(name: str) -> str:
    """The unit a field name states (``adc_pj_8bit`` -> ``pJ``), or ''."""
    units = {"pj": "pJ", "mw": "mW", "mm2": "mm^2", "v": "V", "s": "s"}
    unit = next((units[t] for t in name.split("_") if t in units), "")
    return unit + (" per byte" if name.endswith("_per_byte") else "")


# --- counting events -----------------------------------------------------------------------
@dataclass(frozen=True)
class RowWork:
    """Events of one output row of one node (counts, not energies).

    ``kind`` labels the layer for the breakdown; ``buffered``: the row is written to
    a line buffer and the node reads its inputs from line buffers (False for a
    concat, whose consumers read its inputs' buffers)."""

    kind: str
    dac_pulses: int = 0
    cell_reads: int = 0
    conversions: int = 0
    adds: int = 0
    muls: int = 0
    compares: int = 0
    macs: int = 0
    buffered: bool = True


ACT_COMPARES = {ACT_RELU: 1, ACT_RELU6: 2}
"""Compares of an activation per value (none: 0)."""

DIGITAL_WORK = {
    # op: (adds, multiplies, compares) per output value, activation apart; buffered
    "affine": (lambda nd: (1, 1, 0), True),
    "maxpool": (lambda nd: (0, 0, nd.attrs["kernel_size"] ** 2 - 1), True),
    "resize": (lambda nd: (3, 4, 0), True),
    "concat": (lambda nd: (0, 0, 0), False),  # wiring: consumers read its inputs' buffers
}
"""Digital periphery work per output value of each digital op, and whether it has a line buffer."""


def conv_kind(layer) -> str:
    if layer.depthwise:
        return "depthwise"
    kh, kw = layer.kernel_size
    return "pointwise" if (kh, kw) == (1, 1) else f"conv{kh}x{kw}"


def row_work(node, layer, plan, hw, timing) -> RowWork:
    """The events of one output row of ``node`` (a ``minitnet.graph.Node``) executing ``layer``
    on the tiles of ``plan`` (``emulator.tiles.plan_layer``; None for digital ops)."""
    spec = op_spec(node.op)
    C, OH, OW = node.shape
    act = ACT_COMPARES.get(node.act, 0)
    if spec.mvm and plan is None:  # a depthwise conv in the periphery (depthwise="digital"): exact MACs
        kk = layer.kernel_size[0] * layer.kernel_size[1]
        adds = kk - 1 + bool(layer.bias) + bool(node.residual)
        return RowWork(conv_kind(layer), adds=adds * C * OW, muls=kk * C * OW, compares=act * C * OW,
                       macs=spec.macs(layer) // OH)
    if not spec.mvm:
        counts, buffered = DIGITAL_WORK[node.op]
        adds, muls, compares = counts(node)
        return RowWork(node.op, adds=adds * C * OW, muls=muls * C * OW, compares=(compares + act) * C * OW,
                       buffered=buffered)
    inp, _ = timing.bits(hw)
    pulses = inp if timing.bit_serial else 1
    per_bit = inp if timing.convert_per_bit else 1
    rows = sum(p.rows for p in plan.pieces)
    cols = sum(p.cols for p in plan.pieces)
    row_pieces = 1 if plan.depthwise else len(plan.row_splits)
    adds = C * (row_pieces - 1 + bool(layer.bias) + bool(node.residual)) + cols * (per_bit - 1)
    return RowWork(conv_kind(layer), dac_pulses=OW * rows * pulses, cell_reads=OW * plan.weights * pulses,
                   conversions=OW * cols * per_bit, adds=OW * adds, muls=OW * C, compares=OW * C * act,
                   macs=spec.macs(layer) // OH)


# --- energy of a schedule ------------------------------------------------------------------------
@dataclass
class MappingEnergy:
    """Energy and area of one mapping.  ``output_energy_pj[k]``: everything run until output
    ``heads[k]`` is written, one frame alone (earlier heads included), static over that
    latency; ``frame_energy_pj``: one frame of a stream (all heads), static over
    ``frame_time_s``; breakdowns are per streamed frame."""

    heads: tuple[int, ...]
    output_energy_pj: tuple[float, ...]
    frame_energy_pj: float
    frame_time_s: float
    static_power_mw: float
    breakdown_pj: dict
    by_kind_pj: dict
    by_block_pj: dict
    macs: int
    area_mm2: float
    area_breakdown_mm2: dict

    @property
    def tops_per_w(self) -> float:
        """2 operations per MAC over the energy of a streamed frame (ops per pJ = TOPS/W)."""
        return 2 * self.macs / self.frame_energy_pj if self.frame_energy_pj else 0.0

    def to_dict(self) -> dict:
        return {"energy_pj": list(self.output_energy_pj), "energy_per_frame_pj": self.frame_energy_pj,
                "energy_breakdown_pj": dict(self.breakdown_pj), "energy_by_kind_pj": dict(self.by_kind_pj),
                "energy_by_block_pj": dict(self.by_block_pj), "static_power_mw": self.static_power_mw,
                "energy_frame_time_s": self.frame_time_s, "macs_per_frame": self.macs,
                "area_mm2": self.area_mm2, "area_breakdown_mm2": dict(self.area_breakdown_mm2),
                "tops_per_w": self.tops_per_w}


def op_energies(s: Schedule, hw, timing, energy: EnergyConfig) -> np.ndarray:
    """(ops, 5) dynamic energy of every op of ``s`` by component (dac, array, adc, digital,
    buffers), in pJ; ops without a ``RowWork`` cost nothing."""
    inp, out = timing.bits(hw)
    e_dac, e_cell, e_adc = energy.dac_pj(inp, timing.bit_serial), energy.cell_pj(hw, timing), energy.adc_pj(out)
    byte = inp / 8
    E = np.zeros((len(s.ops), 5))
    for i, (op, reads) in enumerate(zip(s.ops, rows_read(s.ops))):
        w = op.cost
        if w is None:
            continue
        E[i, :4] = op.rows * np.array([w.dac_pulses * e_dac, w.cell_reads * e_cell, w.conversions * e_adc,
                                       w.adds * energy.add_pj + w.muls * energy.mul_pj
                                       + w.compares * energy.compare_pj])
        if w.buffered:
            read = sum(n * s.ops[p].row_elems for p, n in reads)
            E[i, 4] = byte * (op.rows * op.row_elems * energy.sram_write_pj_per_byte
                              + read * energy.sram_read_pj_per_byte)
    return E


def static_power_mw(s: Schedule, energy: EnergyConfig) -> float:
    """Leakage of every tile and periphery unit of the schedule's resources, in mW."""
    return sum(r.tiles * energy.tile_static_mw if r.tiles else energy.periphery_static_mw for r in s.resources)


def area_mm2(s: Schedule, hw, timing, energy: EnergyConfig) -> dict:
    tiles = sum(r.tiles for r in s.resources)
    adcs = tiles * -(-hw.cols // timing.cols_per_adc)
    return {"arrays": tiles * energy.tile_area_mm2, "adcs": adcs * energy.adc_area_mm2}


def energy_of(s: Schedule, hw, timing, energy: EnergyConfig, heads: tuple[int, ...],
              latency_cycles: tuple[int, ...], interval_cycles: float) -> MappingEnergy:
    """Energy of the one-frame schedule ``s`` (ops labelled with ``block`` and ``n``, heads
    ``block == "head"``) given the latency of every head and the streamed frame interval."""
    E = op_energies(s, hw, timing, energy)
    n_of = np.array([op.n for op in s.ops])
    p_static = static_power_mw(s, energy)
    pj = 1e9  # mW x s -> pJ
    outputs = tuple(float(E[n_of <= n].sum() + p_static * lat / timing.clock_hz * pj)
                    for n, lat in zip(heads, latency_cycles))
    t_frame = interval_cycles / timing.clock_hz
    if energy.frame_period_s is not None:
        t_frame = max(t_frame, energy.frame_period_s)
    static = p_static * t_frame * pj
    breakdown = {c: float(v) for c, v in zip(COMPONENTS, E.sum(0))}
    breakdown["static"] = static
    by_kind: dict[str, float] = {}
    by_block: dict[str, float] = {}
    for op, e in zip(s.ops, E.sum(1)):
        if op.cost is not None:
            by_kind[op.cost.kind] = by_kind.get(op.cost.kind, 0.0) + float(e)
        by_block[op.block] = by_block.get(op.block, 0.0) + float(e)
    by_kind["static"] = by_block["static"] = static
    macs = sum(op.rows * op.cost.macs for op in s.ops if op.cost is not None)
    area = area_mm2(s, hw, timing, energy)
    return MappingEnergy(tuple(heads), outputs, float(E.sum() + static), t_frame, p_static, breakdown, by_kind,
                         by_block, int(macs), float(sum(area.values())), area)


# --- reports -----------------------------------------------------------------------------------------
def _label(name: str, replication: int) -> str:
    return name if name != "replicated" else f"replicated r={replication}"


def energy_table(energies: dict[str, MappingEnergy], replication: dict[str, int] | None = None,
                 outputs: tuple[int, ...] | None = None) -> str:
    """A text table per mapping: energy of some outputs (one frame alone) and per streamed frame
    in microjoules, TOPS/W, area, and the share of each component in a streamed frame."""
    heads = next(iter(energies.values())).heads
    if outputs is None:
        outputs = heads if len(heads) <= 4 else tuple(sorted({heads[0], *heads[5::5], heads[-1]}))
    outputs = tuple(n for n in outputs if n in heads)
    lines = ["  energy in uJ (outputs: one frame alone; frame: streamed); share of a frame in %",
             f"  {'mapping':<16} " + " ".join(f"{'E' + str(n):>7}" for n in outputs)
             + f" {'frame':>8} {'TOPS/W':>6} {'mm^2':>6}  " + " ".join(f"{c:>7}" for c in COMPONENTS)]
    for name, e in energies.items():
        label = _label(name, (replication or {}).get(name, 1))
        shares = [100 * e.breakdown_pj[c] / e.frame_energy_pj for c in COMPONENTS]
        lines.append(f"  {label:<16} " + " ".join(f"{e.output_energy_pj[heads.index(n)] / 1e6:>7.1f}"
                                                  for n in outputs)
                     + f" {e.frame_energy_pj / 1e6:>8.1f} {e.tops_per_w:>6.2f} {e.area_mm2:>6.2f}  "
                     + " ".join(f"{v:>7.1f}" for v in shares))
    return "\n".join(lines)


def plot_energy(ax_out, ax_parts, energies: dict[str, MappingEnergy]) -> None:
    """Two matplotlib panels: the energy of every output per mapping (uJ), and a streamed
    frame's energy by component."""
    colours = dict(zip(COMPONENTS, ("#4c72b0", "#8172b3", "#c44e52", "#55a868", "#ccb974", "#8c8c8c")))
    for name, e in energies.items():
        ax_out.plot(e.heads, np.array(e.output_energy_pj) / 1e6, "o-",
                    label=f"{name}: frame {e.frame_energy_pj / 1e6:.0f} uJ, {e.tops_per_w:.1f} TOPS/W, "
                          f"{e.area_mm2:.1f} mm^2")
    ax_out.set_xlabel("output n")
    ax_out.set_ylabel("energy until m_n (uJ)")
    ax_out.set_title("energy of every anytime output, one frame alone (static over its latency)")
    ax_out.legend()
    ax_out.grid(alpha=0.3)
    names = list(energies)
    left = np.zeros(len(names))
    for c in COMPONENTS:
        v = np.array([energies[n].breakdown_pj[c] / 1e6 for n in names])
        ax_parts.barh(names, v, left=left, color=colours[c], label=c)
        left += v
    ax_parts.invert_yaxis()
    ax_parts.set_xlabel("energy of one streamed frame (uJ)")
    ax_parts.set_title("where a streamed frame's energy goes")
    ax_parts.legend(ncol=len(COMPONENTS), fontsize=8, loc="lower right")
