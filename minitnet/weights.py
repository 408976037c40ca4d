"""Reading and writing ItNet weights in HDF5 (the format of weights/FORMAT.md).

Everything that can be wrong with a file raises ``WeightsError`` naming the
problem: not HDF5, unknown format or version, a bad configuration, missing or
unexpected tensors (listed, sorted), a wrong shape (expected vs found), a wrong
dtype or non-finite values.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .config import ItNetConfig
from .errors import ConfigError, WeightsError

if TYPE_CHECKING:
    from .graph import Graph

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "CAMVID_NORMALISATION", "CITYSCAPES_NORMALISATION",
    "WeightFile", "expected_tensors", "expected_count", "read_hdf5", "write_hdf5", "fold_weights",
]

FORMAT_NAME = "minitnet-itnet"
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
"""Versions ``read_hdf5`` reads: 1, and 2 = 1 plus the optional group ``input_ranges``
(learned DAC ranges of hardware-aware training). ``write_hdf5`` writes version 1 when a file
has no input ranges, so files without them stay readable by older readers."""
BN_EPS = 1e-5

#: pixels / 255 (paper II-D, CamVid)
CAMVID_NORMALISATION = {"scale": [1 / 255] * 3, "offset": [0.0] * 3}
#: pixels / 127.5 - 1 (paper II-D, Cityscapes)
CITYSCAPES_NORMALISATION = {"scale": [1 / 127.5] * 3, "offset": [-1.0] * 3}

_BN = ("weight", "bias", "running_mean", "running_var")
#: how many names an error message lists before "... and K more"
LIST_LIMIT = 8
#: largest |folded parameter| accepted at load. Trained weights are O(1) to O(100) (the shipped
#: models: at most 48 raw, 8.2 folded) and folding with bn_eps = 1e-5 multiplies by at most 316;
#: a value beyond 1e8 never comes out of training and overflows float32 activations within a
#: few layers (a 3e38 weight gave NaN logits). Plausibility only: the engine still checks the
#: logits (minitnet.inputs.check_logits).
PARAM_BOUND = 1e8
#: HDF5 structures written: format 1.10 or later, whose object headers, heaps and chunk indexes
#: carry checksums, fletcher32 per chunk and fixed-length string attributes (in the header), so
#: a corrupted byte is detected on read
HDF5_LIBVER = ("v110", "latest")


def _names(names, limit: int = LIST_LIMIT) -> str:
    """``['a', 'b', ...] and K more``: at most ``limit`` names of a sorted list."""
    names = list(names)
    head = repr(names[:limit])
    return head if len(names) <= limit else f"{head[:-1]}, ...] and {len(names) - limit} more"


def _cfg_str(cfg: ItNetConfig) -> str:
    s = repr(cfg)
    return s if len(s) <= 300 else s[:300] + "...)"


def _iter_expected(cfg: ItNetConfig):
    """(name, shape) of every tensor of ``cfg``'s network, in a fixed order (lazily)."""
    f, fr, L, hid, C = cfg.width, cfg.f_r, cfg.levels, cfg.hidden, cfg.classes

    def bn(prefix, c):
        for p in _BN:
            yield f"{prefix}.{p}", (c,)

    yield "stem1.conv.weight", (f - 3, 3, 3, 3)
    yield from bn("stem1.bn", f)
    yield "stem2.conv.weight", (f, f, 3, 3)
    yield from bn("stem2.bn", 2 * f)
    for l in range(L):
        yield f"scales.{l}.conv.weight", (fr, 2 * f, 3, 3)
        yield from bn(f"scales.{l}.bn", fr)
    for b in range(cfg.bodies):
        if cfg.body_has_mix(b):
            for l in range(L):
                yield f"bodies.{b}.mix.{l}.weight", (fr, L * fr, 3, 3)
        for l in range(L):
            for k in range(cfg.blocks):
                p = f"bodies.{b}.brb.{l}.{k}"
                yield f"{p}.expand.weight", (hid, fr, 1, 1)
                yield f"{p}.dw.weight", (hid, 1, 3, 3)
                yield f"{p}.project.weight", (fr, hid, 1, 1)
    for n in range(2, cfg.iterations + 1):
        for l in range(L):
            yield from bn(f"inter_bn.{n}.{l}", fr)
    for n in cfg.head_iterations:
        yield f"heads.{n}.weight", (C, L * fr, 1, 1)
        yield f"heads.{n}.bias", (C,)


