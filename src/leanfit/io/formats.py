"""Data formats: told by the file's name, checked against its first bytes.

A known suffix names the format; the file's magic bytes must agree (a Feather file
named ``.csv`` is called a Feather file, never bad UTF-8). A file without a known
suffix is read as what its bytes say: Parquet (``PAR1``), Arrow IPC (``ARROW1``),
else CSV. CSV may be gzip'd, zstd'd or bzip2'd (``.csv.gz``, ``.csv.zst``,
``.csv.bz2``); ``.tsv`` is CSV separated by tabs.

>>> format_of("in/part.csv.zst")
('csv', 'zstd')
>>> format_of("x.feather")
('ipc', None)
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from leanfit.errors import InputError

FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "ipc",
    ".feather": "ipc",
    ".ipc": "ipc",
    ".jsonl": "ndjson",
    ".ndjson": "ndjson",
}
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".bz2": "bz2"}  # of CSV and TSV
IPC_STREAM = b"\xff\xff\xff\xff"
MAGIC = {
    b"PAR1": "parquet",
    b"ARROW1": "ipc",
    IPC_STREAM: "ipc",  # the IPC stream format (pyarrow.ipc.new_stream)
    b"\x1f\x8b": "gzip",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"BZh": "bz2",
}
NAMES = {"csv": "CSV", "parquet": "Parquet", "ipc": "Arrow IPC (Feather)", "ndjson": "JSON lines"}
SUFFIX_FOR = {"parquet": ".parquet", "ipc": ".feather", "gzip": ".csv.gz", "zstd": ".csv.zst"}
SUFFIX_FOR["bz2"] = ".csv.bz2"
DATA_SUFFIXES = (
    *FORMATS,
    *(f"{text}{c}" for text in (".csv", ".tsv") for c in COMPRESSIONS),
)
# predictions by the output's name: every data format but TSV, and gzip'd CSV
OUTPUTS = {s: f for s, f in FORMATS.items() if s != ".tsv"} | {".csv.gz": "csv.gz"}
COMPRESSED = {"gzip": "gzip'd", "zstd": "zstd-compressed", "bz2": "bzip2-compressed"}
LOOKALIKES = {"\t": "tab", ";": "semicolon", "|": "pipe"}


@dataclass(frozen=True)
class Form:
    """How every file of one input is read: its format, the CSV separator, and the
    hive partition columns (``name=value`` folders) with their types."""

    format: str
    separator: str = ","
    hive: tuple[tuple[str, pl.DataType], ...] = ()

    @property
    def typed(self) -> bool:
        """Whether values arrive typed (no text to parse: no parse errors)."""
        return self.format != "csv"


CSV = Form("csv")


def format_of(name: str) -> tuple[str | None, str | None]:
    """The format and compression a file name says (None: not a known data name)."""
    lower = name.lower()
    compression = next((c for s, c in COMPRESSIONS.items() if lower.endswith(s)), None)
    if compression:
        lower = lower.rsplit(".", 1)[0]
        if not lower.endswith((".csv", ".tsv")):
            return None, None
    fmt = next((f for s, f in FORMATS.items() if lower.endswith(s)), None)
    return fmt, compression


def magic_kind(head: bytes) -> str | None:
    """What the first bytes of a file say it is (a format or a compression), or None."""
    return next((kind for magic, kind in MAGIC.items() if head.startswith(magic)), None)


def _utf16(head: bytes) -> bool:
    """A UTF-16 byte order mark, or text with every other byte NUL (UTF-16 without one)."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    sample = head[:64]
    return len(sample) >= 8 and (
        sample[1::2].count(0) == len(sample) // 2 or sample[::2].count(0) == len(sample) // 2
    )


def checked_format(path: str, head: bytes, tail: bytes) -> str:
    """The format of ``path`` from its name and first bytes; InputError when they
    disagree (or the bytes are compressed but the name does not say how)."""
    fmt, compression = format_of(path)
    kind = magic_kind(head)
    if head.startswith(b"PK\x03\x04"):
        raise InputError(
            f"{path} is a zip archive (a leanfit model is one), not data: unzip it, or "
            "give the CSV or Parquet file itself."
        )
    if kind is None and fmt in (None, "csv") and compression is None and _utf16(head):
        raise InputError(
            f"{path} is UTF-16 text (its first bytes say so); leanfit reads UTF-8. "
            "Convert it first (e.g. iconv -f utf-16 -t utf-8)."
        )
    if fmt is None:
        if kind in ("parquet", "ipc"):
            fmt = kind
        elif kind is not None:
            raise InputError(f"{path} is {COMPRESSED[kind]}; give it a {SUFFIX_FOR[kind]} name.")
        else:
            fmt = "csv"
    elif compression is not None and kind != compression:
        raise InputError(
            f"{path} is not {COMPRESSED[compression]}; give plain CSV a .csv name."
            if kind is None
            else _rename(path, kind)
        )
    elif compression is None and kind is not None and kind != fmt:
        raise InputError(_rename(path, kind))
    if fmt in ("parquet", "ipc") and kind != fmt:
        raise InputError(
            f"{path} is not a {NAMES[fmt]} file (its first bytes are not "
            f"{'PAR1' if fmt == 'parquet' else 'ARROW1'}); give a CSV file a .csv name."
        )
    if fmt == "parquet" and tail != b"PAR1":
        raise InputError(
            f"{path}: the Parquet file is truncated (it does not end with PAR1); "
            "copy or write it again."
        )
    return fmt


