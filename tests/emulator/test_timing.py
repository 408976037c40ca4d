"""Tests of the cycle-level timing model (emulator/schedule.py, emulator/timing.py).

Closed forms (c = cycles of one output row, h = row handoff, H rows, H >= 2):

* a chain of N 3x3 convs (stride 1, pad 1), each on its own tiles: conv k's
  row r ends at ``E_k(r) = (r + 2k - 1) c + (k - 1) h``.  Proof by induction:
  row r needs row r + 1 of conv k - 1 (readable at E_{k-1}(r+1) + h) and the
  tiles after row r - 1; both give ``(r + 2k - 2) c + (k - 1) h``, then + c.
  The last row needs only row H - 1 (earlier), so the previous row binds.
  Latency ``(H + 2N - 2) c + (N - 1) h``; streamed frames every ``H c``.
* one conv on shared tiles applied N times: the oldest iteration is always
  ready when the tiles free up (if ``H c >= 2 c + h``), so iteration n ends at
  ``n H c`` and frames finish every ``N H c``: N times the unrolled interval.

The real network (f=51, N=16, 480x360) is checked for the issue's invariants.
"""

import json

import numpy as np
import pytest

from emulator import ConfigError, HardwareConfig, preset
from emulator.tiles import plan_layer
from minitnet.graph import rows_conv, rows_pool, rows_resize
from emulator.schedule import Dep, Op, Resource, line_buffer_peaks, simulate
from emulator.timing import Mapping, TimingConfig, extract, time_graph, time_mapping
from minitnet import ops as mops
from minitnet.config import ItNetConfig
from minitnet.graph import build_graph


# --- configuration -------------------------------------------------------------------------------

def test_mvm_cycles_golden():
    hw = HardwareConfig(inp_bits=8, out_bits=6)
    # 8 bit-serial pulses + 8 columns per ADC x 6-bit SAR
    assert TimingConfig().mvm_cycles(hw) == 8 + 8 * 6
    assert TimingConfig(bit_serial=False, input_pulse_cycles=3).mvm_cycles(hw) == 3 + 8 * 6
    assert TimingConfig(convert_per_bit=True).mvm_cycles(hw) == 8 * (1 + 8 * 6)
    assert TimingConfig(cols_per_adc=1, adc_cycles_per_bit=2).mvm_cycles(hw) == 8 + 1 * 6 * 2
    # unlimited bits -> default_bits
    assert TimingConfig(default_bits=4).mvm_cycles(HardwareConfig()) == 4 + 8 * 4


@pytest.mark.parametrize("kw, match", [
    ({"cols_per_adc": 0}, "cols_per_adc"),
    ({"input_pulse_cycles": 1.5}, "input_pulse_cycles"),
    ({"row_handoff_cycles": -1}, "row_handoff_cycles"),
    ({"bit_serial": 1}, "bit_serial"),
    ({"clock_hz": 0.0}, "clock_hz"),
    ({"bit_serial": False, "convert_per_bit": True}, "convert_per_bit"),
])
def test_timing_config_rejects(kw, match):
    with pytest.raises(ConfigError, match=match):
        TimingConfig(**kw)


@pytest.mark.parametrize("kw, match", [
    ({"name": "unrolled"}, "name"), ({"name": "shared", "replication": 2}, "replicated"),
    ({"name": "replicated", "replication": 0}, "replication"), ({"split": "band"}, "split"),
    ({"data_replication": 0}, "data_replication"),
])
def test_mapping_rejects(kw, match):
    with pytest.raises(ConfigError, match=match):
        Mapping(**kw)


# --- row dependencies: impulse tests against the engine's ops -----------------------------------

def influence(fn, H, W=3):
    """M[r, i] = output row r changes when input row i is a one-hot row."""
    rows = []
    for i in range(H):
        x = np.zeros((1, 1, H, W), np.float32)
        x[0, 0, i, :] = 1.0
        rows.append(np.abs(fn(x)[0, 0]).sum(axis=1) > 0)
    return np.stack(rows, 1)


@pytest.mark.parametrize("H, k, stride, pad", [(7, 3, 1, 1), (8, 3, 2, 1), (9, 3, 2, 1), (5, 1, 1, 0),
                                               (1, 3, 1, 1), (6, 5, 1, 2)])
def test_rows_conv_match_impulse(H, k, stride, pad):
    w = np.ones((1, 1, k, k), np.float32)
    M = influence(lambda x: mops.conv2d(x, w, stride=stride, padding=pad), H)
    lo, hi = rows_conv(H, M.shape[0], k, stride, pad)
    for r in range(M.shape[0]):
        assert np.flatnonzero(M[r]).tolist() == list(range(lo[r], hi[r] + 1)), f"output row {r}"


