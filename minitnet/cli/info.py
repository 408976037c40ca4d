"""``minitnet info``: the paper's cost measures of a model (from a weights file or flags)."""

from __future__ import annotations

import argparse

from ..config import ItNetConfig
from ..errors import ConfigError
from ..metrics import Counts, count_config
from .common import add_config_flags, config_from_args, print_json

HELP = """Print the paper's measures (Section II-C) of an ItNet, counted on the graph IR
that the engine runs: parameters (BN apart), MACs of every output (own: data block,
iterations 1..n and head n; cumulative: every head <= n as well), graph size in MiB
(unique conv layers: 4 bytes x (parameters + input map + output map); a shared layer
counts once) and latency (conv layers on the longest path to output n). The
architecture comes from --weights, or else from the architecture flags. See
docs/metrics.md for the definitions."""

#: input geometry presets: (height, width, classes)
DATASETS = {"camvid": (360, 480, 11), "cityscapes": (512, 1024, 19)}
_CONFIG_DESTS = ("levels", "blocks", "iterations", "width", "classes", "shared", "heads")


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


def _defaults_to_none(p: argparse.ArgumentParser) -> None:
    """Make the architecture flags default to None so an explicit flag can be told apart
    (to refuse it next to --weights, and to let --dataset choose the classes)."""
    d = ItNetConfig()
    for a in p._actions:
        if a.dest in _CONFIG_DESTS:
            if a.help and "%(default)s" in a.help:
                real = "11, or 19 with --dataset cityscapes" if a.dest == "classes" else getattr(d, a.dest)
                a.help = a.help.replace("%(default)s", str(real))
            a.default = None


def config_or_weights(args) -> tuple[ItNetConfig, str | None]:
    """The configuration to count: from --weights, or from the architecture flags."""
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
    heads = cfg.head_iterations
    hs = f"1..{cfg.iterations}" if cfg.heads is None else ",".join(map(str, heads))
    return (f"ItNet L={cfg.levels} K={cfg.blocks} N={cfg.iterations} f={cfg.width} C={cfg.classes}, "
            f"{'shared' if cfg.shared else 'independent'} weights, {len(heads)} outputs (heads at {hs})")


def register(sub):
    p = sub.add_parser("info", help="parameters, MACs, graph size and latency of a model",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=None, metavar="W.h5",
                   help="count the architecture stored in this weights file (else use the flags below)")
    add_config_flags(p)
    _defaults_to_none(p)
    add_geometry_flags(p)
    p.add_argument("--layers", action="store_true", help="also list every unique conv layer")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: params, bn_params, graph_mib, and per output "
                        "macs, macs_cumulative, latency (plus outputs, config, ...)")
    p.set_defaults(func=run)


def format_counts(c: Counts, layers: bool = False) -> str:
    cfg = c.config
    lines = [
        describe(cfg),
        f"input {c.width}x{c.height} pixels (W x H)",
        "",
        f"  parameters       {c.params:>12,}  conv weights and biases",
        f"  BN parameters    {c.bn_params:>12,}  BN weight and bias, reported apart (folded at load time)",
        f"  graph size       {c.graph_mib:>8.1f} MiB  {c.conv_layers} unique conv layers x 4 B x "
        f"(params + input + output)",
        f"  conv executions  {c.conv_executions:>12,}  to produce every output",
        "",
        f"  {'output':>6}  {'GMACs':>8}  {'cumulative GMACs':>16}  {'latency':>7}",
    ]
    for n, m, cm, lat in zip(c.outputs, c.macs, c.macs_cumulative, c.latency):
        lines.append(f"  {n:>6}  {m / 1e9:>8.3f}  {cm / 1e9:>16.3f}  {lat:>7}")
    lines.append("  (GMACs: data block + iterations 1..n + head n; cumulative: + every head <= n; "
                 "latency: conv layers on the longest path)")
    if layers:
        lines += ["", f"  {'unique conv layer':<28} {'params':>9} {'MMACs/run':>10} {'runs':>5} {'KiB':>9}"]
        for r in c.layers:
            lines.append(f"  {r.name:<28} {r.params:>9,} {r.macs / 1e6:>10.2f} {r.executions:>5} {r.bytes / 1024:>9.1f}")
    return "\n".join(lines)


def run(args) -> int:
    cfg, weights = config_or_weights(args)
    h, w = geometry(args)
    c = count_config(cfg, h, w)
    if args.json:
        d = c.to_dict()
        d["weights"] = weights
        if args.layers:
            d["layers"] = [r._asdict() for r in c.layers]
        print_json(d)
    else:
        if weights:
            print(f"{weights}:")
        print(format_counts(c, layers=args.layers))
    return 0
