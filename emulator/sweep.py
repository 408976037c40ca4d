"""Noise sweeps on Dask: hardware settings x weights x chips, evaluated in parallel, one tidy table.

    from emulator.sweep import SweepSpec, grid, run_sweep
    from emulator.sweep_dask import connect
    spec = SweepSpec("CamVid", weights=["W.h5"],
                     settings=grid("pcm", {"t_inference": [0.0, 3600.0]}, chips=3))
    with connect(workers=2) as client:             # or connect(scheduler="tcp://host:8786")
        res = run_sweep(spec, client, out="sweep.parquet")
    res.table                                      # pandas: one row per (weights, setting, chip, output)

The grid
    ``grid(preset, {field: values})`` is the Cartesian product of the value lists of any
    ``HardwareConfig`` fields (``t_inference`` included), each combination a ``Setting``
    applied to the preset; every config is built (and so validated) before anything runs.
    ``Setting(FLOAT)`` is the float engine (no chip), for reference rows.

Cells and tasks
    A cell is one (weights, setting, chip): one chip programmed and calibrated for the
    setting, scored on the images of the split. A task evaluates one chunk of a cell's
    images and returns a confusion matrix per output; the driver sums a cell's chunks and
    writes its rows as soon as the last chunk is in. Every task programs its chip again from
    the cell's seed, so the chunks of a cell score the same chip wherever they run.
    Programming is cheap but calibration is not (it runs the float engine over the calibration
    images through every iteration; measured in emulator/README.md, Sweeps), so a cell is split only when the split is
    large: ``chunk`` images per task (default ``CHUNK``), and a worker thread keeps its last
    calibrated chip for the next chunk of the same cell.

Seeds
    A cell's seed derives from (base seed, SHA-256 of the weights file's bytes, the
    setting's full ``HardwareConfig``, chip) only, through ``np.random.SeedSequence``:
    programming draws from ``SeedSequence(seed, spawn_key=(0,))`` and image i of the split
    (its index in the sorted split) from ``SeedSequence(seed, spawn_key=(1, i))``. So the
    results do not depend on the chunking, the workers, the order or the other cells: a
    distributed run equals a local one bit for bit (tested), and ``seed`` in a row
    reproduces its cell alone.

Dask
    ``connect`` starts a ``LocalCluster`` of one-thread worker processes (Numba and BLAS at one
    thread each: no oversubscription), or joins a scheduler by address
    (``DASK_SCHEDULER_ADDRESS`` too); ``workers=0`` runs every task in this process with
    Dask's synchronous scheduler (debugging, and the reference of the tests). Weights reach
    the workers by value (the file's bytes, scattered once to every worker), images by path
    or, with ``images_by_value``, by value too (no shared filesystem needed). A task lost
    with its worker is rerun by Dask (``retries`` more for a task that raised).

Results
    ``out``: ``.parquet`` or ``.csv``. The table is rewritten atomically (a temporary file,
    then ``os.replace``) after every finished cell, so a crash loses only unfinished cells; a
    later run with the same ``out`` keeps every row there and runs only the cells missing
    (``cell`` is a digest of everything that determines a cell's numbers).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from minitnet.errors import DataError

from .config import PRESETS, HardwareConfig, parse_field, preset
from .errors import ConfigError
from .sweep_dask import task_runner
from .sweep_tables import check_out as _check_out, json_rows, merge_rows as _merge, pandas as _pandas
from .sweep_tables import read_table, write_table

__all__ = ["FLOAT", "CHUNK", "Setting", "SweepSpec", "Cell", "SweepResult", "grid", "parse_set", "parse_value",
           "cell_seed", "plan", "run_sweep", "evaluate_chunk", "read_table", "write_table",
           "one_thread"]

FLOAT = "float"
"""The pseudo-preset of a ``Setting`` that runs the float engine (no chip)."""

CHUNK = 48
"""Default images per task: a cell's calibration (2 images ~ 5 images' evaluation) is then
at most ~10% of its task."""



# ---------------------------------------------------------------------------------------------
# the grid
# ---------------------------------------------------------------------------------------------
def _field_types() -> dict[str, str]:
    return {f.name: str(f.type) for f in dataclasses.fields(HardwareConfig)}


def _unknown_field(name: str, where: str) -> ConfigError:
    valid = sorted(_field_types())
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{where}: unknown HardwareConfig field {name!r}{hint}; valid fields: {valid}")


def parse_value(name: str, text: str):
    """``text`` as the value of HardwareConfig field ``name``, by its annotated type
    (``int``, ``float``, ``bool``, ``str``; ``none`` where the field allows None)."""
    types = _field_types()
    if name not in types:
        raise _unknown_field(name, "parse_value")
    return parse_field(types[name], text, f"{name}={text!r}")


def parse_set(text: str) -> tuple[str, tuple]:
    """``"FIELD=V1,V2,..."`` -> (field, values), each value parsed by the field's type.
    Dashes in FIELD are read as underscores (``t-inference=0,3600``)."""
    name, sep, values = str(text).partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name:
        raise ConfigError(f"--set {text!r}: expected FIELD=V1,V2,... (e.g. t_inference=0,3600)")
    if name not in _field_types():
        raise _unknown_field(name, f"--set {text!r}")
    items = [v for v in values.split(",") if v.strip()]
    if not items:
        raise ConfigError(f"--set {text!r}: no values after '='; expected FIELD=V1,V2,...")
    return name, tuple(dict.fromkeys(parse_value(name, v) for v in items))


@dataclass(frozen=True)
class Setting:
    """One point of the grid: ``preset`` (or ``FLOAT``) with ``overrides`` ((field, value) pairs),
    evaluated on ``chips`` chips; ``label`` names it in tables (default: its overrides)."""

    preset: str
    overrides: tuple = ()
    chips: int = 1
    label: str = ""

    def __post_init__(self):
        if self.preset != FLOAT and self.preset not in PRESETS:
            raise ConfigError(f"Setting: unknown preset {self.preset!r}; expected one of {sorted(PRESETS)} "
                              f"or {FLOAT!r} (the float engine)")
        if isinstance(self.chips, bool) or not isinstance(self.chips, int) or self.chips < 1:
            raise ConfigError(f"Setting: chips must be a positive int, got {self.chips!r}")
        if self.preset == FLOAT and (self.overrides or self.chips != 1):
            raise ConfigError(f"Setting({FLOAT!r}): the float engine takes no overrides and one chip, got "
                              f"overrides={self.overrides!r}, chips={self.chips!r}")
        object.__setattr__(self, "overrides", tuple((str(k), v) for k, v in self.overrides))

    @property
    def hw(self) -> HardwareConfig | None:
        """The HardwareConfig (None for the float engine); raises ConfigError for a bad field or value."""
        return None if self.preset == FLOAT else preset(self.preset, **dict(self.overrides))

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        return " ".join([self.preset] + [f"{k}={format_value(v)}" for k, v in self.overrides])


def format_value(v) -> str:
    """A swept value as a label: whole floats without the point, others ``%g``."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return f"{v:g}" if isinstance(v, float) else str(v)


