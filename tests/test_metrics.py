"""minitnet.metrics: counts from the graph IR (checked against the spec and an independent
count on TorchItNet), mIoU and AUC (checked against hand-computed examples)."""

import math

import numpy as np
import pytest

from minitnet.config import ItNetConfig
from minitnet.errors import DataError, ShapeError
from minitnet.graph import build_graph, unroll
from minitnet.metrics import (CAMVID_CHANCE_MIOU, ConfusionAccumulator, auc, confusion_matrix, count,
                              count_config, iou_per_class, mean_iou)

SHARED = ItNetConfig(levels=3, blocks=1, iterations=16, width=51, shared=True)
INDEPENDENT = ItNetConfig(levels=3, blocks=1, iterations=16, width=29, shared=False)


# -- the spec's numbers (ARCHITECTURE.md, "Numbers this reading gives") ---------------------
def test_spec_shared_camvid():
    c = count_config(SHARED, 360, 480)
    assert c.params == 184_106
    assert round(c.macs[-1] / 1e9, 2) == 6.24
    assert c.macs[-1] == 6_237_840_150
    assert round(c.graph_mib, 1) == 82.7
    assert c.latency[-1] == 67
    assert c.outputs == tuple(range(1, 17))
    assert c.conv_layers == 33 and c.conv_executions == 210


def test_spec_independent_camvid():
    c = count_config(INDEPENDENT, 360, 480)
    assert c.params == 425_087
    assert round(c.macs[-1] / 1e9, 2) == 2.05
    assert round(c.graph_mib, 1) == 387.2
    assert c.latency[-1] == 67
    assert c.conv_layers == c.conv_executions == 210  # every execution is a unique layer


def test_bn_params_reported_apart():
    # stem1 BN 2f, stem2 BN 2*2f, scale BNs L*2*f_r, between-iteration BNs (N-1)*L*2*f_r
    f, fr, L, N = 51, 25, 3, 16
    c = count_config(SHARED)
    assert c.bn_params == 2 * f + 4 * f + L * 2 * fr + (N - 1) * L * 2 * fr == 2706


def test_latency_is_7_plus_4_n_minus_1_for_k1():
    c = count_config(SHARED)
    assert list(c.latency) == [7 + 4 * (n - 1) for n in range(1, 17)]


def test_macs_own_vs_cumulative():
    g = build_graph(SHARED, 360, 480)
    c = count(g)
    head = g.layers["heads.1"].macs  # every head costs the same
    for i, n in enumerate(c.outputs):
        # cumulative adds the heads of outputs 1..n-1 to the cost of output n alone
        assert c.macs_cumulative[i] == c.macs[i] + (n - 1) * head
    # output 1: data block + iteration 1 (no mixing) + head 1
    data = sum(g.layers[k].macs for k in ("stem1.conv", "stem2.conv", "scales.0.conv", "scales.1.conv",
                                          "scales.2.conv"))
    brb = sum(l.macs for name, l in g.layers.items() if ".brb." in name)
    assert c.macs[0] == data + brb + head


def test_thinned_heads():
    cfg = ItNetConfig(heads=(1, 6, 11, 16))
    c, full = count_config(cfg), count_config(ItNetConfig())
    assert c.outputs == (1, 6, 11, 16)
    assert c.macs == tuple(full.macs[n - 1] for n in (1, 6, 11, 16))  # own cost does not depend on other heads
    assert c.latency == (7, 27, 47, 67)
    head_params = 3 * 25 * 11 + 11
    assert full.params - c.params == 12 * head_params
    assert c.macs_cumulative[-1] == full.macs_cumulative[-1] - 12 * build_graph(cfg, 360, 480).layers["heads.1"].macs


