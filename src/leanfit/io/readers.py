"""Lazy, streaming scans of each format, local or behind a URL.

Polars scans local files and the URLs its own object store reads (``s3://``,
``gs://``, ``az://``, ``https://``, ``hf://``) itself. Anything else is *streamed*
through Python as a Polars lazy frame (an IO source plugin): a CSV compressed with
bzip2 (Polars cannot decompress it), and files behind other fsspec URLs
(``memory://``, ``ftp://``, ...): CSV and JSON lines are read in blocks of whole
lines of :data:`BLOCK` bytes, each parsed by Polars; Parquet by row group and Arrow
IPC by record batch through pyarrow. No file is read whole into memory.
"""

from __future__ import annotations

import bz2
import gzip
import io
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import polars as pl

from leanfit.io.formats import IPC_STREAM, Form, format_of

BLOCK = 8 << 20
INFER_ROWS = 10_000
SAMPLE_CELLS = 2_000_000  # of the type-inference sample: 10,000 rows up to 200 columns
MIN_INFER_ROWS = 100
POLARS_PROTOCOLS = ("s3", "s3a", "gs", "gcs", "az", "azure", "abfs", "abfss", "http", "https", "hf")
DICTIONARY_TYPES = (pl.Categorical, pl.Enum)
GROUP_ROWS_KEY = "leanfit.row_group_rows"  # footer key: rows per row group (leanfit shrink)


def is_url(path) -> bool:
    return "://" in str(path)


def polars_reads(path: str) -> bool:
    """Whether Polars scans ``path`` itself (else it is streamed through Python)."""
    if format_of(path)[1] == "bz2":
        return False
    return not is_url(path) or path.split("://", 1)[0].lower() in POLARS_PROTOCOLS


def open_raw(path: str):
    """The file's bytes: a local file, or an fsspec URL (opened lazily, read in blocks)."""
    if is_url(path):
        import fsspec

        return fsspec.open(path, "rb").open()
    return open(path, "rb")


def open_stream(path: str):
    """The file's bytes, decompressed as its name says (read with ``read(size)``)."""
    compression = format_of(path)[1]
    if compression is None:
        return open_raw(path)
    if is_url(path):
        import pyarrow as pa

        return pa.input_stream(open_raw(path), compression=compression)
    if compression == "gzip":
        return gzip.open(path, "rb")
    if compression == "bz2":
        return bz2.open(path, "rb")
    import pyarrow as pa

    return pa.input_stream(path, compression=compression)


def head_bytes(path: str, size: int = 1 << 16) -> bytes:
    """The first ``size`` decompressed bytes of ``path``."""
    with open_stream(path) as f:
        return f.read(size)


def line_blocks(path: str) -> Iterator[tuple[bytes, bytes]]:
    """``(first line, block)``: the file's other lines in blocks of about ``BLOCK``
    bytes cut after a line break."""
    with open_stream(path) as f:
        rest = b""
        first = None
        while chunk := f.read(BLOCK):
            rest += chunk
            if first is None:
                cut = rest.find(b"\n") + 1
                if not cut:
                    continue
                first, rest = rest[:cut], rest[cut:]
            cut = rest.rfind(b"\n") + 1
            if cut:
                yield first, rest[:cut]
                rest = rest[cut:]
        if first is None:
            first, rest = rest, b""
        if rest:
            yield first, rest


def streamed(schema: Mapping[str, pl.DataType], frames: Callable[[], Iterator[pl.DataFrame]]):
    """A lazy frame of ``schema`` whose rows come from ``frames()``, one frame at a time."""
    from polars.io.plugins import register_io_source

    def source(with_columns, predicate, n_rows, batch_size) -> Iterator[pl.DataFrame]:
        left = n_rows
        for frame in frames():
            if with_columns is not None:
                frame = frame.select(with_columns)
            if predicate is not None:
                frame = frame.filter(predicate)
            if left is not None:
                frame = frame.head(left)
                left -= frame.height
            yield frame
            if left == 0:
                return

    return register_io_source(source, schema=dict(schema))


# --------------------------------------------------------------------------- text


