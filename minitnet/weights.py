"""Reading and writing ItNet weights in HDF5 (the format of weights/FORMAT.md).

Everything that can be wrong with a file raises ``WeightsError`` naming the
problem: not HDF5, unknown format or version, a bad configuration, missing or
unexpected tensors (listed, sorted), a wrong shape (expected vs found), a wrong
dtype or non-finite values.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .config import ItNetConfig
from .errors import ConfigError, WeightsError

if TYPE_CHECKING:
    from .graph import Graph

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "CAMVID_NORMALISATION", "CITYSCAPES_NORMALISATION",
    "WeightFile", "expected_tensors", "read_hdf5", "write_hdf5",
]

FORMAT_NAME = "minitnet-itnet"
FORMAT_VERSION = 1
BN_EPS = 1e-5

#: pixels / 255 (paper II-D, CamVid)
CAMVID_NORMALISATION = {"scale": [1 / 255] * 3, "offset": [0.0] * 3}
#: pixels / 127.5 - 1 (paper II-D, Cityscapes)
CITYSCAPES_NORMALISATION = {"scale": [1 / 127.5] * 3, "offset": [-1.0] * 3}

_BN = ("weight", "bias", "running_mean", "running_var")


def expected_tensors(cfg: ItNetConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor name of ``cfg``'s network with its shape (PyTorch state-dict keys)."""
    f, fr, L, hid, C = cfg.width, cfg.f_r, cfg.levels, cfg.hidden, cfg.classes
    t: dict[str, tuple[int, ...]] = {}

    def bn(prefix, c):
        for p in _BN:
            t[f"{prefix}.{p}"] = (c,)

    t["stem1.conv.weight"] = (f - 3, 3, 3, 3)
    bn("stem1.bn", f)
    t["stem2.conv.weight"] = (f, f, 3, 3)
    bn("stem2.bn", 2 * f)
    for l in range(L):
        t[f"scales.{l}.conv.weight"] = (fr, 2 * f, 3, 3)
        bn(f"scales.{l}.bn", fr)
    for b in range(cfg.bodies):
        if cfg.body_has_mix(b):
            for l in range(L):
                t[f"bodies.{b}.mix.{l}.weight"] = (fr, L * fr, 3, 3)
        for l in range(L):
            for k in range(cfg.blocks):
                p = f"bodies.{b}.brb.{l}.{k}"
                t[f"{p}.expand.weight"] = (hid, fr, 1, 1)
                t[f"{p}.dw.weight"] = (hid, 1, 3, 3)
                t[f"{p}.project.weight"] = (fr, hid, 1, 1)
    for n in range(2, cfg.iterations + 1):
        for l in range(L):
            bn(f"inter_bn.{n}.{l}", fr)
    for n in cfg.head_iterations:
        t[f"heads.{n}.weight"] = (C, L * fr, 1, 1)
        t[f"heads.{n}.bias"] = (C,)
    return t


@dataclass
class WeightFile:
    """The validated content of a weights file."""

    config: ItNetConfig
    tensors: dict[str, np.ndarray]
    norm_scale: np.ndarray  # (3,) float32
    norm_offset: np.ndarray  # (3,) float32
    bn_eps: float
    metadata: dict


def _norm_arrays(normalisation) -> tuple[np.ndarray, np.ndarray]:
    try:
        scale = np.asarray(normalisation["scale"], dtype=np.float32).reshape(-1)
        offset = np.asarray(normalisation["offset"], dtype=np.float32).reshape(-1)
    except (KeyError, TypeError, ValueError) as e:
        raise WeightsError(
            f"normalisation must be a dict with 'scale' and 'offset' (3 numbers each), got {normalisation!r} ({e})"
        ) from None
    if scale.shape == (1,):
        scale = np.repeat(scale, 3)
    if offset.shape == (1,):
        offset = np.repeat(offset, 3)
    if scale.shape != (3,) or offset.shape != (3,):
        raise WeightsError(f"normalisation scale and offset need 3 values (RGB), got {scale.shape} and {offset.shape}")
    if not (np.all(np.isfinite(scale)) and np.all(np.isfinite(offset))) or np.any(scale == 0):
        raise WeightsError(f"normalisation must be finite with non-zero scale, got scale={scale}, offset={offset}")
    return scale, offset