def test_graph_size_rule_by_hand_single_iteration():
    # N=1, L=1, K=0: the data block's three convs and one head, nothing else
    cfg = ItNetConfig(levels=1, blocks=0, iterations=1, width=8, classes=5)
    H, W = 16, 24
    c = count_config(cfg, H, W)
    # stem1 3->5 @8x12, stem2 8->8 @4x6, scale 16->4 @4x6, head 4->5 1x1 @2x3 (H/8, before upsampling)
    layers = [  # (params, in elems, out elems)
        (5 * 3 * 9, 3 * 16 * 24, 5 * 8 * 12),
        (8 * 8 * 9, 8 * 8 * 12, 8 * 4 * 6),
        (4 * 16 * 9, 16 * 4 * 6, 4 * 4 * 6),
        (5 * 4 + 5, 4 * 2 * 3, 5 * 2 * 3),
    ]
    assert c.params == sum(p for p, _, _ in layers)
    assert c.graph_bytes == 4 * sum(p + i + o for p, i, o in layers)
    assert c.macs == (5 * 27 * 96 + 8 * 72 * 24 + 4 * 144 * 24 + 5 * 4 * 6,)
    assert c.latency == (4,)


def test_unroll_is_topological_and_resolves_the_loop():
    g = build_graph(ItNetConfig(levels=2, blocks=1, iterations=3, width=8), 32, 32)
    seen = {("image",)}
    for st, key, preds in unroll(g):
        assert all(p in seen for p in preds), f"{key} reads {preds} before they exist"
        seen.add(key)
    dag = {key: preds for _, key, preds in unroll(g)}
    # iteration 1 skips mixing: its first BRB reads the data block's scale conv through first_alias
    assert dag[("body", 1, "brb.0.0.expand")] == (("data", 0, "scale.0"),)
    # iteration 2's between-iteration BN reads iteration 1's carried state
    assert dag[("body", 2, "bn.1")] == (("body", 1, "brb.1.0"),)
    # the mixing conv has a residual from the BN'ed state
    assert dag[("body", 2, "mix.0")] == (("body", 2, "mix.0.cat"), ("body", 2, "bn.0"))
    # head 3 reads the state after iteration 3
    assert dag[("head", 3, "head.resize.0")] == (("body", 3, "brb.0.0"),)
    assert ("body", 3, "brb.1.0") in dag[("head", 3, "head.cat")]


def test_blocks_zero_single_iteration_alias():
    # K=0, N=1: the body runs no node at all; the head reads the data block's output
    g = build_graph(ItNetConfig(levels=2, blocks=0, iterations=1, width=8), 32, 32)
    dag = {key: preds for _, key, preds in unroll(g)}
    assert dag[("head", 1, "head.resize.0")] == (("data", 0, "scale.0"),)  # H/4 -> H/8
    assert ("data", 0, "scale.1") in dag[("head", 1, "head.cat")]  # already H/8
    assert count(g).latency == (4,)


def test_cityscapes_geometry():
    # ARCHITECTURE.md: f = 56 gives 16.6 GMACs at output 11 and a 281 MiB graph at 1024x512
    c = count_config(ItNetConfig(width=56, classes=19), 512, 1024)
    assert round(c.macs[10] / 1e9, 1) == 16.6
    assert round(c.graph_mib) == 281
    g = build_graph(ItNetConfig(width=56, classes=19), 512, 1024)
    assert g.layers["heads.16"].out_size == (64, 128) and g.layers["heads.16"].out_channels == 19


# -- independent count on TorchItNet ---------------------------------------------------------
def _random_cases(k=24, seed=7):
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(k):
        N = int(rng.integers(1, 6))
        heads = None
        if N > 1 and rng.random() < 0.3:
            heads = tuple(sorted(set(int(h) for h in rng.integers(1, N + 1, size=2))))
        cfg = ItNetConfig(levels=int(rng.integers(1, 5)), blocks=int(rng.integers(0, 3)), iterations=N,
                          width=int(rng.integers(4, 40)), classes=int(rng.integers(1, 20)),
                          shared=bool(rng.random() < 0.5), heads=heads, expansion=int(rng.choice([1, 3, 6])))
        cases.append((cfg, int(rng.integers(9, 130)), int(rng.integers(9, 130))))  # odd, non-square sizes
    return cases


