"""Exception types of the emulator.

``ConfigError`` derives from :class:`minitnet.errors.MinitnetError` (so one
``except MinitnetError`` catches every error of the project) and from
``ValueError`` (a bad configuration is a bad value).  Shape problems raise
:class:`minitnet.errors.ShapeError`, re-exported here for convenience.
"""

from minitnet.errors import MinitnetError, ShapeError, WeightsError

__all__ = ["ConfigError", "MinitnetError", "ShapeError", "WeightsError"]


class ConfigError(MinitnetError, ValueError):
    """A HardwareConfig, a preset name or override, or a tile setting is invalid."""
