"""The compile notice and ``minitnet warmup`` (issue 20: a cold start is never a silent wait)."""

import io

import numba
import numpy as np

from minitnet.cli import main
from minitnet.jit import compile_notice


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
