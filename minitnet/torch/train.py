"""Train an ItNet on a SegNet-layout dataset (CamVid) with the paper's recipe.

    python -m minitnet.torch.train --data ../shared/data/camvid --out runs/shared-f51

Recipe (paper II-B, II-D; spec ARCHITECTURE.md, Training): Equation 1 loss, a
weighted mean over outputs of the pixel cross entropy with weights a_n
normalised to sum 1; void pixels ignored; Adam (0.9, 0.999), lr 1e-3 times 0.1
at 70% and 85% of the epochs; batch 8; random horizontal flips and random
crops (480x352 by default); pixels / 255. Options: output weights (all,
single:n, late:k, thinned:s, linear, or a list), dropout after the depthwise
convs, L2 weight decay, bf16 autocast and channels_last (see TRAINING-NOTES).

Augmentation and balancing, all off by default (then bit-identical to the trainer
without them; see ``augment.py`` for the order and coordinates): ``--scale-range
lo,hi`` scales each image by a factor uniform in [lo, hi] before the crop (image
bilinear, labels nearest; windows past a small image padded with void);
``--jitter B,C,S`` brightness, contrast and saturation jitter; ``--class-weights
median-freq`` weights the cross entropy of every output by SegNet's median
frequency balancing on the training labels (void ignored); ``--label-smoothing
EPS``. The loss stays Equation 1: the weighted sum over outputs. ``--train-splits
train,val`` trains on several splits (refused if a file is in two of them); when
the validation split is among them, every validation is logged as not held-out.

Every epoch: a progress bar, a line in ``log.csv`` and ``log.jsonl`` (train loss,
validation mIoU of every output), ``last.pt`` (everything needed to resume
exactly: model, optimiser, scheduler, RNG states, log). The best epoch by the
validation mIoU of the last output is kept as ``best.pt`` and exported to
``best.h5`` with ``export_hdf5``; when the run ends, its weights as they are go to
``last.h5`` (the last epoch, for an honest last-epoch measure). ``--resume``
continues from ``last.pt``.

Hardware-aware training, ``--hwa PRESET`` (e.g. ``pcm-hwa``): the forward pass of every
step runs the analog convs as a chip of that emulator preset runs them (one programming
draw per step shared by all iterations, learned DAC ranges, ADC noise and converters;
``emulator.hwa``, reached through the entry-point group ``minitnet.hwa`` so that minitnet
does not import the emulator); batch norms are frozen; validation stays float. The
learned DAC ranges are exported with the weights (format version 2).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ItNetConfig
from ..data import CAMVID_VOID, list_split, read_image, read_label
from ..metrics import confusion_matrix, mean_iou
from ..progress import Progress
from ..weights import CAMVID_NORMALISATION
from .augment import augment_pair, median_frequency_weights, parse_jitter, parse_scale_range
from .export import export_hdf5
from .model import TorchItNet

__all__ = ["output_weights", "resolve_device", "load_splits", "load_hwa", "Trainer", "main", "HWA_GROUP"]

HWA_GROUP = "minitnet.hwa"
"""Entry-point group of the hardware-aware training injector (``emulator.hwa:from_args``)."""
HWA_DEFAULT = "emulator.hwa:from_args"
"""The injector used when no package registers one in ``HWA_GROUP`` (a checkout on sys.path)."""


def load_hwa(model, args):
    """The ``--hwa`` injector of ``model`` (``emulator.hwa.HWA``) from the entry point ``HWA_GROUP``."""
    from importlib.metadata import entry_points

    eps = list(entry_points(group=HWA_GROUP))
    if eps:
        make = eps[0].load()
    else:  # not installed (e.g. a checkout on sys.path, as scripts/gpu_train.py runs): its default
        import importlib
        import importlib.util

        if importlib.util.find_spec(HWA_DEFAULT.split(":")[0]) is None:
            raise SystemExit(f"--hwa needs the emulator (entry point group {HWA_GROUP!r}, or the module "
                             f"{HWA_DEFAULT.split(':')[0]} on the path): pip install -e .")
        mod, name = HWA_DEFAULT.split(":")
        make = getattr(importlib.import_module(mod), name)
    try:
        return make(model, args.hwa, seed=args.seed, t_inference=args.hwa_t,
                    noise_scale=args.hwa_noise_scale, clip_sigma=args.hwa_clip or None)
    except ValueError as e:  # the emulator's ConfigError (a MinitnetError, a ValueError)
        raise SystemExit(f"--hwa {args.hwa}: {e}") from None


def resolve_device(spec: str) -> torch.device:
    """The torch device of ``--device``: cpu, cuda, cuda:N, or auto (cuda when available, else cpu)."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError) as e:
        raise SystemExit(f"--device {spec!r}: not a device ({e}); expected cpu, cuda, cuda:N or auto") from None
    if dev.type not in ("cpu", "cuda"):
        raise SystemExit(f"--device {spec!r}: expected cpu, cuda, cuda:N or auto")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"--device {spec!r}: this torch ({torch.__version__}) sees no CUDA device; "
                             "use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SystemExit(f"--device {spec!r}: only {torch.cuda.device_count()} CUDA device(s)")
        torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick its fastest convs once
    return dev


