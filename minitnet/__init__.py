"""minitnet: iterative neural networks (ItNets) without a deep-learning framework."""

from .config import ItNetConfig
from .errors import ConfigError, DataError, MinitnetError, NumericalError, ShapeError, WeightsError
from .files import ensure_numba_cache as _ensure_numba_cache

_ensure_numba_cache()  # before numba compiles anything: a temporary cache where none is writable

__all__ = ["ItNetConfig", "MinitnetError", "ShapeError", "ConfigError", "WeightsError", "DataError", "NumericalError",
           "load", "ItNet"]
__version__ = "0.1.0"


def __getattr__(name):  # lazy: importing minitnet stays cheap, numba compiles on first use
    if name in ("load", "ItNet"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'minitnet' has no attribute {name!r}")
