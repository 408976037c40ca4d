"""``minitnet sweep``: a grid of hardware settings x weights x chips on Dask (``emulator/sweep.py``).

Plugs into ``minitnet`` through the entry point ``sweep = "emulator.sweep_cli"`` of the group
``minitnet.commands``: ``register(subparsers)`` adds the parser, like the modules of
``minitnet/cli/``. Dask, pandas and pyarrow are imported only when the command runs
(``pip install -e ".[sweep]"``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import ConfigError

__all__ = ["register", "run"]

HELP = """Evaluate an ItNet on emulated chips over a grid of hardware settings, in parallel on Dask.

The grid is the Cartesian product of every --set FIELD=V1,V2,... (any HardwareConfig field,
t_inference included; values in the field's type, 'none' where None is allowed) applied to
--preset, times every --weights file, times --chips chips. A cell (weights, setting, chip)
programs one chip, calibrates it on the first --calibration-images images of the split and
scores every image (in chunks of --chunk images per task), giving the mIoU of every output.

Seeds derive from (--seed, the weights file's content, the setting, the chip) only, so any
number of workers gives the same numbers. Results go to --out (.parquet or .csv), one row per
(weights, setting, chip, output) with mIoU, per-class IoU and the seed, rewritten after every
finished cell; a rerun with the same --out runs only the cells missing from it.

Workers: --workers W starts a local Dask cluster of W one-thread processes (default: one per
core; 0 runs every task in this process with Dask's synchronous scheduler); --scheduler
ADDRESS (or DASK_SCHEDULER_ADDRESS) uses a running cluster (emulator/README.md, Sweeps).

  minitnet sweep CamVid --weights W.h5 --preset pcm --set t_inference=0,3600,86400 \\
      --set out_noise_std=0.04,0.01 --chips 3 --out sweep.parquet --plot sweep.png"""


def register(sub) -> None:
    """Add ``sweep`` to the ``minitnet`` subparsers."""
    from .config import PRESETS

    p = sub.add_parser("sweep", help="mIoU over a grid of hardware settings x weights x chips, on Dask",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir", metavar="DATA_DIR", help="dataset folder in the SegNet layout (e.g. CamVid)")
    p.add_argument("--weights", action="append", default=None, metavar="W.h5",
                   help="HDF5 weights; repeat for several files (default: the shipped shared CamVid model)")
    p.add_argument("--preset", default="pcm", metavar="NAME",
                   help=f"hardware preset: {', '.join(sorted(PRESETS))} (default %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=V1,V2",
                   help="sweep a HardwareConfig field over these values (repeat: Cartesian product)")
    p.add_argument("--chips", type=int, default=3, help="chips per setting (default %(default)s)")
    p.add_argument("--float", action="store_true", help="also score the float engine (preset 'float' rows)")
    p.add_argument("--split", default="val", help="split to evaluate (default %(default)s)")
    p.add_argument("--limit", type=int, default=None, metavar="K", help="only the first K images")
    p.add_argument("--calibration-images", type=int, default=2, metavar="K",
                   help="calibrate every chip on the first K images of the split (default %(default)s)")
    p.add_argument("--chunk", type=int, default=None, metavar="K",
                   help="images per task (default 48: calibration stays a small part of a task)")
    p.add_argument("--void", default=None, metavar="V",
                   help="label value(s) to ignore, comma list, or none (default: C, i.e. 11 for CamVid)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default %(default)s)")
    p.add_argument("--out", required=True, metavar="RESULTS",
                   help="results table, .parquet or .csv (a rerun with the same file resumes)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, default=None, metavar="W",
                   help="local cluster of W one-thread worker processes (default: one per core; 0: in process)")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="a running Dask scheduler, e.g. tcp://host:8786 (default: $DASK_SCHEDULER_ADDRESS)")
    p.add_argument("--images-by-value", action="store_true",
                   help="send image and label bytes to the workers (no shared filesystem needed)")
    p.add_argument("--retries", type=int, default=2, help="reruns of a task that failed (default %(default)s)")
    p.add_argument("--json", action="store_true", help='print {"rows": [...]} instead of the summary')
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="mIoU per output against each swept field (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _void(text):
    if text is None:
        return "classes"
    if text.strip().lower() == "none":
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--void {text!r}: expected a comma list of label values or none") from None


def spec_from_args(args):
    """The ``SweepSpec`` of the command line; every setting validated (ConfigError) before anything runs."""
    from .sweep import FLOAT, Setting, SweepSpec, grid, parse_set

    sets = {}
    for text in args.set:
        name, values = parse_set(text)
        if name in sets:
            raise ConfigError(f"--set {text!r}: {name} is already swept (--set {name}=...); give all its "
                              f"values in one --set")
        sets[name] = values
    if args.chips < 1:
        raise ConfigError(f"--chips must be >= 1, got {args.chips}")
    settings = grid(args.preset, sets, chips=args.chips)
    if args.float:
        settings = [Setting(FLOAT)] + settings
    if args.weights:
        weights = args.weights
    else:
        from minitnet.cli.common import default_weights

        weights = [str(default_weights())]
    return SweepSpec(args.data_dir, weights, settings, split=args.split, limit=args.limit, seed=args.seed,
                     calibration_images=args.calibration_images, chunk=args.chunk, void=_void(args.void),
                     images_by_value=args.images_by_value)


def run(args) -> int:
    from . import sweep, sweep_dask, sweep_report

    spec = spec_from_args(args)
    sweep.plan(spec)                      # weights, split, counts: fail before starting any worker
    sweep._check_out(args.out)
    if args.plot:
        from minitnet.plots import require_matplotlib

        require_matplotlib()
        if not spec.fields:
            raise ConfigError("--plot draws mIoU against the swept fields: give at least one --set FIELD=V1,V2")
    if args.retries < 0:
        raise ConfigError(f"--retries must be >= 0, got {args.retries}")
    with sweep_dask.connect(workers=args.workers, scheduler=args.scheduler) as client:
        if client is not None and not args.quiet:
            print(f"minitnet sweep: Dask dashboard {client.dashboard_link}", file=sys.stderr)
        res = sweep.run_sweep(spec, client, out=args.out, progress=not args.quiet, retries=args.retries)
    if args.plot:
        sweep_report.plot_sweep(res, args.plot, title=f"{args.preset}: {args.split} split of {args.data_dir}, "
                                               f"{args.chips} chip(s) per setting")
    if args.json:
        json.dump({"rows": res.json_rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(sweep_report.summary(res))
    print(f"\nresults: {Path(args.out)}" + (f"; plot: {args.plot}" if args.plot else ""))
    return 0
