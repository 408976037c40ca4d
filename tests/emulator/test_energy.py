"""Tests of the energy and area model (emulator/energy.py).

Closed forms, for one 3x3 conv layer (C in, C out, stride 1, pad 1, ReLU, no
bias) on an H x W image with C*9 <= tile rows (one tile, one row piece), at
b-bit DAC and ADC, bit-serial, one conversion per MVM (the defaults):

* per execution: H*W MVMs, each driving 9C rows for b pulses
  (``9C b E_dac``), reading 9C*C cells b times (``9C^2 b E_cell``),
  converting C columns (``C E_adc(b)``), and per output value one multiply
  and one compare (``C (E_mul + E_cmp)``);
* line buffers (b/8 bytes a value): every execution writes its H*W*C values;
  an execution fed by another reads, per output row r, input rows
  ``max(r-1, 0)..min(r+1, H-1)``: 3H - 2 rows of W*C values;
* static: ``P = tiles * tile_static_mw`` over the latency of an output
  (one frame alone) or over the frame interval (streamed).

A chain of N such convs (N tiles) and one conv on shared tiles run N times
differ only in the static term.
"""

import dataclasses
import json

import numpy as np
import pytest

from emulator import ConfigError, HardwareConfig, preset
from emulator.energy import (ENERGY_PRESETS, EnergyConfig, RowWork, energy_of, energy_preset, op_energies,
                             row_work)
from emulator.schedule import Dep, Op, Resource, simulate
from emulator.tiles import plan_layer
from emulator.timing import Mapping, TimingConfig, extract, time_mapping
from minitnet.config import ItNetConfig
from minitnet.graph import ACT_RELU, Layer, Node, build_graph, op_spec, rows_conv

HW = HardwareConfig(inp_bits=8, out_bits=8)
TC = TimingConfig()
# distinct, exactly representable per-event energies so every term is visible
EC = EnergyConfig(dac_pulse_pj=0.5, cell_read_pj=0.0625, adc_pj_8bit=2.0, add_pj=0.125, mul_pj=0.25,
                  compare_pj=0.375, sram_read_pj_per_byte=1.5, sram_write_pj_per_byte=1.75,
                  tile_static_mw=0.5, periphery_static_mw=0.25)


def conv3x3(C, H, W):
    layer = Layer("conv", "conv", C, C, (H, W), (H, W), (3, 3), 1, 1)
    node = Node("conv", "conv", ("x",), (C, H, W), "conv", {"act": ACT_RELU})
    return node, layer


def conv_ops(N, C, H, W, shared):
    """N executions of the conv, each reading the previous, on N tiles (chain) or one (shared)."""
    node, layer = conv3x3(C, H, W)
    work = row_work(node, layer, plan_layer(layer, HW), HW, TC)
    mvm = TC.mvm_cycles(HW)
    lo, hi = rows_conv(H, H, 3, 1, 1)
    res = [Resource("shared", 1)] if shared else [Resource(f"conv{k}", 1) for k in range(N)]
    ops = [Op(f"conv{k}", H, W * mvm, (0 if shared else k,), (Dep(k - 1, lo, hi),) if k else (),
              delay=TC.row_handoff_cycles, priority=(0, k + 1), row_mvms=W, row_elems=C * W, n=k + 1, cost=work)
           for k in range(N)]
    return ops, res


def by_hand(N, C, H, W):
    """Dynamic energy of each execution (pJ), by component, from the module docstring."""
    b = 8
    dac = H * W * 9 * C * b * EC.dac_pulse_pj
    array = H * W * 9 * C * C * b * EC.cell_read_pj
    adc = H * W * C * EC.adc_pj_8bit
    digital = H * W * C * (EC.mul_pj + EC.compare_pj)
    write = H * W * C * EC.sram_write_pj_per_byte
    read = (3 * H - 2) * W * C * EC.sram_read_pj_per_byte
    return [dict(dac=dac, array=array, adc=adc, digital=digital, buffers=write + (read if k else 0.0))
            for k in range(N)]


# --- configuration ---------------------------------------------------------------------------------

def test_adc_model_matches_the_accelergy_isaac_table():
    # hwcomponents-library isaac.py: Saberi et al. 2011 scaling of ISAAC's 8-bit 1.67 pJ
    table = {4: 0.79, 5: 0.99, 6: 1.20, 7: 1.42, 8: 1.67, 9: 1.969, 10: 2.379}
    e = EnergyConfig()
    for bits, pj in table.items():
        assert e.adc_pj(bits) == pytest.approx(pj, rel=0.015), f"{bits} bits: {e.adc_pj(bits):.3f} pJ vs {pj}"
    assert e.adc_pj(8) == pytest.approx(1.67)