def output_weights(spec: str, heads: tuple[int, ...]) -> np.ndarray:
    """Loss weights a_n for the head iterations ``heads``, normalised to sum 1 (Eq. 1).

    all          a_n = 1 for every output
    single:n     only output n
    late:k       the last k outputs
    thinned:s    outputs 1, 1+s, 1+2s, ... (every s-th, the first kept)
    linear       a_n = n (linearly increasing)
    w1,w2,...    explicit weights, one per head
    """
    heads = tuple(heads)
    a = None
    if spec == "all":
        a = np.ones(len(heads))
    elif spec == "linear":
        a = np.array(heads, dtype=float)
    elif spec.startswith("single:"):
        n = int(spec.split(":")[1])
        if n not in heads:
            raise SystemExit(f"--loss-weights {spec}: output {n} is not a head (heads: {list(heads)})")
        a = np.array([1.0 if h == n else 0.0 for h in heads])
    elif spec.startswith("late:"):
        k = int(spec.split(":")[1])
        a = np.array([1.0 if i >= len(heads) - k else 0.0 for i in range(len(heads))])
    elif spec.startswith("thinned:"):
        s = int(spec.split(":")[1])
        a = np.array([1.0 if i % s == 0 else 0.0 for i in range(len(heads))])
    else:
        try:
            a = np.array([float(v) for v in spec.split(",")])
        except ValueError:
            raise SystemExit(f"--loss-weights: cannot parse {spec!r}") from None
        if a.shape != (len(heads),):
            raise SystemExit(f"--loss-weights: {len(a)} weights given, the model has {len(heads)} heads")
    if np.any(a < 0) or a.sum() <= 0:
        raise SystemExit(f"--loss-weights {spec}: weights must be >= 0 with a positive sum, got {a.tolist()}")
    return a / a.sum()


def _load_split(data_dir, split, limit=None):
    return load_splits(data_dir, [split], limit)


def load_splits(data_dir, splits, limit=None):
    """Images (N, H, W, 3) uint8 and labels (N, H, W) uint8 of one or more SegNet-layout splits,
    in the order given, the first ``limit`` pairs only if set.

    Refuses a split named twice and splits that share a file (the same file name, or the same
    file on disk, in two splits): a sample must not be trained on twice, nor validated on when
    its twin is trained on."""
    splits = list(splits)
    if not splits or len(set(splits)) != len(splits):
        raise SystemExit(f"--train-splits {','.join(splits)}: expected distinct split names, e.g. train,val")
    owner, clash = {}, []
    pairs = []
    for split in splits:
        for p, q in list_split(data_dir, split):
            for key in (p.name, p.resolve(), q.resolve()):
                if key in owner and owner[key] != split:
                    clash.append(f"{owner[key]}/{p.name} and {split}/{p.name}")
                    break
            for key in (p.name, p.resolve(), q.resolve()):
                owner.setdefault(key, split)
            pairs.append((p, q))
    if clash:
        raise SystemExit(f"--train-splits {','.join(splits)}: {len(clash)} file(s) are in more than one split, "
                         f"e.g. {clash[:3]}; the splits must not overlap (remove the duplicates from one split)")
    pairs = pairs[: limit or None]
    imgs = np.stack([read_image(p) for p, _ in pairs])
    labs = np.stack([read_label(q) for _, q in pairs])
    return imgs, labs


