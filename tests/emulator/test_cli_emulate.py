"""minitnet emulate / emulate-eval: outputs, overrides, JSON contract, plots, bad flags."""

import json

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minitnet import ItNetConfig
from minitnet.cli import main
from netutil import write_random

CFG = ItNetConfig(levels=2, iterations=3, width=8, heads=(1, 3))
SAMPLES = "tests/data/camvid"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return str(write_random(tmp_path_factory.mktemp("w") / "w.h5", CFG, seed=0))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The shipped CamVid samples cropped to 72 x 96 (SegNet layout), to keep the tests quick."""
    root = tmp_path_factory.mktemp("camvid")
    for split in ("val", "valannot"):
        (root / split).mkdir()
        for p in sorted((Path(SAMPLES) / split).iterdir()):
            with Image.open(p) as im:
                im.crop((100, 150, 196, 222)).save(root / split / p.name)
    return str(root)


@pytest.fixture(scope="module")
def image(data):
    return f"{data}/val/0016E5_07959.png"


def run_json(capsys, argv):
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_emulate_ideal_equals_float(capsys, weights, image):
    d = run_json(capsys, ["emulate", image, "--weights", weights, "--preset", "ideal"])
    assert [r["output"] for r in d["outputs"]] == [1, 3]
    for r in d["outputs"]:
        assert r["logits_error"] <= 1e-5 and r["state_error"] <= 1e-5
        assert r["pixel_agreement"] >= 0.999
    assert d["tiles"] == 14 and d["hw"]["out_bits"] is None


def test_emulate_overrides_report_and_class_maps(capsys, tmp_path, weights, image):
    out = tmp_path / "maps"
    d = run_json(capsys, ["emulate", image, "--weights", weights, "--preset", "pcm", "--t-inference", "3600",
                          "--out-bits", "6", "--inp-bound", "none", "--rows", "64", "--seed", "3", "--report",
                          "--out", str(out)])
    assert d["hw"]["t_inference"] == 3600.0 and d["hw"]["out_bits"] == 6 and d["hw"]["rows"] == 64
    assert d["mapping"]["totals"]["this"]["tiles"] == d["tiles"] > 14  # 64-row tiles: more of them
    for r in d["outputs"]:
        assert 0 < r["state_error"] < np.inf and 0 <= r["pixel_agreement"] <= 1
    assert (out / "0016E5_07959_emu_m3.png").exists() and (out / "0016E5_07959_emu_m1_color.png").exists()
    again = run_json(capsys, ["emulate", image, "--weights", weights, "--preset", "pcm", "--t-inference", "3600",
                              "--out-bits", "6", "--rows", "64", "--seed", "3"])
    assert again["outputs"] == d["outputs"]  # same seed, same numbers
    assert main(["emulate", image, "--weights", weights, "--preset", "8bit"]) == 0
    text = capsys.readouterr().out
    assert "state err" in text and "preset 8bit" in text


def test_emulate_eval_json_and_plot(capsys, tmp_path, weights, data):
    plot = tmp_path / "anytime.png"
    d = run_json(capsys, ["emulate-eval", data, "--weights", weights, "--preset", "pcm", "--chips", "2",
                          "--limit", "1", "--calibration-images", "1", "--plot", str(plot), "--quiet"])
    assert d["outputs"] == [1, 3] and d["chips"] == 2 and d["images"] == 1
    assert len(d["chip_miou"]) == 2 and len(d["miou_mean"]) == len(d["miou_std"]) == len(d["float_miou"]) == 2
    for lo, m, hi in zip(d["miou_min"], d["miou_mean"], d["miou_max"]):
        assert lo <= m <= hi
    assert plot.exists() and plot.stat().st_size > 1000
    ideal = run_json(capsys, ["emulate-eval", data, "--weights", weights, "--preset", "ideal", "--chips", "1",
                              "--limit", "1", "--quiet", "--state-error"])
    assert ideal["miou_mean"] == pytest.approx(ideal["float_miou"], abs=1e-3)
    assert max(ideal["state_error"][0]) <= 1e-5
    assert main(["emulate-eval", data, "--weights", weights, "--preset", "8bit", "--chips", "1", "--limit", "1",
                 "--quiet"]) == 0
    assert "float %" in capsys.readouterr().out


@pytest.mark.parametrize("argv,msg", [
    (["--preset", "nope"], "unknown hardware preset 'nope'"),
    (["--inp-bits", "0"], "inp_bits=0"),
    (["--out-bits", "six"], "--out-bits 'six': expected an integer or none"),
    (["--read-noise-std", "-1"], "read_noise_std=-1.0"),
    (["--rows", "0"], "rows=0"),
    (["--drift-compensation", "maybe"], "expected False, True, 'global' or 'column'"),
    (["--weight-scaling", "colum"], "did you mean 'column'"),
])
def test_bad_hardware_flags(capsys, weights, image, argv, msg):
    assert main(["emulate", image, "--weights", weights] + argv) == 1
    err = capsys.readouterr().err
    assert msg in err, err


def test_emulate_eval_bad_counts(capsys, weights, data):
    assert main(["emulate-eval", data, "--weights", weights, "--chips", "0"]) == 1
    assert "--chips must be >= 1" in capsys.readouterr().err
    assert main(["emulate-eval", "no/such/dir", "--weights", weights, "--chips", "1"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_emulator_table_script(tmp_path, data):
    import importlib.util

    spec = importlib.util.spec_from_file_location("emulator_table", Path("scripts/emulator_table.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    shared = write_random(tmp_path / "s.h5", CFG, seed=1)
    indep = write_random(tmp_path / "i.h5", ItNetConfig(levels=2, iterations=3, width=8, shared=False), seed=2)
    out, js = tmp_path / "table.md", tmp_path / "table.json"
    assert mod.main([data, "--weights", str(shared), str(indep), "--chips", "2", "--limit", "1",
                     "--calibration-images", "1", "--outputs", "1,3", "--out", str(out), "--json", str(js),
                     "--quiet", "--workers", "0", "--presets", "pcm"]) == 0
    lines = out.read_text().splitlines()
    body = [ln for ln in lines if ln.startswith("| ") and "hardware" not in ln]
    assert len(body) == 2 * 7  # float, ideal, 8-bit, pcm at t = 0 / 1 hour / 1 day / 1 month, per weights file
    assert any("s.h5 (shared" in ln and "pcm, 1 day" in ln and "±" in ln for ln in body)
    assert any("i.h5 (independent" in ln and "| 8-bit |" in ln and "| 1 |" in ln for ln in body)  # no noise: 1 chip
    rec = json.loads(js.read_text())
    by = {(r["weights"], r["setting"]): r for r in rec}
    for w in (shared, indep):
        fl, ideal = by[(str(w), "float")], by[(str(w), "ideal")]
        assert ideal["miou_mean"] == pytest.approx(fl["miou"], abs=1e-3)
        assert by[(str(w), "pcm, 1 hour")]["chips"] == 2 and by[(str(w), "pcm, 1 hour")]["hw"]["t_inference"] == 3600
        assert by[(str(w), "pcm, 1 month")]["hw"]["t_inference"] == 30 * 86400
    shared_tiles = by[(str(shared), "ideal")]["tiles"]
    indep_tiles = by[(str(indep), "ideal")]["tiles"]
    assert indep_tiles > shared_tiles
    assert mod.main([data, "--weights", str(tmp_path / "missing.h5")]) == 1
    assert mod.main([data, "--weights", str(shared), "--presets", "pcm,nope"]) == 1
    # --ablations (and no preset rows): pcm-hwa at 1 day with one choice changed or one noise source off
    assert mod.main([data, "--weights", str(shared), "--chips", "1", "--limit", "1", "--calibration-images", "1",
                     "--outputs", "1", "--json", str(js), "--ablations", "--presets", "none", "--quiet",
                     "--workers", "0"]) == 0
    rec = {r["setting"]: r for r in json.loads(js.read_text())}
    assert len(rec) == 3 + len(mod.ABLATIONS)
    day = {k: v for k, v in rec.items() if k.startswith("pcm-hwa, 1 day")}
    assert len(day) == len(mod.ABLATIONS) and all(r["hw"]["t_inference"] == 86400 for r in day.values())
    assert rec["pcm-hwa, 1 day, no read noise"]["hw"]["read_noise_scale"] == 0
    assert rec["pcm-hwa, 1 day, no programming noise"]["hw"]["prog_noise_scale"] == 0
    assert rec["pcm-hwa, 1 day, no ADC noise"]["hw"]["out_noise_std"] == 0
    assert rec["pcm-hwa, 1 day, per-tile weights"]["hw"]["weight_scaling"] == "tile"
    # --plot from a saved record, without evaluating again
    png = tmp_path / "table.png"
    assert mod.main(["unused", "--from-json", str(js), "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert mod.main(["unused", "--from-json", str(js)]) == 1                     # no --plot: nothing to do
    assert mod.main(["unused", "--from-json", str(tmp_path / "none.json"), "--plot", str(png)]) == 1
