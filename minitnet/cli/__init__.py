"""The ``minitnet`` command line. Each subcommand lives in its own module here and
exposes ``register(subparsers)``, which adds its parser and sets ``func``."""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import MinitnetError

__all__ = ["main", "build_parser"]

#: subcommand modules, in the order `minitnet --help` lists them
COMMANDS = ["segment", "info", "evaluate", "search", "emulate", "timing"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="minitnet",
        description="Iterative neural networks (ItNets): anytime segmentation, the paper's measures, "
                    "and an analog in-memory-computing emulator.",
    )
    from .. import __version__

    p.add_argument("--version", action="version", version=f"minitnet {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:  # a subcommand not written yet
            if e.name == f"{__name__}.{name}":
                continue
            raise
        mod.register(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MinitnetError as e:
        print(f"minitnet {args.command}: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `minitnet info | head`: the reader left, that is fine
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"minitnet {args.command}: interrupted", file=sys.stderr)
        return 130
