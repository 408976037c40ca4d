"""The accuracy-energy anytime curve of the shipped models: val mIoU of every output against
the energy (microjoules) a frame costs when it stops at that output.

    python scripts/energy_curve.py [--eval-json shared.json independent.json] [--preset pcm]
                                   [--plot docs/img/energy-curve.png] [--set FIELD=VALUE ...]

Energy: ``emulator.timing.time_mapping`` of each model's own mapping (the shared model on
shared tiles, the independent one unrolled) under the hardware and energy preset, 480x360:
``energy_pj[n]`` is everything run until output n is written, one frame alone, earlier heads
and the leakage over that latency included.  The shared model is also drawn unrolled.

mIoU: from ``minitnet eval ... --json`` files when given (``--eval-json``, matched to the
models by their ``weights`` path), else from the tables measured on the full CamVid
validation split that ship with the repository: the float engine's row of each model card
(weights/README.md) and the emulated 8-bit chip's row (emulator/README.md, "Measured:
mIoU under limited precision and drift"; 8-bit DAC and ADC as in the ``pcm`` preset).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"camvid-shared-f51.h5": "shared", "camvid-independent-f29.h5": "independent"}


def card_miou(weights: str) -> list[float]:
    """The 'val mIoU (%)' row of the model card section of ``weights`` (weights/README.md)."""
    text = (ROOT / "weights" / "README.md").read_text()
    part = text.split(f"## `{weights}`", 1)
    if len(part) < 2:
        raise SystemExit(f"energy_curve: weights/README.md has no section '## `{weights}`'")
    row = re.search(r"^\| val mIoU \(%\) \|(.*)\|\s*$", part[1], re.M)
    if row is None:
        raise SystemExit(f"energy_curve: no 'val mIoU (%)' row under {weights} in weights/README.md")
    return [float(v) for v in row.group(1).split("|")]


def chip_miou(weights: str, hardware: str = "8-bit") -> list[float]:
    """The emulated chip's row (mean over chips) of emulator/README.md's measured table."""
    for line in (ROOT / "emulator" / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 4 and cells[0].startswith(weights) and cells[1] == hardware:
            return [float(c.split("±")[0]) for c in cells[4:]]
    raise SystemExit(f"energy_curve: no '{hardware}' row for {weights} in emulator/README.md")


def eval_miou(paths) -> dict[str, list[float]]:
    """mIoU in % per output from ``minitnet eval --json`` files, keyed by weights file name."""
    out = {}
    for p in paths or ():
        d = json.loads(Path(p).read_text())
        out[Path(d["weights"]).name] = [100 * v for v in d["miou"]]
    return out


def energies(preset_name: str, sets: list[str]) -> dict:
    """{(weights, mapping): (heads, energy_pj per output)} for every shipped model."""
    from emulator import preset
    from emulator.cli import _parse_sets
    from emulator.energy import energy_preset
    from emulator.timing import Mapping, TimingConfig, time_mapping
    from minitnet.graph import build_graph
    from minitnet.weights import read_hdf5

    timing_sets, energy_sets = _parse_sets(sets)
    hw, timing = preset(preset_name), TimingConfig(**timing_sets)
    energy = energy_preset(preset_name, **energy_sets)
    out = {}
    for weights, own in MODELS.items():
        cfg = read_hdf5(ROOT / "weights" / weights).config
        graph = build_graph(cfg, 360, 480)
        for name in dict.fromkeys((own, "independent")):
            m = time_mapping(graph, hw, timing, Mapping(name), frames=2, energy=energy).energy
            out[weights, name] = (m.heads, m.output_energy_pj, m.frame_energy_pj, m.tops_per_w)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eval-json", nargs="*", default=[], metavar="EVAL.json",
                   help="outputs of 'minitnet eval --weights W --json' (default: the measured tables)")
    p.add_argument("--preset", default="pcm", help="hardware and energy preset (default %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a TimingConfig or EnergyConfig field, repeatable")
    p.add_argument("--plot", default=str(ROOT / "docs" / "img" / "energy-curve.png"), metavar="FILE.png")
    args = p.parse_args(argv)
    fresh = eval_miou(args.eval_json)
    E = energies(args.preset, args.set)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5), constrained_layout=True)
    colours = {"camvid-shared-f51.h5": "#1f77b4", "camvid-independent-f29.h5": "#d62728"}
    print(f"{'weights':<28} {'mapping':<12} {'mIoU':<10} {'E1 uJ':>8} {'E16 uJ':>8} {'frame uJ':>9} {'TOPS/W':>7}")
    for (weights, mapping), (heads, e_pj, frame_pj, tops) in E.items():
        uj = [v / 1e6 for v in e_pj]
        rows = [("float", fresh.get(weights) or card_miou(weights), "-")]
        if weights not in fresh:
            rows.append(("8-bit chip", chip_miou(weights), "--"))
        for label, miou, style in rows:
            if len(miou) != len(heads):
                raise SystemExit(f"energy_curve: {weights} has {len(heads)} outputs, mIoU list has {len(miou)}")
            own = MODELS[weights] == mapping
            ax.plot(uj, miou, style, marker="o" if own else ".", ms=4 if own else 3, color=colours[weights],
                    alpha=1.0 if own else 0.45,
                    label=f"{weights.removesuffix('.h5')[7:]}, {mapping} mapping, {label}"
                          + (f" ({frame_pj / 1e6:.0f} uJ/frame streamed, {tops:.1f} TOPS/W)"
                             if label == "float" else ""))
            print(f"{weights:<28} {mapping:<12} {label:<10} {uj[0]:>8.1f} {uj[-1]:>8.1f} {frame_pj / 1e6:>9.1f}"
                  f" {tops:>7.2f}")
        if MODELS[weights] == mapping:
            for k in (0, len(heads) - 1):
                ax.annotate(f"m{heads[k]}", (uj[k], rows[0][1][k]), textcoords="offset points", xytext=(4, -12),
                            fontsize=9, color=colours[weights])
    src = "minitnet eval --json" if fresh else "model cards, emulator/README.md; full CamVid val"
    ax.set_xlabel(f"energy per frame stopped at output n (uJ; '{args.preset}' preset, one frame alone)")
    ax.set_ylabel("val mIoU (%)")
    ax.set_title(f"Anytime accuracy against energy per frame, CamVid 480x360\n(mIoU: {src})", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=130)
    print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
