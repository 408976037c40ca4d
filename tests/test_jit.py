"""The compile notice, `minitnet warmup`, parallel kernels and what a run compiles (issue 20: a
cold start is never a silent wait, and takes seconds)."""

import io
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from numba.core import event

import minitnet
from minitnet.cli import main
from minitnet.cli.common import default_weights
from minitnet.errors import ConfigError
from minitnet.fused.kinds import KINDS
from minitnet.jit import CompileCounter, compile_notice, compile_workers
from minitnet.kernels.parallel import F32_2D, parallel_kernel


def _fresh_kernel(module: str):
    """A new njit function that claims to live in ``module`` (so nothing is cached for it)."""

    def f(x):
        return x + 1

    f.__module__ = module
    return numba.njit(f)


def test_notice_says_so_once_when_our_kernels_compile():
    out = io.StringIO()
    a, b = _fresh_kernel("minitnet.kernels.fake"), _fresh_kernel("emulator.fake")
    with compile_notice(out, label="t: ") as notice:
        a(np.float32(1))
        b(np.float32(1))  # a second compilation: still one line
    lines = out.getvalue().splitlines()
    assert notice.said and len(lines) == 1, lines
    assert lines[0].startswith("t: compiling kernels (first run only")


def test_notice_is_silent_for_other_code_and_cached_calls():
    out = io.StringIO()
    other = _fresh_kernel("somebody.else")
    ours = _fresh_kernel("minitnet.kernels.fake2")
    ours(np.float32(1))  # compiled before the block
    with compile_notice(out):
        other(np.float32(1))
        ours(np.float32(2))
    assert out.getvalue() == ""


def test_warmup_runs_and_reports(capsys):
    assert main(["warmup"]) == 0
    got = capsys.readouterr().out
    assert "kernels of" in got and "ready in" in got and "compiled" in got, got


# -- parallel kernels (minitnet.kernels.parallel) and what a run compiles ---------------------

@parallel_kernel(f"{F32_2D}, {F32_2D}, int64")
def _double_rows(w, x, out, T):
    """out[i] = 2 x[i] for rows i = w, w + T, ... (worker w of T)."""
    for i in range(w, x.shape[0], T):
        for j in range(x.shape[1]):
            out[i, j] = 2 * x[i, j]


def test_parallel_kernel_runs_every_worker():
    x = np.arange(14, dtype=np.float32).reshape(7, 2)
    for T in (1, 2, 3, 9):  # 9: more workers than rows, some idle
        out = np.zeros_like(x)
        _double_rows(x, out, T)
        np.testing.assert_array_equal(out, 2 * x)
    assert len(_double_rows.worker.signatures) == 1


@pytest.mark.parametrize("bad", ["float64", "strided", "readonly", "int32 T"])
def test_parallel_kernel_refuses_other_types(bad):
    x, out, T = np.ones((4, 2), np.float32), np.zeros((4, 2), np.float32), 2
    if bad == "float64":
        x = x.astype(np.float64)
    elif bad == "strided":
        x = np.ones((4, 4), np.float32)[:, ::2]
    elif bad == "readonly":
        x.flags.writeable = False
    else:
        T = np.int32(2)
    with pytest.raises(TypeError, match="signature"):
        _double_rows(x, out, T)
    assert not out.any()  # no worker ran


def test_a_run_compiles_one_version_of_each_kernel_and_a_new_size_nothing():
    net = minitnet.load(default_weights())
    net.predict(np.zeros((40, 56, 3), np.uint8))
    for k in {k for kind in KINDS.values() for k in kind.kernels}:
        assert k.worker is not None and len(k.worker.signatures) == 1, k
        assert len(k._enter.signatures) == 1, (k, k._enter.signatures)  # one type signature per kernel
    counter = CompileCounter()
    with event.install_listener("numba:compile", counter):  # kernels are typed by dtype and rank, not size
        minitnet.load(default_weights()).predict(np.zeros((24, 72, 3), np.uint8))
    assert counter.compiled == 0, counter.kernels


def test_compile_workers_setting(monkeypatch):
    monkeypatch.setenv("MINITNET_COMPILE_WORKERS", "1")
    assert compile_workers() == 1
    monkeypatch.setenv("MINITNET_COMPILE_WORKERS", "two")
    with pytest.raises(ConfigError, match="MINITNET_COMPILE_WORKERS"):
        compile_workers()


_KERNELS = '''
import numpy as np
from minitnet.kernels.parallel import F32_1D, parallel_kernel

@parallel_kernel(f"{F32_1D}, {F32_1D}, int64", weight=2)
def heavy(w, x, out, T):
    for i in range(w, x.shape[0], T):
        out[i] = x[i] * x[i]

@parallel_kernel(f"{F32_1D}, {F32_1D}, int64", weight=1)
def light(w, x, out, T):
    for i in range(w, x.shape[0], T):
        out[i] = x[i] + 1
'''

_SCRIPT = '''
import numpy as np
import kmod
from minitnet.jit import compile_kernels
here = compile_kernels([kmod.heavy, kmod.light], workers=2)
x = np.arange(5, dtype=np.float32)
a, b = np.zeros(5, np.float32), np.zeros(5, np.float32)
kmod.heavy(x, a, 2)
kmod.light(x, b, 2)
print([k.__name__ for k in here], kmod.light.cached(), a.tolist(), b.tolist())
'''


def test_a_cold_start_splits_the_compiling_with_a_helper_process(tmp_path):
    (tmp_path / "kmod.py").write_text(_KERNELS)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    # this process compiled the heavier kernel; the helper wrote the lighter one to the cache
    assert run.stdout.split("\n")[0] == "['heavy'] True [0.0, 1.0, 4.0, 9.0, 16.0] [1.0, 2.0, 3.0, 4.0, 5.0]", run.stdout
    again = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert again.stdout.startswith("[] True"), again.stdout  # warm: nothing compiled, no helper
