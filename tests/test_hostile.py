"""Hostile inputs to the library (issue 14): each case fails on the code before the fix.

The CLI cases of the issue are tested with the CLI. The property tests at the end
(hypothesis, derandomized) cover the classes: any corruption of a weights file is a
WeightsError or changes nothing; any edit of its attributes is a WeightsError or
gives a model with finite outputs.
"""

import errno
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minitnet
from minitnet import ConfigError, DataError, ItNetConfig, MinitnetError, NumericalError, ShapeError, WeightsError
from minitnet.engine import ItNet
from minitnet.graph import IMAGE, build_graph, op_spec, unroll
from minitnet.inputs import INPUT_BOUND, check_logits
from minitnet.metrics import count, evaluate
from minitnet.weights import read_hdf5, write_hdf5
from netutil import random_tensors, write_random

CFG = ItNetConfig(levels=2, blocks=1, iterations=3, width=8, classes=5)
TINY = ItNetConfig(levels=1, blocks=1, iterations=2, width=4, classes=2)
SHIPPED = Path(__file__).resolve().parents[1] / "weights" / "camvid-shared-f51.h5"


def _edit(path, fn):
    with h5py.File(path, "r+") as h:
        fn(h)
    return path


@pytest.fixture
def good(tmp_path):
    return write_random(tmp_path / "w.h5", CFG, seed=1)


def _net(cfg=CFG, seed=0):
    return ItNet(cfg, random_tensors(cfg, np.random.default_rng(seed)))


# -- 6: non-finite folded parameters, non-finite logits ----------------------------------------
def test_zero_variance_with_zero_eps_is_rejected_at_load(tmp_path):
    t = random_tensors(CFG, np.random.default_rng(0))
    t["inter_bn.2.1.running_var"][0] = 0.0  # allowed alone, and so is bn_eps = 0
    p = tmp_path / "w.h5"
    write_hdf5(p, CFG, t, bn_eps=0.0)
    with pytest.raises(WeightsError, match=r"w\.h5: folding layer .*inter_bn\.2\.1.*bn_eps=0.*non-finite"):
        minitnet.load(p)


@pytest.mark.parametrize("name", ["stem2.bn.weight", "heads.3.weight"])
def test_huge_finite_weights_are_rejected_at_load(tmp_path, name):
    t = random_tensors(CFG, np.random.default_rng(0))
    t[name].flat[0] = 3e38
    p = tmp_path / "w.h5"
    write_hdf5(p, CFG, t)
    with pytest.raises(WeightsError, match=name.rsplit(".", 1)[0].replace(".", r"\.")):
        minitnet.load(p)


def _overflowing_net():
    net = _net()
    net.fused = False
    w, b = net.params["heads.3"]
    net.params["heads.3"] = (np.full_like(w, 3e38), b)  # finite, but the head conv overflows
    return net


def test_predict_refuses_non_finite_logits():
    net = _overflowing_net()
    x = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    with pytest.raises(NumericalError, match=r"output n=3 has \d+ non-finite logits"):
        net.predict(x)
    assert net.predict(x, n=2).shape == (12, 16)  # the other outputs are fine


def test_check_logits_counts_and_passes_finite_overflowing_sums():
    lg = np.zeros((1, 2, 3, 3), np.float32)
    lg[0, 0, 0, :2] = np.nan
    lg[0, 1, 1, 1] = np.inf
    with pytest.raises(NumericalError, match=r"n=4 has 3 non-finite logits of 18 \(2 NaN, 1 inf\)"):
        check_logits(lg, 4)
    big = np.full((1, 2, 3, 3), 3e38, np.float32)  # the sum overflows, every value is finite
    assert check_logits(big, 1) is big


def test_evaluate_refuses_non_finite_logits(tmp_path):
    from PIL import Image

    for d in ("val", "valannot"):
        (tmp_path / d).mkdir()
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(tmp_path / "val" / "a.png")
    Image.fromarray(np.zeros((12, 16), np.uint8)).save(tmp_path / "valannot" / "a.png")
    with pytest.raises(NumericalError, match=r"a\.png: output n=3"):
        evaluate(_overflowing_net(), tmp_path)


# -- 7: inputs beyond float32's reach ---------------------------------------------------------
def test_huge_finite_input_is_refused():
    net = _net()
    x = np.zeros((1, 3, 8, 8), np.float32)
    x[0, 0, 0, 0] = 3e38
    with pytest.raises(ShapeError, match=r"magnitude 3e\+38 is beyond the bound \|x\| <= 10000"):
        net.predict(x)
    x[0, 0, 0, 0] = INPUT_BOUND  # the bound itself is accepted
    assert np.all(np.isfinite(net.logits(x)))