def grid(preset_name: str, sets: Mapping[str, Sequence] | None = None, chips: int = 1) -> list[Setting]:
    """The Cartesian product of ``sets`` ({field: values}, fields in the given order) on
    ``preset_name``, every combination validated now (ConfigError naming the field, the
    value and what is expected; an unknown field lists the valid ones with a "did you mean")."""
    sets = dict(sets or {})
    for name, values in sets.items():
        if name not in _field_types():
            raise _unknown_field(name, "grid")
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ConfigError(f"grid: the values of {name!r} must be a list, got {values!r}")
        if not list(values):
            raise ConfigError(f"grid: no values for {name!r}")
    names = list(sets)
    out = []
    for combo in itertools.product(*(list(dict.fromkeys(sets[n])) for n in names)):
        s = Setting(preset_name, tuple(zip(names, combo)), chips)
        try:
            s.hw
        except ConfigError as e:
            raise ConfigError(f"grid: setting {s.name}: {e}") from None
        out.append(s)
    return out


# ---------------------------------------------------------------------------------------------
# the spec, seeds and cells
# ---------------------------------------------------------------------------------------------
@dataclass
class SweepSpec:
    """What to evaluate: ``weights`` files x ``settings`` (each with its chips) on a split.

    calibration_images: every chip's DAC/ADC ranges come from the first K images of the
    split (activation ranges only). chunk: images per task (None: ``CHUNK``). void: label
    value(s) ignored (``"classes"``: the value C). images_by_value: ship image and label
    bytes to the workers instead of paths.
    """

    data_dir: str
    weights: Sequence[str]
    settings: Sequence[Setting]
    split: str = "val"
    limit: int | None = None
    seed: int = 0
    calibration_images: int = 2
    chunk: int | None = None
    void: object = "classes"
    images_by_value: bool = False

    @property
    def fields(self) -> list[str]:
        """The swept HardwareConfig fields, in order of first appearance."""
        return list(dict.fromkeys(k for s in self.settings for k, _ in s.overrides))