class Trainer:
    def __init__(self, args):
        self.args = a = args
        torch.manual_seed(a.seed)
        self.out = Path(a.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.cfg = ItNetConfig(levels=a.levels, blocks=a.blocks, iterations=a.iterations, width=a.width,
                               classes=a.classes, shared=not a.independent,
                               heads=tuple(int(h) for h in a.heads.split(",")) if a.heads else None)
        self.device = resolve_device(a.device)
        self.model = TorchItNet(self.cfg, dropout=a.dropout)
        self.memory_format = torch.channels_last if a.channels_last else torch.contiguous_format
        self.model = self.model.to(self.device, memory_format=self.memory_format)
        self.a_n = torch.tensor(output_weights(a.loss_weights, self.cfg.head_iterations), dtype=torch.float32,
                                device=self.device)
        self.train_splits = [s for s in a.train_splits.split(",") if s]
        self.val_held_out = a.val_split not in self.train_splits
        self.hwa = load_hwa(self.model, a) if a.hwa else None
        params = [{"params": list(self.model.parameters())}]
        if self.hwa is not None:  # the learned DAC ranges: no weight decay
            params.append({"params": list(self.hwa.ranges.parameters()), "weight_decay": 0.0})
        self.opt = torch.optim.Adam(params, lr=a.lr, betas=(0.9, 0.999), weight_decay=a.weight_decay)
        self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, milestones=self.milestones(), gamma=0.1)
        self.rng = np.random.default_rng(a.seed)
        self.epoch = 0
        self.best = -1.0
        self.log: list[dict] = []
        self.scale = torch.tensor(CAMVID_NORMALISATION["scale"], dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.offset = torch.tensor(CAMVID_NORMALISATION["offset"], dtype=torch.float32,
                                   device=self.device).view(1, 3, 1, 1)
        self.train_x, self.train_y = load_splits(a.data, self.train_splits, a.train_limit)
        self.val_x, self.val_y = (None, None)
        if a.eval_every > 0:
            self.val_x, self.val_y = _load_split(a.data, a.val_split, a.val_limit)
            if not self.val_held_out:
                print(f"warning: the validation split {a.val_split!r} is among --train-splits {a.train_splits}: "
                      "its mIoU is NOT held-out (logged with val_held_out: false); use --eval-every 0 to skip it",
                      file=sys.stderr)
        self.class_weights = None
        if a.class_weights == "median-freq":
            w = median_frequency_weights(self.train_y, self.cfg.classes, a.void)
            print("class weights (median frequency): " + " ".join(f"{v:.3f}" for v in w), file=sys.stderr)
            self.class_weights = torch.tensor(w, dtype=torch.float32, device=self.device)

    def milestones(self):
        """Epochs after which the learning rate is multiplied by 0.1: 70% and 85% of --epochs."""
        return [int(round(0.7 * self.args.epochs)), int(round(0.85 * self.args.epochs))]

    # -- state -----------------------------------------------------------------
    def state(self):
        s = {
            "model": self.model.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
            "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "epoch": self.epoch,
            "best": self.best, "log": self.log, "config": self.cfg.to_dict(), "args": vars(self.args),
        }
        if self.hwa is not None:
            s["hwa"] = {"ranges": self.hwa.ranges.state_dict(), "rng": self.hwa.rng.bit_generator.state}
        return s

    def save(self, name):
        tmp = self.out / (name + ".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, self.out / name)

    def load(self, path):
        s = torch.load(path, map_location="cpu", weights_only=False)
        if s["config"] != self.cfg.to_dict():
            raise SystemExit(f"--resume: checkpoint config {s['config']} differs from {self.cfg.to_dict()}")
        if ("hwa" in s) != (self.hwa is not None):
            raise SystemExit(f"--resume: the checkpoint was {'' if 'hwa' in s else 'not '}trained with --hwa; "
                             f"resume it {'with' if 'hwa' in s else 'without'} --hwa")
        self.model.load_state_dict(s["model"])
        if self.hwa is not None:
            self.hwa.ranges.load_state_dict(s["hwa"]["ranges"])
            self.hwa.rng.bit_generator.state = s["hwa"]["rng"]
        self.opt.load_state_dict(s["opt"])
        self.sched.load_state_dict(s["sched"])
        # --epochs may change on resume: re-plan the steps, and put the lr where the plan says
        self.sched.milestones = Counter(self.milestones())
        lr = self.args.lr
        for m in self.milestones():  # multiply in the scheduler's order, so the float is identical
            if s["epoch"] >= m:
                lr *= 0.1
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.rng.bit_generator.state = s["rng"]
        torch.set_rng_state(s["torch_rng"])
        self.epoch, self.best, self.log = s["epoch"], s["best"], s["log"]

    # -- data ------------------------------------------------------------------
    def to_tensor(self, imgs):
        """uint8 (B, H, W, 3) images -> normalised float32 (B, 3, H, W) on the device: the bytes
        travel as they are (4x fewer than floats) and are converted there (the NHWC array
        permuted is already channels_last). Same float ops as NumPy's x * scale + offset."""
        t = torch.from_numpy(np.ascontiguousarray(imgs)).to(self.device, non_blocking=True)
        x = t.permute(0, 3, 1, 2).float() * self.scale + self.offset
        return x.contiguous(memory_format=self.memory_format)

    def batches(self):
        """One epoch of (x, y) batches: shuffled; random scale (if set), crop, flip and jitter (if set),
        all from self.rng (``augment.augment_pair``)."""
        a = self.args
        n = len(self.train_x)
        order = self.rng.permutation(n)
        for i in range(0, n - a.batch_size + 1 if a.drop_last else n, a.batch_size):
            idx = order[i:i + a.batch_size]
            xs, ys = [], []
            for j in idx:
                img, lab = augment_pair(self.train_x[j], self.train_y[j], self.rng, (a.crop_height, a.crop_width),
                                        scale_range=a.scale_range, jitter_strengths=a.jitter, void=a.void)
                xs.append(img)
                ys.append(lab)
            yield self.to_tensor(np.stack(xs)), torch.from_numpy(np.stack(ys).astype(np.int64)).to(self.device)

    # -- steps -----------------------------------------------------------------
    def loss(self, outs, y):
        void = self.args.void
        losses = torch.stack([F.cross_entropy(o.float(), y, weight=self.class_weights, ignore_index=void,
                                              label_smoothing=self.args.label_smoothing) for o in outs])
        return (self.a_n * losses).sum()

    def step(self, x, y):
        self.model.train()
        if self.hwa is not None:  # frozen BN, a new programming draw, the chip in the forward pass
            self.hwa.freeze_bn()
            self.hwa.resample()
            self.hwa.enabled = True
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.args.bf16):
            outs = self.model(x)
        loss = self.loss(outs, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.hwa is not None:
            self.hwa.before_optimizer_step()
        self.opt.step()
        if self.hwa is not None:
            self.hwa.clip_weights()
            self.hwa.enabled = False
        return float(loss.detach())

    @torch.inference_mode()
    def evaluate(self):
        self.model.eval()
        C = self.cfg.classes
        confs = [np.zeros((C, C), np.int64) for _ in self.cfg.head_iterations]
        bs = 4
        for i in Progress(range(0, len(self.val_x), bs), desc="  val", log_interval=120):
            x = self.to_tensor(self.val_x[i:i + bs])
            y = self.val_y[i:i + bs]
            for k, o in enumerate(self.model(x)):
                confs[k] += confusion_matrix(o.argmax(1).cpu().numpy(), y, C, void=self.args.void)
        return [mean_iou(c) for c in confs]

    def init_from(self, path):
        """Start from the weights of a checkpoint (.pt) or a weights file (.h5) of the same config."""
        path = Path(path)
        if path.suffix == ".h5":
            from ..weights import read_hdf5

            wf = read_hdf5(path)
            cfg, sd = wf.config, {k: torch.from_numpy(v) for k, v in wf.tensors.items()}
        else:
            s = torch.load(path, map_location="cpu", weights_only=False)
            cfg, sd = ItNetConfig.from_dict(s["config"]), s["model"]
        if cfg != self.cfg:
            raise SystemExit(f"--init {path}: its configuration {cfg} differs from {self.cfg}")
        missing, unexpected = self.model.load_state_dict(sd, strict=False)
        bad = [k for k in missing if not k.endswith("num_batches_tracked")] + list(unexpected)
        if bad:
            raise SystemExit(f"--init {path}: tensors do not match: {sorted(bad)[:10]}")

    def train(self):
        a = self.args
        if a.resume and (self.out / "last.pt").exists():
            self.load(self.out / "last.pt")
            print(f"resumed from {self.out / 'last.pt'} at epoch {self.epoch}", file=sys.stderr)
        elif a.init:
            self.init_from(a.init)
            print(f"initialised from {a.init}", file=sys.stderr)
        steps_done = 0
        while self.epoch < a.epochs:
            t0 = time.time()
            losses = []
            nb = len(self.train_x) // a.batch_size if a.drop_last else -(-len(self.train_x) // a.batch_size)
            bar = Progress(total=nb, desc=f"epoch {self.epoch + 1}/{a.epochs}", log_interval=60)
            for x, y in self.batches():
                losses.append(self.step(x, y))
                bar.postfix = f"loss {np.mean(losses):.4f}"
                bar.update()
                steps_done += 1
                if a.max_steps and steps_done >= a.max_steps:
                    break
            bar.close()
            self.sched.step()
            self.epoch += 1
            rec = {"epoch": self.epoch, "lr": self.opt.param_groups[0]["lr"], "train_loss": float(np.mean(losses)),
                   "seconds": round(time.time() - t0, 1), "val_miou": None}
            if a.eval_every > 0 and (self.epoch % a.eval_every == 0 or self.epoch == a.epochs):
                miou = self.evaluate()
                rec["val_miou"] = [round(m, 5) for m in miou]
                if not self.val_held_out:
                    rec["val_held_out"] = False
                if miou[-1] > self.best:
                    self.best = miou[-1]
                    rec["best"] = True
            self.log.append(rec)
            self._write_log(rec)
            self.save("last.pt")
            if rec.get("best"):
                self.save("best.pt")
                self.export(self.out / "best.h5")
            msg = f"epoch {self.epoch}: loss {rec['train_loss']:.4f} ({rec['seconds']:.0f}s)"
            if rec["val_miou"]:
                msg += " val mIoU" + ("" if self.val_held_out else " (NOT held-out: val is trained on)")
                msg += f" first {rec['val_miou'][0]:.4f} last {rec['val_miou'][-1]:.4f} " \
                       f"max {max(rec['val_miou']):.4f}"
            print(msg, file=sys.stderr, flush=True)
            if a.max_steps and steps_done >= a.max_steps:
                break
        return self.log

    def export(self, path):
        meta = {"epoch": self.epoch, "best_val_miou_last": self.best, "log": self.log[-1:],
                "val_held_out": self.val_held_out,
                "recipe": {k: v for k, v in vars(self.args).items() if k not in ("data", "out")}}
        ranges = None
        if self.hwa is not None:
            a = self.args
            meta["hwa"] = {"preset": a.hwa, "t_inference": a.hwa_t, "noise_scale": a.hwa_noise_scale,
                           "clip_sigma": a.hwa_clip or None}
            ranges = self.hwa.input_ranges()
        m = TorchItNet(self.cfg)
        m.load_state_dict(self.model.state_dict())
        export_hdf5(m.eval(), path, normalisation=CAMVID_NORMALISATION, metadata=meta, input_ranges=ranges)

    def _write_log(self, rec):
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        new = not (self.out / "log.csv").exists()
        with open(self.out / "log.csv", "a", newline="") as f:
            w = csv.writer(f)
            heads = list(self.cfg.head_iterations)
            if new:
                w.writerow(["epoch", "lr", "train_loss", "seconds"] + [f"miou_m{n}" for n in heads])
            w.writerow([rec["epoch"], rec["lr"], rec["train_loss"], rec["seconds"]] +
                       (rec["val_miou"] or [""] * len(heads)))


def build_parser():
    p = argparse.ArgumentParser(prog="python -m minitnet.torch.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="SegNet-layout dataset folder (train/, trainannot/, val/, valannot/)")
    p.add_argument("--out", required=True, help="run folder: logs, checkpoints, best.h5")
    g = p.add_argument_group("architecture")
    g.add_argument("--levels", type=int, default=3)
    g.add_argument("--blocks", type=int, default=1)
    g.add_argument("--iterations", type=int, default=16)
    g.add_argument("--width", type=int, default=51)
    g.add_argument("--classes", type=int, default=11)
    g.add_argument("--independent", action="store_true", help="independent weights per iteration (default: shared)")
    g.add_argument("--heads", default=None, help="comma list of head iterations (default: all)")
    g = p.add_argument_group("recipe")
    g.add_argument("--epochs", type=int, default=2000)
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--dropout", type=float, default=0.0)
    g.add_argument("--loss-weights", default="all", help="all | single:n | late:k | thinned:s | linear | w1,w2,...")
    g.add_argument("--crop-height", type=int, default=352)
    g.add_argument("--crop-width", type=int, default=480)
    g.add_argument("--void", type=int, default=CAMVID_VOID, help="label value ignored in loss and mIoU")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("augmentation and balancing (all off by default: then bit-identical to no option)")
    g.add_argument("--scale-range", type=parse_scale_range, default=None, metavar="LO,HI",
                   help="scale each training image by a factor uniform in [LO, HI] before the crop (image "
                        "bilinear, labels nearest neighbour; where the scaled image is smaller than the crop, "
                        "the rest of the window is image 0 and label void), e.g. 0.5,2.0")
    g.add_argument("--jitter", type=parse_jitter, default=None, metavar="B,C,S",
                   help="photometric jitter strengths in [0, 1]: brightness, contrast, saturation factors "
                        "uniform in [1-v, 1+v] per image, applied in that order, e.g. 0.3,0.3,0.3")
    g.add_argument("--class-weights", choices=["none", "median-freq"], default="none",
                   help="weight the cross entropy per class: median-freq = SegNet's median frequency "
                        "balancing computed on the training labels, void ignored (default none)")
    g.add_argument("--label-smoothing", type=float, default=0.0, metavar="EPS",
                   help="label smoothing of the cross entropy of every output (default 0)")
    g.add_argument("--train-splits", default="train", metavar="S1,S2",
                   help="comma list of splits to train on, e.g. train,val for a final fit (refused if they "
                        "share a file; validation on a trained split is reported as not held-out)")
    g.add_argument("--drop-last", action=argparse.BooleanOptionalAction, default=False)
    g = p.add_argument_group("hardware-aware training (emulator.hwa)")
    g.add_argument("--hwa", default=None, metavar="PRESET",
                   help="train with the non-idealities of this emulator preset in the forward pass (pcm-hwa); "
                        "exports the learned DAC ranges (weights format version 2)")
    g.add_argument("--hwa-t", type=float, default=86400.0, metavar="SECONDS",
                   help="the inference time (drift) the draws are made for (default %(default)s: one day)")
    g.add_argument("--hwa-noise-scale", type=float, default=1.0, metavar="K",
                   help="multiply the injected weight error by K (default %(default)s: the preset's own)")
    g.add_argument("--hwa-clip", type=float, default=3.0, metavar="SIGMA",
                   help="clip each output column of the dense analog layers at SIGMA std after every step "
                        "(default %(default)s; 0: no clipping)")
    g = p.add_argument_group("compute")
    g.add_argument("--bf16", action="store_true", help="bf16 autocast (weights stay float32)")
    g.add_argument("--channels-last", action="store_true")
    g.add_argument("--threads", type=int, default=None)
    g.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto (cuda when available); "
                                                   "checkpoints and exports are device-free")
    g.add_argument("--eval-every", type=int, default=1, help="validate every k epochs (0: never)")
    g.add_argument("--val-split", default="val")
    g.add_argument("--val-limit", type=int, default=None, help="validate on the first k images only")
    g.add_argument("--train-limit", type=int, default=None,
                   help="train on the first k images (of the --train-splits, in order) only")
    g.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke tests)")
    g.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if it exists")
    g.add_argument("--init", default=None, help="start a new run from these weights (.pt checkpoint or .h5), "
                                                "e.g. a full-resolution fine-tune of a crop-trained model")
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.label_smoothing < 1:
        parser.error(f"--label-smoothing: expected 0 <= EPS < 1, got {args.label_smoothing}")
    if args.threads:
        torch.set_num_threads(args.threads)
    t = Trainer(args)
    t.train()
    if (t.out / "best.pt").exists() and not (t.out / "best.h5").exists():
        t.export(t.out / "best.h5")
    t.export(t.out / "last.h5")  # the weights as the run ends: its last epoch, measured as it is
    return 0


if __name__ == "__main__":
    sys.exit(main())