def test_normalisation_beyond_the_input_bound_is_rejected_at_load(good):
    _edit(good, lambda h: h.attrs.__setitem__("norm_scale", np.full(3, 1e30, np.float32)))
    with pytest.raises(WeightsError, match=r"w\.h5: normalisation maps pixels 0\.\.255 to values up to"):
        read_hdf5(good)


# -- 8: ambiguous layouts ---------------------------------------------------------------------
def test_uint8_chw_with_w3_is_ambiguous_and_layout_resolves_it():
    net = _net()
    chw = np.random.default_rng(0).integers(0, 256, (3, 10, 3), dtype=np.uint8)  # C=3, H=10, W=3
    with pytest.raises(ShapeError, match=r"\(3, 10, 3\) is ambiguous.*layout="):
        net.prepare(chw)
    np.testing.assert_array_equal(net.prepare(chw, layout="CHW"), net.prepare(chw.transpose(1, 2, 0).copy()))
    assert net.prepare(chw, layout="HWC").shape == (1, 3, 3, 10)


def test_float_nhwc_with_h3_is_ambiguous_and_layout_resolves_it():
    net = _net()
    nhwc = np.random.default_rng(0).random((1, 3, 7, 3), np.float32)  # H=3, W=7
    with pytest.raises(ShapeError, match=r"ambiguous: NCHW \(H=7, W=3\) or NHWC \(H=3, W=7\)"):
        net.prepare(nhwc)
    np.testing.assert_array_equal(net.prepare(nhwc, layout="NHWC"), nhwc.transpose(0, 3, 1, 2))


def test_other_layouts_say_how_to_pass_them():
    net = _net()
    with pytest.raises(ShapeError, match=r"layout='NHWC' or transpose it, x\.transpose\(0, 3, 1, 2\)"):
        net.prepare(np.zeros((1, 5, 6, 3), np.float32))
    with pytest.raises(ShapeError, match=r"got shape \(3, 5, 6\); it looks channels-first: pass layout='CHW'"):
        net.prepare(np.zeros((3, 5, 6), np.uint8))  # the shape as given, not the batched one
    with pytest.raises(ShapeError, match="layout must be one of"):
        net.prepare(np.zeros((5, 6, 3), np.uint8), layout="WHC")


# -- 9: an infinite budget ----------------------------------------------------------------------
@pytest.mark.parametrize("budget", [float("inf"), float("nan"), 0.0])
def test_search_budget_must_be_finite(budget):
    from minitnet.cli.search import search

    with pytest.raises(ConfigError, match="finite number > 0"):
        search([1], [1], [1], budget)


# -- 10: corrupt HDF5 internals ---------------------------------------------------------------
@pytest.mark.parametrize("frac", [0.25, 0.35, 0.5, 0.65, 0.75])
def test_corrupt_shipped_model_is_a_weights_error(tmp_path, frac):
    data = bytearray(SHIPPED.read_bytes())
    off = int(len(data) * frac)
    for i in range(off, off + 2000):
        data[i] ^= 0xFF
    p = tmp_path / "corrupt.h5"
    p.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="corrupt.h5"):
        minitnet.load(p)


# -- 14: counting is linear in N ------------------------------------------------------------------
def _slow_count_macs(graph):
    """The quadratic reference: every output's ancestors walked from scratch (count before the fix)."""
    dag = unroll(graph)
    preds = {key: pr for _, key, pr in dag}
    cost = {key: op_spec(s.node.op).macs(graph.layers.get(s.layer)) for s, key, _ in dag}

    def ancestors(root, seen):
        total, stack = 0, [root]
        while stack:
            k = stack.pop()
            if k in seen or k == IMAGE:
                continue
            seen.add(k)
            total += cost[k]
            stack.extend(preds[k])
        return total

    macs, cum, seen_all, running = [], [], set(), 0
    for n in graph.heads:
        macs.append(ancestors(("head", n, "logits"), set()))
        running += ancestors(("head", n, "logits"), seen_all)
        cum.append(running)
    return tuple(macs), tuple(cum)


