"""Write weights/README.md, the model card, from the shipped weights and their training logs.

    python scripts/model_card.py --data ../shared/data/camvid \
        --model weights/camvid-shared-f51.h5=weights/train/camvid-shared-f51-gpu3 \
        --model weights/camvid-independent-f29.h5=weights/train/camvid-independent-f29-gpu

Every mIoU in the card is measured here, by the minitnet engine (not PyTorch),
on the full validation split at 480x360; the training curve comes from the
run's log.jsonl (validation mIoU computed by the trainer in PyTorch, float32).
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import minitnet
from minitnet.metrics import count, evaluate


def _log(run: Path):
    p = run / "log.jsonl"
    return [json.loads(l) for l in p.read_text().splitlines()] if p.exists() else []


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", action="append", required=True, help="WEIGHTS.h5=RUN_DIR")
    ap.add_argument("--out", default="weights/README.md")
    ap.add_argument("--intro", default="docs/model-card-intro.md")
    args = ap.parse_args(argv)
    parts = [Path(args.intro).read_text()] if Path(args.intro).exists() else ["# Shipped weights\n"]
    results = {}
    for spec in args.model:
        wpath, run = spec.split("=")
        wpath, run = Path(wpath), Path(run)
        net = minitnet.load(wpath)
        cfg = net.config
        t0 = time.time()
        ev = evaluate(net, args.data, "val", progress=True)
        secs = time.time() - t0
        log = _log(run)
        counts = count(net.graph(360, 480))
        meta = net.metadata
        rec = meta.get("recipe", {})
        wall = sum(r.get("seconds", 0) for r in log)
        miou = ev.miou
        results[wpath.name] = {"miou": miou, "auc": ev.auc}
        parts.append(f"## `{wpath.name}`\n")
        parts.append(
            f"- configuration: L={cfg.levels}, K={cfg.blocks}, N={cfg.iterations}, f={cfg.width}, "
            f"C={cfg.classes}, {'shared' if cfg.shared else 'independent'} weights, heads at every iteration\n"
            f"- size: {counts.params:,} parameters (+{counts.bn_params:,} BN), {counts.macs[-1] / 1e9:.2f} GMACs "
            f"at output {cfg.iterations}, graph {counts.graph_mib:.1f} MiB, file {wpath.stat().st_size / 1e6:.2f} MB\n"
            f"- training: {meta.get('epoch', '?')} epochs of the best checkpoint "
            f"(run of {len(log)} epochs, {wall / 3600:.2f} h wall time on the "
            f"{'GPU' if str(rec.get('device', 'cpu')).startswith('cuda') else 'CPU'}), "
            f"crops {rec.get('crop_width', '?')}x{rec.get('crop_height', '?')}, batch {rec.get('batch_size', '?')}, "
            f"Adam lr {rec.get('lr', '?')} x0.1 at 70%/85% of {rec.get('epochs', '?')} epochs, "
            f"loss weights `{rec.get('loss_weights', '?')}`, bf16 autocast: {rec.get('bf16', '?')}, "
            f"channels_last: {rec.get('channels_last', '?')}, seed {rec.get('seed', '?')}\n"
            f"- validation (CamVid val, {ev.images} images, 480x360, void ignored), measured by the minitnet "
            f"engine in {secs:.0f} s: best output m{cfg.head_iterations[max(range(len(miou)), key=miou.__getitem__)]} "
            f"{max(miou) * 100:.1f}%, last output {miou[-1] * 100:.1f}%, AUC {ev.auc:.4f}\n")
        parts.append("| output | " + " | ".join(f"m{n}" for n in cfg.head_iterations) + " |")
        parts.append("| --- |" + " --- |" * len(miou))
        parts.append("| val mIoU (%) | " + " | ".join(f"{m * 100:.1f}" for m in miou) + " |")
        parts.append("| GMACs | " + " | ".join(f"{m / 1e9:.2f}" for m in counts.macs) + " |\n")
        if log:
            evals = [r for r in log if r.get("val_miou")]
            parts.append("Training curve (validation mIoU in %, by the trainer):\n")
            parts.append("| epoch | train loss | m1 | last | best output |")
            parts.append("| --- | --- | --- | --- | --- |")
            for r in evals:
                v = r["val_miou"]
                parts.append(f"| {r['epoch']} | {r['train_loss']:.3f} | {v[0] * 100:.1f} | {v[-1] * 100:.1f} | "
                             f"{max(v) * 100:.1f} |")
            parts.append("")
        parts.append("Per-class IoU of the last output (%): " + ", ".join(
            f"{name} {v * 100:.1f}" for name, v in zip(minitnet.data.CAMVID_CLASSES, ev.per_class_iou())) + "\n")
    parts.append(f"_Card written by `scripts/model_card.py` on {time.strftime('%Y-%m-%d')} "
                 f"({platform.processor() or platform.machine()}, Python {platform.python_version()})._\n")
    Path(args.out).write_text("\n".join(parts))
    json.dump(results, sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
