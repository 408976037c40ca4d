"""minitnet sweep (emulator/sweep.py): the grid, seeds, Dask equal to in-process, lost workers, resume.

A tiny random net on four synthetic 32 x 48 images; 2 settings x 2 chips, 2 images per task.
"""

import json
import os
import signal

import numpy as np
import pytest
from PIL import Image

pd = pytest.importorskip("pandas")
pytest.importorskip("distributed")
pytest.importorskip("pyarrow")

from emulator import ConfigError  # noqa: E402
from emulator import sweep, sweep_dask  # noqa: E402
from minitnet import ItNetConfig  # noqa: E402
from minitnet.cli import main  # noqa: E402
from netutil import write_random  # noqa: E402

CFG = ItNetConfig(levels=2, iterations=3, width=8, heads=(1, 3))
SETS = {"t_inference": [0.0, 3600.0]}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return str(write_random(tmp_path_factory.mktemp("w") / "w.h5", CFG, seed=0))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Four 32 x 48 RGB images with smooth colour ramps and labels 0..11 (11 = void), SegNet layout."""
    root = tmp_path_factory.mktemp("camvid")
    (root / "val").mkdir()
    (root / "valannot").mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:48]
    for i in range(4):
        img = np.stack([(xx * 5 + 40 * i) % 256, (yy * 7) % 256, rng.integers(0, 256, (32, 48))], -1)
        lab = ((xx // 8 + yy // 8 + i) % 12).astype(np.uint8)
        Image.fromarray(img.astype(np.uint8)).save(root / "val" / f"img{i}.png")
        Image.fromarray(lab).save(root / "valannot" / f"img{i}.png")
    return str(root)


@pytest.fixture(scope="module")
def client():
    with sweep_dask.connect(workers=2) as c:
        yield c


def spec(data, weights, **kw):
    kw.setdefault("chunk", 2)
    return sweep.SweepSpec(data, [weights], sweep.grid("pcm", SETS, chips=2), calibration_images=1, **kw)


NUMBERS = ["cell", "output", "chip", "seed", "miou", "pixels"]


def numbers(res):
    t = res.table
    return t[NUMBERS + [c for c in t.columns if c.startswith("iou_")]]


@pytest.fixture(scope="module")
def reference(data, weights):
    """The sweep on Dask's synchronous scheduler, in this process."""
    return sweep.run_sweep(spec(data, weights))


# --- the grid ------------------------------------------------------------------------------------
def test_parse_set_types_and_grid_order():
    assert sweep.parse_set("t-inference=0,3600") == ("t_inference", (0.0, 3600.0))
    assert sweep.parse_set("out_bits=6,none") == ("out_bits", (6, None))
    assert sweep.parse_set("drift_compensation=true,0") == ("drift_compensation", (True, False))
    assert sweep.parse_set("device_model=pcm") == ("device_model", ("pcm",))
    g = sweep.grid("pcm", {"out_bits": [6, 8], "t_inference": [0.0, 1.0, 2.0]}, chips=3)
    assert [s.overrides for s in g[:2]] == [(("out_bits", 6), ("t_inference", 0.0)),
                                            (("out_bits", 6), ("t_inference", 1.0))]
    assert len(g) == 6 and {s.chips for s in g} == {3}
    assert g[-1].hw.out_bits == 8 and g[-1].hw.t_inference == 2.0 and g[-1].hw.device_model == "pcm"


