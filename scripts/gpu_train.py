"""Train on a lent GPU in one short call: pack the data small, time a few steps, size the run to the time left.

Here (CPU), once: the CamVid train split and every 4th val image as JPEG quality 95 (4:4:4; labels
unchanged), small enough for the device's 64 MiB transfer limit together with the repository::

    python scripts/gpu_train.py pack ../shared/data/camvid .gpu/camvid     # .gpu/ is git-ignored locally

There (the device machine, ``carry: [".gpu"]``)::

    python3 scripts/gpu_train.py train 420          # seconds for probe + training

``train`` starts from ``INIT`` (default: the shipped shared model; ``MODEL`` adds architecture or recipe flags,
e.g. "--width 29 --independent" or "--scale-range 0.75,1.5 --jitter 0.2,0.2,0.2"), times 15 steps and one validation at lr 0, plans the epochs that
fit the budget (eval every tenth of them; lr 1e-3 for >= 200 epochs, 5e-4 for >= 100, else 2e-4,
times 0.1 at 70% and 85%; ``EPOCHS`` fixes the count instead), trains with bf16 autocast and channels_last on CUDA, and copies best.h5,
last.pt, log.csv and log.jsonl to ``$OUT`` (checkpoints are git-ignored: commit logs and READMEs; a
shipped model only as ``weights/*.h5``). The trainer's validation numbers are on the 26 JPEG val
images; measure the result with the engine on the full PNG split (``minitnet eval``).
"""
import os
import shutil
import sys
import time
from pathlib import Path


def pack(src, dst):
    from PIL import Image

    src, dst = Path(src), Path(dst)
    for split, keep in (("train", lambda i: True), ("val", lambda i: i % 4 == 0)):
        (dst / split).mkdir(parents=True, exist_ok=True)
        (dst / f"{split}annot").mkdir(parents=True, exist_ok=True)
        for i, p in enumerate(sorted((src / split).glob("*.png"))):
            if keep(i):
                Image.open(p).convert("RGB").save(dst / split / (p.stem + ".jpg"), quality=95, subsampling=0)
                shutil.copy(src / f"{split}annot" / p.name, dst / f"{split}annot" / p.name)


def train(budget):
    import torch

    sys.path.insert(0, os.getcwd())
    from minitnet.torch.train import Trainer, build_parser

    t0 = time.time()
    out = Path(os.environ.get("OUT", "/tmp/out"))
    run = Path("/tmp/run-gpu")
    dev = os.environ.get("DEV", "cuda")
    init = os.environ.get("INIT", "weights/camvid-shared-f51.h5")
    base = (["--data", os.environ.get("DATA", ".gpu/camvid"), "--init", init, "--bf16", "--channels-last",
             "--device", dev, "--seed", "2"] + os.environ.get("MODEL", "").split()
            + (["--train-limit", os.environ["TRAIN_LIMIT"]] if "TRAIN_LIMIT" in os.environ else []))
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)

    probe = Trainer(build_parser().parse_args(base + ["--out", "/tmp/probe", "--epochs", "1", "--eval-every", "1",
                                                      "--lr", "0"]))
    probe.init_from(init)
    batches = probe.batches()
    for _ in range(3):
        probe.step(*next(batches))
    sync()
    t, n = time.time(), 0
    for x, y in batches:
        probe.step(x, y)
        n += 1
        if n == 15:
            break
    sync()
    step_s = (time.time() - t) / max(n, 1)
    t = time.time()
    m = probe.evaluate()
    eval_s = time.time() - t
    epoch_s = step_s * -(-len(probe.train_x) // probe.args.batch_size)
    print(f"probe: {step_s * 1e3:.1f} ms/step, {epoch_s:.1f} s/epoch, eval {eval_s:.1f} s, "
          f"start mIoU m16 {m[-1]:.4f}", flush=True)
    left = budget - (time.time() - t0) - 15
    epochs = int(min(400, max(5, left / (epoch_s * 1.04 + eval_s / 10))))
    if "EPOCHS" in os.environ:  # a fixed plan instead of the budget's
        epochs = int(os.environ["EPOCHS"])
    every = max(1, epochs // 10)
    lr = "1e-3" if epochs >= 200 else "5e-4" if epochs >= 100 else "2e-4"
    del probe
    print(f"plan: {epochs} epochs, eval every {every}, lr {lr} (x0.1 at 70% and 85%)", flush=True)
    args = build_parser().parse_args(base + ["--out", str(run), "--epochs", str(epochs), "--eval-every", str(every),
                                             "--lr", lr])
    Trainer(args).train()  # starts from --init
    print(f"done in {time.time() - t0:.0f} s", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    for f in ("best.h5", "last.pt", "log.csv", "log.jsonl"):
        if (run / f).exists():
            shutil.copy(run / f, out / f)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "pack" and len(sys.argv) == 4:
        pack(sys.argv[2], sys.argv[3])
    elif len(sys.argv) in (2, 3) and sys.argv[1] == "train":
        train(float(sys.argv[2]) if len(sys.argv) == 3 else 420.0)
    else:
        sys.exit(__doc__)
