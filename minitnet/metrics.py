"""The paper's measures (Section II-C), all derived from the graph IR.

Quality: ``confusion_matrix``, ``iou_per_class``, ``mean_iou`` and a
``ConfusionAccumulator`` that sums confusion matrices over a dataset;
``evaluate`` streams a SegNet-layout split through a network and scores every
anytime output; ``auc`` is the paper's Equation 2.

Cost: ``count(graph)`` returns a ``Counts`` with parameters (BN apart), MACs of
every output (own and cumulative), graph size (unique conv layers) and latency
(conv layers on the longest path), in time linear in the iterations N. Everything is read off the IR that the
engine executes (``minitnet.graph``): its unrolled DAG (``graph.unroll``)
gives the dependencies, ``Graph.layers`` the unique layers.
Definitions with formulas: ``docs/metrics.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from .config import ItNetConfig
from .errors import DataError, ShapeError
from .graph import IMAGE, Graph, Key, build_graph, op_spec, unroll

__all__ = [
    "confusion_matrix", "iou_per_class", "mean_iou", "ConfusionAccumulator",
    "Counts", "LayerCount", "count", "count_config", "auc", "CAMVID_CHANCE_MIOU", "AUC_X",
    "Evaluation", "evaluate",
]

#: y0 of Equation 2: the mIoU at chance level on CamVid (paper Section II-C), as a fraction.
CAMVID_CHANCE_MIOU = 0.00828
#: bytes per element of the graph-size rule (float32)
BYTES_PER_ELEMENT = 4
#: what the x axis of the AUC can be: own MACs of output n, cumulative MACs of outputs 1..n, latency
AUC_X = ("macs", "macs_cumulative", "latency")


# ---------------------------------------------------------------------------------------------
# quality: confusion matrix and IoU
# ---------------------------------------------------------------------------------------------
def confusion_matrix(pred, label, classes: int, void: int | None = None) -> np.ndarray:
    """(classes, classes) int64 counts, rows = true label, columns = prediction.

    Pixels whose label is ``void`` are ignored. Labels outside 0..classes-1 (other
    than void) raise DataError.
    """
    pred = np.asarray(pred)
    label = np.asarray(label)
    if pred.shape != label.shape:
        raise ShapeError(f"confusion_matrix: prediction shape {pred.shape} differs from label shape {label.shape}")
    label = label.reshape(-1).astype(np.int64)
    pred = pred.reshape(-1).astype(np.int64)
    if void is not None:
        keep = label != void
        label, pred = label[keep], pred[keep]
    if label.size and (label.min() < 0 or label.max() >= classes):
        bad = np.unique(label[(label < 0) | (label >= classes)])[:10].tolist()
        raise DataError(f"confusion_matrix: label values {bad} are outside 0..{classes - 1}" +
                        (f" (void={void} is ignored)" if void is not None else ""))
    if pred.size and (pred.min() < 0 or pred.max() >= classes):
        raise DataError(f"confusion_matrix: predictions outside 0..{classes - 1}")
    return np.bincount(label * classes + pred, minlength=classes * classes).reshape(classes, classes)


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """IoU of every class, TP / (TP + FP + FN); NaN for a class absent from labels and predictions."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def mean_iou(conf: np.ndarray) -> float:
    """Mean IoU over classes present in labels or predictions (NaN classes skipped)."""
    iou = iou_per_class(conf)
    return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")


def _void_set(void) -> tuple[int, ...]:
    if void is None:
        return ()
    if isinstance(void, (int, np.integer)) and not isinstance(void, bool):
        return (int(void),)
    try:
        return tuple(sorted({int(v) for v in void}))
    except (TypeError, ValueError):
        raise ShapeError(f"void must be None, an int or a sequence of ints, got {void!r}") from None


