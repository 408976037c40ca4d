"""emulator: ItNets on analog in-memory-computing crossbar tiles (see emulator/README.md).

The public API is exactly the names imported below; to export more, add one ``from .<module> import ...`` line.
"""

import types as _types

from .errors import ConfigError
from .config import PRESETS, HardwareConfig, preset
from .crossbar import ProgrammedTile, calibrate_tile, mvm, program_tile
from .analog import AnalogOptions
from .backend import ChipBackend
from .calibration import CalibrationWarning
from .chip import Chip, program, run
from .programming import ProgrammedLayer
from .report import format_report, mapping_report
from .timing import Mapping, TimingConfig, time_graph

__all__ = sorted(_name for _name, _value in dict(globals()).items()
                 if not _name.startswith("_") and not isinstance(_value, _types.ModuleType))
