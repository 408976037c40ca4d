"""mIoU of every anytime output on emulated chips: several programmed chips, one dataset split.

    ev = evaluate_chips(net, "CamVid", preset("pcm", t_inference=3600.0), chips=5)
    ev.float_miou, ev.mean, ev.std       # per output, fractions in [0, 1]

Each chip is one draw of programming noise, drift and stuck devices
(``emulator.program``), calibrated once on a few images of a split
(``calibration_images``, default the first 2 of the evaluated split: only
their activation ranges are used, never their labels) and then run on every
image with fresh read and ADC noise. Scoring is ``minitnet.metrics.evaluate``
(confusion matrices summed over the split, void ignored), the same code the
float engine's ``minitnet eval`` uses, and the float engine is scored
alongside. Seeds: chip c uses the c-th child of ``np.random.SeedSequence(seed)``
(two grandchildren: programming, then running), so results do not depend on
how many chips are evaluated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from minitnet.metrics import CAMVID_CHANCE_MIOU, evaluate

from .config import HardwareConfig
from .chip import Chip, program

__all__ = ["ChipsEvaluation", "evaluate_chips", "chip_rngs", "is_deterministic", "plot_chips"]


def chip_rngs(seed: int, chip: int) -> tuple[np.random.Generator, np.random.Generator]:
    """(programming rng, running rng) of chip number ``chip`` for ``seed``."""
    child = np.random.SeedSequence(seed).spawn(chip + 1)[chip]
    prog, run = child.spawn(2)
    return np.random.default_rng(prog), np.random.default_rng(run)


def is_deterministic(hw: HardwareConfig) -> bool:
    """True when ``hw`` draws nothing: no programming, read, ADC-input noise, drift or stuck devices
    (so every chip is the same and one chip says all)."""
    if hw.out_noise_std or hw.stuck_at_0_fraction or hw.stuck_at_gmax_fraction:
        return False
    if hw.device_model == "pcm":
        drift = hw.t_inference > 0 and hw.drift_scale > 0
        return hw.prog_noise_scale == 0 and hw.read_noise_scale == 0 and not drift
    drift = hw.t_inference > 0 and hw.drift_scale > 0 and (hw.drift_nu_mean or hw.drift_nu_std)
    read = hw.read_noise_scale > 0 and hw.read_noise_std > 0
    return (hw.prog_noise_std * hw.prog_noise_scale) == 0 and not read and not drift


class _ChipAsNet:
    """What ``minitnet.metrics.evaluate`` needs of a network (``config``, ``iter_outputs``), on a chip;
    keeps the state error of every output."""

    def __init__(self, chip: Chip, rng: np.random.Generator, reference: bool):
        self.chip, self.rng, self.reference = chip, rng, reference
        self.config = chip.config
        self.state_errors: dict[int, list[float]] = {n: [] for n in chip.config.head_iterations}

    def iter_outputs(self, img):
        for n, logits, err in self.chip.run(img, self.rng, reference=self.reference):
            self.state_errors[n].append(err)
            yield n, logits


@dataclass
class ChipsEvaluation:
    """mIoU per output of the float engine and of every chip; fractions in [0, 1].

    ``chip_miou[c][i]`` is output ``outputs[i]`` of chip c; ``state_error[c][i]`` the mean over
    images of its relative state error against the float engine (NaN when not computed).
    """

    outputs: tuple[int, ...]
    float_miou: list[float]
    chip_miou: list[list[float]]
    state_error: list[list[float]]
    images: int
    macs: list[int]
    hw: HardwareConfig
    tiles: int
    seed: int
    calibration: list[str] = field(default_factory=list)

    @property
    def chips(self) -> int:
        return len(self.chip_miou)

    @property
    def mean(self) -> list[float]:
        return [float(v) for v in np.mean(self.chip_miou, axis=0)]

    @property
    def std(self) -> list[float]:
        """Sample std over chips (ddof=1); 0 for one chip."""
        if self.chips < 2:
            return [0.0] * len(self.outputs)
        return [float(v) for v in np.std(self.chip_miou, axis=0, ddof=1)]

    def to_dict(self) -> dict:
        import dataclasses

        def clean(v):
            return None if not math.isfinite(v) else float(v)

        return {
            "outputs": list(self.outputs),
            "float_miou": [clean(v) for v in self.float_miou],
            "miou_mean": [clean(v) for v in self.mean],
            "miou_std": [clean(v) for v in self.std],
            "miou_min": [clean(v) for v in np.min(self.chip_miou, axis=0)],
            "miou_max": [clean(v) for v in np.max(self.chip_miou, axis=0)],
            "chip_miou": [[clean(v) for v in row] for row in self.chip_miou],
            "state_error": [[clean(v) for v in row] for row in self.state_error],
            "chips": self.chips,
            "images": self.images,
            "macs": list(self.macs),
            "tiles": self.tiles,
            "seed": self.seed,
            "calibration_images": list(self.calibration),
            "hw": dataclasses.asdict(self.hw),
        }


def evaluate_chips(net, data_dir, hw: HardwareConfig, chips: int = 5, seed: int = 0, split: str = "val",
                   void="classes", limit: int | None = None, calibration_images: int = 2,
                   calibration_split: str | None = None, state_error: bool = False, float_miou=None,
                   progress: bool = False) -> ChipsEvaluation:
    """Program ``chips`` chips of ``net`` on ``hw`` and score every output on a SegNet-layout split.

    calibration_images: the first K images (sorted by name) of ``calibration_split`` (default
    ``split``) fix every chip's DAC/ADC ranges. state_error: also run the float engine alongside
    every emulated image and keep the relative state error (costs one float pass per image).
    float_miou: the float engine's mIoU per output if already known (skips scoring it again).
    """
    from minitnet.data import list_split, read_image
    from minitnet.errors import ConfigError

    if isinstance(chips, bool) or not isinstance(chips, int) or chips < 1:
        raise ConfigError(f"evaluate_chips: chips must be a positive int, got {chips!r}")
    if isinstance(calibration_images, bool) or not isinstance(calibration_images, int) or calibration_images < 1:
        raise ConfigError(f"evaluate_chips: calibration_images must be a positive int, got {calibration_images!r}")
    pairs = list_split(data_dir, calibration_split or split)[:calibration_images]
    calib = [read_image(p) for p, _ in pairs]
    if float_miou is None:
        ev_float = evaluate(net, data_dir, split, void=void, limit=limit, progress=progress)
        float_miou, macs, images = ev_float.miou, ev_float.counts.macs, ev_float.images
    else:
        macs, images = None, None
    rows, errs, tiles = [], [], 0
    for c in range(chips):
        rng_prog, rng_run = chip_rngs(seed, c)
        chip = program(net, hw, rng_prog, calibration=calib)
        tiles = chip.tiles
        adapter = _ChipAsNet(chip, rng_run, state_error)
        ev = evaluate(adapter, data_dir, split, void=void, limit=limit, progress=progress)
        rows.append(ev.miou)
        errs.append([float(np.mean(adapter.state_errors[n])) for n in ev.outputs])
        macs, images = ev.counts.macs, ev.images
    return ChipsEvaluation(tuple(net.config.head_iterations), list(float_miou), rows, errs, images, list(macs), hw,
                           tiles, seed, [str(p) for p, _ in pairs])


def plot_chips(path, ev: ChipsEvaluation, title: str | None = None, dpi: int = 120) -> str:
    """Both anytime curves: the float engine's mIoU and the chips' (mean, +- one std band, every chip
    faint) over the MACs of each output (left) and over the output n (right)."""
    from minitnet.plots import require_matplotlib, save_figure

    Figure, FigureCanvasAgg = require_matplotlib()
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    mean, std = np.array(ev.mean) * 100, np.array(ev.std) * 100
    xs = ((np.array(ev.macs) / 1e9, "MACs of output n (billions)"), (np.array(ev.outputs), "output n (iteration)"))
    for ax, (x, label) in zip(fig.subplots(1, 2, sharey=True), xs):
        for row in ev.chip_miou:
            ax.plot(x, np.array(row) * 100, "-", color="tab:orange", lw=0.6, alpha=0.35)
        ax.fill_between(x, mean - std, mean + std, color="tab:orange", alpha=0.2, lw=0)
        ax.plot(x, mean, "o-", color="tab:orange", ms=3.5, lw=1.5, label=f"emulated ({ev.chips} chips, mean +- std)")
        ax.plot(x, np.array(ev.float_miou) * 100, "s-", color="tab:purple", ms=3.5, lw=1.5, label="float engine")
        ax.axhline(100 * CAMVID_CHANCE_MIOU, color="0.6", lw=0.8, ls="--")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    if len(ev.outputs) <= 20:
        fig.axes[1].set_xticks(list(ev.outputs))
    fig.axes[0].set_ylabel("mIoU (%)")
    fig.axes[0].legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, dpi)
