"""Partitions of the input for the Dask engine, and how a worker reads one.

A partition is a piece of the input that one worker reads on its own:

* a CSV file larger than the block size is split into byte ranges. A range
  ``[start, end)`` holds the lines whose first byte lies in it; the worker reads
  the header line, then its own lines (a line that straddles ``end`` belongs to
  this range, one that straddles ``start`` to the range before). Quoted fields
  holding line breaks would be cut: give such data as several files or as Parquet;
* a compressed CSV, a CSV smaller than the block size, a CSV behind a URL Polars
  does not read itself, an Arrow IPC or a JSON lines file is one partition;
* a Parquet file is split into runs of whole row groups (its hive partition
  columns added from its folders' names), read by the local engine's reader (Polars,
  one row group at a time) as a slice of rows when Polars reads the file.

Partitions are numbered in file order, so row numbers counted from 0 across the
whole input (the holdout split) are the partition's offset plus its own row index.

Paths are local paths (a filesystem every worker sees at the same place) or
fsspec URLs (``s3://...``, ``file:///...``); the worker opens them, never the client.
Nothing here needs Dask: a partition is a piece of input, read with Polars.
"""

from __future__ import annotations

import io
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from leanfit.io.diagnose import has_row_of_nulls, refuse_short_rows
from leanfit.io.formats import CSV, Form, Input, format_of
from leanfit.io.guard import TEXT, good_rows
from leanfit.io.readers import (
    as_text_dictionaries,
    hive_values,
    open_raw,
    polars_reads,
    scan_binary,
)
from leanfit.io.scan import read_sample, scan
from leanfit.io.source import size
from leanfit.io.translate import translated

MIN_BLOCK = 1 << 20
MAX_BLOCK = 128 << 20


@dataclass(frozen=True)
class Part:
    """One partition: a whole file, a byte range of a CSV, or row groups of a Parquet file."""

    index: int
    path: str
    start: int = 0  # CSV: first byte; Parquet: first row group
    end: int | None = None  # CSV: byte after the range; Parquet: row group after; None: all
    first_line: int | None = None  # with bad rows left out: the line number of its first row
    skip: tuple[int, ...] = ()  # ... and the line numbers of its bad rows
    form: Form = CSV

    @property
    def parquet(self) -> bool:
        return self.form.format == "parquet"

    @property
    def input(self) -> Input:
        """The partition's file as an input of its own."""
        return Input((self.path,), self.form)

    @property
    def plain_csv(self) -> bool:
        """A CSV that Polars reads itself: its rows are counted without types."""
        return self.form.format == "csv" and polars_reads(self.path)

    @property
    def name(self) -> str:
        whole = self.end is None
        return Path(self.path).name + ("" if whole else f"[{self.start}:{self.end}]")


def plan_parts(paths: Input, block: int, multiple: int = 1) -> list[Part]:
    """Cut the files of ``paths`` into partitions of about ``block`` bytes (runs on a
    worker), their number a multiple of ``multiple`` (the workers) where CSV files
    can be cut further: the largest pieces are cut again until it is."""
    form = paths.form
    sizes: dict[str, int] = {}  # CSV files cut into byte ranges: their sizes
    runs: dict[str, list] = {}  # every other file: its own partitions
    for path in paths:
        if form.format == "parquet":
            runs[path] = _row_group_runs(path, block)
        elif form.format != "csv" or format_of(path)[1] or not polars_reads(path):
            runs[path] = [(0, None)]
        else:
            sizes[path] = size(path)
    pieces = {path: max(math.ceil(n / block), 1) for path, n in sizes.items()}
    missing = -(sum(pieces.values()) + sum(map(len, runs.values()))) % multiple
    for _ in range(missing if pieces else 0):
        largest = max(pieces, key=lambda p: sizes[p] / pieces[p])
        pieces[largest] += 1
    parts: list[Part] = []
    for path in paths:
        ranges = runs[path] if path in runs else _byte_ranges(sizes[path], pieces[path])
        parts += [Part(len(parts) + i, path, a, b, form=form) for i, (a, b) in enumerate(ranges)]
    return parts


def _byte_ranges(total: int, pieces: int) -> list[tuple[int, int | None]]:
    if pieces == 1:
        return [(0, None)]
    return list(itertools.pairwise(round(total * i / pieces) for i in range(pieces + 1)))


def _row_group_runs(path: str, block: int) -> list[tuple[int, int | None]]:
    groups = _row_groups(path)
    runs, start, size = [], 0, 0
    for i, (_, nbytes) in enumerate(groups):
        size += nbytes
        if size >= block:
            runs.append((start, i + 1))
            start, size = i + 1, 0
    if start < len(groups) or not runs:
        runs.append((start, len(groups)))
    return [(0, None)] if len(runs) == 1 else runs


