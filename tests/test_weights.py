"""The HDF5 loader: a round trip, and one clear WeightsError per failure mode."""

import h5py
import numpy as np
import pytest

import minitnet
from minitnet import ItNetConfig, WeightsError
from minitnet.weights import expected_tensors, read_hdf5
from netutil import random_tensors, write_random

CFG = ItNetConfig(levels=2, blocks=1, iterations=3, width=8, classes=5)


@pytest.fixture
def good(tmp_path):
    return write_random(tmp_path / "w.h5", CFG, seed=1)


def test_roundtrip(good):
    wf = read_hdf5(good)
    assert wf.config == CFG
    ref = random_tensors(CFG, np.random.default_rng(1))
    assert set(wf.tensors) == set(ref)
    for k in ref:
        np.testing.assert_array_equal(wf.tensors[k], ref[k])
    np.testing.assert_allclose(wf.norm_scale, [1 / 255] * 3, rtol=1e-7)
    net = minitnet.load(good)
    assert net.config == CFG


def _edit(path, fn):
    with h5py.File(path, "r+") as h:
        fn(h)
    return path


def test_not_hdf5(tmp_path):
    p = tmp_path / "x.h5"
    p.write_bytes(b"this is not an HDF5 file at all")
    with pytest.raises(WeightsError, match="not a readable HDF5"):
        read_hdf5(p)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(WeightsError, match="no such file"):
        read_hdf5(tmp_path / "nope.h5")
    with pytest.raises(WeightsError, match="directory"):
        read_hdf5(tmp_path)


def test_truncated_file(good, tmp_path):
    data = good.read_bytes()
    p = tmp_path / "trunc.h5"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError):
        read_hdf5(p)


def test_unknown_format(good):
    _edit(good, lambda h: h.attrs.__setitem__("format", "onnx"))
    with pytest.raises(WeightsError, match="unknown format 'onnx'"):
        read_hdf5(good)


def test_unknown_version(good):
    _edit(good, lambda h: h.attrs.__setitem__("format_version", 7))
    with pytest.raises(WeightsError, match="format_version 7 is not supported"):
        read_hdf5(good)


def test_missing_attribute(good):
    _edit(good, lambda h: h.attrs.__delitem__("config"))
    with pytest.raises(WeightsError, match="missing attribute 'config'"):
        read_hdf5(good)


def test_invalid_config(good):
    _edit(good, lambda h: h.attrs.__setitem__("config", '{"levels": 0}'))
    with pytest.raises(WeightsError, match="invalid configuration.*levels"):
        read_hdf5(good)


def test_missing_and_unexpected_tensors(good):
    def fn(h):
        del h["tensors/heads.2.bias"]
        del h["tensors/stem1.conv.weight"]
        h["tensors/extra.weight"] = np.zeros(3, np.float32)
    _edit(good, fn)
    with pytest.raises(WeightsError) as e:
        read_hdf5(good)
    msg = str(e.value)
    assert "missing tensors ['heads.2.bias', 'stem1.conv.weight']" in msg
    assert "unexpected tensors ['extra.weight']" in msg


def test_wrong_shape(good):
    def fn(h):
        del h["tensors/stem2.conv.weight"]
        h["tensors/stem2.conv.weight"] = np.zeros((8, 8, 1, 1), np.float32)
    _edit(good, fn)
    with pytest.raises(WeightsError, match=r"'stem2.conv.weight' has shape \(8, 8, 1, 1\), expected \(8, 8, 3, 3\)"):
        read_hdf5(good)


def test_wrong_dtype(good):
    def fn(h):
        v = h["tensors/heads.1.bias"][()]
        del h["tensors/heads.1.bias"]
        h["tensors/heads.1.bias"] = v.astype(np.float64)
    _edit(good, fn)
    with pytest.raises(WeightsError, match="'heads.1.bias' has dtype float64, expected float32"):
        read_hdf5(good)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite(good, bad):
    def fn(h):
        h["tensors/bodies.0.brb.0.0.dw.weight"][0, 0, 1, 1] = bad
    _edit(good, fn)
    with pytest.raises(WeightsError, match="'bodies.0.brb.0.0.dw.weight' has 1 non-finite"):
        read_hdf5(good)


