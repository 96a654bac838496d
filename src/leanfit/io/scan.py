"""Scanning inputs as a lazy stream of typed columnar batches.

An input (:class:`~leanfit.io.formats.Input`: CSV, plain or compressed, Parquet,
Arrow IPC, JSON lines, or a lazy frame of in-memory data) is scanned with Polars'
streaming engine: the fastest parser measured here (DESIGN.md); how each format is
read is :mod:`leanfit.io.readers`. Batches are Polars frames, which share Arrow's
memory. Parse failures become leanfit errors in :mod:`leanfit.io.translate`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

import polars as pl

from leanfit._env import START_CHUNK, USER_CHUNK
from leanfit.errors import InputError
from leanfit.io.formats import Input
from leanfit.io.guard import Guard, lenient_sample, lenient_types
from leanfit.io.readers import (
    INFER_ROWS,
    as_text_dictionaries,
    csv_types,
    infer_rows,
    polars_reads,
    scan_binary,
    scan_csv,
    scan_ndjson,
)
from leanfit.io.translate import translated
from leanfit.options import DEFAULT_BATCH_ROWS

READ_CHUNK = START_CHUNK  # training and prediction: lean reads
INSPECT_CHUNK = 4 << 20  # the inspect query, when the budget allows: bigger morsels


def scan(
    paths: Input,
    overrides: Mapping[str, pl.DataType] | None = None,
    *,
    types: Mapping[str, pl.DataType] | None = None,
    read_chunk: int = READ_CHUNK,
    guard: Guard | None = None,
) -> pl.LazyFrame:
    """A lazy, streaming scan of the input ``paths``, to be collected right away.

    CSV column types are ``types`` when given (no inference), else inferred from the
    first rows with ``overrides`` applied; typed formats (Parquet, IPC, a frame) keep
    their own, JSON lines take ``types`` when given. ``read_chunk`` is the CSV reader's
    read-ahead chunk in bytes: Polars holds a few per thread, so memory grows with
    it (measured here on 2 threads: 1 MiB about 60 MB of buffers, 8 MiB about 230 MB,
    Polars' default about 320 MB). A ``POLARS_CSV_CHUNK_SIZE`` set by the user wins.
    Parquet is decoded one row group at a time, one group prefetched (leanfit/_env.py);
    what that holds is :func:`leanfit.costs.reader_bytes` of the largest group.
    With an active ``guard`` (``--bad-rows skip|quarantine``) bad CSV rows are left
    out and recorded (:mod:`leanfit.io.guard`).
    """
    set_read_chunk(read_chunk)
    form, files = paths.form, list(paths.paths)
    if form.typed:
        return _typed_scan(paths, types, guard)
    if guard is not None and guard.active:
        return guard.scan(paths, types or lenient_types(paths, overrides))
    return scan_csv(files, form, types or csv_types(files[0], form, overrides))


def _typed_scan(paths: Input, types, guard: Guard | None) -> pl.LazyFrame:
    """Typed data; with an active ``guard``, each file's rows holding ``inf`` left out."""

    def one(files: list[str]) -> pl.LazyFrame:
        if paths.frame is not None:
            return as_text_dictionaries(paths.frame)
        if paths.form.format == "ndjson":
            return scan_ndjson(files, types)
        return scan_binary(files, paths.form)

    if guard is None or not guard.active:
        return one(list(paths.paths))
    sources = paths.shown if len(paths.shown) == len(paths) else list(paths.paths)
    parts = [guard.finite(one([p]), s) for p, s in zip(paths.paths, sources, strict=True)]
    return pl.concat(parts, how="vertical") if len(parts) > 1 else parts[0]


def set_read_chunk(size: int) -> None:
    """Use CSV read-ahead chunks of ``size`` bytes (unless the user chose theirs).

    Polars may keep the size its first CSV read in the process saw, so a command
    sets it before its first read (see leanfit/_env.py).
    """
    if not USER_CHUNK:
        os.environ["POLARS_CSV_CHUNK_SIZE"] = str(size)


def read_sample(
    paths: Input,
    overrides: Mapping[str, pl.DataType] | None = None,
    guard: Guard | None = None,
) -> pl.DataFrame:
    """The first rows of the data; its schema is the inferred column types.

    Text columns whose every value is an ISO date or timestamp become Date or
    Datetime (checked here on the sample: Polars' own date inference over many
    rows is slow), and CSV text columns whose every value is a number Float64.
    """
    csv = paths.form.format == "csv"
    with translated(paths):
        if guard is not None and guard.active and csv:
            sample = lenient_sample(paths, overrides)
        elif csv and polars_reads(paths[0]) and not paths[0].endswith((".gz", ".zst")):
            rows = infer_rows(paths[0], paths.form)
            sample = pl.read_csv(
                paths[0],
                separator=paths.form.separator,
                n_rows=rows,
                infer_schema_length=rows,
                schema_overrides=dict(overrides or {}),
                raise_if_empty=True,
            )
        else:
            sample = scan(paths, overrides).head(INFER_ROWS).collect()
    if not sample.width:
        raise InputError(f"{paths[0]}, line 1: no columns found. Give a file with a header row.")
    typed = [
        as_float(c) if csv and as_float(c) is not None else as_temporal(c)
        for c in sample.iter_columns()
        if c.name not in (overrides or {})
    ]
    return sample.with_columns([c for c in typed if c is not None])


def as_float(column: pl.Series) -> pl.Series | None:
    """``column`` as floats when every text value is a number: Polars infers text for
    a column holding ``nan``, ``NAN`` or ``Inf`` (its inference knows only ``NaN`` and
    ``inf``), which its parser and pandas read as numbers."""
    if column.dtype != pl.String or column.null_count() == column.len():
        return None
    parsed = column.cast(pl.Float64, strict=False)
    return parsed if parsed.null_count() == column.null_count() else None


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
    lf: pl.LazyFrame, paths: Input, rows: int = DEFAULT_BATCH_ROWS
) -> Iterator[pl.DataFrame]:
    """Yield ``lf`` as frames of about ``rows`` rows, translating parse errors."""
    with translated(paths):
        yield from lf.collect_batches(chunk_size=rows)
