"""Optional PyTorch side of minitnet (needs the ``torch`` extra).

``TorchItNet`` is a plain ``torch.nn.Module`` of the same architecture as the
engine runs, for training elsewhere; ``export_hdf5`` writes its weights in the
format that ``minitnet.load`` reads. The engine never imports this package.
"""

try:
    import torch as _torch  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "minitnet.torch needs PyTorch: pip install 'minitnet[torch]' (or pip install torch==2.13.0)"
    ) from e

from .model import TorchItNet
from .export import export_hdf5

__all__ = ["TorchItNet", "export_hdf5"]
