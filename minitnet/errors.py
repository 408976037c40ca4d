"""Exception types. Every error minitnet raises on bad input derives from MinitnetError."""


class MinitnetError(Exception):
    """Base class of all minitnet errors."""


class ShapeError(MinitnetError, ValueError):
    """An array has the wrong rank, shape, dtype or layout."""


class ConfigError(MinitnetError, ValueError):
    """An ItNetConfig (or a CLI flag building one) is invalid."""


class WeightsError(MinitnetError):
    """A weights file is missing, corrupt, or does not match the network."""


class DataError(MinitnetError):
    """An image, label map or dataset folder is unreadable or inconsistent."""


class NumericalError(MinitnetError, ArithmeticError):
    """A computation produced NaN or inf (non-finite logits), so its result would be meaningless."""
