"""``minitnet info``, ``eval`` and ``search`` end to end (in-process), with bad input."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from minitnet.cli import main
from minitnet.config import ItNetConfig

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "data" / "camvid"  # 4 CamVid val images + labels shipped with the project
SHARED_CAMVID = ROOT.parent / "shared" / "data" / "camvid"
TINY = ItNetConfig(levels=3, blocks=1, iterations=3, width=8, classes=11)


def run_cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A small random-weight model (trained weights do not exist yet) and its torch twin."""
    torch = pytest.importorskip("torch")
    from minitnet.torch import TorchItNet, export_hdf5

    torch.manual_seed(0)
    m = TorchItNet(TINY)
    with torch.no_grad():  # non-trivial BN statistics so folding is exercised
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
    m.eval()
    path = tmp_path_factory.mktemp("w") / "tiny.h5"
    export_hdf5(m, path)
    return path, m


def make_dataset(root: Path, split="val", images=(), labels=()):
    from PIL import Image

    (root / split).mkdir(parents=True, exist_ok=True)
    (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(images):
        Image.fromarray(a).save(root / split / f"im{i}.png")
    for i, a in enumerate(labels):
        Image.fromarray(a).save(root / f"{split}annot" / f"im{i}.png")
    return root


# -- info ---------------------------------------------------------------------------------------
def test_info_spec_shared(capsys):
    rc, out, _ = run_cli(capsys, "info")
    assert rc == 0
    assert "184,106" in out and "82.7 MiB" in out
    last = [l for l in out.splitlines() if l.strip().startswith("16 ")][0].split()
    assert last == ["16", "6.238", "6.271", "67"]


def test_info_spec_independent(capsys):
    rc, out, _ = run_cli(capsys, "info", "--independent", "--width", "29")
    assert rc == 0
    assert "425,087" in out and "387.2 MiB" in out
    last = [l for l in out.splitlines() if l.strip().startswith("16 ")][0].split()
    assert last[:2] == ["16", "2.049"] and last[-1] == "67"


def test_info_json_contract(capsys):
    rc, out, _ = run_cli(capsys, "info", "--json")
    d = json.loads(out)
    for key in ("params", "bn_params", "graph_mib", "macs", "macs_cumulative", "latency"):
        assert key in d
    assert d["params"] == 184_106 and round(d["graph_mib"], 1) == 82.7
    assert len(d["macs"]) == len(d["macs_cumulative"]) == len(d["latency"]) == 16
    assert round(d["macs"][-1] / 1e9, 2) == 6.24 and d["latency"][-1] == 67
    assert d["height_px"] == 360 and d["width_px"] == 480


def test_info_cityscapes_geometry(capsys):
    rc, out, _ = run_cli(capsys, "info", "--dataset", "cityscapes", "--width", "56", "--json")
    d = json.loads(out)
    assert (d["height_px"], d["width_px"], d["config"]["classes"]) == (512, 1024, 19)
    assert round(d["macs"][10] / 1e9, 1) == 16.6
    rc, out, _ = run_cli(capsys, "info", "--height", "100", "--width-px", "75", "--json", "--heads", "1,3",
                         "--iterations", "3")
    d = json.loads(out)
    assert (d["height_px"], d["width_px"], d["outputs"]) == (100, 75, [1, 3])


def test_info_layers_listing(capsys):
    rc, out, _ = run_cli(capsys, "info", "--layers")
    assert rc == 0 and "bodies.0.brb.2.0.project" in out and "heads.16" in out


def test_info_from_weights_equals_flags(capsys, tiny_weights):
    path, _ = tiny_weights
    _, a, _ = run_cli(capsys, "info", "--weights", path, "--json")
    _, b, _ = run_cli(capsys, "info", "--iterations", 3, "--width", 8, "--json")
    da, db = json.loads(a), json.loads(b)
    da.pop("weights"), db.pop("weights")
    assert da == db


def test_info_bad_input(capsys, tiny_weights, tmp_path):
    path, _ = tiny_weights
    rc, _, err = run_cli(capsys, "info", "--weights", path, "--width", 20)
    assert rc == 1 and "drop --width" in err
    rc, _, err = run_cli(capsys, "info", "--width", 3)
    assert rc == 1 and "width" in err
    rc, _, err = run_cli(capsys, "info", "--weights", tmp_path / "nope.h5")
    assert rc == 1 and "no such file" in err
    rc, _, err = run_cli(capsys, "info", "--height", 0)
    assert rc == 1 and "--height" in err


# -- search -------------------------------------------------------------------------------------
def test_search_paper_rule_gives_f29(capsys):
    rc, out, _ = run_cli(capsys, "search", "--budget-gmacs", "2.2", "--levels", "3", "--blocks", "1",
                         "--iterations", "16", "--json")
    assert rc == 0
    row = json.loads(out)["rows"][0]
    assert (row["levels"], row["blocks"], row["iterations"], row["width"]) == (3, 1, 16, 29)
    assert row["macs"] < 2.2e9 and row["latency"] == 67
    assert row["independent"]["params"] == 425_087 and round(row["independent"]["graph_mib"], 1) == 387.2
    assert row["shared"]["params"] < row["independent"]["params"]


def test_search_width_is_the_largest_under_budget(capsys):
    from minitnet.metrics import count_config

    rc, out, _ = run_cli(capsys, "search", "--levels", "1,2", "--blocks", "1", "2", "--iterations", "4", "--json")
    for row in json.loads(out)["rows"]:
        cfg = dict(levels=row["levels"], blocks=row["blocks"], iterations=row["iterations"])
        f = row["width"]
        assert count_config(ItNetConfig(width=f, **cfg)).macs[-1] < 2.2e9
        assert count_config(ItNetConfig(width=f + 1, **cfg)).macs[-1] >= 2.2e9


def test_search_table_and_cityscapes(capsys):
    rc, out, _ = run_cli(capsys, "search", "--levels", "3", "--blocks", "1", "--iterations", "16")
    assert rc == 0 and "   3  1  16   29   2.049      67" in out
    rc, out, _ = run_cli(capsys, "search", "--dataset", "cityscapes", "--budget-gmacs", "16.7", "--levels", "3",
                         "--blocks", "1", "--iterations", "16", "--json")
    d = json.loads(out)
    assert (d["height_px"], d["width_px"], d["classes"]) == (512, 1024, 19)
    assert d["rows"][0]["macs"] < 16.7e9


def test_search_bad_input(capsys):
    rc, _, err = run_cli(capsys, "search", "--levels", "x")
    assert rc == 1 and "--levels" in err
    rc, _, err = run_cli(capsys, "search", "--budget-gmacs", "-1")
    assert rc == 1 and "budget" in err
    rc, out, _ = run_cli(capsys, "search", "--budget-gmacs", "0.001", "--levels", "3", "--blocks", "1",
                         "--iterations", "16")
    assert rc == 0 and "even f = 4" in out


# -- eval ---------------------------------------------------------------------------------------
def _reference_miou(torch_model, pairs, classes=11, void=11):
    """mIoU per output with the torch model and plain NumPy, written out independently."""
    import torch

    from minitnet.data import read_image, read_label

    inter = np.zeros((len(torch_model.config.head_iterations), classes))
    union = np.zeros_like(inter)
    for img_p, lab_p in pairs:
        img, lab = read_image(img_p), read_label(lab_p).astype(int)
        x = torch.from_numpy(img.astype(np.float32).transpose(2, 0, 1)[None] / 255)
        with torch.no_grad():
            outs = torch_model(x)
        keep = lab != void
        for i, lg in enumerate(outs):
            pred = lg[0].argmax(0).numpy()
            for c in range(classes):
                p, t = (pred == c) & keep, (lab == c) & keep
                inter[i, c] += np.sum(p & t)
                union[i, c] += np.sum(p | t)
    with np.errstate(invalid="ignore"):
        return [float(np.nanmean(np.where(u > 0, i / np.where(u > 0, u, 1), np.nan))) for i, u in zip(inter, union)]


def test_eval_end_to_end_on_shipped_samples(capsys, tiny_weights, tmp_path):
    from minitnet.data import list_split
    from minitnet.metrics import auc, count_config

    path, torch_model = tiny_weights
    plot = tmp_path / "anytime.png"
    rc, out, err = run_cli(capsys, "eval", SAMPLES, "--weights", path, "--json", "--plot", plot)
    assert rc == 0, err
    d = json.loads(out)
    for key in ("miou", "per_class_iou", "auc", "images"):
        assert key in d
    assert d["images"] == 4 and d["outputs"] == [1, 2, 3]
    assert len(d["miou"]) == 3 and all(0 <= v <= 1 for v in d["miou"])
    assert len(d["per_class_iou"]) == 11
    ref = _reference_miou(torch_model, list_split(SAMPLES, "val"))
    np.testing.assert_allclose(d["miou"], ref, atol=1e-4)  # argmax ties between engine and torch aside
    c = count_config(TINY, 360, 480)
    assert d["macs"] == list(c.macs)
    assert d["auc"] == pytest.approx(auc(c.macs, d["miou"]))
    assert plot.exists() and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "eval val" in err  # the progress bar


def test_eval_text_output(capsys, tiny_weights):
    path, _ = tiny_weights
    rc, out, _ = run_cli(capsys, "eval", SAMPLES, "--weights", path, "--limit", 1, "--quiet",
                         "--auc-x", "latency")
    assert rc == 0
    assert "1 images" in out and "per-class IoU % of output 3" in out and "bicyclist" in out
    assert "AUC (Eq. 2 over x = latency" in out


def test_eval_on_shared_camvid(capsys, tiny_weights):
    if not (SHARED_CAMVID / "val").is_dir():
        pytest.skip(f"{SHARED_CAMVID} is not available")
    path, _ = tiny_weights
    rc, out, _ = run_cli(capsys, "eval", SHARED_CAMVID, "--weights", path, "--limit", 1, "--quiet", "--json")
    assert rc == 0 and json.loads(out)["images"] == 1


def test_eval_plot_without_matplotlib(capsys, tiny_weights, monkeypatch, tmp_path):
    path, _ = tiny_weights
    for mod in ("matplotlib", "matplotlib.figure", "matplotlib.backends", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, mod, None)
    rc, _, err = run_cli(capsys, "eval", SAMPLES, "--weights", path, "--plot", tmp_path / "p.png")
    assert rc == 1 and "matplotlib" in err and "pip install" in err


def test_eval_missing_folders(capsys, tiny_weights, tmp_path):
    path, _ = tiny_weights
    (tmp_path / "val").mkdir()
    rc, _, err = run_cli(capsys, "eval", tmp_path, "--weights", path)
    assert rc == 1 and "valannot/" in err and "SegNet layout" in err
    rc, _, err = run_cli(capsys, "eval", tmp_path / "nowhere", "--weights", path)
    assert rc == 1 and "does not exist" in err


def test_eval_empty_split(capsys, tiny_weights, tmp_path):
    path, _ = tiny_weights
    make_dataset(tmp_path)
    rc, _, err = run_cli(capsys, "eval", tmp_path, "--weights", path)
    assert rc == 1 and "no images" in err


def test_eval_label_size_differs(capsys, tiny_weights, tmp_path):
    path, _ = tiny_weights
    make_dataset(tmp_path, images=[np.zeros((24, 32, 3), np.uint8)], labels=[np.zeros((24, 30), np.uint8)])
    rc, _, err = run_cli(capsys, "eval", tmp_path, "--weights", path)
    assert rc == 1 and "30x24" in err and "32x24" in err and "same size" in err


def test_eval_label_values_out_of_range(capsys, tiny_weights, tmp_path):
    path, _ = tiny_weights
    lab = np.zeros((24, 32), np.uint8)
    lab[0, :3] = (11, 20, 40)
    make_dataset(tmp_path, images=[np.zeros((24, 32, 3), np.uint8)], labels=[lab])
    rc, _, err = run_cli(capsys, "eval", tmp_path, "--weights", path)
    assert rc == 1 and "[20, 40]" in err and "im0.png" in err and "--void" in err
    rc, _, err = run_cli(capsys, "eval", tmp_path, "--weights", path, "--void", "none")
    assert rc == 1 and "[11, 20, 40]" in err
    rc, out, _ = run_cli(capsys, "eval", tmp_path, "--weights", path, "--void", "11,20,40", "--json", "--quiet")
    assert rc == 0 and json.loads(out)["pixels"] == 24 * 32 - 3


def test_eval_all_void(capsys, tiny_weights, tmp_path):
    path, _ = tiny_weights
    make_dataset(tmp_path, images=[np.zeros((16, 16, 3), np.uint8)], labels=[np.full((16, 16), 11, np.uint8)])
    rc, _, err = run_cli(capsys, "eval", tmp_path, "--weights", path)
    assert rc == 1 and "void" in err


def test_eval_other_split_name(capsys, tiny_weights, tmp_path):
    path, _ = tiny_weights
    shutil.copytree(SAMPLES / "val", tmp_path / "test")
    shutil.copytree(SAMPLES / "valannot", tmp_path / "testannot")
    rc, out, _ = run_cli(capsys, "eval", tmp_path, "--weights", path, "--split", "test", "--limit", 1, "--json",
                         "--quiet")
    assert rc == 0 and json.loads(out)["images"] == 1