@pytest.mark.parametrize("H, k", [(7, 2), (90, 4), (5, 1), (3, 4)])
def test_rows_pool_match_impulse(H, k):
    M = influence(lambda x: mops.max_pool2d(x, k), H)
    lo, hi = rows_pool(H, M.shape[0], k)
    for r in range(M.shape[0]):
        assert np.flatnonzero(M[r]).tolist() == list(range(lo[r], hi[r] + 1)), f"output row {r}"


@pytest.mark.parametrize("H, OH", [(23, 90), (90, 23), (45, 360), (90, 45), (23, 45), (45, 23), (7, 7), (1, 4)])
def test_rows_resize_match_impulse(H, OH):
    M = influence(lambda x: mops.interpolate_bilinear(x, (OH, 3)), H)
    lo, hi = rows_resize(H, OH)
    for r in range(OH):
        used = np.flatnonzero(M[r])
        # every row with a nonzero weight lies in lo..hi; lo always has one; hi may carry weight 0
        assert used.size and used.min() == lo[r] and used.max() <= hi[r] and hi[r] - lo[r] <= 1, (
            f"output row {r}: rows with weight {used.tolist()}, timing says {lo[r]}..{hi[r]}")


# --- closed forms on small graphs -----------------------------------------------------------------

def conv_chain(N, H, W, mvm, h, shared, frames=1):
    """N 3x3 convs, stride 1, pad 1, H x W, on N resources (unrolled) or one (shared)."""
    ops, res = [], [Resource("shared", 1)] if shared else [Resource(f"conv{k}", 1) for k in range(N)]
    lo, hi = rows_conv(H, H, 3, 1, 1)
    for f in range(frames):
        for k in range(N):
            deps = (Dep(len(ops) - 1, lo, hi),) if k else ()
            ops.append(Op(f"f{f}/conv{k}", H, W * mvm, (0 if shared else k,), deps, delay=h,
                          priority=(f, k), row_mvms=W, row_elems=W, frame=f, n=k + 1))
    return ops, res


@pytest.mark.parametrize("N", [1, 2, 3, 5])
@pytest.mark.parametrize("H, W, mvm, h", [(2, 3, 7, 0), (5, 4, 3, 2), (9, 1, 5, 11), (16, 6, 72, 4)])
def test_unrolled_chain_closed_form(N, H, W, mvm, h):
    c = W * mvm
    s = simulate(*conv_chain(N, H, W, mvm, h, shared=False))
    for k in range(1, N + 1):
        r = np.arange(H)
        np.testing.assert_array_equal(s.end[k - 1], (r + 2 * k - 1) * c + (k - 1) * h, err_msg=f"conv {k}")
    assert s.makespan == (H + 2 * N - 2) * c + (N - 1) * h
    F = 4
    s = simulate(*conv_chain(N, H, W, mvm, h, shared=False, frames=F))
    fin = [int(max(s.end[i].max() for i, op in enumerate(s.ops) if op.frame == f)) for f in range(F)]
    assert fin == [(H + 2 * N - 2) * c + (N - 1) * h + f * H * c for f in range(F)], "one frame per H*c"


def test_single_row_chain():
    # H = 1: every conv needs the one row of the previous: N c + (N - 1) h
    s = simulate(*conv_chain(4, 1, 5, 3, 2, shared=False))
    assert s.makespan == 4 * 15 + 3 * 2


@pytest.mark.parametrize("N", [1, 2, 4, 16])
@pytest.mark.parametrize("H, W, mvm, h", [(3, 4, 5, 1), (8, 2, 9, 4), (16, 6, 72, 4)])
def test_shared_conv_closed_form(N, H, W, mvm, h):
    c = W * mvm
    assert H * c >= 2 * c + h  # the condition of the closed form
    s = simulate(*conv_chain(N, H, W, mvm, h, shared=True))
    assert [int(e.max()) for e in s.end] == [n * H * c for n in range(1, N + 1)]
    F = 3
    s = simulate(*conv_chain(N, H, W, mvm, h, shared=True, frames=F))
    fin = [int(max(s.end[i].max() for i, op in enumerate(s.ops) if op.frame == f)) for f in range(F)]
    assert fin == [(f + 1) * N * H * c for f in range(F)]
    # unrolled streams N times faster
    su = simulate(*conv_chain(N, H, W, mvm, h, shared=False, frames=F))
    fin_u = [int(max(su.end[i].max() for i, op in enumerate(su.ops) if op.frame == f)) for f in range(F)]
    assert (fin[-1] - fin[-2]) == N * (fin_u[-1] - fin_u[-2])


