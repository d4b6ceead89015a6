"""Reading tabular source files with one clear error for a wrong or missing column or a value that is not a number."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from datamodules.base import DataError


def read_table(path: Path, required: list[str], atomic: bool = False, numeric: tuple[str, ...] = (),
               **read_csv_kwargs) -> pd.DataFrame:
    """pandas.read_csv, then check that every required column is there (compression inferred from the name) and
    that every `numeric` column holds a finite number on every row (they come back as numbers).

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
    header_lines = 0 if "names" in read_csv_kwargs and read_csv_kwargs.get("header") is None else 1
    for column in numeric:
        frame[column] = finite_numbers(frame[column], path, column, header_lines)
    return frame


def finite_numbers(values: pd.Series, path: Path, column: str, header_lines: int = 1) -> pd.Series:
    """`values` as numbers; an empty, non-numeric or infinite entry is a DataError naming the file, the line, the
    column, the value and the fix (never cast silently: a NaN timestamp cast to int64 is a huge negative time)."""
    numbers = pd.to_numeric(values, errors="coerce")
    bad = ~np.isfinite(numbers.to_numpy(dtype=np.float64, na_value=np.nan))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raw = values.iloc[row]
        shown = "empty" if pd.isna(raw) else f"{str(raw)[:40]!r}"
        raise DataError(f"{path} line {row + 1 + header_lines}: column {column!r} is {shown}, not a finite number "
                        f"({int(bad.sum())} such row(s)). Every row needs one: fix or delete those lines, or check "
                        f"that the file has all its columns and the expected separator.")
    return numbers