class ConfusionAccumulator:
    """A confusion matrix summed over a dataset, so mIoU is computed over all pixels
    at once (the usual dataset mIoU), not averaged per image.

        acc = ConfusionAccumulator(classes=11, void=11)
        for pred, label in pairs:          # class maps (H, W) or (B, H, W)
            acc.update(pred, label)
        acc.mean_iou(), acc.iou_per_class()

    ``void``: label value(s) to ignore (an int, a sequence, or None). Any other label
    outside 0..classes-1 raises DataError naming the values.
    """

    def __init__(self, classes: int, void: int | Sequence[int] | None = None):
        if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)) or classes < 1:
            raise ShapeError(f"ConfusionAccumulator: classes must be a positive int, got {classes!r}")
        self.classes = int(classes)
        self.void = _void_set(void)
        self.matrix = np.zeros((self.classes, self.classes), np.int64)
        self.updates = 0

    @property
    def pixels(self) -> int:
        """Labelled (non-void) pixels seen so far."""
        return int(self.matrix.sum())

    def check_label(self, label, where: str = "label") -> None:
        """Raise DataError if ``label`` holds a value that is neither a class nor void."""
        label = np.asarray(label)
        if label.size == 0:
            return
        vals = np.unique(label)
        bad = [int(v) for v in vals if not (0 <= v < self.classes) and int(v) not in self.void]
        if bad:
            void = f"void value(s) {list(self.void)} are ignored" if self.void else "no void value is set"
            raise DataError(f"{where}: label values {bad[:10]} are outside the classes 0..{self.classes - 1} "
                            f"({void}); hint: pass the dataset's ignore label as void (CLI: --void)")

    def update(self, pred, label) -> None:
        """Add the pixels of one prediction/label pair (same shape, integer class maps)."""
        pred = np.asarray(pred)
        label = np.asarray(label)
        if pred.shape != label.shape:
            raise ShapeError(f"ConfusionAccumulator.update: prediction shape {pred.shape} differs from "
                             f"label shape {label.shape}")
        self.check_label(label)
        keep = ~np.isin(label, self.void) if self.void else np.ones(label.shape, bool)
        self.matrix += confusion_matrix(pred[keep], label[keep], self.classes)
        self.updates += 1

    def iou_per_class(self) -> np.ndarray:
        return iou_per_class(self.matrix)

    def mean_iou(self) -> float:
        return mean_iou(self.matrix)


# ---------------------------------------------------------------------------------------------
# cost: the unrolled DAG and the counts
# ---------------------------------------------------------------------------------------------
class LayerCount(NamedTuple):
    """One unique conv layer: its parameters, MACs per execution, graph-size bytes and
    how many times a full run executes it (N for a shared body layer, 1 otherwise)."""

    name: str
    params: int
    macs: int
    bytes: int
    executions: int


@dataclass(frozen=True)
class Counts:
    """The paper's cost measures of one configuration at one input size (per image).

    params:           conv weights and biases of the unique layers (BN not included)
    bn_params:        learned BN weights and biases, reported apart (folded at load time)
    graph_bytes:      sum over unique conv layers of 4 bytes x (params + input elements
                      + output elements); a shared layer counts once
    outputs:          the output (head) iterations n, ascending
    macs:             per output: MACs of every conv output n depends on
                      (data block, iterations 1..n, head n)
    macs_cumulative:  per output: MACs of producing outputs 1..n, as anytime inference
                      does (data block, iterations 1..n, every head <= n)
    latency:          per output: conv layers on the longest path from the image to output n
    conv_layers:      unique conv layers; conv_executions: conv steps of a full run
    """

    config: ItNetConfig
    height: int
    width: int
    params: int
    bn_params: int
    graph_bytes: int
    outputs: tuple[int, ...]
    macs: tuple[int, ...]
    macs_cumulative: tuple[int, ...]
    latency: tuple[int, ...]
    conv_layers: int
    conv_executions: int
    layers: tuple["LayerCount", ...] = field(default=(), repr=False, compare=False)

    @property
    def graph_mib(self) -> float:
        """Graph size in MiB (2^20 bytes)."""
        return self.graph_bytes / 2**20

    def index(self, n: int) -> int:
        """Position of output n in the per-output lists."""
        if n not in self.outputs:
            raise ShapeError(f"Counts: {n!r} is not an output; outputs are {list(self.outputs)}")
        return self.outputs.index(n)

    def to_dict(self) -> dict:
        """JSON-ready dict. Keys ``params``, ``bn_params``, ``graph_mib``, ``macs``,
        ``macs_cumulative`` and ``latency`` are a stable contract."""
        return {
            "config": self.config.to_dict(),
            "height_px": self.height,
            "width_px": self.width,
            "params": self.params,
            "bn_params": self.bn_params,
            "graph_mib": self.graph_mib,
            "graph_bytes": self.graph_bytes,
            "conv_layers": self.conv_layers,
            "conv_executions": self.conv_executions,
            "outputs": list(self.outputs),
            "macs": list(self.macs),
            "macs_cumulative": list(self.macs_cumulative),
            "latency": list(self.latency),
        }


