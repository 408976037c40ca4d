"""ItNetConfig validation and the graph IR's structure (counts are in test_metrics.py)."""

import pytest

from minitnet import ConfigError, ItNetConfig, ShapeError
from minitnet.graph import build_graph


@pytest.mark.parametrize("kw, match", [
    (dict(levels=0), "levels"),
    (dict(blocks=-1), "blocks"),
    (dict(iterations=0), "iterations"),
    (dict(width=3), "width"),
    (dict(classes=0), "classes"),
    (dict(heads=(0, 2)), r"outside 1\.\.16"),
    (dict(heads=(17,)), "outside"),
    (dict(heads=()), "at least one"),
    (dict(heads=(2, 2)), "duplicates"),
    (dict(width=51.0), "int"),
    (dict(shared="yes"), "shared"),
])
def test_config_rejects(kw, match):
    with pytest.raises(ConfigError, match=match):
        ItNetConfig(**kw)


def test_config_roundtrip_and_derived():
    c = ItNetConfig(levels=2, blocks=2, iterations=5, width=20, classes=19, shared=False, heads=(5, 1, 3))
    assert c.heads == (1, 3, 5)  # sorted on construction
    assert ItNetConfig.from_json(c.to_json()) == c
    assert c.f_r == 10 and c.hidden == 60 and c.bodies == 5
    assert [c.body_index(n) for n in (1, 2, 5)] == [0, 1, 4]
    assert not c.body_has_mix(0) and c.body_has_mix(1)
    s = ItNetConfig(iterations=1)
    assert not s.body_has_mix(0) and s.head_iterations == (1,)
    with pytest.raises(ConfigError, match="unknown fields"):
        ItNetConfig.from_dict({"levels": 3, "depth": 2})


def test_graph_shapes_camvid():
    # spec: stages 180x240x51 and 90x120x102; scales 90x120, 45x60, 23x30 with 25 ch;
    # BRB hidden 150; heads at 45x60 with 75 -> 11
    g = build_graph(ItNetConfig(), 360, 480)
    shp = {nd.name: nd.shape for nd in g.data + g.body + g.head}
    assert shp["stem1"] == (51, 180, 240)
    assert shp["stem2"] == (102, 90, 120)
    assert [shp[f"scale.{l}"] for l in range(3)] == [(25, 90, 120), (25, 45, 60), (25, 23, 30)]
    assert shp["brb.2.0.expand"] == (150, 23, 30)
    assert shp["head.cat"] == (75, 45, 60) and shp["head.conv"] == (11, 45, 60)
    assert shp["logits"] == (11, 360, 480)


def test_graph_loop_structure_shared_vs_independent():
    sh = build_graph(ItNetConfig(iterations=4), 64, 96)
    ind = build_graph(ItNetConfig(iterations=4, shared=False), 64, 96)
    # one body in the IR either way: the loop
    assert [n.name for n in sh.body] == [n.name for n in ind.body]
    # shared: every iteration resolves to the same layers; independent: to distinct ones
    mix = next(n for n in sh.body if n.name == "mix.0")
    assert {sh.layer_name(mix, n) for n in (2, 3, 4)} == {"bodies.0.mix.0"}
    assert [ind.layer_name(mix, n) for n in (2, 3, 4)] == [f"bodies.{b}.mix.0" for b in (1, 2, 3)]
    # the between-iteration BN is never shared
    bn = next(n for n in sh.body if n.name == "bn.0")
    assert [sh.layer_name(bn, n) for n in (2, 3)] == ["inter_bn.2.0", "inter_bn.3.0"]
    # iteration 1 skips mixing and reads the state straight through the alias
    assert all(nd.first for nd in sh.body_nodes(1))
    assert not any(nd.name.startswith(("mix", "bn")) for nd in sh.body_nodes(1))
    assert sh.first_alias["mix.0"] == "state.0"
    n_conv = lambda g: len(g.conv_layers())
    # body convs per weight set: L mix + 3 L K; independent has N sets, body 0 without mix
    assert n_conv(ind) - n_conv(sh) == 3 * (3 * 1 * 3 + 3) - 3


def test_schedule_stops_at_last():
    g = build_graph(ItNetConfig(iterations=5, heads=(2, 5)), 40, 40)
    steps = list(g.schedule(last=3))
    assert max(s.n for s in steps) == 3
    assert {s.n for s in steps if s.block == "head"} == {2}


@pytest.mark.parametrize("h, w", [(0, 10), (10, -1), (2.5, 4)])
def test_graph_rejects_sizes(h, w):
    with pytest.raises(ShapeError):
        build_graph(ItNetConfig(), h, w)


def test_summary_mentions_loop():
    s = build_graph(ItNetConfig(iterations=3), 32, 32).summary()
    assert "body runs 3x" in s and "[n>1]" in s
