"""A sweep's results table: Parquet or CSV by the file's suffix, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

from minitnet.errors import DataError, MinitnetError

from .errors import ConfigError
from .sweep_dask import INSTALL_HINT

__all__ = ["TABLE_SUFFIXES", "pandas", "check_out", "read_table", "write_table"]

TABLE_SUFFIXES = (".parquet", ".csv")


def pandas():
    try:
        import pandas as pd
    except ImportError as e:
        raise MinitnetError(f"the sweep's tables need pandas ({e}); {INSTALL_HINT}") from None
    return pd


def check_out(path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise ConfigError(f"sweep: --out {path}: expected a .parquet or .csv file (the suffix picks the format)")
    if not path.parent.is_dir():
        raise ConfigError(f"sweep: --out {path}: folder {path.parent} does not exist")
    return path


def read_table(path):
    """The table at ``path`` (.parquet or .csv) as a DataFrame."""
    pd = pandas()
    path = check_out(path)
    try:
        return pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    except Exception as e:  # a truncated or foreign file: say which, and what to do
        raise DataError(f"sweep: cannot read the results table {path} ({type(e).__name__}: {e}); "
                        f"move it away to start afresh") from None


def write_table(df, path) -> None:
    """Write ``df`` to ``path`` atomically: a temporary file beside it, then ``os.replace``."""
    path = check_out(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if path.suffix.lower() == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