def _check_count(name, v, allow_none=False):
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ConfigError(f"sweep: {name} must be a positive int, got {v!r}")


_LATER_FIELDS = ("weight_scaling", "inp_range", "inp_quantile", "read_noise_mode", "depthwise", "learned_ranges")
"""HardwareConfig fields added after sweeps were first run (issue 15): left out of the canonical
config at their defaults, so earlier settings keep their cell seeds (issue 15, then 16)."""


def _canonical_hw(hw: HardwareConfig) -> str:
    """The config as JSON with every value in its field's type (3600 and 3600.0 are one setting)."""
    types = _field_types()
    default = HardwareConfig()
    d = {}
    for k, v in dataclasses.asdict(hw).items():
        if k in _LATER_FIELDS and v == getattr(default, k):
            continue
        base = next(t.strip() for t in types[k].split("|") if t.strip() != "None")
        if v is not None and not (isinstance(v, str) and "str" in types[k]):  # drift_compensation="column"
            v = {"float": float, "int": int, "bool": bool}.get(base, str)(v)
        d[k] = v
    return json.dumps(d, sort_keys=True)


def _digest(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16)


def cell_seed(seed: int, weights_sha256: str, hw: HardwareConfig, chip: int) -> int:
    """The 63-bit seed of one cell, from (base seed, weights content, the full config, chip) only."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"sweep: seed must be an int >= 0, got {seed!r}")
    ss = np.random.SeedSequence([int(seed), int(weights_sha256, 16), _digest(_canonical_hw(hw)), int(chip)])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@dataclass(frozen=True)
class Cell:
    """One (weights, setting, chip) of a plan; ``key`` identifies its numbers in a table."""

    weights: int            # index into the spec's weights
    setting: Setting
    chip: int
    seed: int
    key: str


@dataclass
class _Plan:
    spec: SweepSpec
    weights_bytes: list[bytes]
    weights_sha: list[str]
    nets: list            # ItNet per weights file (validated locally)
    pairs: list           # (image path, label path) of the evaluated images
    calib: list           # the calibration image paths
    void: object
    cells: list[Cell]
    chunks: list[tuple[int, int]]   # image index ranges of every cell


def plan(spec: SweepSpec) -> _Plan:
    """Validate everything and list the cells, before any task runs: weights readable, split
    present, counts positive, every setting's config valid (ConfigError / WeightsError / DataError)."""
    import minitnet
    from minitnet.data import list_split

    if not spec.weights:
        raise ConfigError("sweep: no weights files given")
    if not spec.settings:
        raise ConfigError("sweep: no settings given")
    _check_count("limit", spec.limit, allow_none=True)
    _check_count("calibration_images", spec.calibration_images)
    _check_count("chunk", spec.chunk, allow_none=True)
    hws = []
    for s in spec.settings:
        try:
            hws.append(s.hw)
        except ConfigError as e:
            raise ConfigError(f"sweep: setting {s.name}: {e}") from None
    blobs, shas, nets = [], [], []
    for w in spec.weights:
        net = minitnet.load(w)             # WeightsError for a missing or bad file
        data = Path(w).read_bytes()
        blobs.append(data)
        shas.append(hashlib.sha256(data).hexdigest())
        nets.append(net)
    classes = {n.config.classes for n in nets}
    if len(classes) > 1:
        raise ConfigError(f"sweep: the weights files predict different class counts {sorted(classes)}; "
                          f"sweep them separately")
    pairs = list_split(spec.data_dir, spec.split)
    if spec.limit is not None:
        pairs = pairs[:spec.limit]
    calib = [p for p, _ in pairs[:spec.calibration_images]]
    void = nets[0].config.classes if isinstance(spec.void, str) and spec.void == "classes" else spec.void
    n = len(pairs)
    size = spec.chunk or CHUNK
    k = math.ceil(n / size)
    step = math.ceil(n / k)                 # k chunks as even as possible
    chunks = [(a, min(a + step, n)) for a in range(0, n, step)]
    images = hashlib.sha256("\n".join(p.name for p, _ in pairs).encode()).hexdigest()
    cells = []
    for wi, sha in enumerate(shas):
        for s, hw in zip(spec.settings, hws):
            for c in range(s.chips):
                seed = 0 if hw is None else cell_seed(spec.seed, sha, hw, c)
                ident = {"weights": sha, "hw": None if hw is None else _canonical_hw(hw), "chip": c, "seed": seed,
                         "split": spec.split, "images": images, "void": repr(void),
                         "calibration": [p.name for p in calib] if hw is not None else []}
                key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]
                cells.append(Cell(wi, s, c, seed, key))
    return _Plan(spec, blobs, shas, nets, pairs, calib, void, cells, chunks)


