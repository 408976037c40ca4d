"""minitnet segment: outputs written, odd images handled, bad files reported, inputs safe."""

import numpy as np
import pytest
from PIL import Image

from minitnet import ItNetConfig
from minitnet.cli import main
from minitnet.data import read_image
from netutil import write_random

CFG = ItNetConfig(levels=2, iterations=3, width=8, heads=(1, 3))


@pytest.fixture
def weights(tmp_path):
    return str(write_random(tmp_path / "w.h5", CFG, seed=0))


def _img(path, mode, size=(23, 17)):
    rng = np.random.default_rng(0)
    w, h = size
    if mode == "RGB":
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    elif mode == "RGBA":
        Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8)).save(path)
    elif mode == "L":
        Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(path)
    elif mode == "I;16":
        Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16)).save(path)
    return path


def test_writes_every_requested_output(tmp_path, weights):
    src = _img(tmp_path / "a.png", "RGB")
    out = tmp_path / "out"
    assert main(["segment", str(src), "--weights", weights, "--out", str(out), "--outputs", "all",
                 "--overview", "--quiet"]) == 0
    for n in (1, 3):
        cls = np.asarray(Image.open(out / f"a_m{n}.png"))
        assert cls.shape == (17, 23) and cls.dtype == np.uint8 and cls.max() < CFG.classes
        col = np.asarray(Image.open(out / f"a_m{n}_color.png"))
        assert col.shape == (17, 23, 3)
    assert (out / "a_anytime.png").exists()
    assert not (out / "a_m2.png").exists()  # 2 is not a head


@pytest.mark.parametrize("mode", ["RGBA", "L", "I;16"])
def test_odd_image_modes(tmp_path, weights, mode):
    src = _img(tmp_path / "odd.png", mode)
    assert read_image(src).shape == (17, 23, 3)
    out = tmp_path / "out"
    assert main(["segment", str(src), "--weights", weights, "--out", str(out), "--quiet"]) == 0
    assert (out / "odd_m3.png").exists()


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    p = tmp_path / "g16.png"
    Image.fromarray(np.full((4, 5), 65535, np.uint16)).save(p)
    assert read_image(p).min() == 255


def test_unreadable_file_reported_others_processed(tmp_path, weights, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    good = _img(tmp_path / "good.png", "RGB")
    out = tmp_path / "out"
    rc = main(["segment", str(bad), str(tmp_path / "missing.png"), str(good), "--weights", weights,
               "--out", str(out), "--quiet"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "bad.png: cannot read image" in err and "missing.png: no such file" in err
    assert (out / "good_m3.png").exists()


def test_never_overwrites_inputs(tmp_path, weights, capsys):
    # an input named like an output of another input in the same folder
    a = _img(tmp_path / "x.png", "RGB")
    victim = _img(tmp_path / "x_m3.png", "RGB")
    before = victim.read_bytes()
    rc = main(["segment", str(a), str(victim), "--weights", weights, "--out", str(tmp_path), "--quiet"])
    assert rc == 1
    assert victim.read_bytes() == before
    assert "refusing to overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("spec, match", [("7", "not among"), ("a,b", "comma list")])
def test_bad_outputs_flag(tmp_path, weights, capsys, spec, match):
    src = _img(tmp_path / "a.png", "RGB")
    assert main(["segment", str(src), "--weights", weights, "--out", str(tmp_path / "o"), "--outputs", spec]) == 1
    assert match in capsys.readouterr().err


def test_bad_weights_file(tmp_path, capsys):
    src = _img(tmp_path / "a.png", "RGB")
    w = tmp_path / "w.h5"
    w.write_text("nope")
    assert main(["segment", str(src), "--weights", str(w), "--out", str(tmp_path / "o")]) == 1
    assert "not a readable HDF5" in capsys.readouterr().err
