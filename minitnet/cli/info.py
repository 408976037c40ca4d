"""``minitnet info``: the paper's cost measures of a model (from a weights file or flags)."""

from __future__ import annotations

import argparse

from ..metrics import Counts, count_config
from .common import add_architecture_flags, config_or_weights, describe, geometry, print_json

HELP = """Print the paper's measures (Section II-C) of an ItNet, counted on the graph IR
that the engine runs: parameters (BN apart), MACs of every output (own: data block,
iterations 1..n and head n; cumulative: every head <= n as well), graph size in MiB
(unique conv layers: 4 bytes x (parameters + input map + output map); a shared layer
counts once) and latency (conv layers on the longest path to output n). The
architecture comes from --weights, or else from the architecture flags. See
docs/metrics.md for the definitions."""


def register(sub):
    p = sub.add_parser("info", help="parameters, MACs, graph size and latency of a model",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_architecture_flags(p, "count")
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
