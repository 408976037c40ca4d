"""Hostile inputs to the command line (issue 14, the CLI cases): each test fails on the code
before the fix. Library cases are in test_hostile.py. Tiny images and a tiny random model."""

import errno
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from minitnet import ConfigError, ItNetConfig
from minitnet.cli import main
from minitnet.cli.segment import output_files
from minitnet.files import plan_outputs
from netutil import write_random

CFG = ItNetConfig(levels=1, blocks=1, iterations=2, width=4, classes=3)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return str(write_random(tmp_path_factory.mktemp("w") / "w.h5", CFG, seed=0))


def _img(path, seed=0, size=(16, 12)):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


# -- 13: no writable Numba cache folder ---------------------------------------------------------
READ_ONLY_INSTALL = """
    import os, sys, tempfile
    pkg = {pkg!r}
    real = tempfile.TemporaryFile
    def read_only(*a, dir=None, **k):  # the install folder is read-only (root ignores chmod)
        if dir is not None and os.path.abspath(dir).startswith(pkg):
            raise PermissionError(13, "Read-only file system (simulated)", dir)
        return real(*a, dir=dir, **k)
    tempfile.TemporaryFile = read_only
    import minitnet.engine  # numba decorates the cached kernels (no compiling: that takes minutes)
    import numba
    print("cache:", numba.config.CACHE_DIR)
    from minitnet.cli import main
    sys.exit(main(sys.argv[1:]))
"""