# ---------------------------------------------------------------------------------------------
# the task (runs on a worker)
# ---------------------------------------------------------------------------------------------
# Per thread (a worker with several threads runs tasks side by side; nets and chips keep buffers):
# nets: weights sha256 -> ItNet; chip: (cell identity, calibrated Chip), the thread's last chip.
_LOCAL = threading.local()


def _cache():
    if not hasattr(_LOCAL, "nets"):
        _LOCAL.nets, _LOCAL.chip = {}, None
    return _LOCAL


def _scratch() -> Path:
    d = Path(tempfile.gettempdir()) / "minitnet-sweep"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _net(weights: bytes, sha: str):
    """The ItNet of these weight bytes, loaded once per thread (through a file: the reader takes paths)."""
    nets = _cache().nets
    if sha not in nets:
        import minitnet

        path = _scratch() / f"{sha}.h5"
        if not path.exists():
            tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(weights)
            os.replace(tmp, path)
        while len(nets) >= 4:               # a few models per thread at a time
            nets.pop(next(iter(nets)))
        nets[sha] = minitnet.load(path)
    return nets[sha]


def _decode(src, reader):
    """Read an image or label from a path, or from ``(name, bytes)`` (same decoder: via a file)."""
    if isinstance(src, tuple):
        name, data = src
        fd, tmp = tempfile.mkstemp(suffix=Path(name).suffix, dir=_scratch())
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return reader(tmp)
        finally:
            os.unlink(tmp)
    return reader(src)


@contextlib.contextmanager
def one_thread():
    """Numba and every BLAS at one thread inside the block (restored afterwards)."""
    import numba

    from minitnet.kernels.blas import single_threaded_blas

    prev = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(single_threaded_blas())
            try:
                from threadpoolctl import threadpool_limits

                stack.enter_context(threadpool_limits(1))
            except ImportError:  # pragma: no cover - the BLAS helper above still applies
                pass
            yield
    finally:
        numba.set_num_threads(prev)


