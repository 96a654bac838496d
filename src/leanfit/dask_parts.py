"""Partitions of the input for the Dask engine, and how a worker reads one.

A partition is a piece of the input that one worker reads on its own:

* a CSV file larger than the block size is split into byte ranges. A range
  ``[start, end)`` holds the lines whose first byte lies in it; the worker reads
  the header line, then its own lines (a line that straddles ``end`` belongs to
  this range, one that straddles ``start`` to the range before). Quoted fields
  holding line breaks would be cut: give such data as several files or as Parquet;
* a gzip'd CSV, or a CSV smaller than the block size, is one partition;
* a Parquet file is split into runs of whole row groups.

Partitions are numbered in file order, so row numbers counted from 0 across the
whole input (the holdout split) are the partition's offset plus its own row index.

Paths are local paths (a filesystem every worker sees at the same place) or
fsspec URLs (``s3://...``, ``file:///...``); the worker opens them, never the client.
"""

from __future__ import annotations

import io
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from leanfit.errors import InputError
from leanfit.sources import (
    DATA_SUFFIXES,
    INFER_ROWS,
    ColumnTypeError,
    as_input_error,
    read_sample,
    resolve_paths,
    scan,
)

MIN_BLOCK = 1 << 20
MAX_BLOCK = 128 << 20


@dataclass(frozen=True)
class Part:
    """One partition: a whole file, a byte range of a CSV, or row groups of a Parquet file."""

    index: int
    path: str
    start: int = 0  # CSV: first byte; Parquet: first row group
    end: int | None = None  # CSV: byte after the range; Parquet: row group after; None: all

    @property
    def parquet(self) -> bool:
        return self.path.endswith((".parquet", ".pq"))

    @property
    def name(self) -> str:
        whole = self.end is None
        return Path(self.path).name + ("" if whole else f"[{self.start}:{self.end}]")


def is_url(path) -> bool:
    return "://" in str(path)


def _local(path: str) -> str:
    return path[7:] if path.startswith("file://") else path


def _open(path: str):
    if is_url(path) and not path.startswith("file://"):
        import fsspec

        return fsspec.open(path, "rb").open()
    return open(_local(path), "rb")


def _size(path: str) -> int:
    if is_url(path) and not path.startswith("file://"):
        import fsspec

        fs, _, (stripped,) = fsspec.core.get_fs_token_paths(path)
        return int(fs.size(stripped))
    return Path(_local(path)).stat().st_size


def resolve(data) -> list[str]:
    """The data files of ``data`` (file, directory, glob, URL or a list), in order."""
    items = data if isinstance(data, list | tuple) else [data]
    if not any(is_url(i) and not str(i).startswith("file://") for i in items):
        return [str(p) for p in resolve_paths([_local(str(i)) for i in items])]
    import fsspec

    found: list[str] = []
    for item in map(str, items):
        fs, _, paths = fsspec.core.get_fs_token_paths(item)
        if not paths:
            raise InputError(f"{item}: no file matches this address.")
        for path in paths:
            if fs.isdir(path):
                files = sorted(p for p in fs.find(path) if p.endswith(DATA_SUFFIXES))
                if not files:
                    raise InputError(f"{item}: the folder holds no CSV or Parquet files.")
                found += [fs.unstrip_protocol(p) for p in files]
            else:
                found.append(fs.unstrip_protocol(path))
    if len({f.endswith((".parquet", ".pq")) for f in found}) > 1:
        raise InputError("The inputs mix CSV and Parquet files; give one format at a time.")
    return found


def plan_parts(paths: list[str], block: int) -> list[Part]:
    """Cut the files into partitions of about ``block`` bytes (runs on a worker)."""
    parts: list[Part] = []
    for path in paths:
        if path.endswith((".parquet", ".pq")):
            for start, end in _row_group_runs(path, block):
                parts.append(Part(len(parts), path, start, end))
            continue
        size = _size(path)
        if path.endswith(".gz") or size <= block:
            parts.append(Part(len(parts), path))
            continue
        pieces = math.ceil(size / block)
        bounds = [round(size * i / pieces) for i in range(pieces + 1)]
        parts += [
            Part(len(parts) + i, path, a, b) for i, (a, b) in enumerate(itertools.pairwise(bounds))
        ]
    return parts


def _row_group_runs(path: str, block: int) -> list[tuple[int, int | None]]:
    import pyarrow.parquet as pq

    with _open(path) as f:
        meta = pq.ParquetFile(f).metadata
    runs, start, size = [], 0, 0
    for i in range(meta.num_row_groups):
        size += meta.row_group(i).total_byte_size
        if size >= block:
            runs.append((start, i + 1))
            start, size = i + 1, 0
    if start < meta.num_row_groups or not runs:
        runs.append((start, meta.num_row_groups))
    return [(0, None)] if len(runs) == 1 else runs


