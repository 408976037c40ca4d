"""Exception types.

The policy: every error a user can trigger (a bad argument, flag, file, image or setting) is
a ``MinitnetError`` subclass, raised with ``raise`` (never ``assert``) and a message that says
what failed, the values received, what was expected and a hint. Each subclass also derives
from the built-in a caller would expect (``ValueError``, ``TypeError``, ...), so
``except ValueError`` keeps working. The CLI turns a ``MinitnetError`` into
``minitnet COMMAND: error: ...`` and exit status 1; anything else is a bug and shows its
traceback. The emulator's ``emulator.ConfigError`` derives from ``ConfigError`` here.
"""


class MinitnetError(Exception):
    """Base class of all minitnet errors."""


class ShapeError(MinitnetError, ValueError):
    """An array has the wrong rank, shape, dtype or layout."""


class ConfigError(MinitnetError, ValueError):
    """An ItNetConfig (or a CLI flag building one) is invalid."""


class InputTypeError(MinitnetError, TypeError):
    """An argument has the wrong Python type (not an ItNet, not a numpy Generator, ...)."""


class WeightsError(MinitnetError):
    """A weights file is missing, corrupt, or does not match the network."""


class DataError(MinitnetError):
    """An image, label map or dataset folder is unreadable or inconsistent."""


class NumericalError(MinitnetError, ArithmeticError):
    """A computation produced NaN or inf (non-finite logits), so its result would be meaningless."""
