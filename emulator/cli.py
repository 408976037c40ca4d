"""The emulator's commands of ``minitnet``: ``emulate``, ``emulate-eval`` and ``emulate-timing``.

They plug into the ``minitnet`` command through the entry point ``emulate = "emulator.cli"`` of
the group ``minitnet.commands`` (pyproject.toml): ``minitnet.cli`` calls ``register(subparsers)``
here, so the ``minitnet`` package never imports ``emulator``.

``emulate`` and ``emulate-eval`` take a hardware preset (``--preset``) and any ``HardwareConfig``
field as an override flag (``--t-inference 3600``, ``--out-bits 6``, ``--inp-bound none``);
``emulate-timing`` schedules the loop graph on fully-parallel tiles (``emulator/timing.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import sys
import time
from pathlib import Path

import numpy as np

from minitnet.cli.common import (add_architecture_flags, add_max_pixels_flag, check_seed, config_or_weights,
                                 default_weights, describe, format_pct, geometry, max_pixels_arg, parse_void,
                                 print_json)
from minitnet.errors import DataError, NumericalError
from minitnet.files import check_output_file
from minitnet.graph import build_graph

from .config import PRESETS, HardwareConfig, parse_field, preset
from .errors import ConfigError
from .energy import EnergyConfig, energy_preset
from .tiles import plan_layer
from .timing import TimingConfig

__all__ = ["add_hardware_flags", "check_mappable", "hardware_from_args", "physics_guard", "register"]


def register(sub) -> None:
    """Add ``emulate``, ``emulate-eval`` and ``emulate-timing`` to the ``minitnet`` subparsers."""
    _register_emulate(sub)
    _register_timing(sub)


HELP_ONE = """Run one image through an ItNet programmed onto emulated analog crossbar tiles
(emulator/README.md): every unique conv layer on tiles, a shared iterative block
programmed once and reused every iteration, limited-precision DAC/ADC, device
noise and drift. For every output n it prints the relative error of the
iterative state and of the logits against the float engine, and how many pixels
keep the float engine's class. DAC/ADC ranges are calibrated on --calibration
images (default: the image itself). --out writes the emulated class maps."""

HELP_EVAL = """Evaluate an ItNet on several emulated chips over a dataset split (SegNet
layout, as minitnet eval): each chip is one draw of programming noise, drift and
stuck devices, calibrated on the first --calibration-images images of the split
(activation ranges only, no labels), then run on every image with fresh read and
ADC noise. Prints the mIoU of every output for the float engine and for the chips
(mean, std, min, max over chips); --plot draws both anytime curves."""


# --- hardware flags ---------------------------------------------------------------------------
def add_hardware_flags(p: argparse.ArgumentParser) -> None:
    """--preset, and one override flag per HardwareConfig field (default: the preset's value)."""
    p.add_argument("--preset", default="pcm", metavar="NAME",
                   help=f"hardware preset: {', '.join(sorted(PRESETS))} (default %(default)s)")
    g = p.add_argument_group("hardware overrides (HardwareConfig fields; units in emulator/README.md)")
    for f in dataclasses.fields(HardwareConfig):
        flag = "--" + f.name.replace("_", "-")
        g.add_argument(flag, dest=f"hw_{f.name}", default=None, metavar="V",
                       help=f"{f.name} ({f.type}; 'none' where None is allowed)")


def hardware_from_args(args):
    """The HardwareConfig of --preset with every given override; bad values raise ConfigError."""
    over = {}
    for f in dataclasses.fields(HardwareConfig):
        v = getattr(args, f"hw_{f.name}", None)
        if v is not None:
            over[f.name] = parse_field(f.type, v, f"--{f.name.replace('_', '-')} {v!r}")
    return preset(args.preset, **over)


def _hw_changes(hw) -> dict:
    """The fields of ``hw`` that differ from the defaults (the ideal preset)."""
    d = HardwareConfig()
    return {f.name: getattr(hw, f.name) for f in dataclasses.fields(hw) if getattr(hw, f.name) != getattr(d, f.name)}


def _describe_changes(hw) -> str:
    return ", ".join(f"{k}={v}" for k, v in _hw_changes(hw).items()) or "the ideal preset"


def check_mappable(cfg, hw, rows_flag: str = "--rows") -> None:
    """Plan every unique conv layer of ``cfg`` on tiles of ``hw`` once, before any work: a
    configuration that validation accepts but the network cannot map (a 3x3 depthwise channel
    needs 9 rows of one tile) is a ``ConfigError`` naming the layer, its need and the flag."""
    size = 2 ** (cfg.levels + 3)  # the layers' shapes per pixel do not depend on the image size
    for layer in build_graph(cfg, size, size).conv_layers():
        try:
            plan_layer(layer, hw)
        except ValueError as e:
            kh, kw = layer.kernel_size
            if layer.depthwise and hw.rows < kh * kw:
                raise ConfigError(f"{rows_flag} {hw.rows}: layer {layer.name!r} is a {kh}x{kw} depthwise conv, each "
                                  f"of its channels needs {kh * kw} rows of one tile, tiles have {hw.rows}; "
                                  f"use {rows_flag} {kh * kw} or more") from None
            raise ConfigError(f"layer {layer.name!r} cannot be mapped onto {hw.rows}x{hw.cols} tiles: {e}") from None


@contextlib.contextmanager
def physics_guard(command: str, hw):
    """Run the emulated physics with NumPy's floating-point warnings collected instead of printed
    raw; afterwards print one warning naming the settings if any occurred. A Python
    ``OverflowError`` (a setting far beyond the physical range) becomes a ``ConfigError``."""
    seen = set()
    changes = _describe_changes(hw)
    try:
        with np.errstate(over="call", invalid="call", divide="call", under="ignore",
                         call=lambda kind, flag: seen.add(kind)):
            yield seen
    except (OverflowError, FloatingPointError) as e:
        raise ConfigError(f"the emulated physics overflows with these settings ({changes}): {e}; use values within "
                          f"the physical range (emulator/README.md)") from None
    if seen:  # the run finished: say once that its numbers went through overflows
        print(f"minitnet {command}: warning: the emulated physics gave {' and '.join(sorted(seen))} in float "
              f"arithmetic with these settings ({changes}); values far beyond the physical range make the "
              f"results meaningless", file=sys.stderr)


def _common(p):
    p.add_argument("--weights", default=None, metavar="W.h5",
                   help="HDF5 weights (default: the shipped shared CamVid model)")
    add_hardware_flags(p)
    p.add_argument("--seed", type=int, default=0,
                   help="random seed of programming and read noise, an integer >= 0 (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--report", action="store_true", help="also print the tile mapping report")


def _register_emulate(sub):
    p = sub.add_parser("emulate", help="run one image on emulated analog crossbar tiles",
                       description=HELP_ONE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", metavar="IMAGE", help="image file")
    _common(p)
    p.add_argument("--calibration", nargs="+", default=None, metavar="IMAGE",
                   help="images that fix the DAC/ADC ranges (default: IMAGE itself)")
    p.add_argument("--out", default=None, metavar="FOLDER",
                   help="write <stem>_emu_m<n>.png (class indices) and <stem>_emu_m<n>_color.png per output "
                        "(never over IMAGE, a calibration image or the weights: refused before any work)")
    add_max_pixels_flag(p)
    p.set_defaults(func=run_one)

    q = sub.add_parser("emulate-eval", help="mIoU per output on several emulated chips over a dataset split",
                       description=HELP_EVAL, formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("data_dir", metavar="DATA_DIR", help="dataset folder in the SegNet layout (e.g. CamVid)")
    _common(q)
    q.add_argument("--chips", type=int, default=5, help="chips to program and evaluate (default %(default)s)")
    q.add_argument("--split", default="val", help="split to evaluate (default %(default)s)")
    q.add_argument("--limit", type=int, default=None, metavar="K", help="evaluate only the first K images")
    q.add_argument("--void", default=None, metavar="V",
                   help="label value(s) to ignore, comma list, or none (default: C, i.e. 11 for CamVid)")
    q.add_argument("--calibration-images", type=int, default=2, metavar="K",
                   help="calibrate every chip on the first K images of --calibration-split (default %(default)s)")
    q.add_argument("--calibration-split", default=None, metavar="SPLIT",
                   help="split of the calibration images (default: --split)")
    q.add_argument("--state-error", action="store_true",
                   help="also run the float engine alongside and report the mean relative state error")
    q.add_argument("--plot", default=None, metavar="FILE.png",
                   help="draw the float and the emulated anytime curves (needs matplotlib)")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=run_eval)


# --- emulate ------------------------------------------------------------------------------------
def run_one(args) -> int:
    from minitnet.data import CAMVID_PALETTE, colorize, read_image
    from minitnet.engine import load
    from minitnet.files import plan_outputs, prepare_out_dir, save_png

    from . import format_report, program

    if args.out is not None and not str(args.out).strip():
        raise ConfigError(f"--out {args.out!r}: empty; give a folder (`--out .` for the current one)")
    check_seed(args.seed)
    limit = max_pixels_arg(args)
    limit = "none" if limit is None else limit
    hw = hardware_from_args(args)
    weights = Path(args.weights) if args.weights else default_weights()
    net = load(weights)
    check_mappable(net.config, hw, "--rows")
    targets = None
    if args.out is not None:
        def files_of(name):
            return [f for n in net.config.head_iterations for f in (f"{name}_emu_m{n}.png", f"{name}_emu_m{n}_color.png")]

        plan = plan_outputs([args.image], args.out, files_of, protected=list(args.calibration or []) + [weights])
        targets = iter(next(iter(plan.values())))
    img = read_image(args.image, max_pixels=limit)
    calib = [read_image(p, max_pixels=limit) for p in args.calibration] if args.calibration else [img]
    out = prepare_out_dir(args.out) if args.out is not None else None
    rng_prog, rng_run = (np.random.default_rng(s) for s in np.random.SeedSequence(args.seed).spawn(2))
    rows = []
    try:
        with physics_guard("emulate", hw):
            chip = program(net, hw, rng_prog, calibration=calib)  # used only where hw needs ranges
            floats = dict(net.iter_outputs(img))
            for n, logits, err in chip.run(img, rng_run):
                if not np.all(np.isfinite(logits)):
                    raise NumericalError(f"the emulated logits of output {n} are not finite (NaN/inf): the hardware "
                                         f"settings overflow float32 ({_describe_changes(hw)}); use values within "
                                         f"the physical range (emulator/README.md)")
                ref = floats[n]
                rel = float(np.linalg.norm(logits - ref) / max(np.linalg.norm(ref), 1e-30))
                cls = logits[0].argmax(axis=0)
                agree = float(np.mean(cls == ref[0].argmax(axis=0)))
                rows.append({"output": n, "state_error": err, "logits_error": rel, "pixel_agreement": agree})
                if out is not None:
                    save_png(next(targets), cls.astype(np.uint8))
                    save_png(next(targets), colorize(cls, CAMVID_PALETTE))
    except MemoryError as e:
        raise DataError(f"{args.image}: out of memory emulating this {img.shape[1]}x{img.shape[0]} image "
                        f"({e or 'MemoryError'}); free memory or use a smaller image") from None
    report = chip.report(img.shape[0], img.shape[1])
    if args.json:
        print_json({"weights": str(weights), "image": str(args.image), "preset": args.preset,
                    "hw": dataclasses.asdict(hw), "seed": args.seed, "tiles": chip.tiles,
                    "calibration_images": [str(p) for p in args.calibration] if args.calibration else [str(args.image)],
                    "outputs": rows, "mapping": report if args.report else None})
        return 0
    changes = ", ".join(f"{k}={v}" for k, v in _hw_changes(hw).items()) or "no changes (ideal)"
    print(f"{weights} on emulated tiles: preset {args.preset} ({changes}), seed {args.seed}")
    print(f"  {chip.tiles} tiles of {hw.rows}x{hw.cols}; "
          f"calibration: {'the image itself' if not args.calibration else ', '.join(args.calibration)}")
    print()
    print(f"  {'output':>6}  {'state err':>9}  {'logits err':>10}  {'same class %':>12}")
    for r in rows:
        print(f"  {r['output']:>6}  {r['state_error']:>9.4f}  {r['logits_error']:>10.4f}  "
              f"{100 * r['pixel_agreement']:>12.2f}")
    if args.report:
        print()
        print(format_report(report))
    if out is not None:
        print(f"\n  class maps written to {out}")
    return 0


# --- emulate-eval ---------------------------------------------------------------------------------
def run_eval(args) -> int:
    from minitnet.engine import load

    from . import format_report, mapping_report
    from .evaluation import evaluate_chips, plot_chips

    if args.plot:
        from minitnet.plots import require_matplotlib

        require_matplotlib()
    if args.chips < 1:
        raise ConfigError(f"--chips must be >= 1, got {args.chips}")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    if args.calibration_images < 1:
        raise ConfigError(f"--calibration-images must be >= 1, got {args.calibration_images}")
    check_seed(args.seed)
    void = parse_void(args.void)
    hw = hardware_from_args(args)
    weights = Path(args.weights) if args.weights else default_weights()
    if args.plot:
        check_output_file(args.plot, "--plot", protected=[weights], data_dir=args.data_dir)
    net = load(weights)
    check_mappable(net.config, hw, "--rows")
    with physics_guard("emulate-eval", hw):
        ev = evaluate_chips(net, args.data_dir, hw, chips=args.chips, seed=args.seed, split=args.split,
                            void=void, limit=args.limit, calibration_images=args.calibration_images,
                            calibration_split=args.calibration_split, state_error=args.state_error,
                            progress=not args.quiet)
    if args.plot:
        plot_chips(args.plot, ev, title=f"{weights.name} on {args.preset} tiles: {args.split} split, "
                                        f"{ev.images} images, {ev.chips} chips")
    if args.json:
        d = ev.to_dict()
        d.update(weights=str(weights), data_dir=str(args.data_dir), split=args.split, preset=args.preset,
                 plot=args.plot, mapping=mapping_report(net, hw) if args.report else None)
        print_json(d)
        return 0
    changes = ", ".join(f"{k}={v}" for k, v in _hw_changes(hw).items()) or "no changes (ideal)"
    print(f"{weights}: {args.split} split of {args.data_dir}, {ev.images} images, on {ev.chips} emulated chip(s)")
    print(f"  preset {args.preset} ({changes}); {ev.tiles} tiles of {hw.rows}x{hw.cols}; seed {args.seed}")
    print(f"  calibration: {', '.join(Path(p).name for p in ev.calibration)}")
    print()
    head = f"  {'output':>6}  {'float %':>7}  {'chips %':>7}  {'std':>5}  {'min':>6}  {'max':>6}"
    if args.state_error:
        head += f"  {'state err':>9}"
    print(head)
    lo, hi = np.min(ev.chip_miou, axis=0), np.max(ev.chip_miou, axis=0)
    for i, n in enumerate(ev.outputs):
        line = (f"  {n:>6}  {format_pct(ev.float_miou[i]):>7}  {format_pct(ev.mean[i]):>7}  {100 * ev.std[i]:5.2f}  "
                f"{format_pct(lo[i])}  {format_pct(hi[i])}")
        if args.state_error:
            line += f"  {float(np.mean([e[i] for e in ev.state_error])):>9.4f}"
        print(line)
    if args.report:
        print()
        print(format_report(mapping_report(net, hw)))
    if args.plot:
        print(f"\n  plot: {args.plot}")
    return 0


# --- emulate-timing -------------------------------------------------------------------------------
HELP_TIMING = """Schedule an ItNet row by row on analog in-memory-computing tiles where every
unique conv layer owns its tiles and all tiles work at once (emulator/timing.py).
Reports, for three mappings of the network -- shared (one iterative block serves
all N iterations), independent (the loop unrolled: N bodies) and replicated (r
copies of the shared block) -- the tiles, the cycle at which every output m_n is
complete (one frame alone), the steady-state cycles between finished frames when
--frames frames are streamed back to back, the busiest tiles and the tile
utilisation, and the energy (emulator/energy.py): of every output, per streamed
frame, where it goes, the area and TOPS/W. The architecture comes from --weights
or from the flags; cycle and energy parameters from --set FIELD=VALUE
(TimingConfig or EnergyConfig fields, e.g. --set cols_per_adc=4 --set
adc_pj_8bit=1.2) and DAC/ADC bits, tile size and energy figures from the preset."""


def _parse_sets(items) -> tuple[dict, dict]:
    """``--set FIELD=VALUE`` items as (TimingConfig overrides, EnergyConfig overrides)."""
    fields = {f.name: TimingConfig for f in dataclasses.fields(TimingConfig)}
    fields.update({f.name: EnergyConfig for f in dataclasses.fields(EnergyConfig)})
    out: tuple[dict, dict] = ({}, {})
    for item in items or ():
        key, sep, val = item.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {sorted(fields)}"
                              + (f" (did you mean {close[0]!r}?)" if close else ""))
        cls = fields[key]
        default = getattr(cls(), key)
        try:
            if default is None:  # an optional float (EnergyConfig.cell_read_pj, frame_period_s)
                value = None if val.lower() == "none" else float(val)
            elif isinstance(default, bool):
                if val.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(val)
                value = val.lower() in ("true", "1")
            elif isinstance(default, int):
                value = int(val)
            else:
                value = float(val)
        except ValueError:
            kind = "float or none" if default is None else type(default).__name__
            raise ConfigError(f"--set {item!r}: {val!r} is not a valid {kind}") from None
        out[cls is EnergyConfig][key] = value
    return out


def _register_timing(sub):
    p = sub.add_parser("emulate-timing", help="cycle-level latency and throughput on fully-parallel tiles",
                       description=HELP_TIMING, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_architecture_flags(p, "time")
    g = p.add_argument_group("hardware and mapping")
    g.add_argument("--preset", default="pcm",
                   help="hardware preset giving tile rows/cols and DAC/ADC bits (default %(default)s)")
    g.add_argument("--tile-rows", type=int, default=None, help="crossbar rows per tile (default: the preset's)")
    g.add_argument("--tile-cols", type=int, default=None, help="crossbar columns per tile (default: the preset's)")
    g.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a TimingConfig or EnergyConfig field, repeatable (e.g. cols_per_adc=4, "
                        "adc_pj_8bit=1.2, frame_period_s=0.0333)")
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
                        "frame_interval_cycles, energy_pj (per output), energy_per_frame_pj, "
                        "energy_breakdown_pj, area_mm2, tops_per_w, executions (start/end cycles per layer "
                        "and iteration), resources")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="save tile activity over time and the latency of each output (needs matplotlib)")
    p.set_defaults(func=run_timing)


