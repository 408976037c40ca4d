"""Where the fused engine spends its time: one line per fused op, summed over a run.

    python benchmarks/profile_engine.py [--threads 2] [--size 360 480] [--last N] [--runs 5]

Runs the f = 51 CamVid model (random weights, ``benchutil.bench_tensors``) and times every
kernel call of the fused plan (``minitnet.fused.FusedPlan``: its op table ``plan.kinds``
wrapped with ``perf_counter`` around each call); the sum of the op times is within a few percent of the run time (the rest is
Python dispatch). Not collected by pytest (no ``bench_`` prefix).
"""
import argparse
import collections
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchutil import bench_tensors, pin_threads  # noqa: E402

from minitnet import ItNetConfig  # noqa: E402
from minitnet.engine import ItNet  # noqa: E402
from minitnet.fused.kinds import OpKind  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, nargs=2, default=(360, 480), metavar=("H", "W"))
    ap.add_argument("--last", type=int, default=None, help="stop after this iteration (default: all 16)")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    info = pin_threads(args.threads)
    cfg = ItNetConfig()
    net = ItNet(cfg, bench_tensors(cfg))
    x = np.random.default_rng(1).standard_normal((1, 3, *args.size)).astype(np.float32)

    def run():
        return [o for _, o in net.iter_outputs(x, last=args.last)]

    run()
    ts = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        run()
        ts.append(time.perf_counter() - t0)

    acc = collections.defaultdict(float)
    calls = collections.Counter()
    plan = net.fused_plan(net.graph(*args.size))
    p = plan.program
    block_of = {id(op): name for name, blk in (("data", p.data), ("body", p.first), ("body", p.body),
                                               ("head", p.head)) if blk is not None for op in blk.ops}

    def timed(kind, run):
        def call(plan, op, *rest):
            t0 = time.perf_counter()
            run(plan, op, *rest)
            key = (block_of[id(op)], kind, op.nodes[-1].name if kind == "bottleneck" else op.nodes[0].name)
            acc[key] += time.perf_counter() - t0
            calls[key] += 1
        return call

    orig = plan.kinds
    plan.kinds = {kind: OpKind(timed(kind, k.run), k.scratch) for kind, k in orig.items()}
    try:
        for _ in range(args.runs):
            run()
    finally:
        plan.kinds = orig
    R = args.runs
    total = sum(acc.values()) / R
    print(f"ItNet f=51 {args.size[0]}x{args.size[1]}, outputs 1..{args.last or cfg.iterations}, {info}")
    print(f"run: median {np.median(ts) * 1e3:.1f} ms over {R} runs; sum of op times {total * 1e3:.1f} ms")
    by_block = collections.defaultdict(float)
    by_kind = collections.defaultdict(float)
    for (block, kind, _), v in acc.items():
        by_block[block] += v / R
        by_kind[kind] += v / R
    print("by block: " + ", ".join(f"{k} {v * 1e3:.1f} ms ({v / total:.0%})" for k, v in by_block.items()))
    print("by kind:  " + ", ".join(f"{k} {v * 1e3:.1f} ms ({v / total:.0%})"
                                    for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])))
    print(f"{'block':<6}{'op':<9}{'node':<24}{'calls':>6}{'ms/run':>9}{'share':>7}")
    for key, v in sorted(acc.items(), key=lambda kv: -kv[1]):
        block, kind, name = key
        print(f"{block:<6}{kind:<9}{name:<24}{calls[key] // R:>6}{v / R * 1e3:>9.2f}{v / R / total:>7.1%}")


if __name__ == "__main__":
    main()