CASES = _random_cases()


def _torch_counts(cfg, H, W):
    """Counts of TorchItNet with torch's own machinery, not the IR: parameters from the module,
    MACs from torch.utils.flop_counter, graph bytes and latency from hooks on the real forward."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode
    from torch.utils._pytree import tree_flatten
    from torch.utils.flop_counter import FlopCounterMode

    from minitnet.torch import TorchItNet

    m = TorchItNet(cfg).to("meta").eval()  # meta tensors: shapes only, no arithmetic
    x = torch.empty(1, 3, H, W, device="meta")
    params = sum(p.numel() for name, p in m.named_parameters() if "bn" not in name)
    bn_params = sum(p.numel() for name, p in m.named_parameters() if "bn" in name)

    # graph bytes: first execution of every Conv2d module (a shared module counts once)
    first = {}

    def hook(mod, inp, out):
        if mod not in first:
            first[mod] = sum(p.numel() for p in mod.parameters()) + inp[0].numel() + out.numel()

    hooks = [mod.register_forward_hook(hook) for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]

    class ConvDepth(TorchFunctionMode):
        """Longest path in conv layers: every tensor carries the depth of its deepest producer."""

        def __init__(self):
            super().__init__()
            self.depth = {}  # id -> (tensor kept alive, depth)

        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            ins = [t for t in tree_flatten((args, kwargs or {}))[0] if isinstance(t, torch.Tensor)]
            d = max((self.depth[id(t)][1] for t in ins if id(t) in self.depth), default=0)
            d += func is F.conv2d
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    self.depth[id(t)] = (t, d)
            return out

    def own(n):  # output n alone: data block, iterations 1..n, head n
        states = m.data_block(x)
        for k in range(1, n + 1):
            states = m.iteration(states, k)
        return m.head(states, n, (H, W))

    macs, cum, lat = [], [], []
    for n in cfg.head_iterations:
        with FlopCounterMode(display=False) as fc, ConvDepth() as dm:
            logits = own(n)
        macs.append(fc.get_total_flops() // 2)  # only convs cost FLOPs here; conv FLOPs = 2 x MACs
        lat.append(dm.depth[id(logits)][1])
    with FlopCounterMode(display=False) as fc:
        for n, _ in m.iter_outputs(x):  # anytime: every head <= n as well
            cum.append(fc.get_total_flops() // 2)
    for h in hooks:
        h.remove()
    graph_bytes = 4 * sum(first.values())
    return params, bn_params, graph_bytes, macs, cum, lat


@pytest.mark.parametrize("cfg,H,W", CASES, ids=[f"{c.levels}-{c.blocks}-{c.iterations}-f{c.width}-"
                                               f"{'s' if c.shared else 'i'}-{H}x{W}" for c, H, W in CASES])
def test_counts_match_torch(cfg, H, W):
    params, bn_params, graph_bytes, macs, cum, lat = _torch_counts(cfg, H, W)
    c = count_config(cfg, H, W)
    assert c.params == params
    assert c.bn_params == bn_params
    assert list(c.macs) == macs
    assert list(c.macs_cumulative) == cum
    assert list(c.latency) == lat
    assert c.graph_bytes == graph_bytes


def test_latency_closed_form_random():
    for cfg, H, W in CASES:
        K = cfg.blocks
        want = [3 + 3 * K + 1 + (n - 1) * (1 + 3 * K) for n in cfg.head_iterations]
        assert list(count_config(cfg, H, W).latency) == want, cfg


# -- mIoU ---------------------------------------------------------------------------------------
def test_confusion_and_iou_by_hand():
    # label / pred, 3 classes, void = 3
    label = np.array([[0, 0, 1, 1],
                      [2, 2, 3, 3]])
    pred = np.array([[0, 1, 1, 1],
                     [2, 0, 2, 0]])
    acc = ConfusionAccumulator(3, void=3)
    acc.update(pred, label)
    # rows true, cols pred: 0->{0:1, 1:1}; 1->{1:2}; 2->{2:1, 0:1}; void pixels dropped
    np.testing.assert_array_equal(acc.matrix, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    # IoU0 = 1/(2+2-1) = 1/3; IoU1 = 2/(2+3-2) = 2/3; IoU2 = 1/(2+1-1) = 1/2
    np.testing.assert_allclose(acc.iou_per_class(), [1 / 3, 2 / 3, 1 / 2])
    assert acc.mean_iou() == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert acc.pixels == 6


def test_accumulator_sums_pixels_not_image_means():
    a = ConfusionAccumulator(2)
    a.update(np.array([0, 0, 0, 0]), np.array([0, 0, 0, 1]))  # IoU0 = 3/4, IoU1 = 0
    a.update(np.array([1]), np.array([1]))  # IoU1 = 1 on its own
    # dataset: [[3,0],[1,1]] -> IoU0 = 3/4, IoU1 = 1/2
    np.testing.assert_allclose(a.iou_per_class(), [0.75, 0.5])
    assert a.updates == 2


def test_absent_class_is_nan_and_skipped():
    conf = confusion_matrix(np.array([0, 0, 1]), np.array([0, 0, 1]), classes=3)
    iou = iou_per_class(conf)
    assert iou[0] == 1 and iou[1] == 1 and math.isnan(iou[2])
    assert mean_iou(conf) == 1.0


def test_accumulator_void_list_and_bad_labels():
    a = ConfusionAccumulator(3, void=[3, 255])
    a.update(np.array([0, 1, 2, 0]), np.array([0, 255, 3, 0]))
    assert a.pixels == 2
    with pytest.raises(DataError, match=r"label values \[7\]"):
        a.update(np.array([0, 1]), np.array([0, 7]))
    with pytest.raises(ShapeError, match="differs"):
        a.update(np.zeros((2, 3), int), np.zeros((3, 2), int))
    with pytest.raises(DataError, match="no void"):
        ConfusionAccumulator(3).update(np.array([0]), np.array([3]))


# -- AUC (Equation 2) -----------------------------------------------------------------------------
def test_auc_by_hand():
    # points (0, y0), (1, .5), (2, .7) with y0 = .1:
    # (1-0)*((.5-.1)+(.1-.1))/2 + (2-1)*((.7-.1)+(.5-.1))/2 = .2 + .5 = .7; / x_N = 2 -> .35
    assert auc([1, 2], [0.5, 0.7], y0=0.1, normalise=False) == pytest.approx(0.7)
    assert auc([1, 2], [0.5, 0.7], y0=0.1) == pytest.approx(0.35)


def test_auc_default_origin_is_the_papers():
    assert CAMVID_CHANCE_MIOU == 0.00828
    # one output at x=4, y=.5: 4 * (.5 - .00828) / 2 / 4
    assert auc([4], [0.5]) == pytest.approx((0.5 - 0.00828) / 2)


def test_auc_properties():
    x = np.array([1.0, 2.5, 4.0, 8.0]) * 1e9
    y = [0.3, 0.5, 0.6, 0.62]
    assert auc(x, y) == pytest.approx(auc(x / 1e9, y))  # normalised: unit of x does not matter
    # a curve that is at y0 everywhere has zero area
    assert auc(x, [CAMVID_CHANCE_MIOU] * 4) == pytest.approx(0.0)
    # a better curve has a larger AUC
    assert auc(x, [v + 0.05 for v in y]) > auc(x, y)


def test_auc_bad_input():
    with pytest.raises(ShapeError, match="same non-zero length"):
        auc([1, 2], [0.5])
    with pytest.raises(ShapeError, match="same non-zero length"):
        auc([], [])
    with pytest.raises(ShapeError, match="ascending"):
        auc([2, 1], [0.5, 0.6])
    with pytest.raises(ShapeError, match="finite"):
        auc([1, 2], [0.5, float("nan")])
