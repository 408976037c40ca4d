"""``minitnet segment``: class maps of every requested anytime output for a few images."""

from __future__ import annotations

import sys

import numpy as np

from ..errors import ConfigError, MinitnetError
from .common import add_max_pixels_flag, default_weights, item_failed, max_pixels_arg

HELP = """Segment images with an ItNet. For each image and requested output n it writes
<name>_m<n>.png (class indices, uint8, one channel) and <name>_m<n>_color.png
(CamVid palette) into --out; --overview adds <name>_anytime.png, the input next to
every requested output. <name> is the image's stem (a/x.png -> x); images that share
a stem are named by their path from the folder they have in common, suffix
included, with / and . as _ (a/x.png, b/x.png, a/x.jpg -> a_x_png, b_x_png,
a_x_jpg). Every output path is checked before any work: a run that would write
over one of its inputs (or the weights), or write one file twice, is refused and
writes nothing. Files are written atomically (never a partial PNG). An image that
cannot be read, is over the pixel limit (--max-pixels), runs out of memory or
cannot be written is reported and skipped; the others are still processed (exit
status 1 if any failed)."""


def register(sub):
    p = sub.add_parser("segment", help="segment images, writing class maps per anytime output",
                       description=HELP)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...; RGB, RGBA, gray, 16-bit)")
    p.add_argument("--weights", default=None, help="HDF5 weights (default: the shipped shared CamVid model)")
    p.add_argument("--out", required=True, help="output folder (created if needed)")
    p.add_argument("--outputs", default="last", help="which outputs: last | all | a comma list like 1,6,16")
    p.add_argument("--overview", action="store_true", help="also write <name>_anytime.png")
    add_max_pixels_flag(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def parse_outputs(spec: str, heads: tuple[int, ...]) -> list[int]:
    if not spec.strip(",").strip():
        raise ConfigError(f"--outputs {spec!r}: empty; expected last, all, or a comma list of outputs like "
                          f"1,6,16 (this model's outputs: {list(heads)})")
    if spec == "last":
        return [heads[-1]]
    if spec == "all":
        return list(heads)
    try:
        ns = sorted({int(s) for s in spec.split(",") if s.strip()})
    except ValueError:
        raise ConfigError(f"--outputs {spec!r}: expected last, all, or a comma list of outputs like 1,6,16") from None
    bad = [n for n in ns if n not in heads]
    if bad:
        raise ConfigError(f"--outputs {spec!r}: {bad} not among this model's outputs {list(heads)}")
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


def output_files(wanted, overview: bool):
    """``files_of(name)`` for ``minitnet.files.plan_outputs``: the files segment writes for one image."""
    def files_of(name):
        fs = [f for n in wanted for f in (f"{name}_m{n}.png", f"{name}_m{n}_color.png")]
        return fs + ([f"{name}_anytime.png"] if overview else [])
    return files_of


def run(args) -> int:
    from ..data import CAMVID_PALETTE, colorize, read_image
    from ..engine import load
    from ..files import plan_outputs, prepare_out_dir, save_png
    from ..inputs import check_logits
    from ..progress import Progress

    if not str(args.out).strip():
        raise ConfigError(f"--out {args.out!r}: empty; give a folder (`--out .` for the current one)")
    limit = max_pixels_arg(args)
    weights = args.weights or default_weights()
    net = load(weights)
    wanted = parse_outputs(args.outputs, net.config.head_iterations)
    plan = plan_outputs(args.images, args.out, output_files(wanted, args.overview), protected=[weights])
    out = prepare_out_dir(args.out)
    if len(plan) < len(args.images):
        print(f"minitnet segment: {len(args.images) - len(plan)} image(s) given more than once, segmented once",
              file=sys.stderr)
    failed = []
    for path, targets in Progress(list(plan.items()), desc="segment", disable=args.quiet or len(plan) < 2):
        try:
            img = read_image(path, max_pixels=limit if limit is not None else "none")
            files = iter(targets)
            maps = {}
            for n, logits in net.iter_outputs(img, last=wanted[-1]):
                if n not in wanted:
                    continue
                cls = check_logits(logits, n, str(path))[0].argmax(axis=0).astype(np.uint8)
                col = colorize(cls, CAMVID_PALETTE)
                save_png(next(files), cls)
                save_png(next(files), col)
                maps[n] = col
                del logits
            if args.overview:
                save_png(next(files), overview(img, maps))
        except (MinitnetError, OSError, MemoryError) as e:  # this image only: report it, go on
            failed.append(str(path))
            item_failed("segment", path, e)
    done = len(plan) - len(failed)
    print(f"segmented {done}/{len(plan)} images with {weights} (outputs {wanted}) into {out}", file=sys.stderr)
    if failed:
        print(f"minitnet segment: {len(failed)} image(s) failed: {failed}", file=sys.stderr)
        return 1
    return 0