def infer_rows(path: str, form: Form) -> int:
    """Rows to infer a CSV file's types from: ``INFER_ROWS``, fewer for a wide file (a
    sample of 10,000 rows of 10,000 columns held 1.7 GB), at least ``MIN_INFER_ROWS``."""
    return max(MIN_INFER_ROWS, min(INFER_ROWS, SAMPLE_CELLS // csv_width(path, form)))


def csv_width(path: str, form: Form) -> int:
    """The fields of a CSV file's header row (quoted separators counted too: an upper
    bound), read to its end however long (1 for a file it cannot read: its reader
    names the fault)."""
    head = b""
    try:
        with open_stream(path) as f:
            while b"\n" not in head and len(head) < 1 << 26:
                block = f.read(1 << 20)
                if not block:
                    break
                head += block
    except (EOFError, OSError):
        return 1
    return head.split(b"\n", 1)[0].count(form.separator.encode()) + 1


def csv_types(path: str, form: Form, overrides: Mapping[str, pl.DataType] | None) -> dict:
    """The types Polars infers from the first rows of a CSV file (``overrides`` applied)."""
    if not polars_reads(path):
        first, block = next(line_blocks(path), (b"", b""))
        return dict(_head_csv(first + block, form, overrides).schema)
    return dict(
        pl.scan_csv(
            path,
            separator=form.separator,
            infer_schema_length=infer_rows(path, form),
            try_parse_dates=True,
            schema_overrides=dict(overrides or {}),
            raise_if_empty=True,
        ).collect_schema()
    )


def _head_csv(data: bytes, form: Form, overrides) -> pl.DataFrame:
    return pl.read_csv(
        io.BytesIO(data),
        separator=form.separator,
        n_rows=INFER_ROWS,
        infer_schema_length=INFER_ROWS,
        try_parse_dates=True,
        schema_overrides=dict(overrides or {}),
        raise_if_empty=True,
    )


def scan_csv(paths: list[str], form: Form, types: Mapping[str, pl.DataType]) -> pl.LazyFrame:
    """CSV files read with ``types`` (Polars' own scan where it can)."""
    if all(polars_reads(p) for p in paths):
        return pl.scan_csv(paths, separator=form.separator, schema=dict(types), raise_if_empty=True)
    return pl.concat([_one_csv(p, form, types) for p in paths], how="vertical")


def _one_csv(path: str, form: Form, types: Mapping[str, pl.DataType]) -> pl.LazyFrame:
    if polars_reads(path):
        return pl.scan_csv(path, separator=form.separator, schema=dict(types), raise_if_empty=True)

    def frames() -> Iterator[pl.DataFrame]:
        for first, block in line_blocks(path):
            yield pl.read_csv(
                io.BytesIO(first + block), separator=form.separator, schema=dict(types)
            )

    return streamed(types, frames)


def scan_ndjson(paths: list[str], types: Mapping[str, pl.DataType] | None) -> pl.LazyFrame:
    """JSON lines files, with ``types`` (None: inferred from the first rows)."""
    if types is None:
        types = ndjson_types(paths[0])
    if all(polars_reads(p) for p in paths):
        return pl.scan_ndjson(paths, schema=dict(types))

    def frames(path: str) -> Iterator[pl.DataFrame]:
        for first, block in line_blocks(path):
            yield pl.read_ndjson(io.BytesIO(first + block), schema=dict(types))

    parts = [streamed(types, lambda p=p: frames(p)) for p in paths]
    return pl.concat(parts, how="vertical")


def ndjson_types(path: str) -> dict:
    if polars_reads(path):
        return dict(pl.scan_ndjson(path, infer_schema_length=INFER_ROWS).collect_schema())
    first, block = next(line_blocks(path), (b"", b""))
    return dict(pl.read_ndjson(io.BytesIO(first + block), infer_schema_length=INFER_ROWS).schema)


# --------------------------------------------------------------------------- binary


def scan_binary(paths: list[str], form: Form) -> pl.LazyFrame:
    """Parquet or Arrow IPC files, hive partition columns added; dictionary columns
    (leanfit shrink writes them) read as the text they hold, so that every stage sees
    the same types as from a CSV."""
    if all(polars_reads(p) and not ipc_stream(p, form) for p in paths):
        scan = pl.scan_parquet if form.format == "parquet" else pl.scan_ipc
        hive = {"hive_partitioning": True, "hive_schema": dict(form.hive)} if form.hive else {}
        lf = scan(paths, **hive)
    else:
        lf = pl.concat([_arrow_file(p, form) for p in paths], how="vertical")
    index = pandas_index(paths[0]) if form.format == "parquet" else []
    return as_text_dictionaries(lf.drop(index) if index else lf)


def pandas_index(path: str) -> list[str]:
    """The columns that hold a pandas index in a Parquet file pandas wrote (the index of
    filtered rows, say): ``pandas.read_parquet`` makes them the index, not data."""
    import pyarrow.parquet as pq

    try:
        with open_raw(path) as f:
            meta = pq.read_schema(f).pandas_metadata or {}
    except (OSError, ValueError):  # its reader names the fault
        return []
    return [name for name in meta.get("index_columns", []) if isinstance(name, str)]


def as_text_dictionaries(lf: pl.LazyFrame) -> pl.LazyFrame:
    names = [n for n, t in lf.collect_schema().items() if isinstance(t, DICTIONARY_TYPES)]
    return lf.with_columns(pl.col(names).cast(pl.String)) if names else lf


def _arrow_file(path: str, form: Form) -> pl.LazyFrame:
    """One Parquet (by row group) or IPC file (by record batch) streamed through pyarrow."""
    values = hive_values(path, form)

    def frames() -> Iterator[pl.DataFrame]:
        with open_raw(path) as f:
            for batch in arrow_batches(f, form.format):
                yield pl.from_arrow(batch).with_columns(values)

    return streamed({**binary_schema(path, form), **dict(form.hive)}, frames)


def binary_schema(path: str, form: Form) -> dict[str, pl.DataType]:
    """The column types of one Parquet or IPC file, from its footer (a local file by
    Polars: importing pyarrow costs ~45 MB of resident memory)."""
    if not is_url(path) and not ipc_stream(path, form):
        read = pl.read_parquet_schema if form.format == "parquet" else pl.read_ipc_schema
        return dict(read(path))
    with open_raw(path) as f:
        return dict(
            pl.from_arrow(next(iter(arrow_batches(f, form.format, schema_only=True)))).schema
        )


def mapped_sizes(paths) -> list[int]:
    """Bytes of each of the input's Arrow IPC files that Polars reads through a memory
    map (local files in the file format): their pages count in the resident set as
    they are read, up to the whole file."""
    if paths.frame is not None or paths.form.format != "ipc":
        return []
    return [
        Path(p).stat().st_size
        for p in paths.paths
        if polars_reads(p) and not is_url(p) and not ipc_stream(p, paths.form)
    ]


def largest_row_group(paths) -> int | None:
    """The rows of the largest row group of a Parquet input (None for other inputs):
    Polars decodes a whole group at a time. leanfit shrink writes its group size in
    the footer (:data:`GROUP_ROWS_KEY`, read by Polars); other files' footers are read
    by pyarrow (None: a file of an object store without that key)."""
    if paths.frame is not None or paths.form.format != "parquet":
        return None
    largest = 0
    for path in paths.paths:
        written = pl.read_parquet_metadata(path).get(GROUP_ROWS_KEY) if polars_reads(path) else None
        if not written and polars_reads(path) and is_url(path):
            return None  # its footer only through fsspec: unplanned, the monitor guards it
        largest = max(largest, int(written) if written else _footer_largest_group(path))
    return largest


def _footer_largest_group(path: str) -> int:
    import pyarrow.parquet as pq

    with open_raw(path) as f:
        meta = pq.ParquetFile(f).metadata
    return max((meta.row_group(i).num_rows for i in range(meta.num_row_groups)), default=0)


def arrow_batches(f, fmt: str, schema_only: bool = False):
    """The record batches of an open Parquet or IPC file (or an empty table of its schema)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if fmt == "parquet":
        pf = pq.ParquetFile(f)
        if schema_only:
            return [pf.schema_arrow.empty_table()]
        return (pf.read_row_group(i) for i in range(pf.num_row_groups))
    stream = f.read(4) == IPC_STREAM
    f.seek(0)
    reader = pa.ipc.open_stream(f) if stream else pa.ipc.open_file(f)
    if schema_only:
        return [reader.schema.empty_table()]
    if stream:
        return iter(reader)
    return (reader.get_batch(i) for i in range(reader.num_record_batches))


def ipc_stream(path: str, form: Form) -> bool:
    """Whether ``path`` holds Arrow IPC in the stream format (Polars scans only files)."""
    if form.format != "ipc":
        return False
    with open_raw(path) as f:
        return f.read(4) == IPC_STREAM


def hive_values(path: str, form: Form) -> list[pl.Expr]:
    """The hive partition columns of ``path`` as literals of their types."""
    found = dict(hive_parts(path))
    return [pl.lit(found.get(name)).cast(dtype).alias(name) for name, dtype in form.hive]


def hive_parts(path: str) -> list[tuple[str, str]]:
    """The ``name=value`` folders on the way to ``path``."""
    from urllib.parse import unquote

    folders = str(path).replace("\\", "/").split("/")[:-1]
    return [(unquote(k), unquote(v)) for k, _, v in (f.partition("=") for f in folders if "=" in f)]
