"""Export a TorchItNet's weights to the HDF5 format of weights/FORMAT.md."""

from __future__ import annotations

import os

import torch

from ..weights import CAMVID_NORMALISATION, write_hdf5
from .model import TorchItNet

__all__ = ["export_hdf5"]


def export_hdf5(module: TorchItNet, path: str | os.PathLike, normalisation: dict | None = None,
                metadata: dict | None = None, input_ranges: dict | None = None) -> None:
    """Write ``module``'s parameters and BN statistics to ``path`` (float32).

    normalisation: ``{"scale": (3,), "offset": (3,)}`` so that the model input is
    ``pixels * scale + offset`` for uint8 RGB pixels; defaults to CamVid's pixels / 255.
    metadata: optional JSON-serialisable provenance (epochs, data, mIoU, ...).
    input_ranges: {conv layer: learned DAC range} of hardware-aware training (format version 2).
    """
    if not isinstance(module, TorchItNet):
        raise TypeError(f"export_hdf5: expected a TorchItNet, got {type(module).__name__}")
    tensors = {}
    for k, v in module.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        tensors[k] = v.detach().to(torch.float32).cpu().numpy()
    write_hdf5(path, module.config, tensors, normalisation or CAMVID_NORMALISATION, metadata=metadata,
               input_ranges=input_ranges)
