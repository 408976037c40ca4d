"""The shipped weights on the shipped sample images (tests/data/camvid, 4 val images).

Thresholds come from a measured run (2026-11-26, minitnet engine, the 4 samples):
random weights (the `demo_random_weights` fixture, seed 0) score 2.9% mIoU at the last output;
the shipped independent f=29 model 63.8% (first output 40.0%); the shipped
shared f=51 model 67.0% (first output 47.5%) -- both after their GPU fine-tunes
(the models before the first of them: 44.5% and 62.4%).
A trained model must reach
35% at its last output -- far above anything random weights do -- and its last
output must beat its first (the anytime property); random weights must stay
under 10%.
"""

from pathlib import Path

import pytest

import minitnet
from minitnet.metrics import evaluate

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "data" / "camvid"
TRAINED = ["camvid-shared-f51.h5", "camvid-independent-f29.h5"]
TRAINED_MIN_MIOU = 0.35
RANDOM_MAX_MIOU = 0.10


@pytest.mark.parametrize("name", TRAINED)
def test_trained_model_beats_random_and_improves_over_time(name):
    path = ROOT / "weights" / name
    if not path.exists():
        pytest.skip(f"{name} is not shipped yet")
    ev = evaluate(minitnet.load(path), SAMPLES, "val")
    assert ev.images == 4
    assert ev.miou[-1] >= TRAINED_MIN_MIOU, f"{name}: last-output mIoU {ev.miou[-1]:.3f} < {TRAINED_MIN_MIOU}"
    assert ev.miou[-1] > ev.miou[0], f"{name}: last output {ev.miou[-1]:.3f} not above first {ev.miou[0]:.3f}"


def test_random_weights_do_not_reach_the_threshold(demo_random_weights):
    ev = evaluate(minitnet.load(demo_random_weights), SAMPLES, "val")
    assert max(ev.miou) < RANDOM_MAX_MIOU, f"random weights scored {max(ev.miou):.3f} >= {RANDOM_MAX_MIOU}"
