"""The engine against the PyTorch model of the same network (the independent oracle).

Tolerance rule: every output's logits must agree with TorchItNet (eval mode,
float32) to max |diff| <= 1e-4 (conftest.ATOL_REDUCTION). Both sides compute in
float32 but sum convolutions in different orders and fold BatchNorm differently
(the engine folds it into the weights in float64 and rounds once), so each
element carries a few float32 ulps of rounding per layer; over the <= 27 conv
layers of these networks with logits of magnitude ~1-10 that stays well below
1e-4, while any indexing, padding, resize or wiring bug shows up as >= 1e-2.
"""

import numpy as np
import pytest

import minitnet
from minitnet import ItNetConfig, ShapeError
from minitnet.engine import ItNet
from conftest import ATOL_REDUCTION
from netutil import random_tensors, write_random

torch = pytest.importorskip("torch")
from minitnet.torch import TorchItNet  # noqa: E402


def torch_model(cfg, tensors):
    m = TorchItNet(cfg)
    sd = {k: torch.from_numpy(v) for k, v in tensors.items()}
    missing, unexpected = m.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    return m.eval()


CASES = [
    # (levels, blocks, iterations, width, shared, heads, (H, W), batch)
    (1, 0, 1, 6, True, None, (75, 100), 1),
    (1, 1, 3, 8, False, None, (97, 131), 3),
    (2, 2, 2, 10, True, None, (75, 100), 1),
    (2, 1, 5, 9, False, (1, 3, 5), (97, 131), 1),
    (3, 1, 4, 12, True, (2, 4), (75, 100), 3),
    (3, 0, 3, 7, False, None, (33, 47), 1),
    (4, 2, 3, 8, True, None, (97, 131), 1),
    (4, 1, 5, 11, False, (5,), (75, 100), 3),
    (3, 1, 3, 51, True, None, (75, 100), 1),   # the paper's width
]


@pytest.mark.parametrize("L,K,N,f,shared,heads,hw,B", CASES)
def test_parity_with_torch(L, K, N, f, shared, heads, hw, B):
    cfg = ItNetConfig(levels=L, blocks=K, iterations=N, width=f, shared=shared, heads=heads)
    rng = np.random.default_rng(L * 100 + K * 10 + N)
    tensors = random_tensors(cfg, rng)
    net = ItNet(cfg, tensors)
    x = rng.normal(0, 1, (B, 3, *hw)).astype(np.float32)
    with torch.no_grad():
        ref = [(n, o.numpy()) for n, o in torch_model(cfg, tensors).iter_outputs(torch.from_numpy(x))]
    got = list(net.iter_outputs(x))
    assert [n for n, _ in got] == [n for n, _ in ref] == list(cfg.head_iterations)
    for (n, a), (_, b) in zip(got, ref):
        assert a.shape == (B, cfg.classes, *hw) and a.dtype == np.float32
        err = float(np.max(np.abs(a - b)))
        assert err <= ATOL_REDUCTION, f"output {n}: max |engine - torch| = {err:.3g} > {ATOL_REDUCTION}"


def test_uint8_image_is_normalised_like_training(tmp_path):
    cfg = ItNetConfig(levels=2, iterations=2, width=8)
    path = write_random(tmp_path / "w.h5", cfg, seed=3,
                        normalisation={"scale": [1 / 127.5] * 3, "offset": [-1.0] * 3})
    net = minitnet.load(path)
    img = np.random.default_rng(0).integers(0, 256, (37, 45, 3), dtype=np.uint8)
    x = (img.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None].copy()
    a = net.logits(img)
    b = net.logits(x)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    cls = net.predict(img)
    assert cls.shape == (37, 45) and cls.dtype == np.uint8
    np.testing.assert_array_equal(cls, b[0].argmax(0))


def test_predict_n_stops_early_and_matches_iter_outputs():
    cfg = ItNetConfig(levels=2, iterations=4, width=8, heads=(1, 2, 4))
    net = ItNet(cfg, random_tensors(cfg, np.random.default_rng(5)))
    x = np.random.default_rng(1).normal(size=(2, 3, 30, 41)).astype(np.float32)
    outs = dict(net.iter_outputs(x))
    np.testing.assert_array_equal(net.predict(x, n=2), outs[2].argmax(1))
    # stopping early: iter_outputs(last=2) never runs iteration 3 or 4
    assert [n for n, _ in net.iter_outputs(x, last=2)] == [1, 2]
    with pytest.raises(ShapeError, match=r"n=3 is not an output.*\[1, 2, 4\]"):
        net.predict(x, n=3)


def test_shared_iterations_reuse_weights_and_differ_from_independent():
    cfg = ItNetConfig(levels=2, iterations=3, width=8)
    net = ItNet(cfg, random_tensors(cfg, np.random.default_rng(2)))
    assert sum(k.startswith("bodies.") for k in net.params) == 2 * (1 + 3)  # one body: 2 mix + 2 x 3 BRB convs


@pytest.mark.parametrize("x, match", [
    (np.zeros((10, 10), np.uint8), r"\(H, W, 3\)"),
    (np.zeros((10, 10, 4), np.uint8), r"\(H, W, 3\)"),
    (np.zeros((1, 4, 10, 10), np.float32), r"NCHW \(B, 3, H, W\)"),
    (np.zeros((1, 3, 10, 10), np.int32), "dtype int32"),
    (np.full((1, 3, 10, 10), np.nan, np.float32), "non-finite"),
])
def test_bad_inputs(x, match):
    cfg = ItNetConfig(levels=1, iterations=1, width=4)
    net = ItNet(cfg, random_tensors(cfg, np.random.default_rng(0)))
    with pytest.raises(ShapeError, match=match):
        list(net.iter_outputs(x))