def _row_groups(path: str) -> list[tuple[int, int]]:
    """``(rows, bytes uncompressed)`` of each row group of a Parquet file (its footer)."""
    import pyarrow.parquet as pq

    with open_raw(path) as f:
        meta = pq.ParquetFile(f).metadata
    groups = (meta.row_group(i) for i in range(meta.num_row_groups))
    return [(g.num_rows, g.total_byte_size) for g in groups]


def _group_span(part: Part) -> tuple[int, int]:
    """The partition's first row in its file and its rows (its run of row groups)."""
    rows = [n for n, _ in _row_groups(part.path)]
    end = len(rows) if part.end is None else part.end
    return sum(rows[: part.start]), sum(rows[part.start : end])


def block_size(total_bytes: int, workers: int, worker_memory: int) -> int:
    """Bytes per partition: at least two partitions per worker, and small enough that
    a worker holds a few of them (raw bytes, parsed frame, encoded block) in its share."""
    by_memory = max(worker_memory - 300_000_000, 0) // 8
    by_spread = math.ceil(total_bytes / (2 * max(workers, 1)))
    return int(min(max(min(by_memory, by_spread), MIN_BLOCK), MAX_BLOCK))


# --------------------------------------------------------------------------- reading


def _range_bytes(path: str, start: int, end: int) -> bytes:
    """The header line, then the lines whose first byte lies in ``[start, end)``."""
    with open_raw(path) as f:
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
        if polars_reads(part.path):  # the local engine's reader: one row group at a time
            lf = scan_binary([part.path], part.form)
            return lf if part.end is None else lf.slice(*_group_span(part))
        import pyarrow.parquet as pq

        with open_raw(part.path) as f:
            pf = pq.ParquetFile(f)
            end = pf.metadata.num_row_groups if part.end is None else part.end
            table = pf.read_row_groups(list(range(part.start, end)))
        lf = pl.from_arrow(table).lazy().with_columns(hive_values(part.path, part.form))
        return as_text_dictionaries(lf)
    if part.first_line is not None:
        return _guarded_rows(part, types)
    if part.end is None:
        return scan(part.input, types=types)
    return pl.scan_csv(
        io.BytesIO(_part_bytes(part)),
        separator=part.form.separator,
        schema=types,
        raise_if_empty=False,
    )


def _part_bytes(part: Part) -> bytes:
    """The header line and the partition's lines (of a plain CSV)."""
    if part.end is None:
        with open_raw(part.path) as f:
            return f.read()
    return _range_bytes(part.path, part.start, part.end)


def _guarded_rows(part: Part, types: dict) -> pl.LazyFrame:
    """The partition's rows read leniently by the typed parser, its bad lines
    (``part.skip``, found by :class:`~leanfit.io.guard.Guard`) left out by number."""
    source = io.BytesIO(_part_bytes(part))
    return good_rows(source, part.form.separator, types, part.first_line, part.skip)


def count_lines(part: Part) -> int:
    """The data lines of a CSV partition, bad ones included (header left out)."""
    lines = pl.scan_csv(
        io.BytesIO(_part_bytes(part)),
        has_header=False,
        skip_lines=1,
        separator="\x1f",
        quote_char=None,
        schema={TEXT: pl.String},
        encoding="utf8-lossy",
        raise_if_empty=False,
    )
    return int(lines.select(pl.len()).collect().item())


def read_part(part: Part, types: dict | None) -> pl.DataFrame:
    """The partition's rows, parse errors turned into InputError naming file and line
    (an empty line too, which Polars reads as a row of nulls: see io.diagnose)."""
    with translated(part.input):
        frame = scan_part(part, types).collect(engine="streaming")
    csv = part.form.format == "csv" and part.first_line is None
    if csv and has_row_of_nulls(frame):
        refuse_short_rows(part.input)
    return frame


def count_rows(part: Part, types: dict | None) -> int:
    """Rows in the partition (a cheap pass: no column is parsed, and a plain CSV
    needs no ``types``: :attr:`Part.plain_csv`)."""
    if part.first_line is not None:
        return count_lines(part) - len(part.skip)
    if part.parquet:
        return _group_span(part)[1]
    with translated(part.input):
        return int(_rows_scan(part, types).select(pl.len()).collect().item())


def _rows_scan(part: Part, types: dict | None) -> pl.LazyFrame:
    if not part.plain_csv:
        return scan_part(part, types)
    source = part.path if part.end is None else io.BytesIO(_part_bytes(part))
    return pl.scan_csv(
        source, separator=part.form.separator, infer_schema=False, raise_if_empty=False
    )


# --------------------------------------------------------------------------- types


def parse_types(paths: Input, overrides: dict | None) -> dict | None:
    """The parser types the local engine infers for ``paths`` (None for typed files)."""
    if paths.form.format not in ("csv", "ndjson"):
        return None
    with translated(paths):
        return dict(scan(paths, overrides).collect_schema())


def sample(paths: Input, overrides: dict | None, guard=None) -> pl.DataFrame:
    """The local engine's inspect sample (first rows, dates recognised; read leniently
    under an active ``guard``)."""
    return read_sample(paths, overrides, guard)
