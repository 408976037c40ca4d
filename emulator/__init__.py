"""emulator: ItNets on analog in-memory-computing crossbar tiles (see emulator/README.md).

The public API is exactly the names imported below; to export more (e.g. the
graph mapping's ``program`` and ``run``), add one ``from .<module> import ...`` line.
"""

import types as _types

from .errors import ConfigError
from .config import PRESETS, HardwareConfig, preset
from .crossbar import ProgrammedTile, calibrate_tile, mvm, program_tile
from .mapping import Chip, ChipBackend, ProgrammedLayer, format_report, mapping_report, program, run
from .timing import Mapping, TimingConfig, time_graph

__all__ = sorted(_name for _name, _value in dict(globals()).items()
                 if not _name.startswith("_") and not isinstance(_value, _types.ModuleType))
