"""In-memory and lazy data as inputs: lazy frames read again on every pass, or a
one-shot stream written to Parquet one frame at a time.

:func:`frame_input` makes an :class:`~leanfit.io.formats.Input` of data held by the
caller: a polars LazyFrame is scanned as it is (never collected: each pass runs its
query again, streaming); a polars or pandas DataFrame or an Arrow table is read in
place; a ``pyarrow.dataset.Dataset`` is scanned by batches. A RecordBatchReader or an
iterable of frames can be read only once, so it is written to a temporary Parquet
file as it arrives (never held whole) and read from there.

:func:`frame_batches` gives the frames of such data for applying a model, and 2-D
numpy arrays as frames of the model's columns.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from leanfit.errors import InputError
from leanfit.io.formats import Form, Input, names_files

WHO = "StreamingClassifier.fit"


def to_arrow(frame: Any, who: str = WHO) -> pa.Table:
    if _is_pandas(frame):
        try:
            return pa.Table.from_pandas(frame, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InputError(f"{who}: {mixed_types(frame, exc)}") from None
    if isinstance(frame, pl.DataFrame):
        return frame.to_arrow()
    if isinstance(frame, pa.RecordBatch):
        return pa.Table.from_batches([frame])
    if isinstance(frame, pa.Table):
        return frame
    raise InputError(
        f"{who}: the iterable must yield pandas or polars DataFrames or "
        f"Arrow tables. Got {type(frame).__name__}."
    )


def mixed_types(frame: Any, exc: Exception) -> str:
    """What pyarrow's refusal of a pandas column holding several types means."""
    column = None
    for name in frame.columns:
        try:
            pa.array(frame[name], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            column = name
            break
    return (
        f"column {column!r} holds values of more than one type ({exc.args[0]}); give it "
        f"one type (e.g. df[{column!r}].astype(str))."
    )


def renamed(table: pa.Table, names: list[str]) -> pa.Table:
    return table if table.column_names == names else table.rename_columns(names)


def array_table(X: np.ndarray, names: list[str]) -> pa.Table:
    """Named columns of a 2-D array; NaN becomes null (a missing value)."""
    columns = [pa.array(np.ascontiguousarray(X[:, j]), from_pandas=True) for j in range(X.shape[1])]
    return pa.table(columns, names=names)


def write_frames(frames: Iterable[Any], path: Path, target: str | None, who: str = WHO) -> None:
    """Write each frame to one Parquet file as it arrives. Each frame must have the
    first frame's columns and types (or types that cast to them)."""
    writer: pq.ParquetWriter | None = None
    try:
        for index, frame in enumerate(frames):
            table = to_arrow(frame, who).replace_schema_metadata(None)
            if writer is None:
                if target is not None and target not in table.column_names:
                    raise InputError(
                        f"{who}: the target column '{target}' is not in the "
                        f"data. Columns: {', '.join(table.column_names)}."
                    )
                writer = pq.ParquetWriter(path, table.schema)
            elif not table.schema.equals(writer.schema):
                table = conform(table, writer.schema, index, who)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise InputError(f"{who}: the data holds no frames: nothing to train on.")


def conform(table: pa.Table, schema: pa.Schema, index: int, who: str = WHO) -> pa.Table:
    try:
        return table.select(schema.names).cast(schema)
    except (KeyError, ValueError, pa.ArrowException) as exc:
        raise InputError(
            f"{who}: frame {index} does not match the first frame "
            f"(columns {schema.names} with types {schema.types}): {exc}"
        ) from None


def frame_input(data: Any) -> Input:
    """An Input of in-memory or lazy ``data`` (see the module docstring)."""
    name = f"<{type(data).__module__.split('.')[0]} {type(data).__name__}>"
    lazy = as_lazy(data)
    if lazy is not None:
        return Input((name,), Form("frame"), lazy)
    if isinstance(data, np.ndarray):
        raise InputError(
            "a numpy array has no column names (a target among them): give a DataFrame, "
            "or use StreamingClassifier.fit(X, y)."
        )
    if isinstance(data, str | bytes) or not isinstance(data, Iterable | pa.RecordBatchReader):
        raise InputError(f"cannot read data of type {type(data).__name__}: {KNOWN}.")
    from leanfit.io.tempfiles import OwnedDir

    folder = OwnedDir("leanfit-cache-")
    path = folder.path / "data.parquet"
    try:
        write_frames(data, path, None, who="the data")
    except BaseException:
        folder.remove()
        raise
    inp = Input((str(path),), Form("parquet"), name=name)
    weakref.finalize(inp, folder.remove)
    return inp


KNOWN = (
    "give paths, a polars DataFrame or LazyFrame, a pandas DataFrame, a pyarrow Table, "
    "Dataset or RecordBatchReader, or an iterable of such frames"
)


def as_lazy(data: Any) -> pl.LazyFrame | None:
    """``data`` as a lazy frame read in place (None for a one-shot stream)."""
    if isinstance(data, pl.LazyFrame):
        return data
    if isinstance(data, pl.DataFrame):
        return data.lazy()
    if _is_pandas(data):
        try:
            return pl.from_pandas(data).lazy()
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InputError(f"the pandas DataFrame: {mixed_types(data, exc)}") from None
    if isinstance(data, pa.Table | pa.RecordBatch):
        return pl.from_arrow(data).lazy()
    import pyarrow.dataset as ds

    if isinstance(data, ds.Dataset):
        return pl.scan_pyarrow_dataset(data)
    return None


def frame_batches(data: Any, names: list[str], rows: int) -> Iterator[pl.DataFrame] | None:
    """Frames of about ``rows`` rows of in-memory or lazy ``data``; a 2-D numpy array
    as the columns ``names``. None when ``data`` names files."""
    if names_files(data):
        return None
    if isinstance(data, np.ndarray):
        return iter([pl.from_arrow(array_table(np.atleast_2d(data), names))])
    import pyarrow.dataset as ds

    if isinstance(data, ds.Dataset):
        return (pl.from_arrow(b) for b in data.to_batches(batch_size=rows))
    if isinstance(data, pa.RecordBatchReader):
        return (pl.from_arrow(b) for b in data)
    lazy = as_lazy(data)
    if lazy is not None:
        return lazy.collect_batches(chunk_size=rows)
    if isinstance(data, Iterable):
        return (pl.from_arrow(to_arrow(frame)) for frame in data)
    return None


def _is_pandas(data: Any) -> bool:
    """A pandas DataFrame (told without importing pandas)."""
    return type(data).__module__.startswith("pandas") and type(data).__name__ == "DataFrame"