def test_negative_variance(good):
    def fn(h):
        h["tensors/inter_bn.2.1.running_var"][0] = -1.0
    _edit(good, fn)
    with pytest.raises(WeightsError, match="negative variances"):
        read_hdf5(good)


def test_missing_tensor_group(good):
    _edit(good, lambda h: h.__delitem__("tensors"))
    with pytest.raises(WeightsError, match="missing group 'tensors'"):
        read_hdf5(good)


def test_bad_normalisation(good):
    _edit(good, lambda h: h.attrs.__setitem__("norm_scale", np.zeros(3, np.float32)))
    with pytest.raises(WeightsError, match="non-zero scale"):
        read_hdf5(good)


def test_expected_tensors_independent_body0_has_no_mix():
    t = expected_tensors(ItNetConfig(iterations=3, shared=False))
    assert "bodies.0.mix.0.weight" not in t and "bodies.1.mix.0.weight" in t
    assert "inter_bn.1.0.weight" not in t and "inter_bn.3.2.running_var" in t


# -- format version 2: learned input ranges --------------------------------------------------
def test_version_2_roundtrip_and_version_1_without_ranges(tmp_path):
    from minitnet.weights import write_hdf5

    t = random_tensors(CFG, np.random.default_rng(1))
    p1, p2 = tmp_path / "v1.h5", tmp_path / "v2.h5"
    write_hdf5(p1, CFG, t)
    ranges = {"stem1.conv": 1.0, "bodies.0.brb.0.0.expand": 2.5}
    write_hdf5(p2, CFG, t, input_ranges=ranges)
    with h5py.File(p1) as h1, h5py.File(p2) as h2:
        assert (int(h1.attrs["format_version"]), int(h2.attrs["format_version"])) == (1, 2)
    assert read_hdf5(p1).input_ranges == {} and minitnet.load(p1).input_ranges == {}
    assert read_hdf5(p2).input_ranges == ranges
    assert minitnet.load(p2).input_ranges == ranges
    for k in t:  # the tensors are the same either way
        np.testing.assert_array_equal(read_hdf5(p2).tensors[k], t[k])


@pytest.mark.parametrize("ranges, match", [
    ({"stem1.bn.pool": 1.0}, "not a conv layer"),           # an affine (digital) layer
    ({"no.such.layer": 1.0}, "not a conv layer"),
    ({"stem1.conv": 0.0}, r"expected one finite number in \(0, "),
    ({"stem1.conv": float("nan")}, "expected one finite number"),
    ({"stem1.conv": -1.0}, "expected one finite number"),
    ({"stem1.conv": [1.0, 2.0]}, "expected one finite number"),
])
def test_bad_input_ranges_are_refused_when_writing(tmp_path, ranges, match):
    from minitnet.weights import write_hdf5

    with pytest.raises(WeightsError, match=match):
        write_hdf5(tmp_path / "w.h5", CFG, random_tensors(CFG, np.random.default_rng(1)), input_ranges=ranges)
    assert not (tmp_path / "w.h5").exists()


def test_bad_input_ranges_in_a_file_are_refused(tmp_path):
    from minitnet.weights import write_hdf5

    p = tmp_path / "w.h5"
    write_hdf5(p, CFG, random_tensors(CFG, np.random.default_rng(1)), input_ranges={"stem1.conv": 1.0})
    _edit(p, lambda h: h["input_ranges"].create_dataset("heads.3", data=np.float32(np.inf)))
    with pytest.raises(WeightsError, match="input range of 'heads.3'"):
        read_hdf5(p)
    _edit(p, lambda h: (h["input_ranges"].__delitem__("heads.3"),
                        h["input_ranges"].create_dataset("stem2.conv", data=np.ones(3, np.float32))))
    with pytest.raises(WeightsError, match="input_ranges/stem2.conv must be one number"):
        read_hdf5(p)
