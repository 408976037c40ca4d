"""``minitnet search``: the paper's grid rule for the width f under a MAC budget (Section III-A)."""

from __future__ import annotations

import argparse
import itertools
import math

from ..config import ItNetConfig
from ..errors import ConfigError
from ..metrics import count_config
from .common import DATASETS, add_geometry_flags, geometry, print_json

HELP = """The grid rule of the paper (Section III-A): for every (L, K, N) of the grid, the
largest width f whose last output needs fewer than --budget-gmacs billion MACs per
image (at 480x360 for CamVid), with parameters and graph size for shared and for
independent weights (the MACs are the same for both) and the latency of the last
output. Lists accept commas or spaces: --levels 2,3 --iterations 8 16."""

#: the default grid (the paper does not list its values; Figures A2/A3 show a grid of this kind)
DEFAULT_LEVELS = (1, 2, 3, 4)
DEFAULT_BLOCKS = (1, 2, 3)
DEFAULT_ITERATIONS = (1, 2, 4, 8, 16)
MIN_WIDTH = 4  # ItNetConfig's smallest f


def _int_list(values, flag) -> tuple[int, ...]:
    out = []
    for v in values:
        for s in str(v).split(","):
            s = s.strip()
            if not s:
                continue
            try:
                out.append(int(s))
            except ValueError:
                raise ConfigError(f"{flag}: {s!r} is not an integer (expected e.g. {flag} 1,2,3)") from None
    if not out:
        raise ConfigError(f"{flag}: no values given")
    return tuple(sorted(set(out)))


def largest_width(levels: int, blocks: int, iterations: int, classes: int, budget_macs: float,
                  height: int = 360, width: int = 480, max_width: int = 4096) -> int | None:
    """The largest f with MACs(last output) < budget_macs, or None if even f = 4 is over.

    MACs grow monotonically with f (every channel count is non-decreasing in f),
    so a doubling bracket and a bisection find the boundary exactly.
    """
    def fits(f):
        c = count_config(ItNetConfig(levels, blocks, iterations, f, classes, shared=True), height, width)
        return c.macs[-1] < budget_macs

    if not fits(MIN_WIDTH):
        return None
    lo, hi = MIN_WIDTH, MIN_WIDTH * 2  # invariant: fits(lo), and hi untested or not fitting
    while hi <= max_width and fits(hi):
        lo, hi = hi, hi * 2
    if hi > max_width:
        hi = max_width + 1
        if fits(max_width):
            return max_width
    while hi - lo > 1:  # fits(lo), not fits(hi)
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def search(levels, blocks, iterations, budget_gmacs: float, classes: int = 11, height: int = 360,
           width: int = 480) -> list[dict]:
    """One row per (L, K, N): the width f and its counts (see ``largest_width``; f is capped
    at 4096, so the budget must be finite: with inf every row would report the cap)."""
    if not (isinstance(budget_gmacs, (int, float)) and math.isfinite(budget_gmacs) and budget_gmacs > 0):
        raise ConfigError(f"--budget-gmacs must be a finite number > 0 (billions of MACs, e.g. 2.2), "
                          f"got {budget_gmacs}")
    rows = []
    for L, K, N in itertools.product(levels, blocks, iterations):
        ItNetConfig(L, K, N, 51, classes)  # validates L, K, N, classes with a clear message
        f = largest_width(L, K, N, classes, budget_gmacs * 1e9, height, width)
        row = {"levels": L, "blocks": K, "iterations": N, "width": f}
        if f is not None:
            for shared in (True, False):
                c = count_config(ItNetConfig(L, K, N, f, classes, shared=shared), height, width)
                row["macs"] = c.macs[-1]
                row["latency"] = c.latency[-1]
                row["shared" if shared else "independent"] = {
                    "params": c.params, "bn_params": c.bn_params, "graph_mib": c.graph_mib}
        rows.append(row)
    return rows


def register(sub):
    p = sub.add_parser("search", help="largest width f per (L, K, N) under a MAC budget (paper III-A)",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-gmacs", type=float, default=2.2,
                   help="MAC budget of the last output, in billions (default %(default)s, the paper's)")
    p.add_argument("--levels", nargs="+", default=None, metavar="L",
                   help=f"scales L to try (default {','.join(map(str, DEFAULT_LEVELS))})")
    p.add_argument("--blocks", nargs="+", default=None, metavar="K",
                   help=f"BRBs per scale K to try (default {','.join(map(str, DEFAULT_BLOCKS))})")
    p.add_argument("--iterations", nargs="+", default=None, metavar="N",
                   help=f"iterations N to try (default {','.join(map(str, DEFAULT_ITERATIONS))})")
    p.add_argument("--classes", type=int, default=None,
                   help="C (default 11, or 19 with --dataset cityscapes)")
    add_geometry_flags(p)
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: budget, geometry and a list of rows")
    p.set_defaults(func=run)


def format_rows(rows, budget_gmacs, height, width, classes) -> str:
    lines = [f"largest f with MACs(last output) < {budget_gmacs:g} G at {width}x{height} pixels, C={classes}",
             "",
             f"  {'L':>2} {'K':>2} {'N':>3} {'f':>4} {'GMACs':>7} {'latency':>7}   "
             f"{'shared: params':>14} {'MiB':>7}   {'independent: params':>19} {'MiB':>7}"]
    for r in rows:
        head = f"  {r['levels']:>2} {r['blocks']:>2} {r['iterations']:>3}"
        if r["width"] is None:
            lines.append(f"{head}    -  (even f = {MIN_WIDTH} needs more than the budget)")
            continue
        s, i = r["shared"], r["independent"]
        lines.append(f"{head} {r['width']:>4} {r['macs'] / 1e9:>7.3f} {r['latency']:>7}   "
                     f"{s['params']:>14,} {s['graph_mib']:>7.1f}   {i['params']:>19,} {i['graph_mib']:>7.1f}")
    lines.append("  (GMACs and latency of the last output; graph size in MiB by the paper's rule)")
    return "\n".join(lines)


def run(args) -> int:
    levels = _int_list(args.levels, "--levels") if args.levels else DEFAULT_LEVELS
    blocks = _int_list(args.blocks, "--blocks") if args.blocks else DEFAULT_BLOCKS
    iterations = _int_list(args.iterations, "--iterations") if args.iterations else DEFAULT_ITERATIONS
    classes = DATASETS[args.dataset][2] if args.classes is None else args.classes
    h, w = geometry(args)
    rows = search(levels, blocks, iterations, args.budget_gmacs, classes, h, w)
    if args.json:
        print_json({"budget_gmacs": args.budget_gmacs, "height_px": h, "width_px": w, "classes": classes,
                    "rows": rows})
    else:
        print(format_rows(rows, args.budget_gmacs, h, w, classes))
    return 0