@pytest.mark.parametrize("cfg", [
    ItNetConfig(levels=1, blocks=0, iterations=1, width=4),
    ItNetConfig(levels=3, blocks=1, iterations=6, width=8),
    ItNetConfig(levels=2, blocks=2, iterations=5, width=8, shared=False),
    ItNetConfig(levels=3, blocks=0, iterations=4, width=6, heads=(2, 4)),
    ItNetConfig(levels=2, blocks=1, iterations=7, width=8, shared=False, heads=(1, 5, 7)),
])
def test_count_matches_the_quadratic_reference(cfg):
    g = build_graph(cfg, 36, 48)
    c = count(g)
    assert (c.macs, c.macs_cumulative) == _slow_count_macs(g)


class _Preds(tuple):
    """A preds tuple that counts how often it is iterated (every visit of its step)."""

    visits = 0

    def __iter__(self):
        _Preds.visits += 1
        return super().__iter__()


def test_count_visits_each_step_a_bounded_number_of_times(monkeypatch):
    import minitnet.metrics as M

    def counting_unroll(graph, *a, **k):
        return [(s, key, _Preds(pr)) for s, key, pr in unroll(graph, *a, **k)]

    monkeypatch.setattr(M, "unroll", counting_unroll)
    per_step = []
    for n in (50, 200):
        g = build_graph(ItNetConfig(levels=3, blocks=1, iterations=n, width=8), 24, 32)
        _Preds.visits = 0
        count(g)
        per_step.append(_Preds.visits / len(unroll(g)))
    assert per_step[1] < 1.1 * per_step[0] and per_step[1] < 10, per_step  # quadratic: 4x


# -- 15: floods ----------------------------------------------------------------------------------
def _set_config(h, cfg_dict):
    h.attrs["config"] = json.dumps(cfg_dict)


@pytest.mark.parametrize("iterations", [2000, 1_000_000])
def test_missing_tensor_lists_are_capped(good, iterations):
    _edit(good, lambda h: _set_config(h, dict(CFG.to_dict(), iterations=iterations)))
    with pytest.raises(WeightsError) as e:
        read_hdf5(good)
    msg = str(e.value)
    assert len(msg) < 2000, len(msg)
    assert "missing" in msg and ("more" in msg or "expects" in msg)


# -- weak messages ----------------------------------------------------------------------------------
def test_fractional_format_version_is_refused(good):
    _edit(good, lambda h: h.attrs.__setitem__("format_version", 1.7))
    with pytest.raises(WeightsError, match="format_version 1.7 is not an integer"):
        read_hdf5(good)


def test_normalisation_errors_name_the_file(good):
    _edit(good, lambda h: h.attrs.__setitem__("norm_scale", np.zeros(3, np.float32)))
    with pytest.raises(WeightsError, match=r"w\.h5: normalisation must be finite with non-zero scale"):
        read_hdf5(good)


def test_tensors_as_a_dataset_is_named(good):
    def fn(h):
        del h["tensors"]
        h["tensors"] = np.zeros(3, np.float32)
    _edit(good, fn)
    with pytest.raises(WeightsError, match="'tensors' is a dataset, expected a group"):
        read_hdf5(good)


def test_scalar_dataset_reports_its_shape(good):
    def fn(h):
        del h["tensors/heads.1.bias"]
        h["tensors/heads.1.bias"] = np.float32(0.5)
    _edit(good, fn)
    with pytest.raises(WeightsError, match=r"'heads.1.bias' has shape \(\), expected \(5,\)"):
        read_hdf5(good)


def test_empty_path_says_so():
    with pytest.raises(WeightsError, match="the weights path is empty"):
        minitnet.load("")