def block_size(total_bytes: int, workers: int, worker_memory: int) -> int:
    """Bytes per partition: at least two partitions per worker, and small enough that
    a worker holds a few of them (raw bytes, parsed frame, encoded block) in its share."""
    by_memory = max(worker_memory - 300_000_000, 0) // 8
    by_spread = math.ceil(total_bytes / (2 * max(workers, 1)))
    return int(min(max(min(by_memory, by_spread), MIN_BLOCK), MAX_BLOCK))


# --------------------------------------------------------------------------- reading


def _range_bytes(path: str, start: int, end: int) -> bytes:
    """The header line, then the lines whose first byte lies in ``[start, end)``."""
    with _open(path) as f:
        header = f.readline()
        if start == 0:
            begin = len(header)
        else:
            f.seek(start - 1)
            f.readline()  # the rest of the line that began before the range
            begin = f.tell()
        f.seek(end - 1)
        f.readline()
        stop = max(f.tell(), begin)
        f.seek(begin)
        return header + f.read(stop - begin)


def scan_part(part: Part, types: dict | None) -> pl.LazyFrame:
    """A lazy frame of the partition's rows with parser types ``types`` (CSV)."""
    if part.parquet:
        if part.end is None and not is_url(part.path):
            return pl.scan_parquet(part.path)
        import pyarrow.parquet as pq

        with _open(part.path) as f:
            pf = pq.ParquetFile(f)
            end = pf.metadata.num_row_groups if part.end is None else part.end
            table = pf.read_row_groups(list(range(part.start, end)))
        return pl.from_arrow(table).lazy()
    if part.end is None and (not is_url(part.path) or part.path.startswith("file://")):
        return scan([Path(_local(part.path))], types=types)
    if part.end is None:
        with _open(part.path) as f:
            raw = f.read()
    else:
        raw = _range_bytes(part.path, part.start, part.end)
    return pl.scan_csv(io.BytesIO(raw), schema=types, raise_if_empty=False)


def read_part(part: Part, types: dict | None) -> pl.DataFrame:
    """The partition's rows, parse errors turned into InputError naming file and line."""
    try:
        return scan_part(part, types).collect(engine="streaming")
    except pl.exceptions.PolarsError as exc:
        raise plain_error(exc, part) from None


def plain_error(exc: Exception, part: Part) -> InputError:
    """An InputError that pickles (a ColumnTypeError's extra fields do not travel)."""
    error = as_input_error(exc, [Path(_local(part.path))]) if not is_url(part.path) else None
    if error is None:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return InputError(f"{part.name}: could not read the data ({first}).")
    return InputError(str(error)) if isinstance(error, ColumnTypeError) else error


def count_rows(part: Part, types: dict | None) -> int:
    """Rows in the partition (a cheap pass: no column is parsed)."""
    if part.parquet:
        import pyarrow.parquet as pq

        with _open(part.path) as f:
            meta = pq.ParquetFile(f).metadata
        end = meta.num_row_groups if part.end is None else part.end
        return sum(meta.row_group(i).num_rows for i in range(part.start, end))
    try:
        return int(scan_part(part, types).select(pl.len()).collect().item())
    except pl.exceptions.PolarsError as exc:
        raise plain_error(exc, part) from None


# --------------------------------------------------------------------------- types


def parse_types(paths: list[str], overrides: dict | None) -> dict | None:
    """The parser types the local engine infers for ``paths`` (None for Parquet)."""
    if paths[0].endswith((".parquet", ".pq")):
        return None
    if not is_url(paths[0]) or paths[0].startswith("file://"):
        try:
            return dict(scan([Path(_local(p)) for p in paths], overrides).collect_schema())
        except pl.exceptions.PolarsError as exc:
            raise InputError(str(as_input_error(exc, [Path(_local(paths[0]))]))) from None
    return dict(_url_head(paths[0], overrides).schema)


def sample(paths: list[str], overrides: dict | None) -> pl.DataFrame:
    """The local engine's inspect sample (first rows, dates recognised)."""
    if not is_url(paths[0]) or paths[0].startswith("file://"):
        try:
            return read_sample([Path(_local(p)) for p in paths], overrides)
        except ColumnTypeError as exc:
            raise InputError(str(exc)) from None
    frame = _url_head(paths[0], overrides)
    from leanfit.sources import _as_temporal

    dates = [_as_temporal(frame.get_column(n)) for n in frame.columns if n not in (overrides or {})]
    return frame.with_columns([d for d in dates if d is not None])


def _url_head(path: str, overrides: dict | None) -> pl.DataFrame:
    """The first ``INFER_ROWS`` rows of a file behind a URL, read through fsspec."""
    import gzip

    with _open(path) as raw:
        if path.endswith((".parquet", ".pq")):
            return pl.read_parquet(raw, n_rows=INFER_ROWS)
        with gzip.open(raw) if path.endswith(".gz") else raw as f:
            lines = [f.readline() for _ in range(INFER_ROWS + 1)]
    return pl.read_csv(
        io.BytesIO(b"".join(lines)),
        infer_schema_length=INFER_ROWS,
        try_parse_dates=True,
        schema_overrides=dict(overrides or {}),
    )
