"""Stream data into Parquet with the schema's chosen storage types.

Polars' streaming engine parses, casts and writes row group by row group, so
memory stays flat whatever the file size.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from leanfit.costs import INSPECT_BYTES, bytes_per_row
from leanfit.errors import SchemaMismatch
from leanfit.io.outputs import PARQUET_ROW_GROUP, atomic_path, checks_output
from leanfit.io.scan import scan
from leanfit.io.source import resolve_paths
from leanfit.io.translate import translated
from leanfit.memory import Monitor
from leanfit.schema.columns import Schema
from leanfit.schema.inspection import inspect
from leanfit.schema.rules import storage_expr


def typed_scan(data, schema: Schema) -> pl.LazyFrame:
    """A lazy scan of ``data`` whose columns are cast to the schema's storage."""
    paths = resolve_paths(data)
    lf = scan(paths, schema.read_overrides())
    present = lf.collect_schema().names()
    missing = [c.name for c in schema.columns if c.name not in present]
    if missing:
        raise SchemaMismatch(f"{paths[0]}: columns {missing} of the schema are missing.")
    types = lf.collect_schema()
    return lf.select([storage_expr(c, types[c.name]) for c in schema.columns])


@checks_output("out", inputs=("data",), label="OUT")
def shrink(
    data, out: str | os.PathLike, schema: Schema | None = None, *, memory: Monitor | None = None
) -> dict:
    """Write ``data`` to Parquet at ``out`` with the smallest exact types; report sizes."""
    paths = resolve_paths(data)
    memory = memory or Monitor.unbounded()
    schema = schema or inspect(paths, memory=memory)
    memory.plan(fixed=INSPECT_BYTES)
    with memory.stage("shrink"), atomic_path(out) as tmp, translated(paths):
        typed_scan(paths, schema).sink_parquet(
            tmp, compression="zstd", row_group_size=PARQUET_ROW_GROUP
        )
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
