"""The drift/precision table of emulator/README.md: one sweep (``emulator.sweep``) of these settings.

    python scripts/emulator_table.py CamVid --chips 3 --ablations --results table.parquet \\
        --out table.md --json table.json --plot docs/img/emulator-table.png [--workers W | --scheduler ADDR]

The settings (``SETTINGS``, ``ABLATIONS``) are sweep specs: labelled ``emulator.sweep.Setting``s,
evaluated for every weights file (default: the shipped shared f=51 and independent f=29 CamVid
models, whichever exist) in one ``run_sweep`` on Dask, like ``minitnet sweep`` (whose grid is
one preset with ``--set`` lists; this table mixes presets):

    float       the float engine
    ideal       tiles with unlimited precision and no noise (must equal float)
    8-bit       8-bit weights, DAC and ADC, no noise
    P, t        each analog preset P of PRESETS (pcm: the worst-case periphery; aihwkit-default:
                aihwkit's InferenceRPUConfig defaults; pcm-hwa: aihwkit's hardware-aware-training
                periphery) right after programming and after 1 hour, 1 day and 1 month of drift
                (--presets picks some; alone, one preset's rows are
                `minitnet sweep DATA --preset P --set t_inference=0,3600,86400,2592000`)
    --ablations pcm-hwa at 1 day with one periphery choice changed (towards pcm or
                aihwkit-default) or one noise source off: which choice matters how much

It prints (and with --out writes) a markdown table of the mIoU (%) of every output on a
SegNet-layout split: mean +- std over --chips chips (noise-free settings need one chip). Chips
are calibrated on the first --calibration-images images of the split (activation ranges only).
Seeds as in ``emulator.sweep`` (base seed, weights content, setting, chip): same --seed, same
table, whatever the workers. --results keeps the sweep's tidy table: a rerun with the same file
runs only what is missing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WEIGHTS = [ROOT / "weights" / "camvid-shared-f51.h5", ROOT / "weights" / "camvid-independent-f29.h5"]
PRESETS = ("pcm", "aihwkit-default", "pcm-hwa")  # the analog presets of the table (emulator/README.md)
TIMES = (("t = 0", 0.0), ("1 hour", 3600.0), ("1 day", 86400.0), ("1 month", 2592000.0))
SETTINGS = [  # (label, preset, overrides)
    ("ideal", "ideal", {}),
    ("8-bit", "8bit", {}),
] + [(f"{name}, {when}", name, {"t_inference": t} if t else {}) for name in PRESETS for when, t in TIMES]
DAY = {"t_inference": 86400.0}
ABLATIONS = [  # --ablations: pcm-hwa at 1 day with one choice changed (towards pcm or aihwkit-default) or one
    # noise source off: which periphery choice matters how much
    ("pcm-hwa, 1 day, per-tile weights", "pcm-hwa", {**DAY, "weight_scaling": "tile"}),
    ("pcm-hwa, 1 day, DAC range at max |x|", "pcm-hwa", {**DAY, "inp_quantile": 1.0}),
    ("pcm-hwa, 1 day, per-vector inputs", "pcm-hwa", {**DAY, "inp_range": "per-vector", "inp_quantile": 1.0}),
    ("pcm-hwa, 1 day, 1/f per MVM", "pcm-hwa", {**DAY, "read_noise_mode": "per-mvm"}),
    ("pcm-hwa, 1 day, 256x256 tiles", "pcm-hwa", {**DAY, "rows": 256, "cols": 256}),
    ("pcm-hwa, 1 day, column drift comp.", "pcm-hwa", {**DAY, "drift_compensation": "column"}),
    ("pcm-hwa, 1 day, no drift comp.", "pcm-hwa", {**DAY, "drift_compensation": False}),
    ("pcm-hwa, 1 day, no programming noise", "pcm-hwa", {**DAY, "prog_noise_scale": 0.0}),
    ("pcm-hwa, 1 day, no read noise", "pcm-hwa", {**DAY, "read_noise_scale": 0.0}),
    ("pcm-hwa, 1 day, no ADC noise", "pcm-hwa", {**DAY, "out_noise_std": 0.0}),
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
    p.add_argument("--results", default=None, metavar="FILE.parquet",
                   help="the sweep's tidy table (.parquet or .csv); a rerun with the same file resumes")
    p.add_argument("--presets", default=",".join(PRESETS), metavar="P[,P]",
                   help="the analog presets whose rows to run (default %(default)s; 'none': only float, ideal, "
                        "8-bit and --ablations)")
    p.add_argument("--ablations", action="store_true",
                   help="also pcm-hwa at 1 day with one periphery choice changed or one noise source off")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="also draw every setting's anytime curve, one panel per weights file")
    p.add_argument("--from-json", default=None, metavar="FILE.json",
                   help="no evaluation: draw --plot from the record an earlier run wrote with --json")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, default=None, metavar="W",
                   help="local Dask cluster of W one-thread processes (default: one per core; 0: in process)")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS", help="a running Dask scheduler")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def cell(mean: float, std: float | None) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{100 * mean:.2f}" if std is None else f"{100 * mean:.2f} ± {100 * std:.2f}"


def settings(chips: int, ablations: bool, presets=PRESETS):
    """The sweep's settings: the float engine, then SETTINGS of ``presets`` (+ ABLATIONS), one chip
    where nothing is drawn."""
    from emulator.evaluation import is_deterministic
    from emulator.sweep import FLOAT, Setting

    out = [Setting(FLOAT, label="float")]
    rows = [r for r in SETTINGS if r[1] not in PRESETS or r[1] in presets]
    for label, name, over in rows + (ABLATIONS if ablations else []):
        s = Setting(name, tuple(over.items()), 1, label)
        out.append(Setting(name, tuple(over.items()), 1 if is_deterministic(s.hw) else chips, label))
    return out


def records(res, spec) -> list[dict]:
    """The JSON record (one dict per weights file and setting, as ``plot_record`` reads it) of a sweep."""
    import dataclasses

    import numpy as np

    import emulator
    import minitnet

    rec = []
    t = res.table
    for w in spec.weights:
        net = minitnet.load(w)
        outs = list(net.config.head_iterations)
        for s in spec.settings:
            g = t[(t["weights"] == str(w)) & (t["setting"] == s.name)]
            m = np.array([[g[(g["chip"] == c) & (g["output"] == n)]["miou"].iloc[0] for n in outs]
                          for c in sorted(set(g["chip"]))])
            r = {"weights": str(w), "setting": s.name, "outputs": outs}
            if s.preset == "float":
                r["miou"] = [float(v) for v in m[0]]
            else:
                hw = s.hw
                r.update(preset=s.preset, overrides=dict(s.overrides), chips=len(m), miou_mean=list(m.mean(0)),
                         miou_std=list(m.std(0, ddof=1)) if len(m) > 1 else [0.0] * len(outs),
                         chip_miou=m.tolist(), seeds=[int(v) for v in g[g["output"] == outs[0]]["seed"]],
                         tiles=emulator.program(net, hw, np.random.default_rng(0)).tiles,
                         images=int(g["images"].iloc[0]), hw=dataclasses.asdict(hw))
            rec.append(r)
    return rec


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

    import minitnet
    from emulator import sweep, sweep_dask
    from minitnet.errors import MinitnetError

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
    presets = [] if args.presets.strip() == "none" else [p.strip() for p in args.presets.split(",") if p.strip()]
    if any(p not in PRESETS for p in presets):
        print(f"emulator_table: --presets {args.presets!r}: expected a comma list of {', '.join(PRESETS)}, "
              f"or 'none'", file=sys.stderr)
        return 1
    columns = None
    for path in paths:
        outs = list(minitnet.load(path).config.head_iterations)
        wanted = outs if args.outputs == "all" else [int(s) for s in args.outputs.split(",") if s.strip()]
        bad = [n for n in wanted if n not in outs]
        if bad:
            print(f"emulator_table: outputs {bad} are not outputs of {path.name} ({outs})", file=sys.stderr)
            return 1
        columns = wanted if columns is None else [n for n in columns if n in wanted]
    spec = sweep.SweepSpec(args.data_dir, [str(p) for p in paths], settings(args.chips, args.ablations, presets),
                           split=args.split, limit=args.limit, seed=args.seed,
                           calibration_images=args.calibration_images)
    try:
        with sweep_dask.connect(workers=args.workers, scheduler=args.scheduler) as client:
            res = sweep.run_sweep(spec, client, out=args.results, progress=not args.quiet)
    except MinitnetError as e:
        print(f"emulator_table: {e}", file=sys.stderr)
        return 1
    record = records(res, spec)
    images = int(res.table["images"].iloc[0])
    lines = [f"mIoU (%) of every output on the `{args.split}` split of `{args.data_dir}` ({images} images); "
             f"noisy settings: mean ± std over {args.chips} chips (seed {args.seed}), each calibrated on the first "
             f"{args.calibration_images} image(s) of the split.", "",
             "| weights | hardware | tiles | chips | " + " | ".join(f"out {n}" for n in columns) + " |",
             "|---|---|---:|---:|" + "---:|" * len(columns)]
    for r in record:
        cfg = minitnet.load(r["weights"]).config
        name = f"{Path(r['weights']).name} ({'shared' if cfg.shared else 'independent'}, f={cfg.width}, " \
               f"N={cfg.iterations})"
        if r["setting"] == "float":
            label, tiles, chips = "float engine", "-", "-"
            vals = {n: (m, None) for n, m in zip(r["outputs"], r["miou"])}
        else:
            label, tiles, chips = r["setting"], r["tiles"], r["chips"]
            vals = {n: (m, s if r["chips"] > 1 else None)
                    for n, m, s in zip(r["outputs"], r["miou_mean"], r["miou_std"])}
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