def test_cell_read_from_conductance():
    # G = 0.2 * 25 uS, V = 0.2 V, t = 1 ns -> 5e-6 * 0.04 * 1e-9 J = 0.2 fJ
    assert EnergyConfig().cell_pj(preset("pcm"), TC) == pytest.approx(2e-4)
    assert EnergyConfig(cell_read_pj=0.5).cell_pj(preset("pcm"), TC) == 0.5
    assert EnergyConfig().dac_pj(8, bit_serial=False) == pytest.approx(0.41667 * 128)


@pytest.mark.parametrize("kw, match", [
    ({"adc_pj_8bit": -1.0}, r"adc_pj_8bit=-1.0: expected a finite number >= 0 \(pJ\)"),
    ({"dac_pulse_pj": float("nan")}, "dac_pulse_pj"),
    ({"tile_static_mw": True}, "tile_static_mw"),
    ({"conductance_fraction": 1.5}, "fraction"),
    ({"adc_linear_share": 2.0}, "adc_linear_share"),
    ({"frame_period_s": 0.0}, r"frame_period_s=0.0: expected a finite number > 0"),
    ({"cell_read_pj": "1"}, "cell_read_pj"),
])
def test_energy_config_rejects(kw, match):
    with pytest.raises(ConfigError, match=match):
        EnergyConfig(**kw)


def test_energy_preset():
    assert set(ENERGY_PRESETS) == {"ideal", "8bit", "pcm", "rram"}
    assert energy_preset("pcm", adc_pj_8bit=3.0).adc_pj_8bit == 3.0
    with pytest.raises(ConfigError, match="did you mean 'adc_pj_8bit'"):
        energy_preset("pcm", adc_pj_8bt=3.0)
    with pytest.raises(ConfigError, match="unknown energy preset"):
        energy_preset("flash")


# --- counting ----------------------------------------------------------------------------------------

def test_row_work_of_digital_ops_and_tiles():
    node = Node("p", "maxpool", ("x",), (5, 4, 6), attrs={"kernel_size": 2})
    assert row_work(node, None, None, HW, TC) == RowWork("maxpool", compares=3 * 5 * 6)
    cat = Node("c", "concat", ("a", "b"), (5, 4, 6))
    assert row_work(cat, None, None, HW, TC) == RowWork("concat", buffered=False)
    # a 1x1 conv with 300 inputs: two row pieces (two tiles converting 7 columns each) -> one
    # partial-sum add per output, plus bias
    layer = Layer("pw", "conv", 300, 7, (4, 6), (4, 6), (1, 1), bias=True)
    pw = Node("pw", "conv", ("x",), (7, 4, 6), "pw", {"act": 2})
    w = row_work(pw, layer, plan_layer(layer, HW), HW, TC)
    assert (w.kind, w.dac_pulses, w.cell_reads, w.conversions) == ("pointwise", 6 * 300 * 8, 6 * 2100 * 8, 6 * 14)
    assert (w.adds, w.muls, w.compares, w.macs) == (6 * 7 * 2, 6 * 7, 6 * 7 * 2, 300 * 7 * 6)
    # convert_per_bit: one conversion per input bit and 7 shift-adds per converted column
    w = row_work(pw, layer, plan_layer(layer, HW), HW, TimingConfig(convert_per_bit=True))
    assert (w.conversions, w.adds) == (6 * 14 * 8, 6 * (7 * 2 + 14 * 7))


# --- closed forms -----------------------------------------------------------------------------------

