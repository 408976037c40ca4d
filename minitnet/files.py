"""Safe files: the output paths of a run, checked before any work; atomic writes; a Numba cache.

- ``plan_outputs`` computes every output path of a run at once and refuses (``ConfigError``,
  before anything is written) a run that would write over one of its inputs (images,
  calibration images, weights) or write two outputs to the same path. Inputs that share a
  stem get distinct names (``output_names``).
- ``write_atomic`` / ``save_png`` write to a temporary file in the target's folder and
  ``os.replace`` it into place: a failed write (full disk, a folder in the way) leaves
  neither a partial file nor the temporary behind, and raises ``WriteError`` naming the path.
- ``ensure_numba_cache`` gives Numba a temporary cache folder, with one warning, where it
  would find no writable one (a read-only install and no writable home).

Only the standard library is imported here: ``minitnet/__init__.py`` calls
``ensure_numba_cache`` at import.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from .errors import ConfigError, MinitnetError

__all__ = ["WriteError", "check_output_file", "ensure_numba_cache", "output_names", "plan_outputs", "prepare_out_dir",
           "same_file", "save_png", "write_atomic"]


class WriteError(MinitnetError, OSError):
    """An output file could not be written (full disk, no permission, a folder in the way);
    ``errno`` and ``filename`` as the ``OSError`` it stands for."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


# --- output names and the plan of a run -------------------------------------------------------
def _key(path) -> str:
    """A path's identity for clash checks: absolute, symlinks resolved, case as the OS compares."""
    return os.path.normcase(os.path.realpath(os.fspath(path)))