def test_line_buffer_of_a_chain():
    # conv 1's row k is readable at (k+1)c + h and last read by conv 2's row k + 1: 3 rows held
    s = simulate(*conv_chain(2, 9, 4, 3, 2, shared=False))
    peaks, kib = line_buffer_peaks(s, 8)
    assert peaks.tolist() == [3, 0]
    assert kib == pytest.approx(3 * 4 / 1024)


def test_simulate_rejects_bad_ops():
    lo, hi = rows_conv(4, 4, 3, 1, 1)
    with pytest.raises(ConfigError, match="reads rows up to"):
        simulate([Op("a", 3, 1, (0,)), Op("b", 4, 1, (0,), (Dep(0, lo, hi),))], [Resource("r")])
    with pytest.raises(ConfigError, match="deadlock"):
        a, b = rows_conv(3, 3, 1)
        simulate([Op("a", 3, 1, (0,), (Dep(1, a, b),)), Op("b", 3, 1, (0,), (Dep(0, a, b),))], [Resource("r")])


# --- the real network ------------------------------------------------------------------------------

H_PX, W_PX, N = 360, 480, 16
HW = preset("pcm")
TC = TimingConfig()


@pytest.fixture(scope="module")
def graph():
    return build_graph(ItNetConfig(iterations=N, width=51), H_PX, W_PX)


@pytest.fixture(scope="module")
def report(graph):
    # data_replication=4 balances the 180x240 stem conv against the 90x120 body layers
    return time_graph(graph, HW, TC, frames=4, replication=4, data_replication=4)


def check_schedule(s):
    """Rows respect their data (start >= readable time of every needed row) and no
    resource runs two rows at once."""
    for i, op in enumerate(s.ops):
        assert np.all(s.end[i] - s.start[i] == op.row_cycles), op.name
        for d in op.deps:
            ready = np.maximum.accumulate(s.end[d.op]) + s.ops[d.op].delay
            assert np.all(s.start[i] >= ready[d.hi]), f"{op.name} starts a row before its input row is ready"
    for k in range(len(s.resources)):
        iv = s.intervals(k)
        assert np.all(iv[1:, 0] >= iv[:-1, 1]), f"{s.resources[k].name} serves two rows at once"


@pytest.mark.parametrize("name", ["shared", "independent", "replicated"])
def test_real_network_schedule_is_valid(report, name):
    check_schedule(report.mappings[name].schedule)


def test_stream_schedule_is_valid(graph):
    check_schedule(simulate(*extract(graph, HW, TC, Mapping("replicated", 4), frames=2)))


def test_latency_increases_linearly(report):
    for name, m in report.mappings.items():
        L = np.array(m.output_latency_cycles, np.float64)
        assert np.all(np.diff(L) > 0), f"{name}: latency must grow with n, got {L.tolist()}"
        n = np.arange(2, N + 1)
        fit = np.polyfit(n, L[1:], 1)
        r2 = 1 - ((np.polyval(fit, n) - L[1:]) ** 2).sum() / ((L[1:] - L[1:].mean()) ** 2).sum()
        assert r2 > 0.95, f"{name}: latency of m_2..m_N not roughly linear (R^2={r2:.3f}, threshold 0.95)"
    # shared and balanced: one iteration = one 90x120 layer on the busiest body tiles, exactly
    L = report.mappings["shared"].output_latency_cycles
    assert np.all(np.diff(L) == 90 * 120 * TC.mvm_cycles(HW))


def test_unrolled_throughput_and_tiles(report):
    sh, ind = report.mappings["shared"], report.mappings["independent"]
    ratio = sh.frame_interval_cycles / ind.frame_interval_cycles
    assert 0.9 * N <= ratio <= 1.01 * N, f"unrolled / shared throughput {ratio:.2f}, expected ~N={N} (-10%)"
    tiles = ind.body_tiles / sh.body_tiles
    assert N - 1 <= tiles <= N, f"unrolled body needs {tiles:.2f}x the shared tiles, expected N-1..N"
    for m in report.mappings.values():  # the steady state runs at the pace of the busiest tiles
        assert m.bottleneck_cycles <= m.frame_interval_cycles <= 1.02 * m.bottleneck_cycles, m.mapping