def test_write_onto_a_full_disk_leaves_nothing(tmp_path, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(h5py.Group, "create_dataset", full)
    with pytest.raises(WeightsError, match="No space left on device"):
        write_hdf5(tmp_path / "w.h5", CFG, random_tensors(CFG, np.random.default_rng(0)))
    assert list(tmp_path.iterdir()) == []


def test_non_integer_heads_in_a_file_config(good):
    _edit(good, lambda h: _set_config(h, dict(CFG.to_dict(), heads=5)))
    with pytest.raises(WeightsError, match="heads must be a list"):
        read_hdf5(good)


def test_dataset_folder_that_is_a_file(tmp_path):
    from minitnet.data import list_split

    f = tmp_path / "data.txt"
    f.write_text("x")
    with pytest.raises(DataError, match=r"data\.txt: is a file, expected the dataset folder"):
        list_split(f)


@pytest.mark.parametrize("reader", ["read_image", "read_label"])
def test_decompression_bomb_is_a_data_error_with_the_way_out(tmp_path, monkeypatch, reader):
    from PIL import Image

    import minitnet.data as D

    p = tmp_path / "bomb.png"
    Image.new("L", (40, 40)).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1600 pixels > 2 x the limit: Pillow refuses
    with pytest.raises(DataError, match=r"bomb\.png: refused as a possible decompression bomb.*MAX_IMAGE_PIXELS"):
        getattr(D, reader)(p)


# -- properties -------------------------------------------------------------------------------------
class _Tiny:
    """The tiny model's file (path), bytes and content; a plain object keeps hypothesis' reports short."""

    def __init__(self, path):
        write_random(path, TINY, seed=3)
        self.path, self.data, self.ref = path, path.read_bytes(), read_hdf5(path)

    def __repr__(self):
        return f"_Tiny({self.path.name})"


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    return _Tiny(tmp_path_factory.mktemp("tiny") / "tiny.h5")


def _same(a, b) -> bool:
    return (a.config == b.config and a.bn_eps == b.bn_eps and a.metadata == b.metadata
            and np.array_equal(a.norm_scale, b.norm_scale) and np.array_equal(a.norm_offset, b.norm_offset)
            and a.tensors.keys() == b.tensors.keys()
            and all(np.array_equal(a.tensors[k], b.tensors[k]) for k in a.tensors))


_flips = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255), st.sampled_from([1, 1, 4, 64])),
                  min_size=1, max_size=4)


@settings(derandomize=True, database=None, max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=_flips)
def test_property_byte_corruption_is_an_error_or_harmless(tiny_file, tmp_path, flips):
    d = bytearray(tiny_file.data)
    for where, xor, run in flips:
        off = int(where * len(d))
        for i in range(off, min(off + run, len(d))):
            d[i] ^= xor
    p = tmp_path / "c.h5"
    p.write_bytes(bytes(d))
    try:
        wf = read_hdf5(p)
    except WeightsError:
        return
    assert _same(wf, tiny_file.ref)


_json = st.recursive(st.none() | st.booleans() | st.integers(-10**7, 10**7) | st.floats() | st.text(max_size=5),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                     max_leaves=6)
_values = (st.integers(-2**40, 2**40) | st.floats() | st.text(max_size=20) | st.binary(max_size=20)
           | st.lists(st.floats(width=32), min_size=1, max_size=4).map(lambda v: np.array(v, np.float32)))
_fields = ["levels", "blocks", "iterations", "width", "classes", "shared", "heads", "expansion", "extra"]
_tensor_names = ["stem1.bn.running_var", "stem2.bn.weight", "scales.0.bn.running_mean", "inter_bn.2.0.running_var",
                 "inter_bn.2.0.bias", "heads.2.bias", "bodies.0.brb.0.0.dw.weight"]
_edits = st.one_of(
    st.tuples(st.just("attr"), st.sampled_from(["format", "format_version", "config", "norm_scale", "norm_offset",
                                                 "bn_eps", "metadata"]), _values),
    st.tuples(st.just("delete"), st.sampled_from(["format", "format_version", "config", "norm_scale", "bn_eps",
                                                   "metadata"]), st.none()),
    st.tuples(st.just("config"), st.sampled_from(_fields), _json),
    st.tuples(st.just("tensor"), st.sampled_from(_tensor_names), st.floats(width=32)),
)


def _apply(h, edit):
    kind, name, value = edit
    if kind == "attr":
        h.attrs[name] = value
    elif kind == "delete":
        del h.attrs[name]
    elif kind == "config":
        d = json.loads(h.attrs["config"])
        d[name] = value
        h.attrs["config"] = json.dumps(d)
    else:
        h["tensors/" + name][0] = value


@settings(derandomize=True, database=None, max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(_edits, min_size=1, max_size=3))
def test_property_attribute_edits_are_an_error_or_finite(tiny_file, tmp_path, edits):
    p = tmp_path / "e.h5"
    shutil.copyfile(tiny_file.path, p)
    try:
        _edit(p, lambda h: [_apply(h, e) for e in edits])
    except (TypeError, ValueError, OSError, KeyError):
        return  # h5py cannot store this value, or the attribute was deleted already: not a file to test
    try:
        net = minitnet.load(p)
    except WeightsError:
        return
    x = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    for n, logits in net.iter_outputs(x):
        assert np.all(np.isfinite(logits)), (n, edits)


def test_every_error_above_is_a_minitnet_error():
    assert issubclass(NumericalError, MinitnetError) and issubclass(WeightsError, MinitnetError)
