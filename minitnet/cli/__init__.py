"""The ``minitnet`` command line.

Each of minitnet's own subcommands lives in a module here (``COMMANDS``). Other packages add
commands through the entry-point group ``minitnet.commands`` (``PLUGIN_GROUP``): each entry
point names a module with ``register(subparsers)``, which adds one or more parsers and sets
``func`` on each, e.g. in pyproject.toml::

    [project.entry-points."minitnet.commands"]
    emulate = "emulator.cli"

Both kinds of module are loaded the same way, so a plug-in needs nothing else. ``main``
turns every ``MinitnetError`` into ``minitnet COMMAND: error: ...`` and exit status 1, and so
an ``OSError`` (a full disk, a path that cannot be written) or a ``MemoryError`` that ends a run.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import entry_points

from ..errors import MinitnetError

__all__ = ["COMMANDS", "PLUGIN_GROUP", "build_parser", "main"]

#: minitnet's own subcommand modules, in the order `minitnet --help` lists them (plug-ins follow)
COMMANDS = ["segment", "info", "evaluate", "search", "warmup"]
#: the entry-point group through which other packages (the emulator) add subcommands
PLUGIN_GROUP = "minitnet.commands"


def _plugins() -> list:
    """The entry points of ``PLUGIN_GROUP``, sorted by name, each name once (an editable
    install can expose the same distribution's metadata twice)."""
    seen = {}
    for ep in entry_points(group=PLUGIN_GROUP):
        seen.setdefault(ep.name, ep)
    return [seen[name] for name in sorted(seen)]


def _register_broken(sub, ep, err: Exception) -> None:
    """A stand-in command for a plug-in that failed to import: listed, and explains itself when run."""
    why = f"{type(err).__name__}: {err}"

    def fail(args):
        raise MinitnetError(f"the command module {ep.value!r} (entry point {ep.name!r} of {PLUGIN_GROUP!r}) "
                            f"failed to load: {why}; reinstall with `pip install -e .` or fix the import")

    names = sub.choices if hasattr(sub, "choices") else {}
    if ep.name not in names:
        # no option prefix: every argument, `--help` included, lands in `rest` and is ignored
        p = sub.add_parser(ep.name, help=f"(unavailable: {why})", add_help=False, prefix_chars="\0")
        p.add_argument("rest", nargs="*")
        p.set_defaults(func=fail)


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
        importlib.import_module(f"{__name__}.{name}").register(sub)
    for ep in _plugins():
        try:
            mod = ep.load()
        except Exception as e:  # a broken plug-in must not take the other commands down
            _register_broken(sub, ep, e)
            continue
        mod.register(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from ..jit import compile_notice

    try:
        with compile_notice(label=f"minitnet {args.command}: "):
            return int(args.func(args) or 0)
    except MinitnetError as e:
        print(f"minitnet {args.command}: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `minitnet info | head`: the reader left, that is fine
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as e:  # the machine, not the program: a full disk, a path that cannot be written
        print(f"minitnet {args.command}: error: {e}", file=sys.stderr)
        return 1
    except MemoryError as e:
        print(f"minitnet {args.command}: error: out of memory ({e or 'MemoryError'}); free memory or use "
              f"smaller inputs", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"minitnet {args.command}: interrupted", file=sys.stderr)
        return 130