def test_unbalanced_stem_limits_unrolled_throughput(graph):
    m = time_mapping(graph, HW, TC, Mapping("independent"), frames=2)
    assert m.bottleneck == "stem1.conv"
    assert m.frame_interval_cycles == 180 * 240 * TC.mvm_cycles(HW)


def test_busy_cycles_equal_mvm_count(graph, report):
    """Busy cycles of every tile group = (MVMs of each of its tiles) x cycles per MVM,
    the MVMs counted independently from Graph.schedule."""
    mvm = TC.mvm_cycles(HW)
    expected, total = {}, 0
    for st in graph.schedule():
        if st.node.op != "conv":
            continue
        px = st.node.shape[1] * st.node.shape[2]
        key = {"data": st.node.name, "body": f"body/{st.node.name}", "head": f"head{st.n}/{st.node.name}"}[st.block]
        expected[key] = expected.get(key, 0) + px
        total += px * plan_layer(graph.layers[st.layer], HW).tiles
    m = report.mappings["shared"]
    busy = {r["name"]: r["busy_cycles"] for r in m.resources if r["tiles"]}
    for name in ("stem1.conv", "stem2.conv"):  # replicated row-wise into copies #k
        busy[name] = sum(v for k, v in busy.items() if k.startswith(name + "#")) or busy.get(name)
    for key, px in expected.items():
        assert busy[key] == px * mvm, f"{key}: busy {busy[key]}, expected {px} MVMs x {mvm}"
    for mp in report.mappings.values():
        got = sum(r["busy_cycles"] * r["tiles"] for r in mp.resources)
        assert got == total * mvm, f"{mp.mapping.name}: tile-cycles {got}, expected {total} MVMs x {mvm}"


def test_report_json(report):
    d = json.loads(report.to_json())
    assert set(d["mappings"]) == {"shared", "independent", "replicated"}
    for m in d["mappings"].values():
        assert len(m["output_latency_cycles"]) == N and m["tiles"] > 0 and m["frame_interval_cycles"] > 0
        ex = [e for e in m["executions"] if e["block"] == "body" and e["node"] == "brb.0.0.expand"]
        assert [e["n"] for e in ex] == list(range(1, N + 1))
        assert all(e["start_cycle"] < e["end_cycle"] for e in ex)


def test_replication_between_shared_and_unrolled(report):
    sh, ind, rep = (report.mappings[k] for k in ("shared", "independent", "replicated"))
    assert ind.output_latency_cycles[-1] < rep.output_latency_cycles[-1] < sh.output_latency_cycles[-1]
    assert sh.body_tiles < rep.body_tiles < ind.body_tiles
    assert rep.body_tiles == 4 * sh.body_tiles


def test_row_split_replication(graph):
    m = time_mapping(build_graph(ItNetConfig(iterations=4), 64, 96), HW, TC, Mapping("replicated", 2, "row"), 2)
    check_schedule(m.schedule)
    assert m.body_tiles == 2 * time_mapping(build_graph(ItNetConfig(iterations=4), 64, 96), HW, TC,
                                            Mapping("shared"), 2).body_tiles


# --- CLI -------------------------------------------------------------------------------------------

def test_cli_json(capsys):
    from minitnet.cli import main

    rc = main(["emulate-timing", "--iterations", "3", "--height", "40", "--width-px", "56", "--frames", "2",
               "--replication", "2", "--set", "cols_per_adc=4", "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["mvm_cycles"] == 8 + 4 * 8
    for name in ("shared", "independent", "replicated"):
        m = d["mappings"][name]
        assert len(m["output_latency_cycles"]) == 3 and m["frame_interval_cycles"] > 0 and m["tiles"] > 0


def test_cli_table_and_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    from minitnet.cli import main

    png = tmp_path / "t.png"
    rc = main(["emulate-timing", "--iterations", "2", "--height", "24", "--width-px", "32", "--frames", "2",
               "--plot", str(png)])
    assert rc == 0 and png.stat().st_size > 0
    out = capsys.readouterr().out
    assert "replicated r=4" in out and "cycles/MVM" in out


@pytest.mark.parametrize("argv, match", [
    (["--set", "nope=1"], "FIELD=VALUE"),
    (["--set", "cols_per_adc=x"], "not a valid int"),
    (["--frames", "1"], "frames"),
])
def test_cli_errors(capsys, argv, match):
    from minitnet.cli import main

    assert main(["emulate-timing", "--iterations", "2", "--height", "16", "--width-px", "16"] + argv) == 1
    assert match in capsys.readouterr().err
