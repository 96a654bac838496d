"""Stream data into Parquet with the schema's chosen storage types.

Polars' streaming engine parses, casts and writes row group by row group, so
memory stays flat whatever the file size.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from leanfit.errors import SchemaMismatch
from leanfit.memory import INSPECT_BYTES, Monitor
from leanfit.outputs import PARQUET_ROW_GROUP, atomic_path
from leanfit.schema import Schema, bytes_per_row, inspect, storage_expr
from leanfit.sources import as_input_error, resolve_paths, scan


def typed_scan(data, schema: Schema) -> pl.LazyFrame:
    """A lazy scan of ``data`` whose columns are cast to the schema's storage."""
    paths = resolve_paths(data)
    lf = scan(paths, schema.read_overrides())
    present = lf.collect_schema().names()
    missing = [c.name for c in schema.columns if c.name not in present]
    if missing:
        raise SchemaMismatch(f"{paths[0]}: columns {missing} of the schema are missing.")
    return lf.select([storage_expr(c) for c in schema.columns])


def shrink(
    data, out: str | os.PathLike, schema: Schema | None = None, *, memory: Monitor | None = None
) -> dict:
    """Write ``data`` to Parquet at ``out`` with the smallest exact types; report sizes."""
    paths = resolve_paths(data)
    memory = memory or Monitor.unbounded()
    schema = schema or inspect(paths, memory=memory)
    memory.plan(fixed=INSPECT_BYTES)
    with memory.stage("shrink"), atomic_path(out) as tmp:
        try:
            typed_scan(paths, schema).sink_parquet(
                tmp, compression="zstd", row_group_size=PARQUET_ROW_GROUP
            )
        except pl.exceptions.PolarsError as exc:
            raise as_input_error(exc, paths) from None
    pandas_row = sum(bytes_per_row(c, pandas_default=True) for c in schema.columns)
    chosen_row = sum(bytes_per_row(c) for c in schema.columns)
    return {
        "input": [str(p) for p in paths],
        "output": str(out),
        "rows": schema.rows,
        "input_bytes": sum(p.stat().st_size for p in paths),
        "output_bytes": Path(out).stat().st_size,
        "memory_bytes_pandas_default": round(pandas_row * schema.rows),
        "memory_bytes_chosen": round(chosen_row * schema.rows),
    }
