"""Reading tabular source files with one clear error for a wrong or missing column."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from datamodules.base import DataError


def read_table(path: Path, required: list[str], atomic: bool = False, **read_csv_kwargs) -> pd.DataFrame:
    """pandas.read_csv, then check that every required column is there (compression inferred from the name).

    `atomic=True` reads RecBole atomic headers (`name:type`) by their names.
    """
    try:
        frame = pd.read_csv(path, **read_csv_kwargs)
    except (ValueError, pd.errors.ParserError) as err:
        raise DataError(f"cannot parse {path}: {err}") from err
    if atomic:
        frame = frame.rename(columns=lambda c: str(c).split(":", 1)[0])
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {', '.join(missing)}; it has {', '.join(map(str, frame.columns))}. "
                        f"Check that this is the expected file.")
    if frame.empty:
        raise DataError(f"{path} has no rows")
    return frame

