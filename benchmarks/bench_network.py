"""The whole network: minitnet against PyTorch eager and ONNX Runtime, plus memory and JIT start.

Model: the paper's CamVid ItNet, f = 51, shared weights, L = 3, K = 1, N = 16, one 480x360
image (smoke size: N = 3 at 64x96), random weights (``benchutil.bench_tensors``).
Groups ``itnet:f51:<H>x<W>:all`` (every output 1..N) and ``...:out1`` (output 1 only); each
timed call computes the outputs into a list that lives until the call returns (a streaming
caller: the outputs of one image are consumed before the next image):
  minitnet      ``ItNet.iter_outputs`` (the fused engine; it recycles the logits arrays of the
                previous call once they are released, see benchmarks/README.md)
  torch         ``TorchItNet`` eager under ``inference_mode`` (``[iter_outputs(x, last=1)]`` for out1)
  onnxruntime   ``InferenceSession.run`` on the export of ``TorchItNet`` (TorchScript exporter,
                the loop unrolled; a second export stops after output 1)
Threads are pinned to ``MINITNET_BENCH_THREADS`` for all three (ORT: intra_op_num_threads) and
recorded. Outputs are checked against torch once, outside the timed calls.

``test_peak_memory_and_jit_start`` runs a fresh interpreter: the RSS peak (VmHWM) of its first
inference, every output kept, above the interpreter with numpy and numba imported (minitnet,
the weights, BLAS, the cached kernels, the buffers and the outputs all count), and the time
from process launch to the first output with numba's on-disk cache warm (the budgets of
issue 7, 300 MB and 2 s, are asserted at full size only).
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from .benchutil import FULL, IMAGE, ITERATIONS, NOTES, ROOT, assert_close, bench_tensors, record

from minitnet import ItNetConfig
from minitnet.engine import ItNet

F32 = np.float32
GROUP = f"itnet:f51:{IMAGE[0]}x{IMAGE[1]}"
ROUNDS = 11


@pytest.fixture(scope="module")
def model():
    cfg = ItNetConfig(iterations=ITERATIONS)
    tensors = bench_tensors(cfg)
    x = np.random.default_rng(1).standard_normal((1, 3, *IMAGE)).astype(F32)
    return cfg, tensors, x


@pytest.fixture(scope="module")
def torch_model(model):
    torch = pytest.importorskip("torch")
    from minitnet.torch import TorchItNet
    cfg, tensors, x = model
    m = TorchItNet(cfg)
    missing, unexpected = m.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    m.eval()
    with torch.inference_mode():
        ref = [o.numpy() for o in m(torch.from_numpy(x))]
    return m, ref


@pytest.fixture(scope="module")
def onnx_sessions(model, torch_model, tmp_path_factory, threads):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    m, _ = torch_model
    x = torch.from_numpy(model[2])

    class First(torch.nn.Module):  # output 1 only: the export stops after iteration 1
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return next(self.net.iter_outputs(x, last=1))[1]

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads["threads"], 1
    sessions = {}
    for which, module in (("all", m), ("out1", First(m))):
        path = tmp_path_factory.mktemp("onnx") / f"itnet-{which}.onnx"
        with torch.inference_mode(), pytest.warns(None) if False else _quiet():
            torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=17)
        sessions[which] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sessions


class _quiet:
    """Silence the exporters' warnings (deprecation, tracer) inside the fixture."""

    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


@pytest.mark.parametrize("impl", ["minitnet", "torch", "onnxruntime"])
@pytest.mark.parametrize("which", ["all", "out1"])
def test_network(benchmark, threads, model, request, which, impl):
    cfg, tensors, x = model
    last = None if which == "all" else 1
    if impl == "minitnet":
        net = ItNet(cfg, tensors)

        def outputs():
            return [o for _, o in net.iter_outputs(x, last=last)]
    elif impl == "torch":
        torch = pytest.importorskip("torch")
        m, _ = request.getfixturevalue("torch_model")
        xt = torch.from_numpy(x)

        def outputs():
            with torch.inference_mode():
                return [o for _, o in m.iter_outputs(xt, last=last)]
    else:
        sess = request.getfixturevalue("onnx_sessions")[which]
        name = sess.get_inputs()[0].name

        def outputs():
            return sess.run(None, {name: x})

    def fn():  # every output computed and held until the call ends, then released (a streaming caller)
        return len(outputs())

    got = [np.asarray(o) for o in outputs()]  # warm-up and check, outside the timed calls
    if impl != "torch" and importable("torch"):
        ref = request.getfixturevalue("torch_model")[1][:len(got)]
        assert len(got) == (cfg.iterations if which == "all" else 1)
        for n, (a, b) in enumerate(zip(got, ref), 1):
            assert_close(a, b, f"{GROUP}:{which} {impl} output {n}")
    del got
    group = f"{GROUP}:{which}"
    benchmark.group = group
    if FULL:
        benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=1)
    else:
        benchmark.pedantic(fn, rounds=1, iterations=1)
    if impl == "onnxruntime":
        time.sleep(0.2)  # let ORT's spinning pool go idle before the next benchmark
    record(benchmark, group, impl, **threads)


def importable(name):
    try:
        __import__(name)
        return True
    except ImportError:
        return False


_CHILD = r"""
import os, sys, time
t_start = time.time()
import numpy as np, numba
def status(key):  # VmHWM: peak RSS of this image (ru_maxrss would include the parent's before exec)
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(key)) * 1024
base = status("VmRSS")  # the interpreter with numpy and numba loaded
sys.path[:0] = [{root!r}, {bench!r}]
import minitnet
from benchutil import bench_tensors
from minitnet import ItNetConfig
from minitnet.engine import ItNet
cfg = ItNetConfig(iterations={iterations})
net = ItNet(cfg, bench_tensors(cfg))
x = np.random.default_rng(1).standard_normal((1, 3, {h}, {w})).astype(np.float32)
outs = []
for n, o in net.iter_outputs(x):  # one inference: every output kept, the first one timed
    if not outs:
        t_first = time.time()
    outs.append(o)
peak = status("VmHWM")
print("RESULT", {{"t_start": t_start, "t_first": t_first, "base": base, "peak": peak}})
"""


def _child(env=None):
    code = _CHILD.format(root=str(ROOT), bench=str(Path(__file__).parent), iterations=ITERATIONS,
                         h=IMAGE[0], w=IMAGE[1])
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, **(env or {})))
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(l for l in out.stdout.splitlines() if l.startswith("RESULT"))
    res = eval(line[len("RESULT"):], {})  # a dict literal printed by the child
    res["t_launch"] = t0
    return res


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_peak_memory_and_jit_start():
    """Peak RSS of an all-outputs inference above the loaded interpreter; seconds from process
    launch to the first output with numba's cache warm (a first child fills it if needed)."""
    _child()  # fills numba's cache if this checkout has none yet
    r = _child()
    mb = (r["peak"] - r["base"]) / 2**20
    start = r["t_first"] - r["t_launch"]
    NOTES.append(f"peak RSS of a first {IMAGE[0]}x{IMAGE[1]} inference, all outputs kept, above the "
                 f"interpreter with numpy and numba loaded: {mb:.0f} MB (that interpreter: {r['base'] / 2**20:.0f} MB)")
    NOTES.append(f"second process, cache warm: first output {start:.2f} s after launch")
    print(json.dumps({"peak_rss_above_mb": round(mb, 1), "first_output_s": round(start, 2)}))
    if FULL:
        assert mb <= 300, f"peak RSS {mb:.0f} MB above the interpreter > 300 MB"
        assert start <= 2.0, f"first output {start:.2f} s after launch > 2 s"