def evaluate_chunk(weights: bytes, weights_sha: str, hw: HardwareConfig | None, seed: int, calibration: list,
                   items: list, void) -> dict:
    """Score images ``items`` ([(index in the split, image, label)], each a path or (name, bytes))
    on the chip of (``hw``, ``seed``) (calibrated on ``calibration``) or, for ``hw=None``, on the
    float engine. Returns {"conf": (outputs, C, C) int64, "compute_s", "pid"}."""
    from minitnet.data import read_image, read_label
    from minitnet.metrics import ConfusionAccumulator

    t0 = time.perf_counter()
    with one_thread():
        net = _net(weights, weights_sha)
        outputs = net.config.head_iterations
        accs = [ConfusionAccumulator(net.config.classes, void) for _ in outputs]
        chip = None
        if hw is not None:
            ident = (weights_sha, _canonical_hw(hw), seed, tuple(str(c[0] if isinstance(c, tuple) else c)
                                                                 for c in calibration))
            cache = _cache()
            if cache.chip is not None and cache.chip[0] == ident:
                chip = cache.chip[1]
            else:
                from . import program

                cache.chip = None
                calib = [_decode(c, read_image) for c in calibration]
                chip = program(net, hw, _rng(seed, 0), calibration=calib)
                cache.chip = (ident, chip)
        for i, img_src, lab_src in items:
            img, lab = _decode(img_src, read_image), _decode(lab_src, read_label)
            if lab.shape != img.shape[:2]:
                raise DataError(f"{lab_src if not isinstance(lab_src, tuple) else lab_src[0]}: label map is "
                                f"{lab.shape[1]}x{lab.shape[0]} (WxH) but its image is {img.shape[1]}x"
                                f"{img.shape[0]}; they must be the same size")
            it = (net.iter_outputs(img) if chip is None else
                  ((n, lg) for n, lg, _ in chip.run(img, _rng(seed, 1, i), reference=False)))
            for k, (n, logits) in enumerate(it):
                accs[k].update(logits[0].argmax(axis=0), lab)
    return {"conf": np.stack([a.matrix for a in accs]), "compute_s": time.perf_counter() - t0,
            "pid": os.getpid()}


def _class_names(classes: int) -> list[str]:
    from minitnet.data import CAMVID_CLASSES

    if classes == len(CAMVID_CLASSES):
        return [c.replace("/", "_") for c in CAMVID_CLASSES]
    return [str(c) for c in range(classes)]


def _rows(p: _Plan, cell: Cell, conf: np.ndarray) -> list[dict]:
    from minitnet.metrics import iou_per_class

    spec, hw = p.spec, cell.setting.hw
    net = p.nets[cell.weights]
    names = _class_names(net.config.classes)
    swept = dict(cell.setting.overrides)
    rows = []
    for n, m in zip(net.config.head_iterations, conf):
        iou = iou_per_class(m)
        ok = ~np.isnan(iou)
        row = {"weights": str(spec.weights[cell.weights]), "preset": cell.setting.preset,
               "setting": cell.setting.name}
        row.update({f: swept.get(f) for f in spec.fields})
        row.update(chip=cell.chip, seed=cell.seed, output=int(n),
                   miou=float(np.mean(iou[ok])) if ok.any() else float("nan"))
        row.update({f"iou_{c}": float(v) for c, v in zip(names, iou)})
        row.update(images=len(p.pairs), pixels=int(m.sum()), split=spec.split,
                   weights_sha256=p.weights_sha[cell.weights],
                   hw=None if hw is None else _canonical_hw(hw), cell=cell.key)
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    """``table``: the rows of every cell of the spec (finished now or found in ``out``), in
    plan order; ``fields``: the swept fields; counts of what ran; per-task compute seconds
    (measured inside the task) and the wall time of the driver's task loop."""

    table: object
    fields: list[str]
    cells: int
    cells_run: int
    tasks_run: int
    task_seconds: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    out: str | None = None
    json_rows: list[dict] = field(default_factory=list)