def _rename(path: str, kind: str) -> str:
    if kind in NAMES:
        article = "an" if NAMES[kind][0] in "AEIOU" else "a"
        return f"{path} is {article} {NAMES[kind]} file; give it a {SUFFIX_FOR[kind]} name."
    return f"{path} is {COMPRESSED[kind]}; give it a {SUFFIX_FOR[kind]} name."


def default_separator(path: str) -> str:
    return "\t" if format_of(path)[0] == "csv" and ".tsv" in path.lower()[-8:] else ","


def csv_header(first_line: bytes, separator: str, path: str) -> list[str]:
    """The column names of a CSV header line; InputError when the line holds one
    field but looks separated by another character (tabs, semicolons)."""
    text = first_line.decode("utf-8-sig", errors="replace").rstrip("\r\n")
    if "\r" in text:
        raise InputError(
            f"{path}, line 1: the lines end with a bare carriage return (\\r, old Mac "
            "line endings); convert them to \\n first (e.g. tr '\\r' '\\n')."
        )
    names = next(csv.reader(io.StringIO(text), delimiter=separator), [])
    if len(names) == 1:
        other = next((c for c in LOOKALIKES if c != separator and c in text), None)
        if other is not None:
            shown = "\\t" if other == "\t" else other
            raise InputError(
                f"{path}, line 1: the header is one column but holds {LOOKALIKES[other]}s; "
                f"the file looks {LOOKALIKES[other]}-separated: give --separator '{shown}' "
                f"(Python: separator={other!r})."
            )
    return names


@dataclass(frozen=True, eq=False)
class Input(Sequence):
    """An input resolved: its data files (local paths or URLs) and how to read them,
    or a lazy frame made from in-memory data (``frame``; ``paths`` then holds its
    name, e.g. ``<pandas DataFrame>``). A sequence of its paths."""

    paths: tuple[str, ...]
    form: Form
    frame: pl.LazyFrame | None = None
    name: str | None = None  # in-memory data written to a temporary file: what it was

    @property
    def shown(self) -> list[str]:
        """The input as reports name it."""
        return [self.name] if self.name else list(self.paths)

    def __getitem__(self, index):
        return self.paths[index]

    def __len__(self) -> int:
        return len(self.paths)

    def __str__(self) -> str:
        return ", ".join(self.shown)

    def files(self, paths) -> Input:
        """The same form, other files (a partition's)."""
        return Input(tuple(paths), self.form)


class Source:
    """Data as named by the user: paths, folders, globs or URLs (one or several), and
    the CSV ``separator`` (default: a comma; a tab for ``.tsv``). Resolved when read,
    where it is read (a Dask worker resolves it on its own machine).

    >>> Source("in/a.csv", "in/b.csv", separator=";")
    Source('in/a.csv', 'in/b.csv', separator=';')
    """

    def __init__(self, *data: str | os.PathLike, separator: str | None = None):
        if separator is not None and len(separator) != 1:
            raise InputError(f"--separator must be one character. Got {separator!r}.")
        self.data = tuple(os.fspath(d) for d in data)
        self.separator = separator

    def __repr__(self) -> str:
        given = [repr(d) for d in self.data]
        given += [f"separator={self.separator!r}"] if self.separator else []
        return f"Source({', '.join(given)})"

    def __str__(self) -> str:
        return ", ".join(self.data)


def names_files(data) -> bool:
    """Whether ``data`` names files (paths, globs, URLs) rather than holding frames."""
    if isinstance(data, list | tuple):
        return bool(data) and all(isinstance(d, str | os.PathLike) for d in data)
    return isinstance(data, str | os.PathLike | Source | Input)


def output_format(path: str | os.PathLike, label: str = "--out") -> str:
    """The format of an output file by its name (see :data:`OUTPUTS`); ConfigError for a
    name that says none of them."""
    from leanfit.errors import ConfigError

    name = os.fspath(path).lower()
    found = next((f for s, f in OUTPUTS.items() if name.endswith(s)), None)
    if found is None:
        raise ConfigError(
            f"{label} {path}: the name does not say a format; end it with one of "
            f"{', '.join(OUTPUTS)}."
        )
    return found
