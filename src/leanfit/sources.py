"""Opening inputs as a lazy stream of typed columnar batches.

CSV (plain or gzip'd), Parquet, a directory of such files or a glob are scanned
with Polars' streaming engine: the fastest parser measured here (DESIGN.md).
Batches are Polars frames, which share Arrow's memory.

Parse failures are turned into :class:`~leanfit.errors.InputError` messages that
name the file and the line, found by a diagnostic re-read of the failing file
(only on the error path, so the fast path pays nothing for it).
"""

from __future__ import annotations

import glob as globlib
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import polars as pl

from leanfit._env import START_CHUNK, USER_CHUNK
from leanfit.errors import InputError

INFER_ROWS = 10_000
READ_CHUNK = START_CHUNK  # training and prediction: lean reads
INSPECT_CHUNK = 4 << 20  # the inspect query, when the budget allows: bigger morsels
DEFAULT_BATCH_ROWS = 131_072
DATA_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".parquet", ".pq")
TYPE_ERROR = re.compile(
    r"could not parse `(?P<value>.*?)` as dtype `(?P<dtype>[^`]*)` at column '(?P<column>[^']*)'"
)


def resolve_paths(data: str | Path | list[str | Path]) -> list[Path]:
    """Expand a file, a directory, a glob or a list of them into data files."""
    items = data if isinstance(data, list) else [data]
    paths: list[Path] = []
    for item in items:
        item = Path(item)
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.name.endswith(DATA_SUFFIXES))
            if not found:
                raise InputError(f"{item}: the directory holds no CSV or Parquet files.")
            paths += found
        elif item.exists():
            paths.append(item)
        elif any(ch in str(item) for ch in "*?["):
            found = sorted(Path(p) for p in globlib.glob(str(item), recursive=True))
            if not found:
                raise InputError(f"{item}: no file matches this pattern.")
            paths += found
        else:
            raise InputError(f"{item}: no such file or directory. Check the path.")
    _check_one_format(paths)
    return paths


def is_parquet(path: Path) -> bool:
    return path.suffix in (".parquet", ".pq")


def _check_one_format(paths: list[Path]) -> None:
    kinds = {is_parquet(p) for p in paths}
    if len(kinds) > 1:
        raise InputError("The inputs mix CSV and Parquet files; give one format at a time.")
    for path in paths:
        if path.stat().st_size == 0:
            raise InputError(f"{path}, line 1: the file is empty. Give a file with a header row.")


DICTIONARY_TYPES = (pl.Categorical, pl.Enum)


def scan(
    paths: list[Path],
    overrides: Mapping[str, pl.DataType] | None = None,
    *,
    types: Mapping[str, pl.DataType] | None = None,
    read_chunk: int = READ_CHUNK,
) -> pl.LazyFrame:
    """A lazy, streaming scan of ``paths``, to be collected right away.

    Column types are ``types`` when given (no inference), else inferred from the
    first rows with ``overrides`` applied. ``read_chunk`` is the CSV reader's
    read-ahead chunk in bytes: Polars holds a few per thread, so memory grows with
    it (measured here on 2 threads: 1 MiB about 60 MB of buffers, 8 MiB about 230 MB,
    Polars' default about 320 MB). A ``POLARS_CSV_CHUNK_SIZE`` set by the user wins.
    """
    set_read_chunk(read_chunk)
    if is_parquet(paths[0]):
        # dictionary columns (leanfit shrink writes them) are read as the text they
        # hold, so that every stage sees the same types as from a CSV
        lf = pl.scan_parquet(paths)
        names = [n for n, t in lf.collect_schema().items() if isinstance(t, DICTIONARY_TYPES)]
        return lf.with_columns(pl.col(names).cast(pl.String)) if names else lf
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
    paths: list[Path], overrides: Mapping[str, pl.DataType] | None = None
) -> pl.DataFrame:
    """The first rows of the data; its schema is the inferred column types.

    Text columns whose every value is an ISO date or timestamp become Date or
    Datetime (checked here on the sample: Polars' own date inference over many
    rows is slow).
    """
    try:
        if is_parquet(paths[0]) or paths[0].suffix == ".gz":
            sample = scan(paths, overrides).head(INFER_ROWS).collect()
        else:
            sample = pl.read_csv(
                paths[0],
                n_rows=INFER_ROWS,
                infer_schema_length=INFER_ROWS,
                schema_overrides=dict(overrides or {}),
                raise_if_empty=True,
            )
    except pl.exceptions.PolarsError as exc:
        raise as_input_error(exc, paths) from None
    if not sample.width:
        raise InputError(f"{paths[0]}, line 1: no columns found. Give a file with a header row.")
    dates = [
        _as_temporal(sample.get_column(n)) for n in sample.columns if n not in (overrides or {})
    ]
    return sample.with_columns([d for d in dates if d is not None])


def _as_temporal(column: pl.Series) -> pl.Series | None:
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
    try:
        yield from lf.collect_batches(chunk_size=rows)
    except pl.exceptions.PolarsError as exc:
        raise as_input_error(exc, paths) from None


def as_input_error(exc: Exception, paths: list[Path]) -> InputError:
    """Turn a Polars parse error into an InputError that names file and line."""
    from leanfit.diagnose import locate_problem

    text = str(exc)
    type_error = TYPE_ERROR.search(text)
    if type_error:
        return ColumnTypeError(type_error["column"], type_error["value"], type_error["dtype"])
    found = locate_problem(paths)
    if found:
        return InputError(found)
    first_line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return InputError(f"{', '.join(map(str, paths))}: could not read the data ({first_line}).")


class ColumnTypeError(InputError):
    """A value late in a file does not fit the type inferred from the first rows."""

    def __init__(self, column: str, value: str, dtype: str):
        super().__init__(f"column '{column}': value {value!r} does not parse as {dtype}.")
        self.column = column
        self.value = value
