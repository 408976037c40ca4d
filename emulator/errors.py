"""Exception types of the emulator.

``ConfigError`` derives from :class:`minitnet.errors.ConfigError`, hence from
``MinitnetError`` (one ``except MinitnetError`` catches every error of the
project) and from ``ValueError`` (a bad configuration is a bad value). Shape
problems raise :class:`minitnet.errors.ShapeError` and arguments of the wrong
type :class:`minitnet.errors.InputTypeError`, re-exported here for convenience
with the rest of the policy (``minitnet/errors.py``).
"""

from minitnet.errors import ConfigError as _MinitnetConfigError
from minitnet.errors import InputTypeError, MinitnetError, ShapeError, WeightsError

__all__ = ["ConfigError", "InputTypeError", "MinitnetError", "ShapeError", "WeightsError"]


class ConfigError(_MinitnetConfigError):
    """A HardwareConfig, a preset name or override, or a tile setting is invalid."""