def write_hdf5(path, cfg: ItNetConfig, tensors: dict, normalisation=None, metadata: dict | None = None,
               bn_eps: float = BN_EPS) -> None:
    """Write a weights file. ``tensors`` must hold exactly ``expected_tensors(cfg)``."""
    import h5py

    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
    _check_tensors(cfg, tensors, where="write_hdf5")
    scale, offset = _norm_arrays(normalisation or CAMVID_NORMALISATION)
    tmp = os.fspath(path) + ".tmp"
    with h5py.File(tmp, "w") as h:
        h.attrs["format"] = FORMAT_NAME
        h.attrs["format_version"] = FORMAT_VERSION
        h.attrs["config"] = cfg.to_json()
        h.attrs["norm_scale"] = scale
        h.attrs["norm_offset"] = offset
        h.attrs["bn_eps"] = float(bn_eps)
        h.attrs["metadata"] = json.dumps(metadata or {}, sort_keys=True)
        g = h.create_group("tensors")
        for k in sorted(tensors):
            g.create_dataset(k, data=tensors[k], compression="gzip", compression_opts=4, shuffle=True)
    os.replace(tmp, path)  # never leave a half-written file under the real name


def _check_tensors(cfg: ItNetConfig, tensors: dict, where: str) -> None:
    exp = expected_tensors(cfg)
    missing = sorted(set(exp) - set(tensors))
    unexpected = sorted(set(tensors) - set(exp))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing}")
        if unexpected:
            parts.append(f"unexpected tensors {unexpected}")
        raise WeightsError(f"{where}: tensors do not match the configuration {cfg}: " + "; ".join(parts))
    for k in sorted(exp):
        v = tensors[k]
        if tuple(v.shape) != exp[k]:
            raise WeightsError(f"{where}: tensor {k!r} has shape {tuple(v.shape)}, expected {exp[k]} for {cfg}")
        if v.dtype != np.float32:
            raise WeightsError(f"{where}: tensor {k!r} has dtype {v.dtype}, expected float32")
        if not np.all(np.isfinite(v)):
            bad = int(np.size(v) - np.count_nonzero(np.isfinite(v)))
            raise WeightsError(f"{where}: tensor {k!r} has {bad} non-finite values (NaN or inf)")
        if k.endswith("running_var") and np.any(v < 0):
            raise WeightsError(f"{where}: tensor {k!r} has negative variances (min {v.min()})")


def _attr(h, name, path):
    if name not in h.attrs:
        raise WeightsError(f"{path}: missing attribute {name!r} (present: {sorted(h.attrs)}); see weights/FORMAT.md")
    v = h.attrs[name]
    if isinstance(v, bytes):
        v = v.decode()
    return v


