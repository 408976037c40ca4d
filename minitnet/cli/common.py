"""Helpers shared by the subcommands (minitnet's own and the plug-ins registered through the
``minitnet.commands`` entry points, e.g. ``emulator.cli``): default weights, architecture and
geometry flags, ``--void``, JSON output. Everything here is public API of the CLI."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ..config import ItNetConfig
from ..errors import ConfigError

__all__ = ["DATASETS", "DEFAULT_WEIGHTS", "WEIGHTS_DIR", "add_architecture_flags", "add_config_flags",
           "add_geometry_flags", "add_max_pixels_flag", "check_seed", "format_pct", "item_failed",
           "config_from_args", "config_or_weights", "default_weights", "describe", "geometry",
           "max_pixels_arg", "parse_void", "print_json"]

WEIGHTS_DIR = Path(__file__).resolve().parent.parent.parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "camvid-shared-f51.h5"

#: input geometry presets: (height, width, classes)
DATASETS = {"camvid": (360, 480, 11), "cityscapes": (512, 1024, 19)}
_CONFIG_DESTS = ("levels", "blocks", "iterations", "width", "classes", "shared", "heads")


def default_weights() -> Path:
    """The shipped shared model, ``weights/camvid-shared-f51.h5``."""
    return DEFAULT_WEIGHTS


def add_config_flags(p: argparse.ArgumentParser, defaults_none: bool = False) -> None:
    """Architecture flags: --levels --blocks --iterations --width --classes --shared/--independent --heads.

    With ``defaults_none`` every flag defaults to None, so that an explicit flag can be told
    apart (``config_or_weights`` refuses one next to --weights, and lets --dataset choose the
    classes); the help still shows the value used when the flag is absent.
    """
    g = p.add_argument_group("architecture (when no --weights is given)")
    d = ItNetConfig()

    def default(name):
        return None if defaults_none else getattr(d, name)

    def shown(name):
        if defaults_none and name == "classes":
            return "11, or 19 with --dataset cityscapes"
        return str(getattr(d, name))

    g.add_argument("--levels", type=int, default=default("levels"), help=f"L, scales (default {shown('levels')})")
    g.add_argument("--blocks", type=int, default=default("blocks"),
                   help=f"K, BRBs per scale (default {shown('blocks')})")
    g.add_argument("--iterations", type=int, default=default("iterations"), help=f"N (default {shown('iterations')})")
    g.add_argument("--width", type=int, default=default("width"), help=f"f, channels (default {shown('width')})")
    g.add_argument("--classes", type=int, default=default("classes"), help=f"C (default {shown('classes')})")
    m = g.add_mutually_exclusive_group()
    m.add_argument("--shared", dest="shared", action="store_true", default=None if defaults_none else True,
                   help="shared weights (default)")
    m.add_argument("--independent", dest="shared", action="store_false", help="independent weights per iteration")
    g.add_argument("--heads", default=None, help="comma list of head iterations, e.g. 1,6,11,16 (default: all)")


def add_architecture_flags(p: argparse.ArgumentParser, verb: str) -> None:
    """--weights, or else the architecture flags (``add_config_flags(p, defaults_none=True)``), and
    the input geometry: what ``config_or_weights`` and ``geometry`` read. ``verb`` says what the
    command does with the architecture ("count", "time")."""
    p.add_argument("--weights", default=None, metavar="W.h5",
                   help=f"{verb} the architecture stored in this weights file (else use the flags below)")
    add_config_flags(p, defaults_none=True)
    add_geometry_flags(p)


def config_from_args(args) -> ItNetConfig:
    heads = None
    if args.heads:
        try:
            heads = tuple(int(h) for h in str(args.heads).split(","))
        except ValueError:
            raise ConfigError(f"--heads {args.heads!r}: expected a comma list of integers like 1,6,11,16") from None
    return ItNetConfig(levels=args.levels, blocks=args.blocks, iterations=args.iterations, width=args.width,
                       classes=args.classes, shared=args.shared, heads=heads)


def config_or_weights(args) -> tuple[ItNetConfig, str | None]:
    """The architecture from --weights, or else from the flags of ``add_config_flags(p, defaults_none=True)``
    (absent ones take ItNetConfig's defaults; --classes that of --dataset)."""
    explicit = [f"--{d}" for d in _CONFIG_DESTS if getattr(args, d) is not None and d != "shared"]
    if args.shared is not None:
        explicit.append("--shared" if args.shared else "--independent")
    if args.weights:
        if explicit:
            raise ConfigError(f"--weights {args.weights} fixes the architecture; drop {', '.join(explicit)}")
        from ..weights import read_hdf5

        return read_hdf5(args.weights).config, str(args.weights)
    ns = argparse.Namespace(**vars(args))
    d = ItNetConfig()
    for dest in ("levels", "blocks", "iterations", "width"):
        if getattr(ns, dest) is None:
            setattr(ns, dest, getattr(d, dest))
    if ns.classes is None:
        ns.classes = DATASETS[args.dataset][2]
    if ns.shared is None:
        ns.shared = True
    return config_from_args(ns), None


def describe(cfg: ItNetConfig) -> str:
    """One line: L, K, N, f, C, shared or independent, and the head iterations."""
    heads = cfg.head_iterations
    hs = f"1..{cfg.iterations}" if cfg.heads is None else ",".join(map(str, heads))
    return (f"ItNet L={cfg.levels} K={cfg.blocks} N={cfg.iterations} f={cfg.width} C={cfg.classes}, "
            f"{'shared' if cfg.shared else 'independent'} weights, {len(heads)} outputs (heads at {hs})")


def add_geometry_flags(p: argparse.ArgumentParser) -> None:
    """--dataset (geometry preset), --height, --width-px (the image size; --width is f)."""
    g = p.add_argument_group("input geometry")
    g.add_argument("--dataset", choices=sorted(DATASETS), default="camvid",
                   help="preset: camvid = 480x360 pixels, 11 classes (default); "
                        "cityscapes = 1024x512 pixels, 19 classes")
    g.add_argument("--height", type=int, default=None, help="image height in pixels (default: the preset's)")
    g.add_argument("--width-px", type=int, default=None, dest="width_px",
                   help="image width in pixels (default: the preset's); --width is the channel width f")


def geometry(args) -> tuple[int, int]:
    """(height, width) in pixels from --dataset, --height, --width-px."""
    h0, w0, _ = DATASETS[args.dataset]
    h = h0 if args.height is None else args.height
    w = w0 if args.width_px is None else args.width_px
    for name, v in (("--height", h), ("--width-px", w)):
        if v < 1:
            raise ConfigError(f"{name} must be a positive number of pixels, got {v}")
    return h, w


def add_max_pixels_flag(p: argparse.ArgumentParser) -> None:
    """--max-pixels: the pixel limit of the images read (``minitnet.data.pixel_limit``)."""
    p.add_argument("--max-pixels", default=None, metavar="N",
                   help="refuse images of more than N pixels, a guard against decompression bombs; 'none': no "
                        "limit (default: $MINITNET_MAX_PIXELS, else Pillow's limit, 89,478,485)")


def max_pixels_arg(args):
    """The pixel limit from --max-pixels (else MINITNET_MAX_PIXELS, else PIL's), checked before any work."""
    from ..data import pixel_limit

    value = getattr(args, "max_pixels", None)
    try:
        return pixel_limit(value)
    except ConfigError as e:
        if value is None:
            raise
        raise ConfigError(f"--max-pixels {value!r}: expected a positive number of pixels, or none for no "
                          f"limit") from None


def check_seed(seed: int, flag: str = "--seed") -> int:
    """A seed for numpy's SeedSequence: an integer >= 0."""
    if seed < 0:
        raise ConfigError(f"{flag} {seed}: seeds are integers >= 0")
    return seed


def item_failed(command: str, path, err: BaseException) -> None:
    """Print the one line of an item a batch skips: ``minitnet COMMAND: skipped PATH: why``
    (the path once, even where the error's message starts with it)."""
    text = str(err) or type(err).__name__
    p = str(path)
    if text.startswith(p + ": "):
        text = text[len(p) + 2:]
    elif isinstance(err, MemoryError):
        text = f"out of memory ({text or 'MemoryError'}); free memory or use a smaller image"
    print(f"minitnet {command}: skipped {p}: {text}", file=sys.stderr)


def parse_void(spec: str | None):
    """--void: None -> the default (C); 'none' -> nothing ignored; '11' or '11,255' -> those values
    (label maps hold uint8 class indices, so each value is in 0..255)."""
    if spec is None:
        return "classes"
    if spec.strip().lower() == "none":
        return None
    try:
        vals = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--void {spec!r}: expected none or a comma list of label values like 11 or 11,255") from None
    if not vals:
        raise ConfigError(f"--void {spec!r}: no values; expected none or a comma list of label values like 11")
    bad = [v for v in vals if not 0 <= v <= 255]
    if bad:
        raise ConfigError(f"--void {spec!r}: {bad} out of range; label maps hold class indices 0..255 (uint8), "
                          f"so void values are in 0..255 (e.g. 11 for CamVid, 255 for Cityscapes)")
    return vals


def format_pct(v: float) -> str:
    """A fraction as a percentage in 6 characters (``" 65.50"``), or ``"   n/a"`` when not finite."""
    return "   n/a" if not math.isfinite(v) else f"{100 * v:6.2f}"


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
