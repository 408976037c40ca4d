"""Helpers shared by the subcommands: default weights, config flags, JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import ItNetConfig
from ..errors import ConfigError

WEIGHTS_DIR = Path(__file__).resolve().parent.parent.parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "camvid-shared-f51.h5"


def default_weights() -> Path:
    """The shipped shared model (falls back to the random-weight demo file if absent)."""
    if DEFAULT_WEIGHTS.exists():
        return DEFAULT_WEIGHTS
    return WEIGHTS_DIR / "demo-random-f51.h5"


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """Architecture flags: --levels --blocks --iterations --width --classes --shared/--independent --heads."""
    g = p.add_argument_group("architecture (when no --weights is given)")
    d = ItNetConfig()
    g.add_argument("--levels", type=int, default=d.levels, help="L, scales (default %(default)s)")
    g.add_argument("--blocks", type=int, default=d.blocks, help="K, BRBs per scale (default %(default)s)")
    g.add_argument("--iterations", type=int, default=d.iterations, help="N (default %(default)s)")
    g.add_argument("--width", type=int, default=d.width, help="f, channels (default %(default)s)")
    g.add_argument("--classes", type=int, default=d.classes, help="C (default %(default)s)")
    m = g.add_mutually_exclusive_group()
    m.add_argument("--shared", dest="shared", action="store_true", default=True, help="shared weights (default)")
    m.add_argument("--independent", dest="shared", action="store_false", help="independent weights per iteration")
    g.add_argument("--heads", default=None, help="comma list of head iterations, e.g. 1,6,11,16 (default: all)")


def config_from_args(args) -> ItNetConfig:
    heads = None
    if args.heads:
        try:
            heads = tuple(int(h) for h in str(args.heads).split(","))
        except ValueError:
            raise ConfigError(f"--heads {args.heads!r}: expected a comma list of integers like 1,6,11,16") from None
    return ItNetConfig(levels=args.levels, blocks=args.blocks, iterations=args.iterations, width=args.width,
                       classes=args.classes, shared=args.shared, heads=heads)


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
