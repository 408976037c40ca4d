"""The drift/precision table of emulator/README.md: mIoU of every output on emulated chips.

    python scripts/emulator_table.py CamVid --chips 5 --out emulator/table.md

For each weights file (default: the shipped shared f=51 and independent f=29 CamVid
models, whichever exist) and each hardware setting

    float       the float engine
    ideal       tiles with unlimited precision and no noise (must equal float)
    8-bit       8-bit weights, DAC and ADC, no noise
    PCM t=0     the pcm preset (PCM device model, 8-bit DAC/ADC, ADC noise, drift compensation)
                right after programming, then after 1 hour and 1 day of drift
    --ablations PCM t=0 with one part of the model off: programming noise, read noise, ADC noise

it prints (and with --out writes) a markdown table of the mIoU (%) of every output on a
SegNet-layout split: mean +- std over --chips chips (one programming draw each; noise-free
settings need one chip). Chips are calibrated on the first --calibration-images images of
the split (activation ranges only). Same --seed, same table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WEIGHTS = [ROOT / "weights" / "camvid-shared-f51.h5", ROOT / "weights" / "camvid-independent-f29.h5"]
SETTINGS = [  # (label, preset, overrides)
    ("ideal", "ideal", {}),
    ("8-bit", "8bit", {}),
    ("PCM, t = 0", "pcm", {}),
    ("PCM, 1 hour", "pcm", {"t_inference": 3600.0}),
    ("PCM, 1 day", "pcm", {"t_inference": 86400.0}),
]
ABLATIONS = [  # --ablations: which part of the PCM model costs the accuracy (t = 0, one part off each)
    ("PCM, t = 0, no programming noise", "pcm", {"prog_noise_scale": 0.0}),
    ("PCM, t = 0, no read noise", "pcm", {"read_noise_scale": 0.0}),
    ("PCM, t = 0, no ADC noise", "pcm", {"out_noise_std": 0.0}),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir", metavar="DATA_DIR", help="dataset folder in the SegNet layout (e.g. CamVid)")
    p.add_argument("--weights", nargs="+", default=None, metavar="W.h5",
                   help="weights files (default: weights/camvid-shared-f51.h5 weights/camvid-independent-f29.h5, "
                        "those that exist)")
    p.add_argument("--chips", type=int, default=5, help="chips per noisy setting (default %(default)s)")
    p.add_argument("--split", default="val", help="split to evaluate (default %(default)s)")
    p.add_argument("--limit", type=int, default=None, metavar="K", help="only the first K images")
    p.add_argument("--calibration-images", type=int, default=2, metavar="K",
                   help="calibrate every chip on the first K images of the split (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    p.add_argument("--outputs", default="all", help="columns: all, or a comma list of outputs like 1,4,8,16")
    p.add_argument("--out", default=None, metavar="FILE.md", help="also write the markdown table here")
    p.add_argument("--json", default=None, metavar="FILE.json", help="also write every number as JSON")
    p.add_argument("--ablations", action="store_true",
                   help="also PCM at t=0 without programming noise, without read noise, without ADC noise")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="also draw every setting's anytime curve, one panel per weights file")
    p.add_argument("--from-json", default=None, metavar="FILE.json",
                   help="no evaluation: draw --plot from the record an earlier run wrote with --json")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p.parse_args(argv)


def cell(mean: float, std: float | None) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{100 * mean:.2f}" if std is None else f"{100 * mean:.2f} ± {100 * std:.2f}"


def plot_record(record: list[dict], path: str) -> str:
    """mIoU of every output for every setting (mean line, +- std band over chips), one panel per
    weights file, from the JSON record of a run."""
    import numpy as np

    from minitnet.plots import require_matplotlib, save_figure

    Figure, FigureCanvasAgg = require_matplotlib()
    files = list(dict.fromkeys(r["weights"] for r in record))
    fig = Figure(figsize=(5.2 * len(files) + 2.6, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(files), sharey=True, squeeze=False)[0]
    styles = {"float": ("k", "-", "s"), "ideal": ("0.5", ":", None), "8-bit": ("tab:green", "--", None)}
    palette = ["tab:blue", "tab:orange", "tab:red", "tab:purple", "tab:brown", "tab:olive", "tab:cyan", "tab:pink"]
    for r in record:  # one style per setting, the same in every panel
        if r["setting"] not in styles:
            styles[r["setting"]] = (palette[(len(styles) - 3) % len(palette)],
                                    "-." if "no " in r["setting"] else "-", "o")
    for ax, w in zip(axes, files):
        for r in (r for r in record if r["weights"] == w):
            label = r["setting"]
            n = np.array(r["outputs"])
            mean = 100 * np.array(r["miou"] if label == "float" else r["miou_mean"])
            colour, ls, marker = styles[label]
            ax.plot(n, mean, ls=ls, marker=marker, ms=3, color=colour, label=label)
            if label != "float" and r.get("chips", 1) > 1:
                std = 100 * np.array(r["miou_std"])
                ax.fill_between(n, mean - std, mean + std, color=colour, alpha=0.15, lw=0)
        ax.set_title(Path(w).name, fontsize=10)
        ax.set_xlabel("output n (iteration)")
        ax.set_xticks(list(n))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mIoU (%)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center", fontsize=8)
    return save_figure(fig, path)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.from_json:
        if not args.plot:
            print("emulator_table: --from-json draws a plot: give --plot FILE.png", file=sys.stderr)
            return 1
        try:
            record = json.loads(Path(args.from_json).read_text())
        except (OSError, ValueError) as e:
            print(f"emulator_table: cannot read the record {args.from_json}: {e}", file=sys.stderr)
            return 1
        print(plot_record(record, args.plot))
        return 0

    import emulator
    import minitnet
    from emulator.evaluation import evaluate_chips, is_deterministic
    from minitnet.metrics import evaluate

    paths = [Path(w) for w in args.weights] if args.weights else [w for w in DEFAULT_WEIGHTS if w.exists()]
    if not paths:
        print(f"emulator_table: none of the default weights exist ({', '.join(map(str, DEFAULT_WEIGHTS))}); "
              f"pass --weights", file=sys.stderr)
        return 1
    missing = [str(p) for p in paths if not p.exists()]
    if missing or args.chips < 1 or args.calibration_images < 1:
        print(f"emulator_table: missing weights {missing}" if missing else
              "emulator_table: --chips and --calibration-images must be >= 1", file=sys.stderr)
        return 1
    rows, record = [], []
    columns = None
    images = None
    t0 = time.perf_counter()
    for path in paths:
        net = minitnet.load(path)
        cfg = net.config
        outs = list(cfg.head_iterations)
        wanted = outs if args.outputs == "all" else [int(s) for s in args.outputs.split(",") if s.strip()]
        bad = [n for n in wanted if n not in outs]
        if bad:
            print(f"emulator_table: outputs {bad} are not outputs of {path.name} ({outs})", file=sys.stderr)
            return 1
        columns = wanted if columns is None else [n for n in columns if n in wanted]
        fl = evaluate(net, args.data_dir, args.split, limit=args.limit)
        images = fl.images
        mode = "shared" if cfg.shared else "independent"
        name = f"{path.name} ({mode}, f={cfg.width}, N={cfg.iterations})"
        rows.append((name, "float engine", "-", "-", {n: (m, None) for n, m in zip(outs, fl.miou)}))
        record.append({"weights": str(path), "setting": "float", "miou": fl.miou, "outputs": outs})
        for label, pname, over in SETTINGS + (ABLATIONS if args.ablations else []):
            hw = emulator.preset(pname, **over)
            chips = 1 if is_deterministic(hw) else args.chips
            ev = evaluate_chips(net, args.data_dir, hw, chips=chips, seed=args.seed, split=args.split,
                                limit=args.limit, calibration_images=args.calibration_images, float_miou=fl.miou)
            std = ev.std if chips > 1 else [None] * len(outs)
            rows.append((name, label, ev.tiles, chips, {n: (m, s) for n, m, s in zip(outs, ev.mean, std)}))
            record.append({"weights": str(path), "setting": label, "preset": pname, "overrides": over,
                           **ev.to_dict()})
            if not args.quiet:
                print(f"  {path.name}: {label} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    lines = [f"mIoU (%) of every output on the `{args.split}` split of `{args.data_dir}` ({images} images); "
             f"noisy settings: mean ± std over {args.chips} chips (seed {args.seed}), each calibrated on the first "
             f"{args.calibration_images} image(s) of the split.", "",
             "| weights | hardware | tiles | chips | " + " | ".join(f"out {n}" for n in columns) + " |",
             "|---|---|---:|---:|" + "---:|" * len(columns)]
    for name, label, tiles, chips, vals in rows:
        lines.append(f"| {name} | {label} | {tiles} | {chips} | "
                     + " | ".join(cell(*vals[n]) for n in columns) + " |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1, default=str) + "\n")
    if args.plot:
        plot_record(record, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
