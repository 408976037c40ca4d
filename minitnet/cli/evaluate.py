"""``minitnet eval``: mIoU of every anytime output over a dataset split, the AUC, and a plot."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError
from ..metrics import AUC_X, CAMVID_CHANCE_MIOU, evaluate
from .common import default_weights, format_pct, parse_void, print_json

HELP = """Evaluate an ItNet on a dataset split in the SegNet layout: DATA_DIR/<split>/ holds
the images and DATA_DIR/<split>annot/ the label maps (same file names, one
channel of class indices), as in CamVid. Images are streamed one at a time. For
every output n it prints the mIoU (confusion matrix summed over the whole split,
void pixels ignored), then the per-class IoU of the last output and the AUC of
the paper's Equation 2 (x0, y0) = (0, 0.00828), normalised by x_N, over the
outputs' MACs. --plot draws mIoU over MACs and over latency (needs matplotlib)."""

CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                      "motorcycle", "bicycle")


def class_names(classes: int) -> list[str]:
    from ..data import CAMVID_CLASSES

    if classes == len(CAMVID_CLASSES):
        return list(CAMVID_CLASSES)
    if classes == len(CITYSCAPES_CLASSES):
        return list(CITYSCAPES_CLASSES)
    return [f"class {c}" for c in range(classes)]


def register(sub):
    p = sub.add_parser("eval", help="mIoU per output, per-class IoU and AUC on a dataset split",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir", metavar="DATA_DIR", help="dataset folder in the SegNet layout (e.g. CamVid)")
    p.add_argument("--weights", default=None, metavar="W.h5",
                   help="HDF5 weights (default: the shipped shared CamVid model)")
    p.add_argument("--split", default="val", help="split to evaluate: DATA_DIR/<split>/ and DATA_DIR/<split>annot/ "
                                                  "(default %(default)s)")
    p.add_argument("--void", default=None, metavar="V",
                   help="label value(s) to ignore, comma list, or none (default: C, i.e. 11 for CamVid)")
    p.add_argument("--limit", type=int, default=None, metavar="K", help="evaluate only the first K images")
    p.add_argument("--auc-x", choices=AUC_X, default="macs",
                   help="x of the AUC: macs (output n alone: data block + iterations 1..n + head n; default), "
                        "macs_cumulative (every head <= n as well) or latency")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: miou (per output, in [0, 1]), per_class_iou (last output), "
                        "auc, images (plus outputs, macs, latency, ...)")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="draw mIoU over MACs and over latency for every output (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    import minitnet

    if args.plot:  # fail before a long evaluation, not after it
        from ..plots import require_matplotlib

        require_matplotlib()
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    weights = Path(args.weights) if args.weights else default_weights()
    if args.plot:
        from ..files import check_output_file

        check_output_file(args.plot, "--plot", protected=[weights], data_dir=args.data_dir)
    net = minitnet.load(weights)
    void = parse_void(args.void)
    ev = evaluate(net, args.data_dir, args.split, void=void, limit=args.limit, auc_x=args.auc_x,
                  progress=not args.quiet)
    cfg = net.config
    names = class_names(cfg.classes)
    c = ev.counts
    if args.plot:
        from ..plots import plot_anytime

        plot_anytime(args.plot, ev.outputs, ev.miou, c.macs, c.latency, y0=CAMVID_CHANCE_MIOU,
                     title=f"{weights.name}: {args.split} split, {ev.images} images")
    if args.json:
        d = ev.to_dict()
        d.update(weights=str(weights), data_dir=str(args.data_dir), split=args.split, class_names=names,
                 plot=args.plot)
        print_json(d)
        return 0
    void_s = "nothing" if void is None else str(cfg.classes if void == "classes" else ",".join(map(str, void)))
    print(f"{weights}: {args.split} split of {args.data_dir}: {ev.images} images, {c.width}x{c.height} pixels, "
          f"{ev.pixels:,} labelled pixels (void ignored: {void_s})")
    print()
    print(f"  {'output':>6}  {'mIoU %':>6}  {'GMACs':>7}  {'latency':>7}")
    for n, m, macs, lat in zip(ev.outputs, ev.miou, c.macs, c.latency):
        print(f"  {n:>6}  {format_pct(m)}  {macs / 1e9:>7.3f}  {lat:>7}")
    print()
    last = ev.outputs[-1]
    print(f"  per-class IoU % of output {last}:")
    for name, v in zip(names, ev.per_class_iou()):
        print(f"    {name:<14} {format_pct(v)}")
    print()
    print(f"  AUC (Eq. 2 over x = {args.auc_x}, (x0, y0) = (0, {CAMVID_CHANCE_MIOU}), normalised by x_N): "
          f"{ev.auc:.4f}")
    if args.plot:
        print(f"  plot: {args.plot}")
    return 0
