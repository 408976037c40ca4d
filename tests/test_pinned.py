"""Values pinned before the executor/backends refactor (issue 13), so that a later change of
structure cannot change results unnoticed.

The values were computed by the code before the refactor (commit f9e34d4) on a 72x96 crop
of a sample image: the shipped shared f=51 model and a random independent net (L=3, K=1,
N=4, f=24, seed 3), fused and node-by-node, and on emulated chips (``ideal`` and ``pcm``,
programmed with seed 7, calibrated on the crop, read noise seed 11). On the machine that
made them the refactored code reproduces them bit for bit (sha256 of every output); here
they are compared with a tolerance so that the test holds on other CPUs, whose BLAS sums
in another order.
"""

import numpy as np
import pytest
from netutil import random_tensors

import emulator
import minitnet
from minitnet.config import ItNetConfig
from minitnet.data import read_image

SAMPLE = "tests/data/camvid/val/0016E5_07959.png"

#: (net, how, output n) -> (logits[0, 1, 5, 7], sum of all logits in float64)
FLOAT = {
    ("shipped", "fused", 1): (5.94383430480957, -130305.84843113692),
    ("shipped", "fused", 16): (5.3997015953063965, -176317.39111997373),
    ("shipped", "node", 16): (5.399701118469238, -176317.38489388674),
    ("indep", "fused", 4): (1.9234216213226318, -285326.328450216),
    ("indep", "node", 2): (2.711709499359131, -60652.38145393506),
}
#: (net, preset, n) -> (logits[0, 1, 5, 7], sum of logits, state_error)
EMULATED = {
    ("shipped", "ideal", 16): (5.399702072143555, -176317.39393488644, 3.734485069257133e-07),
    ("shipped", "pcm", 1): (6.080078125, -83656.42206055578, 0.7711118594734102),
    ("shipped", "pcm", 16): (1.933245301246643, -107860.8977820212, 0.963407081645885),
    ("indep", "pcm", 4): (-0.3073888421058655, -343001.4370797947, 0.25372028630389676),
}
#: float32 logits of O(1..10) after ~20 layers: a value agrees to ~1e-5 relative across BLAS
#: orders; a sum of 76k logits cancels (|sum| << sum of |x|), so it gets the looser 1e-4.
RTOL_VALUE, RTOL_SUM = 2e-5, 1e-4
#: emulated outputs pass the noisy tile outputs through ADC levels: an ulp of difference in a
#: product can move a value across a level boundary (one ADC step), so 1e-3 relative.
RTOL_EMULATED = 1e-3


@pytest.fixture(scope="module")
def crop():
    return read_image(SAMPLE)[100:172, 200:296]


@pytest.fixture(scope="module")
def nets():
    cfg = ItNetConfig(levels=3, blocks=1, iterations=4, width=24, shared=False)
    return {"shipped": minitnet.load("weights/camvid-shared-f51.h5"),
            "indep": minitnet.ItNet(cfg, random_tensors(cfg, np.random.default_rng(3)))}


@pytest.mark.parametrize("key", sorted(FLOAT))
def test_float_outputs_as_before_the_refactor(key, nets, crop):
    name, how, n = key
    net = nets[name]
    net.fused = how == "fused"
    try:
        lg = net.logits(crop, n)
    finally:
        net.fused = True
    v, s = FLOAT[key]
    np.testing.assert_allclose(float(lg[0, 1, 5, 7]), v, rtol=RTOL_VALUE, err_msg=f"{key}: rtol {RTOL_VALUE}")
    np.testing.assert_allclose(float(lg.sum(dtype=np.float64)), s, rtol=RTOL_SUM, err_msg=f"{key}: rtol {RTOL_SUM}")


@pytest.mark.parametrize("net_name,preset", [("shipped", "ideal"), ("shipped", "pcm"), ("indep", "pcm")])
def test_emulated_outputs_as_before_the_refactor(net_name, preset, nets, crop):
    net = nets[net_name]
    chip = emulator.program(net, emulator.preset(preset), np.random.default_rng(7), calibration=[crop])
    got = {n: (float(lg[0, 1, 5, 7]), float(lg.sum(dtype=np.float64)), err)
           for n, lg, err in chip.run(crop, np.random.default_rng(11))}
    want = {k[2]: v for k, v in EMULATED.items() if k[:2] == (net_name, preset)}
    assert want, "no pinned values for this case"
    for n, (v, s, e) in want.items():
        np.testing.assert_allclose(got[n], (v, s, e), rtol=RTOL_EMULATED, atol=1e-6,
                                   err_msg=f"{net_name}/{preset}/m{n}: rtol {RTOL_EMULATED}")
