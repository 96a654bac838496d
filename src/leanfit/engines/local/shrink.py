"""Stream data into Parquet with the schema's chosen storage types.

Polars' streaming engine parses and casts row group by row group, and each group
is written as it comes (:mod:`~leanfit.engines.local.parquet_layout`: row groups
sized for lean readers, dictionaries, pandas metadata), so memory stays flat
whatever the file size.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from leanfit.costs import INSPECT_BYTES, bytes_per_row
from leanfit.engines.local.parquet_layout import write_shrunk
from leanfit.errors import ConfigError, SchemaMismatch
from leanfit.io.guard import Guard
from leanfit.io.outputs import atomic_path, checks_output
from leanfit.io.source import input_bytes, resolve_paths
from leanfit.io.translate import translated, verified_parquet
from leanfit.memory import Monitor
from leanfit.options import LossyOptions
from leanfit.progress import Progress
from leanfit.schema.columns import Schema
from leanfit.schema.inspection import inspect
from leanfit.schema.lossy import apply_lossy, lossy_key
from leanfit.schema.rules import scan_with_schema, storage_expr


def typed_scan(data, schema: Schema, guard: Guard | None = None) -> pl.LazyFrame:
    """A lazy scan of ``data`` whose columns are cast to the schema's storage (with an
    active ``guard``, bad rows left out and recorded)."""
    paths = resolve_paths(data)
    schema.check_data(paths, "shrink")
    lf = scan_with_schema(paths, schema, guard)
    present = lf.collect_schema().names()
    missing = [c.name for c in schema.columns if c.name not in present]
    if missing:
        raise SchemaMismatch(f"{paths[0]}: columns {missing} of the schema are missing.")
    types = lf.collect_schema()
    return lf.select(
        [
            pl.col(c.name)
            if _zoned_or_nanoseconds(types[c.name])
            else storage_expr(c, types[c.name])
            for c in schema.columns
        ]
    )


def _zoned_or_nanoseconds(dtype: pl.DataType) -> bool:
    """A timestamp the schema's storage (microseconds, no zone) would change: it is
    written as it is (training reads it as that storage)."""
    return isinstance(dtype, pl.Datetime) and (
        dtype.time_zone is not None or dtype.time_unit == "ns"
    )


@checks_output("out", inputs=("data",), label="OUT")
def shrink(
    data,
    out: str | os.PathLike,
    schema: Schema | None = None,
    *,
    memory: Monitor | None = None,
    guard: Guard | None = None,
    lossy: LossyOptions | None = None,
) -> dict:
    """Write ``data`` to Parquet at ``out`` with the smallest exact types (float16 where
    ``lossy`` asks and the measured error allows); report sizes."""
    if Path(out).suffix.lower() not in (".parquet", ".pq"):
        raise ConfigError(f"{out}: shrink writes Parquet; give OUT a .parquet name.")
    paths = resolve_paths(data)
    memory = memory or Monitor.unbounded()
    memory.refuse_mapped(paths)
    if schema is not None:
        schema = apply_lossy(schema, lossy)
    schema = schema or inspect(paths, memory=memory, guard=guard, lossy=lossy)
    memory.plan(fixed=INSPECT_BYTES)
    with memory.stage("shrink"), atomic_path(out) as tmp, translated(paths, out=tmp):
        memory.progress.plan(schema.rows_in(paths))
        write_shrunk(
            counted(typed_scan(paths, schema, guard), memory.progress), tmp, schema, memory
        )
        verified_parquet(tmp)  # a full disk can leave a truncated file without an error
    written = pl.scan_parquet(out).select(pl.len()).collect().item()
    bad = guard.count if guard is not None else 0
    pandas_row = sum(bytes_per_row(c, pandas_default=True) for c in schema.columns)
    chosen_row = sum(bytes_per_row(c) for c in schema.columns)
    summary = {
        "input": paths.shown,
        "output": str(out),
        "rows": written + bad,
        "rows_written": written,
        "rows_bad": bad,
        "input_bytes": input_bytes(paths),
        "output_bytes": Path(out).stat().st_size,
        "memory_bytes_pandas_default": round(pandas_row * written),
        "memory_bytes_chosen": round(chosen_row * written),
    } | ({"warnings": [guard.warning()]} if bad else {})
    return summary | lossy_key(schema)


def counted(lf: pl.LazyFrame, progress: Progress) -> pl.LazyFrame:
    """``lf`` telling ``progress`` the rows of each morsel as the stream passes them."""

    def advance(frame: pl.DataFrame) -> pl.DataFrame:
        progress.advance(frame.height)
        return frame

    return lf.map_batches(advance, streamable=True, schema=lf.collect_schema())
