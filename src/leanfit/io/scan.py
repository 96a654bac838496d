"""Scanning inputs as a lazy stream of typed columnar batches.

CSV (plain or gzip'd), Parquet, a directory of such files or a glob are scanned
with Polars' streaming engine: the fastest parser measured here (DESIGN.md).
Batches are Polars frames, which share Arrow's memory. Parse failures become
leanfit errors in :mod:`leanfit.io.translate`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import polars as pl

from leanfit._env import START_CHUNK, USER_CHUNK
from leanfit.errors import InputError
from leanfit.io.guard import Guard, lenient_sample, lenient_types
from leanfit.io.source import is_parquet
from leanfit.io.translate import translated
from leanfit.options import DEFAULT_BATCH_ROWS

INFER_ROWS = 10_000
READ_CHUNK = START_CHUNK  # training and prediction: lean reads
INSPECT_CHUNK = 4 << 20  # the inspect query, when the budget allows: bigger morsels


DICTIONARY_TYPES = (pl.Categorical, pl.Enum)


def scan(
    paths: list[Path],
    overrides: Mapping[str, pl.DataType] | None = None,
    *,
    types: Mapping[str, pl.DataType] | None = None,
    read_chunk: int = READ_CHUNK,
    guard: Guard | None = None,
) -> pl.LazyFrame:
    """A lazy, streaming scan of ``paths``, to be collected right away.

    Column types are ``types`` when given (no inference), else inferred from the
    first rows with ``overrides`` applied. ``read_chunk`` is the CSV reader's
    read-ahead chunk in bytes: Polars holds a few per thread, so memory grows with
    it (measured here on 2 threads: 1 MiB about 60 MB of buffers, 8 MiB about 230 MB,
    Polars' default about 320 MB). A ``POLARS_CSV_CHUNK_SIZE`` set by the user wins.
    With an active ``guard`` (``--bad-rows skip|quarantine``) bad CSV rows are left
    out and recorded (:mod:`leanfit.io.guard`).
    """
    set_read_chunk(read_chunk)
    if is_parquet(paths[0]):
        # dictionary columns (leanfit shrink writes them) are read as the text they
        # hold, so that every stage sees the same types as from a CSV
        lf = pl.scan_parquet(paths)
        names = [n for n, t in lf.collect_schema().items() if isinstance(t, DICTIONARY_TYPES)]
        return lf.with_columns(pl.col(names).cast(pl.String)) if names else lf
    if guard is not None and guard.active:
        return guard.scan(paths, types or lenient_types(paths, overrides))
    if types is not None:
        return pl.scan_csv(paths, schema=dict(types), raise_if_empty=True)
    return pl.scan_csv(
        paths,
        infer_schema_length=INFER_ROWS,
        try_parse_dates=True,
        schema_overrides=dict(overrides or {}),
        raise_if_empty=True,
    )


def set_read_chunk(size: int) -> None:
    """Use CSV read-ahead chunks of ``size`` bytes (unless the user chose theirs).

    Polars may keep the size its first CSV read in the process saw, so a command
    sets it before its first read (see leanfit/_env.py).
    """
    if not USER_CHUNK:
        os.environ["POLARS_CSV_CHUNK_SIZE"] = str(size)


def read_sample(
    paths: list[Path],
    overrides: Mapping[str, pl.DataType] | None = None,
    guard: Guard | None = None,
) -> pl.DataFrame:
    """The first rows of the data; its schema is the inferred column types.

    Text columns whose every value is an ISO date or timestamp become Date or
    Datetime (checked here on the sample: Polars' own date inference over many
    rows is slow).
    """
    with translated(paths):
        if guard is not None and guard.active and not is_parquet(paths[0]):
            sample = lenient_sample(paths, overrides)
        elif is_parquet(paths[0]) or paths[0].suffix == ".gz":
            sample = scan(paths, overrides).head(INFER_ROWS).collect()
        else:
            sample = pl.read_csv(
                paths[0],
                n_rows=INFER_ROWS,
                infer_schema_length=INFER_ROWS,
                schema_overrides=dict(overrides or {}),
                raise_if_empty=True,
            )
    if not sample.width:
        raise InputError(f"{paths[0]}, line 1: no columns found. Give a file with a header row.")
    dates = [
        as_temporal(sample.get_column(n)) for n in sample.columns if n not in (overrides or {})
    ]
    return sample.with_columns([d for d in dates if d is not None])


def as_temporal(column: pl.Series) -> pl.Series | None:
    """``column`` parsed as dates or timestamps when every text value is one."""
    present = column.null_count()
    if column.dtype != pl.String or present == column.len():
        return None
    for parse in (column.str.to_date, column.str.to_datetime):
        try:
            parsed = parse(strict=False)
        except pl.exceptions.PolarsError:
            continue
        if parsed.null_count() == present:
            return parsed
    return None


def iter_batches(
    lf: pl.LazyFrame, paths: list[Path], rows: int = DEFAULT_BATCH_ROWS
) -> Iterator[pl.DataFrame]:
    """Yield ``lf`` as frames of about ``rows`` rows, translating parse errors."""
    with translated(paths):
        yield from lf.collect_batches(chunk_size=rows)
