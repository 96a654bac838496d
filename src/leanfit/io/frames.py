"""In-memory data as a stream of Arrow tables, written to Parquet one frame at a time.

pandas and polars DataFrames, Arrow tables and record batches, and 2-D arrays with
column names, become Arrow tables; :func:`write_frames` writes an iterable of them
to one Parquet file as they arrive, so the iterable is never held whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from leanfit.errors import InputError

WHO = "StreamingClassifier.fit"


def to_arrow(frame: Any) -> pa.Table:
    if isinstance(frame, pd.DataFrame):
        return pa.Table.from_pandas(frame, preserve_index=False)
    if isinstance(frame, pl.DataFrame):
        return frame.to_arrow()
    if isinstance(frame, pa.RecordBatch):
        return pa.Table.from_batches([frame])
    if isinstance(frame, pa.Table):
        return frame
    raise InputError(
        f"{WHO}: the iterable must yield pandas or polars DataFrames or "
        f"Arrow tables. Got {type(frame).__name__}."
    )


def renamed(table: pa.Table, names: list[str]) -> pa.Table:
    return table if table.column_names == names else table.rename_columns(names)


def array_table(X: np.ndarray, names: list[str]) -> pa.Table:
    """Named columns of a 2-D array; NaN becomes null (a missing value)."""
    columns = [pa.array(np.ascontiguousarray(X[:, j]), from_pandas=True) for j in range(X.shape[1])]
    return pa.table(columns, names=names)


def write_frames(frames: Iterable[Any], path: Path, target: str) -> None:
    """Write each frame to one Parquet file as it arrives. Each frame must have the
    first frame's columns and types (or types that cast to them)."""
    writer: pq.ParquetWriter | None = None
    try:
        for index, frame in enumerate(frames):
            table = to_arrow(frame).replace_schema_metadata(None)
            if writer is None:
                if target not in table.column_names:
                    raise InputError(
                        f"{WHO}: the target column '{target}' is not in the "
                        f"data. Columns: {', '.join(table.column_names)}."
                    )
                writer = pq.ParquetWriter(path, table.schema)
            elif not table.schema.equals(writer.schema):
                table = conform(table, writer.schema, index)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise InputError(f"{WHO}: the data holds no frames: nothing to train on.")


def conform(table: pa.Table, schema: pa.Schema, index: int) -> pa.Table:
    try:
        return table.select(schema.names).cast(schema)
    except (KeyError, ValueError, pa.ArrowException) as exc:
        raise InputError(
            f"{WHO}: frame {index} does not match the first frame "
            f"(columns {schema.names} with types {schema.types}): {exc}"
        ) from None