def run_timing(args) -> int:
    from .timing import plot, time_graph

    cfg, weights = config_or_weights(args)
    h, w = geometry(args)
    over = {k: v for k, v in (("rows", args.tile_rows), ("cols", args.tile_cols)) if v is not None}
    hw = preset(args.preset, **over)
    timing_sets, energy_sets = _parse_sets(args.set)
    timing = TimingConfig(**timing_sets)
    energy = energy_preset(args.preset, **energy_sets)
    check_mappable(cfg, hw, "--tile-rows")
    if args.plot:
        check_output_file(args.plot, "--plot", protected=[weights] if weights else [])
    graph = build_graph(cfg, h, w)
    t0 = time.perf_counter()
    rep = time_graph(graph, hw, timing, frames=args.frames, replication=args.replication, split=args.split,
                     data_replication=args.data_replication, energy=energy)
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
    print(f"energy: {energy.describe(hw, timing)}")
    print()
    print(rep.table())
    print()
    print(rep.energy_table())
    for name, m in rep.mappings.items():
        if m.note:
            print(f"  note ({name}): {m.note}")
    print()
    print("  latency of every output (Mcycles):")
    print(rep.output_table())
    print(f"\n  scheduled {args.frames + 1} x 3 runs in {seconds:.2f} s"
          + (f"; plot saved to {args.plot}" if args.plot else ""))
    return 0