def expected_tensors(cfg: ItNetConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor name of ``cfg``'s network with its shape (PyTorch state-dict keys)."""
    return dict(_iter_expected(cfg))


def expected_count(cfg: ItNetConfig) -> int:
    """``len(expected_tensors(cfg))`` without building it (constant time in N)."""
    L, N, K = cfg.levels, cfg.iterations, cfg.blocks
    mixes = sum(cfg.body_has_mix(b) for b in (0, 1) if b < cfg.bodies) if cfg.shared else N - 1
    heads = N if cfg.heads is None else len(cfg.heads)  # not head_iterations: N may be huge
    return 10 + 5 * L + cfg.bodies * 3 * L * K + mixes * L + 4 * L * (N - 1) + 2 * heads


@dataclass
class WeightFile:
    """The validated content of a weights file."""

    config: ItNetConfig
    tensors: dict[str, np.ndarray]
    norm_scale: np.ndarray  # (3,) float32
    norm_offset: np.ndarray  # (3,) float32
    bn_eps: float
    metadata: dict
    input_ranges: dict = field(default_factory=dict)
    """{conv layer name: learned DAC range (input units, > 0)}; empty in version-1 files."""


def check_input_ranges(cfg: ItNetConfig, ranges, where: str) -> dict[str, float]:
    """``ranges`` as {conv layer name: float}, or WeightsError naming the bad entry: every name a
    conv layer of ``cfg``'s graph (``Graph.layers``), every value finite, > 0 and <= INPUT_BOUND."""
    from .graph import build_graph
    from .inputs import INPUT_BOUND

    if not isinstance(ranges, dict):
        raise WeightsError(f"{where}: input ranges must be a dict {{layer: range}}, got {type(ranges).__name__}")
    convs = {k for k, lay in build_graph(cfg, 64, 64).layers.items() if lay.kind == "conv"}
    out = {}
    for k in sorted(ranges):
        if k not in convs:
            raise WeightsError(f"{where}: input range for {k!r}, which is not a conv layer of {_cfg_str(cfg)} "
                               f"(conv layers e.g. {_names(sorted(convs))})")
        v = np.asarray(ranges[k], dtype=np.float64)
        if v.size != 1 or not np.isfinite(v).all() or not 0 < float(v.reshape(-1)[0]) <= INPUT_BOUND:
            raise WeightsError(f"{where}: input range of {k!r} is {repr(ranges[k])[:60]}, expected one finite "
                               f"number in (0, {INPUT_BOUND:g}] (input units)")
        out[k] = float(np.float32(v.reshape(-1)[0]))
    return out


def _norm_arrays(normalisation, where: str = "normalisation") -> tuple[np.ndarray, np.ndarray]:
    from .inputs import INPUT_BOUND

    try:
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, refused below
            scale = np.asarray(normalisation["scale"], dtype=np.float32).reshape(-1)
            offset = np.asarray(normalisation["offset"], dtype=np.float32).reshape(-1)
    except (KeyError, TypeError, ValueError) as e:
        raise WeightsError(
            f"{where}: normalisation must be a dict with 'scale' and 'offset' (3 numbers each), "
            f"got {repr(normalisation)[:300]} ({e})"
        ) from None
    if scale.shape == (1,):
        scale = np.repeat(scale, 3)
    if offset.shape == (1,):
        offset = np.repeat(offset, 3)
    if scale.shape != (3,) or offset.shape != (3,):
        raise WeightsError(f"{where}: normalisation scale and offset need 3 values (RGB), "
                           f"got shapes {scale.shape} and {offset.shape}")
    if not (np.all(np.isfinite(scale)) and np.all(np.isfinite(offset))) or np.any(scale == 0):
        raise WeightsError(f"{where}: normalisation must be finite with non-zero scale, got norm_scale={scale}, "
                           f"norm_offset={offset}")
    top = float(np.max(np.maximum(np.abs(offset.astype(np.float64)), np.abs(255.0 * scale + offset))))
    if top > INPUT_BOUND:
        raise WeightsError(f"{where}: normalisation maps pixels 0..255 to values up to {top:.3g}, beyond the "
                           f"input bound {INPUT_BOUND:g} (norm_scale={scale}, norm_offset={offset}); expected "
                           f"e.g. scale 1/255, offset 0")
    return scale, offset


def write_hdf5(path, cfg: ItNetConfig, tensors: dict, normalisation=None, metadata: dict | None = None,
               bn_eps: float = BN_EPS, input_ranges: dict | None = None) -> None:
    """Write a weights file. ``tensors`` must hold exactly ``expected_tensors(cfg)``.
    ``input_ranges`` ({conv layer: learned DAC range}, ``check_input_ranges``) make it a
    version-2 file; without them it is written as version 1.

    Written to ``<path>.tmp`` and renamed; on any failure the temporary file is removed and
    an OSError (full disk, no permission) becomes a WeightsError naming the path.
    """
    import h5py

    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
    _check_tensors(cfg, tensors, where="write_hdf5")
    scale, offset = _norm_arrays(normalisation or CAMVID_NORMALISATION, "write_hdf5")
    ranges = check_input_ranges(cfg, input_ranges or {}, "write_hdf5")
    tmp = os.fspath(path) + ".tmp"
    try:
        with h5py.File(tmp, "w", libver=HDF5_LIBVER) as h:
            # strings fixed-length, so they live in the (checksummed) object header, not in the
            # global heap of variable-length strings, which has no checksum (a corrupt one hung h5py)
            h.attrs["format"] = np.bytes_(FORMAT_NAME)
            h.attrs["format_version"] = FORMAT_VERSION if ranges else 1
            h.attrs["config"] = np.bytes_(cfg.to_json().encode())
            h.attrs["norm_scale"] = scale
            h.attrs["norm_offset"] = offset
            h.attrs["bn_eps"] = float(bn_eps)
            h.attrs["metadata"] = np.bytes_(json.dumps(metadata or {}, sort_keys=True).encode())
            g = h.create_group("tensors")
            for k in sorted(tensors):
                g.create_dataset(k, data=tensors[k], compression="gzip", compression_opts=4, shuffle=True,
                                 fletcher32=True)
            if ranges:
                r = h.create_group("input_ranges")
                for k, v in ranges.items():
                    r.create_dataset(k, data=np.float32(v))
        os.replace(tmp, path)  # never leave a half-written file under the real name
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise WeightsError(f"{os.fspath(path)}: cannot write the weights file ({type(e).__name__}: {e}); "
                               f"nothing was written") from e
        raise


def _check_names(cfg: ItNetConfig, names, where: str) -> dict[str, tuple[int, ...]]:
    """The expected tensors of ``cfg`` if ``names`` are exactly them, else WeightsError (lists capped)."""
    names = set(names)
    n_exp = expected_count(cfg)
    if n_exp > len(names) + 100_000:  # e.g. a config with a million iterations: do not build the list
        missing, total = [], 0
        for k, _ in _iter_expected(cfg):
            if k not in names:
                missing.append(k)
                if len(missing) == LIST_LIMIT:
                    break
        raise WeightsError(f"{where}: tensors do not match the configuration {_cfg_str(cfg)}: it expects {n_exp} "
                           f"tensors, the file has {len(names)}; missing e.g. {missing}")
    exp = expected_tensors(cfg)
    missing = sorted(set(exp) - names)
    unexpected = sorted(names - set(exp))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing tensors {_names(missing)}")
        if unexpected:
            parts.append(f"unexpected tensors {_names(unexpected)}")
        raise WeightsError(f"{where}: tensors do not match the configuration {_cfg_str(cfg)}: " + "; ".join(parts))
    return exp


def _check_tensor(k: str, v: np.ndarray, shape: tuple, where: str, cfg: ItNetConfig) -> None:
    if tuple(v.shape) != shape:
        raise WeightsError(f"{where}: tensor {k!r} has shape {tuple(v.shape)}, expected {shape} for {_cfg_str(cfg)}")
    if v.dtype != np.float32:
        raise WeightsError(f"{where}: tensor {k!r} has dtype {v.dtype}, expected float32")
    if not np.all(np.isfinite(v)):
        bad = int(np.size(v) - np.count_nonzero(np.isfinite(v)))
        raise WeightsError(f"{where}: tensor {k!r} has {bad} non-finite values (NaN or inf)")
    if k.endswith("running_var") and np.any(v < 0):
        raise WeightsError(f"{where}: tensor {k!r} has negative variances (min {v.min()})")


def _check_tensors(cfg: ItNetConfig, tensors: dict, where: str) -> None:
    exp = _check_names(cfg, tensors, where)
    for k in sorted(exp):
        _check_tensor(k, np.asarray(tensors[k]), exp[k], where, cfg)


def _attr(h, name, path):
    if name not in h.attrs:
        raise WeightsError(f"{path}: missing attribute {name!r} (present: {_names(sorted(h.attrs))}); "
                           f"see weights/FORMAT.md")
    v = h.attrs[name]
    if isinstance(v, bytes):
        v = v.decode()
    return v


def _version(ver, path) -> int:
    """``format_version`` as an int: an integer, or a float with an integral value; WeightsError else."""
    if isinstance(ver, np.ndarray) and ver.shape in ((), (1,)):
        ver = ver.reshape(-1)[0]
    if isinstance(ver, np.generic):
        ver = ver.item()
    if isinstance(ver, int) and not isinstance(ver, bool):
        return ver
    if isinstance(ver, float) and np.isfinite(ver) and ver.is_integer():
        return int(ver)
    raise WeightsError(f"{path}: format_version {ver!r} is not an integer (expected {FORMAT_VERSION})")


def read_hdf5(path) -> WeightFile:
    """Read and validate a weights file.

    Every failure is a WeightsError naming the file: any exception of h5py on a corrupt
    file included (with what was being read).
    """
    import h5py

    if not isinstance(path, (str, bytes, os.PathLike)):
        raise WeightsError(f"weights path must be a str or path, got {type(path).__name__} {repr(path)[:100]}")
    path = os.fsdecode(path)
    if path == "":
        raise WeightsError("the weights path is empty; expected an HDF5 weights file, "
                           "e.g. weights/camvid-shared-f51.h5")
    if not os.path.exists(path):
        raise WeightsError(f"{path}: no such file")
    if os.path.isdir(path):
        raise WeightsError(f"{path}: is a directory, expected an HDF5 weights file")
    try:
        h = h5py.File(path, "r")
    except Exception as e:  # OSError for "not HDF5"; a corrupt superblock can raise others
        raise WeightsError(f"{path}: not a readable HDF5 file ({type(e).__name__}: {e})") from None
    what = ["the root attributes"]  # what is being read, for the message of an unexpected h5py error
    try:
        with h:
            wf = _read_open(h, path, what)
    except WeightsError:
        raise
    except Exception as e:
        raise WeightsError(f"{path}: cannot read {what[0]}, the file is corrupt ({type(e).__name__}: "
                           f"{str(e)[:300]})") from None
    what[0] = "the folded parameters"
    _check_folded(wf, path)
    return wf


def _read_open(h, path: str, what: list) -> WeightFile:
    import h5py

    fmt = _attr(h, "format", path)
    if fmt != FORMAT_NAME:
        raise WeightsError(f"{path}: unknown format {repr(fmt)[:100]}, expected {FORMAT_NAME!r}")
    ver = _version(_attr(h, "format_version", path), path)
    if ver not in READ_VERSIONS:
        raise WeightsError(
            f"{path}: format_version {ver} is not supported (this minitnet reads versions "
            f"{', '.join(map(str, READ_VERSIONS))})"
        )
    what[0] = "the attribute 'config'"
    cfg_json = _attr(h, "config", path)
    if not isinstance(cfg_json, str):
        raise WeightsError(f"{path}: attribute 'config' must be a JSON string, got {type(cfg_json).__name__}")
    try:
        cfg = ItNetConfig.from_json(cfg_json)
    except ConfigError as e:
        raise WeightsError(f"{path}: invalid configuration attribute: {str(e)[:500]}") from None
    what[0] = "the normalisation attributes"
    scale, offset = _norm_arrays({"scale": _attr(h, "norm_scale", path), "offset": _attr(h, "norm_offset", path)},
                                 path)
    what[0] = "the attribute 'bn_eps'"
    raw_eps = h.attrs.get("bn_eps", BN_EPS)
    try:
        bn_eps = float(raw_eps)
    except (TypeError, ValueError):
        raise WeightsError(f"{path}: bn_eps {repr(getattr(raw_eps, 'tolist', lambda: raw_eps)())[:100]} "
                           f"is not a number") from None
    if not (np.isfinite(bn_eps) and bn_eps >= 0):
        raise WeightsError(f"{path}: bn_eps must be a finite number >= 0, got {bn_eps}")
    what[0] = "the attribute 'metadata'"
    try:
        metadata = json.loads(h.attrs.get("metadata", "{}"))
    except (TypeError, ValueError):
        metadata = {}
    if not isinstance(metadata, dict):
        metadata = {}
    what[0] = "the group 'tensors'"
    if "tensors" not in h:
        raise WeightsError(f"{path}: missing group 'tensors' (top-level keys: {_names(sorted(h.keys()))})")
    g = h["tensors"]
    if not isinstance(g, h5py.Group):
        raise WeightsError(f"{path}: 'tensors' is a {type(g).__name__.lower()}, expected a group of datasets "
                           f"(see weights/FORMAT.md)")
    what[0] = "the names in group 'tensors'"
    exp = _check_names(cfg, list(g.keys()), path)
    tensors = {}
    for k in sorted(exp):
        what[0] = f"tensor {k!r}"
        d = g[k]
        if not isinstance(d, h5py.Dataset):
            raise WeightsError(f"{path}: tensors/{k} is a {type(d).__name__.lower()}, expected a dataset")
        if tuple(d.shape or ()) != exp[k]:  # before reading: a corrupt header may claim a huge shape
            raise WeightsError(f"{path}: tensor {k!r} has shape {tuple(d.shape or ())}, expected {exp[k]} "
                               f"for {_cfg_str(cfg)}")
        if d.dtype != np.float32:
            raise WeightsError(f"{path}: tensor {k!r} has dtype {d.dtype}, expected float32")
        try:
            v = np.array(d[()], dtype=np.float32, order="C")
        except OSError as e:
            raise WeightsError(f"{path}: tensor {k!r} cannot be read, the file may be corrupt ({e})") from None
        _check_tensor(k, v, exp[k], path, cfg)
        tensors[k] = v
    what[0] = "the group 'input_ranges'"
    ranges = _read_ranges(h, cfg, path) if ver >= 2 else {}
    return WeightFile(cfg, tensors, scale, offset, bn_eps, metadata, ranges)


def _read_ranges(h, cfg: ItNetConfig, path: str) -> dict[str, float]:
    """The optional group ``input_ranges`` of a version-2 file (scalar float32 datasets), checked."""
    import h5py

    if "input_ranges" not in h:
        return {}
    g = h["input_ranges"]
    if not isinstance(g, h5py.Group):
        raise WeightsError(f"{path}: 'input_ranges' is a {type(g).__name__.lower()}, expected a group of scalars")
    raw = {}
    for k in g.keys():
        d = g[k]
        if not isinstance(d, h5py.Dataset) or tuple(d.shape or ()) not in ((), (1,)):
            raise WeightsError(f"{path}: input_ranges/{k} must be one number (a scalar dataset), got "
                               f"{type(d).__name__.lower()} of shape {getattr(d, 'shape', None)}")
        raw[k] = d[()]
    return check_input_ranges(cfg, raw, path)


def _check_folded(wf: WeightFile, path: str) -> None:
    """WeightsError if folding the BatchNorms gives non-finite or implausible (> PARAM_BOUND) parameters."""
    from .graph import build_graph

    fold_weights(build_graph(wf.config, 64, 64), wf.tensors, wf.bn_eps, where=path)


# -- folding ----------------------------------------------------------------------------
def _bn_scale_shift(t: dict, prefix: str, eps: float, ch: tuple[int, int]):
    a, b = ch
    g = t[f"{prefix}.weight"][a:b].astype(np.float64)
    beta = t[f"{prefix}.bias"][a:b].astype(np.float64)
    mean = t[f"{prefix}.running_mean"][a:b].astype(np.float64)
    var = t[f"{prefix}.running_var"][a:b].astype(np.float64)
    s = g / np.sqrt(var + eps)
    return s, beta - mean * s


def fold_weights(graph: Graph, tensors: dict, bn_eps: float = BN_EPS,
                 where: str = "fold_weights") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per unique layer of ``graph``: conv -> (w, b) with BN folded; affine -> (scale, shift).

    Folding is done in float64 and rounded once to float32. WeightsError (prefixed by
    ``where``) names the layer and its tensors when a folded value is not finite (e.g.
    bn_eps = 0 with a running_var of 0) or beyond ``PARAM_BOUND``.
    """
    out = {}
    with np.errstate(all="ignore"):
        for name, lay in graph.layers.items():
            out[name] = _fold_layer(name, lay, tensors, bn_eps)
            _check_fold(name, lay, out[name], bn_eps, where)
    return out


def _check_fold(name, lay, folded, bn_eps, where) -> None:
    m = max(float(np.max(np.abs(a), initial=0.0)) for a in folded)  # NaN propagates
    if m <= PARAM_BOUND:
        return
    bad = sum(int(np.size(a) - np.count_nonzero(np.isfinite(a))) for a in folded)
    src = ([f"{name}.weight"] + ([f"{name}.bias"] if lay.bias else [])) if lay.kind == "conv" else []
    if lay.bn is not None:
        src.append(f"{lay.bn}.{{weight,bias,running_mean,running_var}}")
    what = f"{bad} non-finite values" if bad else f"values up to {m:.3g} (more than {PARAM_BOUND:g})"
    raise WeightsError(f"{where}: folding layer {name!r} (tensors {', '.join(src)}; bn_eps={bn_eps:g}) gives "
                       f"{what}: the weights overflow float32 (e.g. a running_var of 0 with bn_eps = 0, "
                       f"or huge weights); see minitnet.weights.PARAM_BOUND")


def _fold_layer(name, lay, tensors, bn_eps) -> tuple[np.ndarray, np.ndarray]:
    if lay.kind == "conv":
        w = tensors[f"{name}.weight"].astype(np.float64)
        b = tensors[f"{name}.bias"].astype(np.float64) if lay.bias else np.zeros(lay.out_channels)
        if lay.bn is not None:
            s, shift = _bn_scale_shift(tensors, lay.bn, bn_eps, lay.bn_channels)
            w = w * s[:, None, None, None]
            b = b * s + shift
        return np.ascontiguousarray(w, np.float32), np.ascontiguousarray(b, np.float32)
    if lay.kind == "affine":
        s, shift = _bn_scale_shift(tensors, lay.bn, bn_eps, lay.bn_channels)
        return np.ascontiguousarray(s, np.float32), np.ascontiguousarray(shift, np.float32)
    raise ValueError(f"unknown layer kind {lay.kind!r}")
