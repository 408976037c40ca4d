"""``minitnet segment``: class maps of every requested anytime output for a few images."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from ..errors import ConfigError, MinitnetError
from .common import default_weights

HELP = """Segment images with an ItNet. For each image and requested output n it writes
<stem>_m<n>.png (class indices, uint8, one channel) and <stem>_m<n>_color.png
(CamVid palette) into --out; --overview adds <stem>_anytime.png, the input next to
every requested output. Unreadable images are reported and skipped; the others
are still processed (exit status 1 if any failed). Inputs are never overwritten."""


def register(sub):
    p = sub.add_parser("segment", help="segment images, writing class maps per anytime output",
                       description=HELP)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...; RGB, RGBA, gray, 16-bit)")
    p.add_argument("--weights", default=None, help="HDF5 weights (default: the shipped shared CamVid model)")
    p.add_argument("--out", required=True, help="output folder (created if needed)")
    p.add_argument("--outputs", default="last", help="which outputs: last | all | a comma list like 1,6,16")
    p.add_argument("--overview", action="store_true", help="also write <stem>_anytime.png")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def parse_outputs(spec: str, heads: tuple[int, ...]) -> list[int]:
    if spec == "last":
        return [heads[-1]]
    if spec == "all":
        return list(heads)
    try:
        ns = sorted({int(s) for s in spec.split(",") if s.strip()})
    except ValueError:
        raise ConfigError(f"--outputs {spec!r}: expected last, all, or a comma list of outputs like 1,6,16") from None
    bad = [n for n in ns if n not in heads]
    if bad or not ns:
        raise ConfigError(f"--outputs {spec!r}: {bad or 'nothing'} not among this model's outputs {list(heads)}")
    return ns


def overview(img: np.ndarray, maps: dict[int, np.ndarray]) -> np.ndarray:
    """The input and each output's colour map side by side, each labelled."""
    from PIL import Image, ImageDraw

    tiles = [("input", img)] + [(f"m{n}", m) for n, m in maps.items()]
    H, W = img.shape[:2]
    canvas = Image.new("RGB", (W * len(tiles) + 4 * (len(tiles) - 1), H), (255, 255, 255))
    for i, (name, a) in enumerate(tiles):
        canvas.paste(Image.fromarray(a), (i * (W + 4), 0))
        d = ImageDraw.Draw(canvas)
        d.rectangle([i * (W + 4), 0, i * (W + 4) + 8 * len(name) + 6, 14], fill=(0, 0, 0))
        d.text((i * (W + 4) + 3, 1), name, fill=(255, 255, 255))
    return np.asarray(canvas)


def run(args) -> int:
    from PIL import Image

    from ..data import CAMVID_PALETTE, colorize, read_image
    from ..engine import load
    from ..progress import Progress

    weights = args.weights or default_weights()
    net = load(weights)
    wanted = parse_outputs(args.outputs, net.config.head_iterations)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    inputs = {os.path.realpath(p) for p in args.images}
    failed = []
    for path in Progress(args.images, desc="segment", disable=args.quiet or len(args.images) < 2):
        try:
            img = read_image(path)
            stem = Path(path).stem
            targets = {}
            for n in wanted:
                targets[n] = (out / f"{stem}_m{n}.png", out / f"{stem}_m{n}_color.png")
            clash = [str(t) for pair in targets.values() for t in pair if os.path.realpath(t) in inputs]
            if clash:
                raise MinitnetError(f"refusing to overwrite input file(s) {clash}; choose another --out")
            maps = {}
            for n, logits in net.iter_outputs(img, last=wanted[-1]):
                if n not in targets:
                    continue
                cls = logits[0].argmax(axis=0).astype(np.uint8)
                Image.fromarray(cls).save(targets[n][0])
                col = colorize(cls, CAMVID_PALETTE)
                Image.fromarray(col).save(targets[n][1])
                maps[n] = col
            if args.overview:
                Image.fromarray(overview(img, maps)).save(out / f"{stem}_anytime.png")
        except MinitnetError as e:
            failed.append(str(path))
            print(f"minitnet segment: {path}: {e}", file=sys.stderr)
    done = len(args.images) - len(failed)
    print(f"segmented {done}/{len(args.images)} images with {weights} (outputs {wanted}) into {out}",
          file=sys.stderr)
    if failed:
        print(f"minitnet segment: {len(failed)} image(s) failed: {failed}", file=sys.stderr)
        return 1
    return 0