def read_hdf5(path) -> WeightFile:
    """Read and validate a weights file."""
    import h5py

    path = os.fspath(path)
    if not os.path.exists(path):
        raise WeightsError(f"{path}: no such file")
    if os.path.isdir(path):
        raise WeightsError(f"{path}: is a directory, expected an HDF5 weights file")
    try:
        h = h5py.File(path, "r")
    except OSError as e:
        raise WeightsError(f"{path}: not a readable HDF5 file ({e})") from None
    with h:
        fmt = _attr(h, "format", path)
        if fmt != FORMAT_NAME:
            raise WeightsError(f"{path}: unknown format {fmt!r}, expected {FORMAT_NAME!r}")
        ver = _attr(h, "format_version", path)
        try:
            ver = int(ver)
        except (TypeError, ValueError):
            raise WeightsError(f"{path}: format_version {ver!r} is not an integer") from None
        if ver != FORMAT_VERSION:
            raise WeightsError(
                f"{path}: format_version {ver} is not supported (this minitnet reads version {FORMAT_VERSION})"
            )
        try:
            cfg = ItNetConfig.from_json(_attr(h, "config", path))
        except ConfigError as e:
            raise WeightsError(f"{path}: invalid configuration attribute: {e}") from None
        scale, offset = _norm_arrays({"scale": _attr(h, "norm_scale", path), "offset": _attr(h, "norm_offset", path)})
        try:
            bn_eps = float(h.attrs.get("bn_eps", BN_EPS))
        except (TypeError, ValueError):
            raise WeightsError(f"{path}: bn_eps {h.attrs.get('bn_eps')!r} is not a number") from None
        if not (np.isfinite(bn_eps) and bn_eps >= 0):
            raise WeightsError(f"{path}: bn_eps must be a finite number >= 0, got {bn_eps}")
        try:
            metadata = json.loads(h.attrs.get("metadata", "{}"))
        except (TypeError, ValueError):
            metadata = {}
        if "tensors" not in h or not isinstance(h["tensors"], h5py.Group):
            raise WeightsError(f"{path}: missing group 'tensors' (top-level keys: {sorted(h.keys())})")
        g = h["tensors"]
        tensors = {}
        for k in g.keys():
            d = g[k]
            if not isinstance(d, h5py.Dataset):
                raise WeightsError(f"{path}: tensors/{k} is a group, expected a dataset")
            if d.dtype != np.float32:
                raise WeightsError(f"{path}: tensor {k!r} has dtype {d.dtype}, expected float32")
            try:
                tensors[k] = np.ascontiguousarray(d[()])
            except OSError as e:
                raise WeightsError(f"{path}: tensor {k!r} cannot be read, the file may be corrupt ({e})") from None
    _check_tensors(cfg, tensors, where=path)
    return WeightFile(cfg, tensors, scale, offset, bn_eps, metadata)


# -- folding ----------------------------------------------------------------------------
def _bn_scale_shift(t: dict, prefix: str, eps: float, ch: tuple[int, int]):
    a, b = ch
    g = t[f"{prefix}.weight"][a:b].astype(np.float64)
    beta = t[f"{prefix}.bias"][a:b].astype(np.float64)
    mean = t[f"{prefix}.running_mean"][a:b].astype(np.float64)
    var = t[f"{prefix}.running_var"][a:b].astype(np.float64)
    s = g / np.sqrt(var + eps)
    return s, beta - mean * s


def fold_weights(graph: Graph, tensors: dict, bn_eps: float = BN_EPS) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per unique layer of ``graph``: conv -> (w, b) with BN folded; affine -> (scale, shift).

    Folding is done in float64 and rounded once to float32.
    """
    out = {}
    for name, lay in graph.layers.items():
        if lay.kind == "conv":
            w = tensors[f"{name}.weight"].astype(np.float64)
            b = tensors[f"{name}.bias"].astype(np.float64) if lay.bias else np.zeros(lay.out_channels)
            if lay.bn is not None:
                s, shift = _bn_scale_shift(tensors, lay.bn, bn_eps, lay.bn_channels)
                w = w * s[:, None, None, None]
                b = b * s + shift
            out[name] = (np.ascontiguousarray(w, np.float32), np.ascontiguousarray(b, np.float32))
        elif lay.kind == "affine":
            s, shift = _bn_scale_shift(tensors, lay.bn, bn_eps, lay.bn_channels)
            out[name] = (np.ascontiguousarray(s, np.float32), np.ascontiguousarray(shift, np.float32))
        else:  # pragma: no cover - graph.py defines the kinds
            raise ValueError(f"unknown layer kind {lay.kind!r}")
    return out