def count(graph: Graph) -> Counts:
    """Parameters, MACs, graph size and latency of ``graph`` (see ``Counts``)."""
    convs = graph.conv_layers()
    params = sum(l.params for l in convs)
    bn_params = sum(l.bn_params for l in graph.layers.values())
    graph_bytes = sum(BYTES_PER_ELEMENT * (l.params + l.in_elems + l.out_elems) for l in convs)

    dag = unroll(graph)
    preds: dict[Key, tuple[Key, ...]] = {}
    cost: dict[Key, int] = {}
    depth: dict[Key, int] = {IMAGE: 0}
    runs = dict.fromkeys((l.name for l in convs), 0)
    for st, key, pr in dag:
        spec = op_spec(st.node.op)
        if spec.mvm:
            runs[st.layer] += 1
        preds[key] = pr
        cost[key] = spec.macs(graph.layers.get(st.layer))
        depth[key] = max(depth[p] for p in pr) + spec.mvm  # longest path, counting conv nodes only

    def ancestors(roots, seen: set, hits: set | None = None, stop: set = frozenset()) -> int:
        """MACs of the steps ``roots`` depend on that are not in ``seen`` (nor ``stop``) yet
        (adds them to ``seen``); ``hits`` collects the keys of ``seen``/``stop`` where the walk stopped."""
        total, stack = 0, list(roots)
        while stack:
            k = stack.pop()
            if k == IMAGE:
                continue
            if k in seen or k in stop:
                if hits is not None:
                    hits.add(k)
                continue
            seen.add(k)
            total += cost[k]
            stack.extend(preds[k])
        return total

    # Per-output MACs in time linear in N: ``state_anc`` holds every step the current loop
    # state depends on (``state_macs`` their MACs), grown phase by phase. A body phase's
    # new state depends on the previous state as a whole (the mixing reads every scale), so
    # the walk from the new state stops where it meets ``state_anc``; a head that reads the
    # whole state costs its own steps plus ``state_macs``. Where either premise fails (not
    # in an ItNet; kept exact for any graph) the set is rebuilt or the head walked in full.
    outputs = graph.heads
    macs, cum, lat = [], [], []
    seen_all: set = set()
    running = 0
    state_anc: set = set()
    state_macs = 0
    loop: dict[str, Key] = {"image": IMAGE}
    pos = 0
    for ph in graph.phases():
        made = {key for _, key, _ in dag[pos:pos + len(ph.nodes)]}
        pos += len(ph.nodes)

        def key_of(name: str) -> Key:
            return (ph.block, ph.n, name) if (ph.block, ph.n, name) in made else loop[ph.reads[name]]

        state_vals = {k for name, k in loop.items() if name != "image"}
        if ph.block == "head":
            root = key_of(ph.result[0])
            hits: set = set()
            own = ancestors([root], set(), hits, stop=state_anc)
            macs.append(own + state_macs if state_vals <= hits else ancestors([root], set()))
            running += ancestors([root], seen_all)
            cum.append(running)
            lat.append(depth[root])
            continue
        new = {f"state.{l}": key_of(v) for l, v in enumerate(ph.result)}
        hits = set()
        added = ancestors(new.values(), state_anc, hits)
        if state_vals <= hits:
            state_macs += added
        else:  # the old state is not all upstream of the new one: start over
            state_anc = set()
            state_macs = ancestors(new.values(), state_anc)
        loop = {"image": IMAGE, **new}
    rows = tuple(LayerCount(l.name, l.params, l.macs, BYTES_PER_ELEMENT * (l.params + l.in_elems + l.out_elems),
                            runs[l.name]) for l in convs)
    return Counts(graph.config, graph.height, graph.width, params, bn_params, graph_bytes, tuple(outputs),
                  tuple(macs), tuple(cum), tuple(lat), len(convs), sum(runs.values()), rows)