def test_no_writable_numba_cache_falls_back_with_one_warning(tmp_path, weights):
    script = tmp_path / "ro.py"
    script.write_text(textwrap.dedent(READ_ONLY_INSTALL.format(pkg=str(ROOT))))
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env["HOME"] = os.devnull  # no writable home: ~/.cache cannot be made
    r = subprocess.run([sys.executable, str(script), "info", "--weights", weights], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "cannot cache function" not in r.stderr
    assert r.stderr.count("no writable Numba cache folder") == 1, r.stderr
    assert "cache: " + tempfile.gettempdir() in r.stdout and "parameters" in r.stdout


def _seg(*argv):
    return main(["segment", *map(str, argv), "--quiet"])


# -- 1-3: never write over an input or over another input's outputs -----------------------------
def test_overview_never_overwrites_an_input(tmp_path, weights, capsys):
    d = tmp_path / "d"
    foo, victim = _img(d / "foo.png"), _img(d / "foo_anytime.png", seed=1)
    before = victim.read_bytes()
    assert _seg(foo, victim, "--weights", weights, "--out", d, "--overview") == 1
    assert victim.read_bytes() == before
    err = capsys.readouterr().err
    assert "refusing to overwrite" in err and "foo_anytime.png" in err and "nothing was written" in err
    assert sorted(p.name for p in d.iterdir()) == ["foo.png", "foo_anytime.png"]  # refused before any work


def test_never_overwrites_the_weights(tmp_path, capsys):
    d = tmp_path / "d"
    x = _img(d / "x.png")
    w = write_random(d / "x_m2.png", CFG)  # a weights file named like an output
    before = w.read_bytes()
    assert _seg(x, "--weights", w, "--out", d) == 1
    assert w.read_bytes() == before and "refusing to overwrite" in capsys.readouterr().err


def test_same_stem_inputs_get_distinct_outputs(tmp_path, weights, capsys):
    a, b, c = _img(tmp_path / "a/x.png", 0), _img(tmp_path / "b/x.png", 1), _img(tmp_path / "a/x.jpg", 2)
    out = tmp_path / "out"
    assert _seg(a, b, c, "--weights", weights, "--out", out) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{n}_m2{s}.png" for n in ("a_x_png", "b_x_png", "a_x_jpg") for s in ("", "_color"))
    assert "segmented 3/3" in capsys.readouterr().err
    # each map is that image's: the same as segmenting it alone
    for src, name in ((a, "a_x_png"), (b, "b_x_png"), (c, "a_x_jpg")):
        alone = tmp_path / "alone" / name
        assert _seg(src, "--weights", weights, "--out", alone) == 0
        assert (out / f"{name}_m2.png").read_bytes() == (alone / "x_m2.png").read_bytes()


def test_same_file_twice_is_segmented_once(tmp_path, weights, capsys):
    x = _img(tmp_path / "x.png")
    assert _seg(x, tmp_path / "." / "x.png", "--weights", weights, "--out", tmp_path / "o") == 0
    err = capsys.readouterr().err
    assert "given more than once" in err and "segmented 1/1" in err


def test_calibration_image_is_never_overwritten(tmp_path, weights, capsys):
    d = tmp_path / "d"
    x, calib = _img(d / "x.png"), _img(d / "x_emu_m2.png", seed=1)
    before = calib.read_bytes()
    rc = main(["emulate", str(x), "--weights", weights, "--calibration", str(calib), "--out", str(d),
               "--preset", "ideal"])
    assert rc == 1 and calib.read_bytes() == before
    err = capsys.readouterr().err
    assert "refusing to overwrite" in err and "x_emu_m2.png" in err
    assert sorted(p.name for p in d.iterdir()) == ["x.png", "x_emu_m2.png"]


# -- 4: write errors are per item; writes are atomic ---------------------------------------------
def test_a_folder_where_a_png_goes_fails_that_image_only(tmp_path, weights, capsys):
    a, b = _img(tmp_path / "a.png"), _img(tmp_path / "b.png", 1)
    out = tmp_path / "out"
    (out / "a_m2.png").mkdir(parents=True)
    assert _seg(a, b, "--weights", weights, "--out", out) == 1
    err = capsys.readouterr().err
    assert f"skipped {a}: cannot write {out / 'a_m2.png'}" in err, err
    assert "segmented 1/2" in err and "1 image(s) failed" in err
    assert (out / "b_m2.png").is_file() and (out / "a_m2.png").is_dir()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_full_disk_leaves_no_partial_png_and_the_batch_goes_on(tmp_path, weights, capsys, monkeypatch):
    from PIL import Image as PILImage

    a, b = _img(tmp_path / "a.png"), _img(tmp_path / "b.png", 1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_m2.png").write_bytes(b"an earlier result")  # a failed write leaves it as it was
    real, calls = PILImage.Image.save, []

    def save(self, fp, *args, **kw):
        calls.append(fp)
        if len(calls) == 1:  # the first PNG: half written, then the disk is full
            fp.write(b"\x89PNG\r\n\x1a\n partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, fp, *args, **kw)

    monkeypatch.setattr(PILImage.Image, "save", save)
    assert _seg(a, b, "--weights", weights, "--out", out) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and f"skipped {a}" in err and "segmented 1/2" in err
    assert (out / "a_m2.png").read_bytes() == b"an earlier result"
    assert not (out / "a_m2_color.png").exists()
    assert sorted(p.name for p in out.iterdir()) == ["a_m2.png", "b_m2.png", "b_m2_color.png"]  # no .tmp left


@pytest.mark.parametrize("where", ["below_a_file", "proc"])
def test_an_out_folder_that_cannot_be_made_is_one_clear_error(tmp_path, weights, capsys, where):
    a = _img(tmp_path / "a.png")
    out = tmp_path / "a.png" / "out" if where == "below_a_file" else Path("/proc/minitnet-out")
    if where == "proc" and not Path("/proc/self").exists():
        pytest.skip("no /proc")
    assert _seg(a, "--weights", weights, "--out", out) == 1
    err = capsys.readouterr().err
    assert f"--out {out}: cannot create the folder" in err and "Traceback" not in err


# -- 5: decompression bombs and images too large for memory --------------------------------------
def test_decompression_bomb_is_skipped_and_says_how_to_raise_the_limit(tmp_path, weights, capsys):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 10000)).save(bomb)  # 25 kB on disk, 200 Mpixels decoded
    good = _img(tmp_path / "good.png")
    assert _seg(bomb, good, "--weights", weights, "--out", tmp_path / "o") == 1
    err = capsys.readouterr().err
    assert f"skipped {bomb}: refused as a possible decompression bomb: 20000x10000" in err
    assert "--max-pixels N or MINITNET_MAX_PIXELS=N" in err and "segmented 1/2" in err
    assert (tmp_path / "o" / "good_m2.png").exists()


def test_pixel_limit_from_the_flag_and_the_environment(tmp_path, weights, capsys, monkeypatch):
    img = _img(tmp_path / "a.png")  # 16 x 12 = 192 pixels
    assert _seg(img, "--weights", weights, "--out", tmp_path / "o", "--max-pixels", "100") == 1
    assert "192 pixels is over the limit of 100" in capsys.readouterr().err
    assert _seg(img, "--weights", weights, "--out", tmp_path / "o", "--max-pixels", "192") == 0
    monkeypatch.setenv("MINITNET_MAX_PIXELS", "191")
    assert _seg(img, "--weights", weights, "--out", tmp_path / "o") == 1
    assert "over the limit of 191" in capsys.readouterr().err
    assert _seg(img, "--weights", weights, "--out", tmp_path / "o", "--max-pixels", "none") == 0
    assert _seg(img, "--weights", weights, "--out", tmp_path / "o", "--max-pixels", "lots") == 1
    assert "--max-pixels 'lots': expected a positive number of pixels" in capsys.readouterr().err


def test_label_maps_take_the_same_pixel_limit(tmp_path, monkeypatch):
    from minitnet.data import read_label
    from minitnet.errors import DataError

    p = tmp_path / "lab.png"
    Image.fromarray(np.zeros((12, 16), np.uint8)).save(p)
    monkeypatch.setenv("MINITNET_MAX_PIXELS", "100")
    with pytest.raises(DataError, match=r"lab\.png: refused as a possible decompression bomb: 16x12 = 192 pixels"):
        read_label(p)
    assert read_label(p, max_pixels="none").shape == (12, 16)
    monkeypatch.setenv("MINITNET_MAX_PIXELS", "many")
    with pytest.raises(ConfigError, match="MINITNET_MAX_PIXELS='many': expected a number of pixels"):
        read_label(p)


def test_out_of_memory_while_segmenting_skips_that_image(tmp_path, weights, capsys, monkeypatch):
    from minitnet.engine import ItNet

    a, b = _img(tmp_path / "a.png"), _img(tmp_path / "b.png", 1)
    real = ItNet.iter_outputs

    def iter_outputs(self, x, *args, **kw):
        if x.shape[1] == 16 and x[0, 0, 0] == np.asarray(Image.open(a))[0, 0, 0]:
            raise MemoryError("Unable to allocate 3.2 GiB for an array")
        return real(self, x, *args, **kw)

    monkeypatch.setattr(ItNet, "iter_outputs", iter_outputs)
    assert _seg(a, b, "--weights", weights, "--out", tmp_path / "o") == 1
    err = capsys.readouterr().err
    assert f"skipped {a}: out of memory (Unable to allocate 3.2 GiB" in err and "segmented 1/2" in err
    assert (tmp_path / "o" / "b_m2.png").exists()


def test_out_of_memory_while_decoding_skips_that_image(tmp_path, weights, capsys, monkeypatch):
    from PIL import ImageFile

    a, b = _img(tmp_path / "a.png"), _img(tmp_path / "b.png", 1)
    real = ImageFile.ImageFile.load

    def load(self):
        if str(getattr(self, "filename", "")).endswith("a.png"):
            raise MemoryError
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    assert _seg(a, b, "--weights", weights, "--out", tmp_path / "o") == 1
    err = capsys.readouterr().err
    assert f"skipped {a}: not enough memory to decode this image" in err and "segmented 1/2" in err


# -- weak messages -----------------------------------------------------------------------------
def test_an_unreadable_image_is_named_once(tmp_path, weights, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert _seg(bad, "--weights", weights, "--out", tmp_path / "o") == 1
    line = next(ln for ln in capsys.readouterr().err.splitlines() if "cannot read image" in ln)
    assert line.count(str(bad)) == 1 and line.startswith(f"minitnet segment: skipped {bad}: cannot read image")


@pytest.mark.parametrize("spec", ["", ","])
def test_empty_outputs_flag(tmp_path, weights, capsys, spec):
    assert _seg(_img(tmp_path / "a.png"), "--weights", weights, "--out", tmp_path / "o", "--outputs", spec) == 1
    err = capsys.readouterr().err
    assert f"--outputs {spec!r}: empty; expected last, all, or a comma list" in err and "nothing not" not in err


@pytest.mark.parametrize("command", ["segment", "emulate"])
def test_empty_out_flag_is_refused(tmp_path, weights, capsys, command, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([command, str(_img(tmp_path / "a.png")), "--weights", weights, "--out", ""]) == 1
    assert "--out '': empty; give a folder (`--out .` for the current one)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


@pytest.mark.parametrize("command", ["eval", "emulate-eval"])
@pytest.mark.parametrize("void", ["300", "-1", "11,256"])
def test_void_values_are_uint8_labels(weights, capsys, command, void):
    assert main([command, "tests/data/camvid", "--weights", weights, f"--void={void}", "--limit", "1"]) == 1
    assert "label maps hold class indices 0..255 (uint8)" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["eval", "emulate-eval"])
def test_data_dir_that_is_a_file(tmp_path, weights, capsys, command):
    f = tmp_path / "camvid.zip"
    f.write_bytes(b"PK")
    assert main([command, str(f), "--weights", weights]) == 1
    err = capsys.readouterr().err
    assert f"{f}: is a file, expected the dataset folder" in err and "does not exist" not in err


# -- 11, 12: hardware the network cannot map, bad seeds: refused before any work ------------------
@pytest.mark.parametrize("argv, flag", [
    (["emulate", "IMG", "--rows", "8"], "--rows 8"),
    (["emulate-eval", "tests/data/camvid", "--rows", "4", "--limit", "1"], "--rows 4"),
    (["emulate-timing", "--tile-rows", "1"], "--tile-rows 1"),
])
def test_unmappable_tiles_are_a_config_error_naming_layer_need_and_flag(tmp_path, weights, capsys, argv, flag):
    argv = [str(_img(tmp_path / "a.png")) if a == "IMG" else a for a in argv] + ["--weights", weights]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"error: {flag}: layer 'bodies.0.brb.0.0.dw' is a 3x3 depthwise conv" in err
    assert "needs 9 rows of one tile" in err and f"use {flag.split()[0]} 9 or more" in err


@pytest.mark.parametrize("command", ["emulate", "emulate-eval"])
def test_negative_seed_is_a_clear_error(tmp_path, weights, capsys, command):
    target = str(_img(tmp_path / "a.png")) if command == "emulate" else "tests/data/camvid"
    assert main([command, target, "--weights", weights, "--seed", "-1"]) == 1
    assert "--seed -1: seeds are integers >= 0" in capsys.readouterr().err


# -- emulator physics overflows: one clear warning or error, no raw NumPy warnings ---------------
def test_physics_overflow_is_one_warning_not_raw_numpy_warnings(tmp_path, weights, capfd):
    img = str(_img(tmp_path / "a.png"))
    assert main(["emulate", img, "--weights", weights, "--out-noise-std", "1e300"]) == 0
    err = capfd.readouterr().err
    assert "RuntimeWarning" not in err and "encountered in" not in err
    assert err.count("minitnet emulate: warning: the emulated physics gave overflow") == 1
    assert "out_noise_std=1e+300" in err


def test_physics_overflow_of_python_floats_is_a_config_error(tmp_path, weights, capfd):
    img = str(_img(tmp_path / "a.png"))
    assert main(["emulate", img, "--weights", weights, "--g-max", "1e300"]) == 1
    err = capfd.readouterr().err
    assert "Traceback" not in err and "RuntimeWarning" not in err
    assert "error: the emulated physics overflows with these settings (g_max=1e+300" in err


# -- the class: no set of file names makes segment write over an input or over its own outputs ----

FOLDERS = ["a", "b", "a/c", "out", "."]
STEMS = ["x", "X", "x_m2", "x_m1", "x_anytime", "x_m2_color", "x_png", "a_x_png", "y", "x.tar"]
SUFFIXES = [".png", ".jpg", ".PNG", ".jpeg"]

inputs_st = st.lists(st.tuples(st.sampled_from(FOLDERS), st.sampled_from(STEMS), st.sampled_from(SUFFIXES)),
                     min_size=1, max_size=6)
outputs_st = st.sampled_from([(2,), (1,), (1, 2)])


def _paths(root, items):
    return [os.path.join(root, folder, stem + suffix) for folder, stem, suffix in items]


@settings(derandomize=True, max_examples=300, deadline=None)
@given(items=inputs_st, out=st.sampled_from(FOLDERS), wanted=outputs_st, overview=st.booleans(),
       repeat=st.booleans())
@example(items=[("a", "x", ".png"), ("a", "x_anytime", ".png")], out="a", wanted=(2,), overview=True,
         repeat=False)  # the case 1: refused
@example(items=[("a", "x", ".png"), ("b", "x", ".png"), ("a", "x", ".jpg")], out="out", wanted=(2,),
         overview=False, repeat=False)  # case 3: renamed
def test_property_output_plan_never_clashes(items, out, wanted, overview, repeat):
    root = "/nonexistent/run"
    inputs = _paths(root, items) + (_paths(root, items[:1]) if repeat else [])  # a file given twice
    out_dir = os.path.join(root, out)
    files_of = output_files(list(wanted), overview)
    key = os.path.normpath
    try:
        plan = plan_outputs(inputs, out_dir, files_of, protected=[os.path.join(root, "w.h5")])
    except ConfigError as e:
        assert "refusing to overwrite" in str(e)
        # refused only where an input sits in the output folder (a name of this run could be taken)
        assert any(key(os.path.dirname(p)) == key(out_dir) for p in inputs), (inputs, out_dir, e)
        return
    outputs = [key(str(t)) for ts in plan.values() for t in ts]
    assert len(outputs) == len(set(outputs)) == len({key(p) for p in inputs}) * len(files_of("n"))
    assert not set(outputs) & {key(p) for p in inputs}
    assert all(key(os.path.dirname(t)) == key(out_dir) for t in outputs)


@settings(derandomize=True, max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(items=st.lists(st.tuples(st.sampled_from(FOLDERS[:4]), st.sampled_from(STEMS[:6]),
                                st.sampled_from(SUFFIXES[:2])), min_size=2, max_size=4, unique=True),
       out=st.sampled_from(FOLDERS[:4]))
def test_property_segment_never_overwrites_inputs_or_its_outputs(weights, items, out):
    with tempfile.TemporaryDirectory() as root:
        inputs = _paths(root, items)
        for i, p in enumerate(inputs):  # image i is 16+i pixels wide: each output tells whose it is
            _img(p, seed=i, size=(16 + i, 12))
        before = {p: Path(p).read_bytes() for p in inputs}
        out_dir = os.path.join(root, out)
        listing = sorted(Path(root).rglob("*"))
        rc = main(["segment", *inputs, "--weights", weights, "--out", out_dir, "--outputs", "all", "--overview",
                   "--quiet"])
        assert {p: Path(p).read_bytes() for p in inputs} == before
        if rc != 0:
            assert sorted(Path(root).rglob("*")) == listing  # refused before any work: nothing written
            return
        plan = plan_outputs(inputs, out_dir, output_files([1, 2], True))
        for i, p in enumerate(inputs):
            for t in plan[p]:
                with Image.open(t) as im:
                    width = im.size[0] if not t.name.endswith("_anytime.png") else (im.size[0] - 8) // 3
                assert width == 16 + i, (t, p)


# -- --plot: checked before the evaluation, never over a file the run reads ---------------------
@pytest.mark.parametrize("command", ["eval", "emulate-eval", "emulate-timing"])
def test_plot_path_is_checked_before_any_work(tmp_path, weights, capsys, command):
    pytest.importorskip("matplotlib")
    args = [command] + ([] if command == "emulate-timing" else ["tests/data/camvid", "--limit", "1"])
    args += ["--weights", weights]
    assert main(args + ["--plot", str(tmp_path / "no" / "such" / "p.png")]) == 1
    assert "the folder" in capsys.readouterr().err
    assert main(args + ["--plot", weights]) == 1
    assert "a file this run reads; refusing to overwrite it" in capsys.readouterr().err
    if command != "emulate-timing":
        label = "tests/data/camvid/valannot/0016E5_07959.png"
        assert main(args + ["--plot", label]) == 1
        assert "a file of the dataset" in capsys.readouterr().err


def test_an_os_error_that_ends_a_run_is_one_line(tmp_path, weights, capsys, monkeypatch):
    import minitnet.metrics

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(minitnet.metrics, "evaluate", full)
    monkeypatch.setattr("minitnet.cli.evaluate.evaluate", full)
    assert main(["eval", "tests/data/camvid", "--weights", weights]) == 1
    assert "minitnet eval: error: [Errno 28] No space left on device" in capsys.readouterr().err