@pytest.mark.parametrize("text, msg", [
    ("t_inferense=0,1", "did you mean 't_inference'"),
    ("out_bits=1", "out_bits=1: expected an integer >= 2"),
    ("out_bits=eight", "expected an integer or none"),
    ("t_inference", "expected FIELD=V1,V2"),
    ("t_inference=-5", "t_inference=-5.0: expected a finite number >= 0"),
])
def test_bad_field_or_value_fails_before_any_task(capsys, tmp_path, data, weights, text, msg):
    # an unreachable scheduler: reaching for it first would fail with another message
    out = tmp_path / "r.parquet"
    argv = ["sweep", data, "--weights", weights, "--set", text, "--out", str(out), "--scheduler", "tcp://127.0.0.1:9"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert msg in err, err
    assert not out.exists()
    with pytest.raises(ConfigError, match="valid fields: .*'t_inference'"):
        sweep.grid("pcm", {"t_inferense": [0.0]})


def test_seed_depends_on_weights_setting_chip_only(weights, tmp_path):
    import emulator

    sha = "ab" * 32
    a = sweep.cell_seed(0, sha, emulator.preset("pcm", t_inference=3600), 1)
    assert a == sweep.cell_seed(0, sha, emulator.preset("pcm", t_inference=3600.0), 1)  # int or float: one setting
    others = {sweep.cell_seed(1, sha, emulator.preset("pcm", t_inference=3600.0), 1),
              sweep.cell_seed(0, "cd" * 32, emulator.preset("pcm", t_inference=3600.0), 1),
              sweep.cell_seed(0, sha, emulator.preset("pcm"), 1),
              sweep.cell_seed(0, sha, emulator.preset("pcm", t_inference=3600.0), 0)}
    assert a not in others and len(others) == 4 and 0 <= a < 2 ** 63


# --- Dask ------------------------------------------------------------------------------------------
def test_chunking_does_not_change_results(data, weights, reference):
    assert len(reference.table) == 2 * 2 * 2 and reference.tasks_run == 4 * 2
    one = sweep.run_sweep(spec(data, weights, chunk=4))
    assert one.tasks_run == 4
    pd.testing.assert_frame_equal(numbers(one), numbers(reference), check_exact=True)


def test_local_cluster_equals_synchronous(client, data, weights, reference):
    res = sweep.run_sweep(spec(data, weights), client)
    pd.testing.assert_frame_equal(numbers(res), numbers(reference), check_exact=True)
    pids = set(client.run(os.getpid).values())
    assert len(pids) == 2 and os.getpid() not in pids
    # images and labels sent as bytes: the same numbers
    res = sweep.run_sweep(spec(data, weights, images_by_value=True), client)
    pd.testing.assert_frame_equal(numbers(res), numbers(reference), check_exact=True)


def test_killed_worker_still_completes(client, data, weights, reference):
    killed = []

    def kill_a_busy_worker(info):
        if killed:
            return
        busy = [w for w, keys in client.processing().items() if keys]
        if busy:
            pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    res = sweep.run_sweep(spec(data, weights, chunk=1), client, on_task=kill_a_busy_worker)
    assert killed, "no worker was busy after the first task: nothing was killed"
    pd.testing.assert_frame_equal(numbers(res), numbers(reference), check_exact=True)
    assert res.tasks_run == 4 * 4


# --- results ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_rerun_skips_finished_cells(tmp_path, data, weights, reference, suffix):
    out = tmp_path / f"r{suffix}"
    seen = []
    first = sweep.run_sweep(spec(data, weights), out=out, on_task=seen.append)
    assert first.cells_run == 4 and len(seen) == 8
    pd.testing.assert_frame_equal(numbers(first), numbers(reference), check_exact=True)
    seen.clear()
    again = sweep.run_sweep(spec(data, weights), out=out, on_task=seen.append)
    assert again.cells_run == 0 and again.tasks_run == 0 and not seen
    assert list(again.table["miou"]) == list(first.table["miou"])
    # a crash before the last cell: only that cell runs again
    table = sweep.read_table(out)
    lost = table["cell"].iloc[-1]
    sweep.write_table(table[table["cell"] != lost], out)
    third = sweep.run_sweep(spec(data, weights), out=out, on_task=seen.append)
    assert third.cells_run == 1 and {i["cell"].key for i in seen} == {lost}
    assert list(third.table["miou"]) == list(first.table["miou"])
    assert len(sweep.read_table(out)) == len(reference.table)


def test_cli_json_rows_and_plot(capsys, tmp_path, data, weights, reference):
    out, png = tmp_path / "r.csv", tmp_path / "r.png"
    argv = ["sweep", data, "--weights", weights, "--set", "t_inference=0,3600", "--chips", "2", "--chunk", "2",
            "--calibration-images", "1", "--workers", "0", "--out", str(out), "--json", "--plot", str(png),
            "--quiet"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert len(rows) == 2 * 2 * 2
    assert all(set(r) == {"weights", "t_inference", "chip", "seed", "output", "miou"} for r in rows)
    assert [r["miou"] for r in rows] == list(reference.table["miou"])
    assert {(r["t_inference"], r["chip"]) for r in rows} == {(0.0, 0), (0.0, 1), (3600.0, 0), (3600.0, 1)}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = sweep.read_table(out)
    assert {"iou_sky", "iou_bicyclist", "seed", "t_inference", "cell"} <= set(table.columns)
    # the summary (no --json), resumed from the file: no task runs
    assert main(argv[:-4] + ["--quiet"]) == 0
    text = capsys.readouterr().out
    assert "0 run now" in text and "t_inference=3600" in text


def test_float_rows_and_bad_out(tmp_path, data, weights):
    s = sweep.SweepSpec(data, [weights], [sweep.Setting(sweep.FLOAT)] + sweep.grid("ideal", {"out_bits": [None]}),
                        calibration_images=1)
    res = sweep.run_sweep(s)
    fl, ideal = (res.table[res.table["preset"] == p]["miou"].tolist() for p in ("float", "ideal"))
    assert fl == pytest.approx(ideal, abs=1e-3)   # ideal tiles equal the float engine
    with pytest.raises(ConfigError, match=r"expected a .parquet or .csv"):
        sweep.run_sweep(s, out=tmp_path / "r.txt")


def test_cli_on_a_running_scheduler(capsys, monkeypatch, tmp_path, client, data, weights, reference):
    """DASK_SCHEDULER_ADDRESS (as --scheduler): the command joins the running cluster."""
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", client.scheduler.address)
    argv = ["sweep", data, "--weights", weights, "--set", "t_inference=0,3600", "--chips", "2", "--chunk", "2",
            "--calibration-images", "1", "--out", str(tmp_path / "r.parquet"), "--json", "--quiet"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["miou"] for r in rows] == list(reference.table["miou"])
    assert len(client.scheduler_info()["workers"]) == 2     # the cluster is still there: joined, not started


def test_interrupted_run_keeps_finished_cells(tmp_path, data, weights, reference):
    """The table is written after every cell: an interrupt after the 2nd cell keeps those 2, the rerun does the rest."""
    out = tmp_path / "r.parquet"

    def interrupt(info):
        if info["done"] == 4:              # 2 chunks per cell: the 2nd cell just finished
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(spec(data, weights), out=out, on_task=interrupt)
    assert sweep.read_table(out)["cell"].nunique() == 2
    res = sweep.run_sweep(spec(data, weights), out=out)
    assert res.cells_run == 2 and res.tasks_run == 4
    pd.testing.assert_frame_equal(numbers(res), numbers(reference), check_exact=True)