def count_config(config: ItNetConfig, height: int = 360, width: int = 480) -> Counts:
    """``count(build_graph(config, height, width))``; defaults to CamVid's 480x360."""
    return count(build_graph(config, height, width))


# ---------------------------------------------------------------------------------------------
# anytime quality: Equation 2
# ---------------------------------------------------------------------------------------------
def auc(x, y, x0: float = 0.0, y0: float = CAMVID_CHANCE_MIOU, normalise: bool = True) -> float:
    """Area under the mIoU-over-cost curve, the paper's Equation 2.

        AUC_bar = sum_{n=0}^{N-1} (x_{n+1} - x_n) * ((y_{n+1} - y0) + (y_n - y0)) / 2
        AUC     = AUC_bar / x_N                       (normalise=True)

    x: cost of outputs 1..N (e.g. ``Counts.macs``), ascending; y: their mIoU (fractions
    in [0, 1], as y0 is); (x0, y0) = (0, 0.00828), CamVid's chance level, is the
    curve's starting point. Normalised, the AUC is in mIoU units and independent of
    the unit of x (MACs or GMACs give the same number).
    """
    try:
        xs = np.asarray(x, dtype=np.float64).reshape(-1)
        ys = np.asarray(y, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ShapeError(f"auc: x and y must be sequences of numbers, got {x!r} and {y!r}") from None
    if xs.size != ys.size or xs.size == 0:
        raise ShapeError(f"auc: x and y need the same non-zero length, got {xs.size} and {ys.size}")
    if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys)) and math.isfinite(x0) and math.isfinite(y0)):
        raise ShapeError(f"auc: values must be finite, got x={xs.tolist()}, y={ys.tolist()}, x0={x0}, y0={y0}")
    xs = np.concatenate([[x0], xs])
    ys = np.concatenate([[y0], ys])
    if np.any(np.diff(xs) < 0):
        raise ShapeError(f"auc: x must be ascending from x0={x0}, got {xs[1:].tolist()}")
    area = float(np.sum(np.diff(xs) * ((ys[1:] - y0) + (ys[:-1] - y0)) / 2))
    if not normalise:
        return area
    if xs[-1] == 0:
        raise ShapeError("auc: x_N is 0, cannot normalise by it")
    return area / float(xs[-1])


