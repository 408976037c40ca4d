"""``minitnet emulate-timing``: cycle-level schedule of the loop graph on fully-parallel tiles."""

from __future__ import annotations

import argparse
import dataclasses
import time

from ..errors import ConfigError
from ..graph import build_graph
from .common import add_config_flags, print_json
from .info import _defaults_to_none, add_geometry_flags, config_or_weights, describe, geometry

HELP = """Schedule an ItNet row by row on analog in-memory-computing tiles where every
unique conv layer owns its tiles and all tiles work at once (emulator/timing.py).
Reports, for three mappings of the network -- shared (one iterative block serves
all N iterations), independent (the loop unrolled: N bodies) and replicated (r
copies of the shared block) -- the tiles, the cycle at which every output m_n is
complete (one frame alone), the steady-state cycles between finished frames when
--frames frames are streamed back to back, the busiest tiles and the tile
utilisation. The architecture comes from --weights or from the flags; cycle
parameters from --set FIELD=VALUE (TimingConfig fields, e.g. --set cols_per_adc=4)
and DAC/ADC bits and tile size from the hardware preset."""


def _parse_sets(items) -> dict:
    from emulator.timing import TimingConfig

    fields = {f.name: f for f in dataclasses.fields(TimingConfig)}
    out = {}
    for item in items or ():
        key, sep, val = item.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {sorted(fields)}")
        default = getattr(TimingConfig(), key)
        try:
            if isinstance(default, bool):
                if val.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(val)
                out[key] = val.lower() in ("true", "1")
            elif isinstance(default, int):
                out[key] = int(val)
            else:
                out[key] = float(val)
        except ValueError:
            raise ConfigError(f"--set {item!r}: {val!r} is not a valid {type(default).__name__}") from None
    return out


def register(sub):
    p = sub.add_parser("emulate-timing", help="cycle-level latency and throughput on fully-parallel tiles",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=None, metavar="W.h5",
                   help="time the architecture stored in this weights file (else use the flags below)")
    add_config_flags(p)
    _defaults_to_none(p)
    add_geometry_flags(p)
    g = p.add_argument_group("hardware and mapping")
    g.add_argument("--preset", default="pcm",
                   help="hardware preset giving tile rows/cols and DAC/ADC bits (default %(default)s)")
    g.add_argument("--tile-rows", type=int, default=None, help="crossbar rows per tile (default: the preset's)")
    g.add_argument("--tile-cols", type=int, default=None, help="crossbar columns per tile (default: the preset's)")
    g.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a TimingConfig field, repeatable (e.g. cols_per_adc=4, row_handoff_cycles=0)")
    g.add_argument("--frames", type=int, default=4,
                   help="frames streamed back to back for the steady-state interval (>= 2, default %(default)s)")
    g.add_argument("--replication", type=int, default=4,
                   help="copies r of the iterative block's tiles in the replicated mapping (default %(default)s)")
    g.add_argument("--split", choices=("iteration", "row"), default="iteration",
                   help="how replicated copies share the work: by iteration (copy (n-1) %% r), or by "
                        "output row (default %(default)s)")
    g.add_argument("--data-replication", type=int, default=1, metavar="D",
                   help="most copies of a data-block conv's tiles, to balance the pipeline (default %(default)s)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object; per mapping under 'mappings': tiles, output_latency_cycles, "
                        "frame_interval_cycles, executions (start/end cycles per layer and iteration), resources")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="save tile activity over time and the latency of each output (needs matplotlib)")
    p.set_defaults(func=run)


def run(args) -> int:
    from emulator.config import preset
    from emulator.timing import TimingConfig, plot, time_graph

    cfg, weights = config_or_weights(args)
    h, w = geometry(args)
    over = {k: v for k, v in (("rows", args.tile_rows), ("cols", args.tile_cols)) if v is not None}
    hw = preset(args.preset, **over)
    timing = TimingConfig(**_parse_sets(args.set))
    graph = build_graph(cfg, h, w)
    t0 = time.perf_counter()
    rep = time_graph(graph, hw, timing, frames=args.frames, replication=args.replication, split=args.split,
                     data_replication=args.data_replication)
    seconds = time.perf_counter() - t0
    if args.plot:
        plot(rep, args.plot)
    if args.json:
        d = rep.to_dict()
        d["weights"] = weights
        d["schedule_seconds"] = seconds
        print_json(d)
        return 0
    if weights:
        print(f"{weights}:")
    print(describe(cfg))
    print(f"input {w}x{h} pixels (W x H); tiles {hw.rows}x{hw.cols} (preset {args.preset!r})")
    print(f"timing: {timing.describe(hw)}")
    print()
    print(rep.table())
    for name, m in rep.mappings.items():
        if m.note:
            print(f"  note ({name}): {m.note}")
    print()
    print("  latency of every output (Mcycles):")
    print(rep.output_table())
    print(f"\n  scheduled {args.frames + 1} x 3 runs in {seconds:.2f} s"
          + (f"; plot saved to {args.plot}" if args.plot else ""))
    return 0