@pytest.mark.parametrize("N, C, H, W", [(1, 4, 5, 3), (3, 4, 6, 5), (5, 2, 9, 4)])
def test_conv_chain_closed_form(N, C, H, W):
    s = simulate(*conv_ops(N, C, H, W, shared=False))
    lat = tuple(int(e.max()) for e in s.end)
    interval = H * W * TC.mvm_cycles(HW)  # one frame per H rows of the slowest conv
    m = energy_of(s, HW, TC, EC, tuple(range(1, N + 1)), lat, interval)
    hand = by_hand(N, C, H, W)
    P = N * EC.tile_static_mw
    dyn = np.cumsum([sum(h.values()) for h in hand])
    np.testing.assert_allclose(m.output_energy_pj, dyn + P * np.array(lat) / TC.clock_hz * 1e9, rtol=1e-12)
    for c in ("dac", "array", "adc", "digital", "buffers"):
        assert m.breakdown_pj[c] == pytest.approx(sum(h[c] for h in hand), rel=1e-12), c
    assert m.breakdown_pj["static"] == pytest.approx(P * interval / TC.clock_hz * 1e9, rel=1e-12)
    assert m.frame_energy_pj == pytest.approx(dyn[-1] + m.breakdown_pj["static"], rel=1e-12)
    assert m.macs == N * H * W * 9 * C * C
    assert m.tops_per_w == pytest.approx(2 * m.macs / m.frame_energy_pj)
    assert m.area_mm2 == pytest.approx(N * (EC.tile_area_mm2 + 256 // TC.cols_per_adc * EC.adc_area_mm2))


@pytest.mark.parametrize("N, C, H, W", [(1, 4, 5, 3), (4, 4, 6, 5), (16, 2, 3, 4)])
def test_shared_conv_closed_form(N, C, H, W):
    s = simulate(*conv_ops(N, C, H, W, shared=True))
    c_row = W * TC.mvm_cycles(HW)
    lat = tuple(int(e.max()) for e in s.end)
    assert lat == tuple(n * H * c_row for n in range(1, N + 1))  # the timing closed form
    m = energy_of(s, HW, TC, EC, tuple(range(1, N + 1)), lat, N * H * c_row)
    hand = by_hand(N, C, H, W)
    # the same work as the chain, one tile leaking: E(n) = n E_conv (- one read) + P n H c / f
    dyn = np.cumsum([sum(h.values()) for h in hand])
    static = EC.tile_static_mw * np.array(lat) / TC.clock_hz * 1e9
    np.testing.assert_allclose(m.output_energy_pj, dyn + static, rtol=1e-12)
    assert m.frame_energy_pj == pytest.approx(dyn[-1] + static[-1], rel=1e-12)
    # the chain does the same dynamic work
    sc = simulate(*conv_ops(N, C, H, W, shared=False))
    mc = energy_of(sc, HW, TC, EC, tuple(range(1, N + 1)), lat, N * H * c_row)
    assert {k: v for k, v in mc.breakdown_pj.items() if k != "static"} == \
        {k: v for k, v in m.breakdown_pj.items() if k != "static"}
    assert mc.breakdown_pj["static"] == pytest.approx(N * m.breakdown_pj["static"])


def test_frame_period_sets_the_static_time():
    s = simulate(*conv_ops(2, 4, 5, 3, shared=False))
    lat = tuple(int(e.max()) for e in s.end)
    fast = energy_of(s, HW, TC, EC, (1, 2), lat, 1000)
    slow = energy_of(s, HW, TC, dataclasses.replace(EC, frame_period_s=1e-3), (1, 2), lat, 1000)
    assert slow.frame_time_s == 1e-3 and fast.frame_time_s == 1e-6
    assert slow.breakdown_pj["static"] == pytest.approx(2 * EC.tile_static_mw * 1e-3 * 1e9)
    assert slow.output_energy_pj == fast.output_energy_pj  # one frame alone: unchanged
    # a period shorter than the chip's interval cannot be kept: the interval is used
    short = energy_of(s, HW, TC, dataclasses.replace(EC, frame_period_s=1e-9), (1, 2), lat, 1000)
    assert short.frame_time_s == 1e-6


# --- a small real network ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small():
    g = build_graph(ItNetConfig(iterations=3), 40, 56)
    ops, res = extract(g, preset("pcm"), TC, Mapping("shared"), 1)
    s = simulate(ops, res)
    lat = tuple(int(max(s.end[i].max() for i, op in enumerate(ops) if op.block == "head" and op.n == n))
                for n in g.heads)
    return g, s, lat


DOUBLE = {"dac": ("dac_pulse_pj",), "array": ("cell_read_pj",), "adc": ("adc_pj_8bit",),
          "digital": ("add_pj", "mul_pj", "compare_pj"),
          "buffers": ("sram_read_pj_per_byte", "sram_write_pj_per_byte"),
          "static": ("tile_static_mw", "periphery_static_mw")}


@pytest.mark.parametrize("component", sorted(DOUBLE))
def test_doubling_a_component_doubles_exactly_its_share(small, component):
    g, s, lat = small
    hw = preset("pcm")
    base = dataclasses.replace(EnergyConfig(), cell_read_pj=EnergyConfig().cell_pj(hw, TC))
    twice = dataclasses.replace(base, **{f: 2 * getattr(base, f) for f in DOUBLE[component]})
    a = energy_of(s, hw, TC, base, g.heads, lat, 5e4)
    b = energy_of(s, hw, TC, twice, g.heads, lat, 5e4)
    for c, v in a.breakdown_pj.items():
        assert v > 0, f"{c} has no energy, the test would prove nothing"
        assert b.breakdown_pj[c] == pytest.approx(2 * v if c == component else v, rel=1e-12), c
    assert b.frame_energy_pj == pytest.approx(a.frame_energy_pj + a.breakdown_pj[component], rel=1e-12)


def test_breakdowns_add_up(small):
    g, s, lat = small
    m = energy_of(s, preset("pcm"), TC, EnergyConfig(), g.heads, lat, 5e4)
    for d in (m.breakdown_pj, m.by_kind_pj, m.by_block_pj):
        assert sum(d.values()) == pytest.approx(m.frame_energy_pj, rel=1e-12)
    assert set(m.by_block_pj) == {"data", "body", "head", "static"}
    assert {"conv3x3", "pointwise", "depthwise", "resize", "maxpool"} <= set(m.by_kind_pj)
    assert np.all(np.diff(m.output_energy_pj) > 0)
    E = op_energies(s, preset("pcm"), TC, EnergyConfig())
    assert E.shape == (len(s.ops), 5) and np.all(E >= 0)


# --- the shipped shared model -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared_f51():
    g = build_graph(ItNetConfig(iterations=16, width=51), 360, 480)
    return g, time_mapping(g, preset("pcm"), TC, Mapping("shared"), frames=2, energy=energy_preset("pcm"))


def test_f51_shared_pcm_tops_per_w_in_published_range(shared_f51):
    g, m = shared_f51
    e = m.energy
    # IBM's 64-core 14 nm PCM chip ~10 TOPS/W; Ambrogio et al. 2023 12.4 TOPS/W
    assert 2 <= e.tops_per_w <= 50, f"{e.tops_per_w:.2f} TOPS/W, expected 2..50"
    macs = sum(op_spec(st.node.op).macs(g.layers.get(st.layer)) for st in g.schedule())
    assert e.macs == macs
    # shared: once iterations no longer pipeline behind the stem (m5 on, see test_timing), every
    # further output costs the same (one body pass and one head, one body layer pass of leakage)
    d = np.diff(e.output_energy_pj[4:])
    np.testing.assert_allclose(d, d[0], rtol=1e-9)
    assert e.output_energy_pj[0] < e.output_energy_pj[-1] / 5
    assert json.loads(json.dumps(e.to_dict()))["energy_per_frame_pj"] == e.frame_energy_pj


# --- CLI ------------------------------------------------------------------------------------------------

def test_cli_json_energy_keys_and_set(capsys):
    from minitnet.cli import main

    argv = ["emulate-timing", "--iterations", "3", "--height", "40", "--width-px", "56", "--frames", "2",
            "--replication", "2", "--json"]
    assert main(argv) == 0
    base = json.loads(capsys.readouterr().out)
    assert main(argv + ["--set", "adc_pj_8bit=3.34", "--set", "frame_period_s=0.5", "--set", "cols_per_adc=4"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["energy"]["adc_pj_8bit"] == 3.34 and d["mvm_cycles"] == 8 + 4 * 8
    for name in ("shared", "independent", "replicated"):
        m, b = d["mappings"][name], base["mappings"][name]
        assert len(m["energy_pj"]) == 3 and m["energy_per_frame_pj"] > 0 and m["area_mm2"] > 0
        assert set(m["energy_breakdown_pj"]) == {"dac", "array", "adc", "digital", "buffers", "static"}
        assert m["tops_per_w"] == pytest.approx(2 * m["macs_per_frame"] / m["energy_per_frame_pj"])
        assert m["energy_breakdown_pj"]["adc"] == pytest.approx(2 * b["energy_breakdown_pj"]["adc"])
        assert m["energy_frame_time_s"] == 0.5


def test_cli_table_shows_energy(capsys):
    from minitnet.cli import main

    assert main(["emulate-timing", "--iterations", "2", "--height", "24", "--width-px", "32", "--frames", "2"]) == 0
    out = capsys.readouterr().out
    assert "TOPS/W" in out and "energy in uJ" in out and "pJ/8-bit conversion" in out


@pytest.mark.parametrize("argv, match", [
    (["--set", "adc_pj_8bt=1"], "did you mean 'adc_pj_8bit'"),
    (["--set", "adc_pj_8bit=-1"], "adc_pj_8bit"),
    (["--set", "frame_period_s=x"], "not a valid float or none"),
])
def test_cli_energy_errors(capsys, argv, match):
    from minitnet.cli import main

    assert main(["emulate-timing", "--iterations", "2", "--height", "16", "--width-px", "16"] + argv) == 1
    assert match in capsys.readouterr().err