# ---------------------------------------------------------------------------------------------
# a dataset through a network
# ---------------------------------------------------------------------------------------------
@dataclass
class Evaluation:
    """Confusion matrices of every output of a network over a dataset, with the costs.

    ``counts`` are taken at the first image's size (all images of a SegNet split share it).
    """

    outputs: tuple[int, ...]
    confusion: dict[int, np.ndarray]
    images: int
    pixels: int
    counts: Counts
    auc_x: str = "macs"
    y0: float = CAMVID_CHANCE_MIOU

    @property
    def miou(self) -> list[float]:
        """mIoU (fraction in [0, 1]) per output, in output order."""
        return [mean_iou(self.confusion[n]) for n in self.outputs]

    def per_class_iou(self, n: int | None = None) -> np.ndarray:
        """IoU per class of output n (default: the last); NaN for a class never seen."""
        n = self.outputs[-1] if n is None else n
        return iou_per_class(self.confusion[n])

    @property
    def auc(self) -> float:
        """Equation 2 over the outputs, x = ``counts.<auc_x>``."""
        return auc(getattr(self.counts, self.auc_x), self.miou, y0=self.y0)

    def to_dict(self) -> dict:
        """JSON-ready; keys ``miou``, ``per_class_iou``, ``auc``, ``images`` are a stable contract.
        NaN (a class absent from labels and predictions) becomes None."""
        def clean(v):
            return None if not math.isfinite(v) else float(v)

        return {
            "miou": [clean(v) for v in self.miou],
            "per_class_iou": [clean(v) for v in self.per_class_iou()],
            "auc": clean(self.auc),
            "auc_x": self.auc_x,
            "images": self.images,
            "pixels": self.pixels,
            "outputs": list(self.outputs),
            "macs": list(self.counts.macs),
            "macs_cumulative": list(self.counts.macs_cumulative),
            "latency": list(self.counts.latency),
        }


def evaluate(net, data_dir, split: str = "val", void: int | Iterable[int] | None = "classes",
             limit: int | None = None, auc_x: str = "macs", progress: bool = False) -> Evaluation:
    """Stream a SegNet-layout split (``<split>/`` images, ``<split>annot/`` labels) through
    ``net`` (an ``ItNet``: ``config`` and ``iter_outputs``) and score every output.

    void: label value(s) ignored; the default ``"classes"`` means the value C (CamVid's 11).
    limit: evaluate only the first ``limit`` images (sorted by name).
    Raises DataError for a missing folder, an empty split, a label whose size differs
    from its image, or a label value that is neither a class nor void; NumericalError
    (naming the image and output) when the network gives non-finite logits.
    """
    from .data import list_split, read_image, read_label
    from .inputs import check_logits
    from .progress import Progress

    if auc_x not in AUC_X:
        raise ShapeError(f"evaluate: auc_x must be one of {AUC_X}, got {auc_x!r}")
    cfg = net.config
    if isinstance(void, str) and void == "classes":
        void = cfg.classes
    pairs = list_split(data_dir, split)
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ShapeError(f"evaluate: limit must be a positive int, got {limit!r}")
        pairs = pairs[:limit]
    outputs = cfg.head_iterations
    accs = {n: ConfusionAccumulator(cfg.classes, void) for n in outputs}
    size = None
    for img_path, lab_path in Progress(pairs, desc=f"eval {split}", disable=not progress):
        img = read_image(img_path)
        lab = read_label(lab_path)
        if lab.shape != img.shape[:2]:
            raise DataError(f"{lab_path}: label map is {lab.shape[1]}x{lab.shape[0]} (WxH) but its image "
                            f"{img_path.name} is {img.shape[1]}x{img.shape[0]}; they must be the same size")
        accs[outputs[0]].check_label(lab, where=str(lab_path))
        size = size or img.shape[:2]
        for n, logits in net.iter_outputs(img):
            accs[n].update(check_logits(logits, n, str(img_path))[0].argmax(axis=0), lab)
    pixels = accs[outputs[-1]].pixels
    if pixels == 0:
        raise DataError(f"{data_dir}: every label pixel of split {split!r} is void ({list(_void_set(void))}); "
                        f"nothing to score")
    counts = count(build_graph(cfg, int(size[0]), int(size[1])))
    return Evaluation(tuple(outputs), {n: a.matrix for n, a in accs.items()}, len(pairs), pixels, counts, auc_x)
