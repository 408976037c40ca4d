"""Cold and warm start of `minitnet segment` on one sample image (a script, not collected).

    python benchmarks/cold_start.py                      # 3 rounds, this checkout
    python benchmarks/cold_start.py --rounds 5 --workers 1 2
    python benchmarks/cold_start.py --tree ../other-checkout   # another checkout, same way

Each round runs, in fresh processes: `minitnet segment IMAGE --out DIR` with an empty
`NUMBA_CACHE_DIR` (cold: every kernel compiles), then the same command again (warm: every
kernel loads from that cache), once per `--workers` value (`MINITNET_COMPILE_WORKERS`: 1
compiles in the process itself, 2 with one helper process). Per run: wall time to exit (the
class maps written), CPU time of the command and its helpers together, the peak RSS of the
largest of them, the number of numba cache index files, the 1-minute load average at the
start. The class maps must equal the first round's. Timings depend on
what else runs: say the load with the numbers.
"""
from __future__ import annotations

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "tests" / "data" / "camvid" / "val" / "0016E5_07959.png"


def run_once(tree: Path, cache: Path, out: Path, workers: int) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "MINITNET_COMPILE_WORKERS": str(workers),
           "PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")])}
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from minitnet.cli import main; sys.exit(main())",
                             "segment", str(IMAGE), "--out", str(out), "--quiet"], env=env, cwd=tree,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()  # (until it exits: the notice is one line)
    _, status, usage = os.wait4(proc.pid, 0)  # its usage, helpers (waited for by it) included
    wall = time.perf_counter() - t0
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"minitnet segment failed ({proc.returncode}):\n{err}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024,
            "index": len(list(cache.rglob("*.nbi"))), "load": load, "compiled": "compiling kernels" in err}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, nargs="+", default=[2, 1], help="MINITNET_COMPILE_WORKERS values")
    p.add_argument("--tree", type=Path, default=ROOT, help="checkout to run (default: this one)")
    args = p.parse_args(argv)
    ref = None
    print(f"tree {args.tree}, image {IMAGE.name}, {os.cpu_count()} CPUs, NUMBA_NUM_THREADS="
          f"{os.environ.get('NUMBA_NUM_THREADS', 'default')}")
    for r in range(args.rounds):
        for workers in args.workers:
            with tempfile.TemporaryDirectory() as tmp:
                cache, out = Path(tmp) / "cache", Path(tmp) / "out"
                for kind in ("cold", "warm"):
                    m = run_once(args.tree.resolve(), cache, out, workers)
                    got = out / f"{IMAGE.stem}_m16.png"
                    if ref is None:
                        ref = Path(tempfile.mkdtemp()) / "ref.png"
                        ref.write_bytes(got.read_bytes())
                    same = filecmp.cmp(got, ref, shallow=False)
                    print(f"round {r + 1} workers {workers} {kind}: wall {m['wall']:5.1f} s, CPU {m['cpu']:5.1f} s, "
                          f"peak RSS {m['rss']:4.0f} MB, {m['index']} cache index files, load {m['load']:.1f}, "
                          f"compiled: {m['compiled']}, output {'same' if same else 'DIFFERS'}", flush=True)
                    if not same:
                        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
