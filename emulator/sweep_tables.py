"""A sweep's results table: Parquet or CSV by the file's suffix, written atomically."""

from __future__ import annotations

import math
import os
from pathlib import Path

from minitnet.errors import DataError, MinitnetError

from .errors import ConfigError
from .sweep_dask import INSTALL_HINT

__all__ = ["TABLE_SUFFIXES", "pandas", "check_out", "read_table", "write_table", "merge_rows", "json_rows"]

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


def merge_rows(pd, kept, new_rows):
    """``kept`` (a DataFrame) with the rows of ``new_rows`` ({cell: rows}); a cell run again replaces its old rows."""
    new = pd.DataFrame([r for rows in new_rows.values() for r in rows])
    if not len(kept):
        return new
    if not len(new):
        return kept
    # a cell run again (its rows were incomplete) replaces its old rows
    kept = kept[~kept["cell"].isin(new["cell"])] if "cell" in kept.columns else kept
    return pd.concat([kept, new], ignore_index=True)


def json_rows(p, table) -> list[dict]:
    """The rows of ``--json`` for plan ``p`` (``emulator.sweep.plan``): weights, every swept field by its HardwareConfig name, chip, seed,
    output, miou (None where NaN), in plan order. Field values come from the plan (not the
    file), so they keep their types whatever the table format."""
    if not len(table):
        return []
    miou = {(c, int(o)): float(m) for c, o, m in zip(table["cell"], table["output"], table["miou"])}
    rows = []
    for c in p.cells:
        swept = dict(c.setting.overrides)
        for n in p.nets[c.weights].config.head_iterations:
            m = miou.get((c.key, int(n)))
            if m is None:
                continue
            row = {"weights": str(p.spec.weights[c.weights])}
            if any(s.preset != p.spec.settings[0].preset for s in p.spec.settings):
                row["preset"] = c.setting.preset
            row.update({f: swept.get(f) for f in p.spec.fields})
            row.update(chip=c.chip, seed=c.seed, output=int(n), miou=None if not math.isfinite(m) else m)
            rows.append(row)
    return rows