def run_sweep(spec: SweepSpec, client=None, out=None, progress: bool = False, retries: int = 2,
              on_task: Callable[[dict], None] | None = None) -> SweepResult:
    """Evaluate every cell of ``spec`` that ``out`` does not hold yet, on ``client`` (a Dask
    ``Client``; None: Dask's synchronous scheduler in this process), writing ``out`` after
    every finished cell. ``on_task(info)`` is called in this process after every task
    (info: cell, chunk, compute_s, pid, done, total). Everything is validated first: a bad
    setting, weights file, split or ``out`` raises before any task runs."""
    pd = _pandas()
    if out is not None:
        out = _check_out(out)
    p = plan(spec)
    existing = read_table(out) if out is not None and out.exists() else None
    done_keys = set()
    if existing is not None and "cell" in existing.columns:
        counts = existing.drop_duplicates(["cell", "output"]).groupby("cell").size()
        for c in p.cells:
            if counts.get(c.key, 0) == len(p.nets[c.weights].config.head_iterations):
                done_keys.add(c.key)
    todo = [c for c in p.cells if c.key not in done_keys]
    runner = task_runner(client)
    kept = existing if existing is not None else pd.DataFrame()
    new_rows: dict[str, list[dict]] = {}
    times, t0 = [], time.perf_counter()
    n_tasks = len(todo) * len(p.chunks)
    if todo:
        need = sorted({c.weights for c in todo})
        wfut = {wi: runner.scatter(p.weights_bytes[wi]) for wi in need}
        srcs = {}
        if spec.images_by_value:
            files = {str(x): x for pair in p.pairs for x in pair}
            files.update({str(x): x for x in p.calib})
            srcs = {k: (Path(v).name, Path(v).read_bytes()) for k, v in files.items()}
            futs = runner.scatter(list(srcs.values()))
            srcs = dict(zip(srcs, futs))
        # by path: absolute, as workers on other machines run elsewhere (the dataset at the same path)
        src = (lambda x: srcs[str(x)]) if spec.images_by_value else (lambda x: str(Path(x).resolve()))
        calib = [src(x) for x in p.calib]
        tasks = {}
        for c in todo:
            hw = c.setting.hw
            for ci, (a, b) in enumerate(p.chunks):
                items = [(i, src(p.pairs[i][0]), src(p.pairs[i][1])) for i in range(a, b)]
                f = runner.submit(evaluate_chunk, wfut[c.weights], p.weights_sha[c.weights], hw, c.seed,
                                  calib if hw is not None else [], items, p.void, retries=retries)
                tasks[f] = (c, ci)
        partial: dict[str, list] = {}
        bar = None
        if progress:
            from minitnet.progress import Progress

            bar = Progress(total=n_tasks, desc="sweep")
        try:
            for k, (f, res) in enumerate(runner.completed(list(tasks)), 1):
                c, ci = tasks[f]
                times.append(res["compute_s"])
                acc = partial.setdefault(c.key, [None, 0])
                acc[0] = res["conf"] if acc[0] is None else acc[0] + res["conf"]
                acc[1] += 1
                if acc[1] == len(p.chunks):
                    new_rows[c.key] = _rows(p, c, acc[0])
                    del partial[c.key]
                    if out is not None:
                        write_table(_merge(pd, kept, new_rows), out)
                if bar is not None:
                    bar.postfix = f"cells {len(new_rows)}/{len(todo)}"
                    bar.update(1)
                if on_task is not None:
                    on_task({"cell": c, "chunk": ci, "compute_s": res["compute_s"], "pid": res["pid"],
                             "done": k, "total": n_tasks})
        except BaseException:
            runner.cancel(list(tasks))
            raise
        finally:
            if bar is not None:
                bar.close()
    wall = time.perf_counter() - t0
    table = _merge(pd, kept, new_rows)           # as written after the last cell
    mine = table[table["cell"].isin([c.key for c in p.cells])] if len(table) else table
    if len(mine):
        mine = mine.drop_duplicates(["cell", "output"], keep="last")
    order = {c.key: i for i, c in enumerate(p.cells)}
    if len(mine):
        mine = mine.sort_values(["cell", "output"], key=lambda s: s.map(order) if s.name == "cell" else s,
                                kind="stable").reset_index(drop=True)
    return SweepResult(mine, spec.fields, len(p.cells), len(todo), len(times), times, wall,
                       None if out is None else str(out), json_rows(p, mine))