def _inode(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def same_file(a, b) -> bool:
    """Whether two paths name the same file (same resolved path, or the same existing inode)."""
    if _key(a) == _key(b):
        return True
    ia = _inode(a)
    return ia is not None and ia == _inode(b)


def _flat(rel: str) -> str:
    return rel.replace(os.sep, "_").replace("/", "_").replace(".", "_")


def output_names(inputs) -> dict[str, str]:
    """The base name of each input's outputs: its stem (``a/x.png`` -> ``x``).

    Inputs that share a stem are each named after their path relative to the folder the
    group has in common, suffix included, with ``/`` and ``.`` turned into ``_``:
    ``a/x.png``, ``b/x.png``, ``a/x.jpg`` -> ``a_x_png``, ``b_x_png``, ``a_x_jpg``;
    ``d/x.png``, ``d/x.jpg`` -> ``x_png``, ``x_jpg``. Names are not checked for clashes
    here (``plan_outputs`` does that). Inputs are the keys, as given.
    """
    inputs = [os.fspath(p) for p in inputs]
    groups: dict[str, list[str]] = {}
    for p in inputs:
        groups.setdefault(Path(p).stem, []).append(p)
    names = {}
    for stem, group in groups.items():
        if len({_key(p) for p in group}) == 1:
            names.update({p: stem for p in group})
            continue
        full = [os.path.abspath(p) for p in group]
        common = os.path.commonpath([os.path.dirname(f) for f in full])
        for p, f in zip(group, full):
            names[p] = _flat(os.path.relpath(f, common))
    return names


def plan_outputs(inputs, out_dir, files_of, protected=(), flag="--out") -> dict[str, list[Path]]:
    """Every output path of a run, checked as a whole before any work.

    ``inputs``: the run's input files, each processed once (a file given twice, under any
    path, is kept once, first mention). ``files_of(name)`` lists the file names written for
    an input whose outputs are named ``name`` (``output_names``). ``protected``: more files
    the run reads and must not write over (calibration images, the weights).

    Returns {input: [output paths]} in input order. Raises ``ConfigError`` listing the clashes
    if an output would write over an input or a protected file, or two outputs share a path.
    """
    unique, seen = [], set()
    for p in inputs:
        k = _key(p)
        if k not in seen:
            seen.add(k)
            unique.append(os.fspath(p))
    names = output_names(unique)
    out_dir = Path(out_dir)
    plan = {p: [out_dir / f for f in files_of(names[p])] for p in unique}
    reads = [(os.fspath(p), "the input") for p in unique] + [(os.fspath(p), "the file") for p in protected]
    read_keys = {_key(p): (p, why) for p, why in reads}
    read_inodes = {i: (p, why) for p, why in reads if (i := _inode(p)) is not None}
    clashes, written = [], {}
    for src, paths in plan.items():
        for t in paths:
            k = _key(t)
            hit = read_keys.get(k) or read_inodes.get(_inode(t))
            if hit:
                clashes.append(f"the output {t} of {src} is {hit[1]} {hit[0]}")
            elif k in written and written[k] != src:
                clashes.append(f"{t} would be written for both {written[k]} and {src}")
            written.setdefault(k, src)
    if clashes:
        more = f" (and {len(clashes) - 5} more)" if len(clashes) > 5 else ""
        raise ConfigError(f"refusing to overwrite files of this run (nothing was written): "
                          f"{'; '.join(clashes[:5])}{more}; choose another {flag} folder or rename the inputs")
    return plan


def prepare_out_dir(out, flag="--out") -> Path:
    """``out`` as a folder, created if needed; ``ConfigError`` if it is empty, a file, or cannot be made."""
    if out is None or not str(out).strip():
        raise ConfigError(f"{flag} {out!r}: empty; give a folder (`{flag} .` for the current one)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{flag} {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{flag} {out}: cannot create the folder ({e.strerror or e}); "
                          f"give a writable folder") from None
    return out


def check_output_file(path, flag: str, protected=(), data_dir=None) -> Path:
    """A single output file (``--plot F.png``), checked before a long run rather than after it:
    ``ConfigError`` if the path is empty or a folder, its folder does not exist, or it names a
    file the run reads (``protected``, or any file below ``data_dir``)."""
    if path is None or not str(path).strip():
        raise ConfigError(f"{flag} {path!r}: empty; give a file name like out.png")
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{flag} {p}: is a folder, expected a file name like {p / 'plot.png'}")
    if not p.parent.is_dir():
        raise ConfigError(f"{flag} {p}: the folder {p.parent} does not exist (or is not a folder); create it first")
    for q in protected:
        if same_file(p, q):
            raise ConfigError(f"{flag} {p}: is {q}, a file this run reads; refusing to overwrite it")
    if data_dir is not None and p.exists():
        root = _key(data_dir) + os.sep
        if _key(p).startswith(root):
            raise ConfigError(f"{flag} {p}: is a file of the dataset {data_dir}; refusing to overwrite it")
    return p


# --- atomic writes ----------------------------------------------------------------------------
def write_atomic(path, write) -> Path:
    """Write ``path`` through ``write(fileobj)`` on a temporary file in the same folder, then
    ``os.replace`` it into place. On any failure the temporary is removed, an existing file at
    ``path`` is left as it was, and an ``OSError`` becomes ``WriteError`` naming ``path``."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        if isinstance(e, WriteError):
            raise
        err = WriteError(f"cannot write {path}: {e.strerror or e}")
        err.errno, err.filename = e.errno, str(path)
        raise err from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path


def save_png(path, array) -> Path:
    """Save a uint8 array (H, W) or (H, W, 3) as a PNG, atomically (``write_atomic``)."""
    from PIL import Image

    im = Image.fromarray(array)
    return write_atomic(path, lambda f: im.save(f, format="PNG"))


# --- Numba's cache ----------------------------------------------------------------------------
_CACHE_NOTE = None  # the temporary cache folder chosen by ensure_numba_cache, if any


def _writable(folder) -> bool:
    """Numba's own test: the folder can be made and a temporary file created in it."""
    try:
        os.makedirs(folder, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
        return True
    except OSError:
        return False


def _numba_user_cache() -> str:
    if sys.platform == "darwin":
        return os.path.expanduser("~/Library/Caches/numba")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "numba")


def ensure_numba_cache() -> str | None:
    """Make sure Numba has a writable cache folder before it compiles anything.

    Numba caches compiled kernels in NUMBA_CACHE_DIR, else in the package's ``__pycache__``,
    else in the user's cache folder, and raises ``RuntimeError: cannot cache function`` where
    none is writable. Then this points NUMBA_CACHE_DIR to a new temporary folder (kernels are
    compiled again in every process) and warns once. Returns that folder, or None.
    """
    global _CACHE_NOTE
    if _CACHE_NOTE is not None:
        return _CACHE_NOTE
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.path.join(here, "kernels", "__pycache__"), _numba_user_cache()]
    if os.environ.get("NUMBA_CACHE_DIR"):
        candidates.insert(0, os.environ["NUMBA_CACHE_DIR"])
    if any(_writable(c) for c in candidates):
        return None
    tmp = tempfile.mkdtemp(prefix="minitnet-numba-cache-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    os.environ["NUMBA_CACHE_DIR"] = tmp
    if "numba" in sys.modules:  # numba read its config at import: tell it too
        sys.modules["numba"].config.CACHE_DIR = tmp
    _CACHE_NOTE = tmp
    warnings.warn(f"minitnet: no writable Numba cache folder (tried {', '.join(candidates)}); compiled kernels "
                  f"go to {tmp} for this process only. Set NUMBA_CACHE_DIR to a writable folder to keep them.",
                  RuntimeWarning, stacklevel=2)
    return tmp
