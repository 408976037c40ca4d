"""Hostile inputs to the command line (issue 14, the CLI cases): each test fails on the code
before the fix. Library cases are in test_hostile.py. Tiny images and a tiny random model."""

import errno
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minitnet import ItNetConfig
from minitnet.cli import main
from netutil import write_random

CFG = ItNetConfig(levels=1, blocks=1, iterations=2, width=4, classes=3)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return str(write_random(tmp_path_factory.mktemp("w") / "w.h5", CFG, seed=0))


def _img(path, seed=0, size=(16, 12)):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


# -- 13: no writable Numba cache folder ---------------------------------------------------------
READ_ONLY_INSTALL = """
    import os, sys, tempfile
    pkg = {pkg!r}
    real = tempfile.TemporaryFile
    def read_only(*a, dir=None, **k):  # the install folder is read-only (root ignores chmod)
        if dir is not None and os.path.abspath(dir).startswith(pkg):
            raise PermissionError(13, "Read-only file system (simulated)", dir)
        return real(*a, dir=dir, **k)
    tempfile.TemporaryFile = read_only
    import minitnet.engine  # numba decorates the cached kernels (no compiling: that takes minutes)
    import numba
    print("cache:", numba.config.CACHE_DIR)
    from minitnet.cli import main
    sys.exit(main(sys.argv[1:]))
"""


def test_no_writable_numba_cache_falls_back_with_one_warning(tmp_path, weights):
    script = tmp_path / "ro.py"
    script.write_text(textwrap.dedent(READ_ONLY_INSTALL.format(pkg=str(ROOT))))
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env["HOME"] = os.devnull  # no writable home: ~/.cache cannot be made
    r = subprocess.run([sys.executable, str(script), "info", "--weights", weights], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "cannot cache function" not in r.stderr
    assert r.stderr.count("no writable Numba cache folder") == 1, r.stderr
    assert "cache: " + tempfile.gettempdir() in r.stdout and "parameters" in r.stdout
