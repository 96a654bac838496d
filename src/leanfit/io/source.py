"""Where the data is: files, directories, globs, fsspec URLs and in-memory data,
resolved once into an :class:`~leanfit.io.formats.Input`.

:func:`resolve_paths` expands what the user gave (a :class:`Source`, a path, a
glob, a URL, a list of them, or in-memory data: :mod:`leanfit.io.frames`) into data
files of one format and checks them before any is parsed: each file's bytes are of
its format (:mod:`leanfit.io.formats`), no header names a column twice, and every
file has the first file's columns in the same order (files are read by position, so
another order would put values under the wrong names). Folders named ``key=value``
on the way to Parquet or IPC files are hive partitions: ``key`` becomes a column.
URLs are resolved through fsspec (``memory://``; ``s3://`` needs ``s3fs``).
"""

from __future__ import annotations

import glob as globlib
import os
from pathlib import Path

import polars as pl

from leanfit.errors import InputError
from leanfit.io.formats import (
    DATA_SUFFIXES,
    NAMES,
    Form,
    Input,
    Source,
    checked_format,
    csv_header,
    default_separator,
    names_files,
)
from leanfit.io.readers import (
    binary_schema,
    hive_parts,
    is_url,
    ndjson_types,
    open_raw,
    open_stream,
)

SHOWN_COLUMNS = 8
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def resolve_paths(data) -> Input:
    """What ``data`` names, resolved: data files of one format, checked (see above)."""
    if isinstance(data, Input):
        return data
    if not names_files(data):
        from leanfit.io.frames import frame_input

        return frame_input(data)
    source = data if isinstance(data, Source) else Source(*_items(data))
    if not source.data:
        raise InputError("no input given: name a file, a folder or a glob.")
    paths: list[str] = []
    for item in source.data:
        local = not is_url(item) or item.startswith("file://")
        paths += _local_files(item) if local else _url_files(item)
    formats = {p: _format(p) for p in paths}
    _check_one_format(formats)
    fmt = formats[paths[0]]
    separator = source.separator or default_separator(paths[0])
    form = Form(fmt, separator, _hive_types(paths) if fmt in ("parquet", "ipc") else ())
    inp = Input(tuple(paths), form)
    _check_same_columns(inp)
    return inp


def _items(data) -> list[str]:
    return [os.fspath(d) for d in data] if isinstance(data, list | tuple) else [os.fspath(data)]


def _local_files(item: str) -> list[str]:
    item = item.removeprefix("file://")
    path = Path(item)
    if path.is_dir():
        found = sorted(str(p) for p in path.rglob("*") if p.name.lower().endswith(DATA_SUFFIXES))
        if not found:
            raise InputError(f"{item}: the directory holds no data files ({_known()}).")
        return found
    if path.exists():
        return [item]
    if any(ch in item for ch in "*?["):
        found = sorted(p for p in globlib.glob(item, recursive=True) if Path(p).is_file())
        if not found:
            raise InputError(f"{item}: no file matches this pattern.")
        return found
    raise InputError(f"{item}: no such file or directory. Check the path.")


def _url_files(item: str) -> list[str]:
    import fsspec

    try:
        fs, _, paths = fsspec.core.get_fs_token_paths(item)
    except ImportError as exc:
        raise InputError(f"{item}: reading this URL needs a package: {exc}") from None
    found: list[str] = []
    for path in paths:
        if fs.isdir(path):
            files = sorted(p for p in fs.find(path) if p.lower().endswith(DATA_SUFFIXES))
            if not files:
                raise InputError(f"{item}: the folder holds no data files ({_known()}).")
            found += [fs.unstrip_protocol(p) for p in files]
        elif fs.exists(path):
            found.append(fs.unstrip_protocol(path))
    if not found:
        raise InputError(f"{item}: no file at this address. Check the URL.")
    return found


def _known() -> str:
    return "CSV, TSV, Parquet, Arrow IPC or JSON lines"


def _format(path: str) -> str:
    """The checked format of one file; an empty file is refused."""
    with open_raw(path) as f:
        head = f.read(8)
        if not head:
            raise InputError(f"{path}, line 1: the file is empty. Give a file with a header row.")
        f.seek(0, os.SEEK_END)
        f.seek(max(f.tell() - 4, 0))
        tail = f.read(4)
    return checked_format(path, head, tail)


def _check_one_format(formats: dict[str, str]) -> None:
    first, kind = next(iter(formats.items()))
    other = next((p for p, f in formats.items() if f != kind), None)
    if other is not None:
        raise InputError(
            f"The inputs mix {NAMES[kind]} ({first}) and {NAMES[formats[other]]} ({other}) "
            "files; give one format at a time."
        )


def _hive_types(paths: list[str]) -> tuple[tuple[str, pl.DataType], ...]:
    """The hive partition columns of ``paths`` and their types (integer, float or text,
    as every file's value allows)."""
    values: dict[str, list[str]] = {}
    for path in paths:
        for name, value in hive_parts(path):
            values.setdefault(name, []).append(value)
    types = []
    for name, found in values.items():
        present = pl.Series([v for v in found if v != HIVE_NULL], dtype=pl.String)
        dtype = next(
            (t for t in (pl.Int64, pl.Float64) if present.cast(t, strict=False).null_count() == 0),
            pl.String,
        )
        types.append((name, dtype))
    return tuple(types)


def header_names(path: str, form: Form) -> list[str]:
    """The column names of one data file: its CSV header row, its Parquet or IPC schema
    (hive partition columns last), or the keys of its first JSON lines."""
    if form.format == "csv":
        try:
            with open_stream(path) as f:
                head = f.read(1 << 16)
        except (EOFError, OSError):  # a damaged compressed file: the reader names it
            return []
        return csv_header(head.split(b"\n", 1)[0], form.separator, path)
    if form.format == "ndjson":
        return list(ndjson_types(path))
    names = list(binary_schema(path, form))
    return [*names, *(n for n, _ in form.hive if n not in names)]


def column_names(data) -> list[str]:
    """The columns of ``data`` (of its first file)."""
    inp = resolve_paths(data)
    if inp.frame is not None:
        return inp.frame.collect_schema().names()
    return header_names(inp.paths[0], inp.form)


def size(path: str) -> int:
    """Bytes of a file or URL."""
    if is_url(path):
        import fsspec

        fs, _, (stripped,) = fsspec.core.get_fs_token_paths(path)
        return int(fs.size(stripped))
    return Path(path).stat().st_size


def input_bytes(inp: Input) -> int | None:
    """Bytes of the input's files (None for in-memory data)."""
    return None if inp.frame is not None else sum(size(p) for p in inp.paths)


def _check_same_columns(inp: Input) -> None:
    """Every file names each column once, and names the first file's columns in order."""
    paths = inp.paths
    first = header_names(paths[0], inp.form)
    _check_unique(paths[0], first)
    for path in paths[1:]:
        names = header_names(path, inp.form)
        if names != first:
            _check_unique(path, names)
            raise InputError(_column_difference(path, names, paths[0], first))


def _check_unique(path: Path, names: list[str]) -> None:
    seen: dict[str, int] = {}
    for position, name in enumerate(names, 1):
        if name in seen:
            raise InputError(
                f"{path}, line 1: column {position} is named {name!r} like column "
                f"{seen[name]}; give each column its own name."
            )
        seen[name] = position


def _column_difference(path: Path, names: list[str], first_path: Path, first: list[str]) -> str:
    missing = [n for n in first if n not in names]
    extra = [n for n in names if n not in first]
    if missing or extra:
        what = [f"lacks {_shown(missing)}, which {first_path} has"] if missing else []
        what += [f"has {_shown(extra)}, which {first_path} has not"] if extra else []
        return f"{path} {' and '.join(what)}; give files with the same columns."
    position = next(i for i, (a, b) in enumerate(zip(names, first, strict=True)) if a != b)
    return (
        f"{path} has columns in another order than {first_path} (first difference: "
        f"column {position + 1} is {names[position]!r}, expected {first[position]!r}); "
        "give files with the same header."
    )


def _shown(names: list[str]) -> str:
    """``column 'a'`` or ``columns 'a', 'b' and 3 more``."""
    shown = ", ".join(repr(n) for n in names[:SHOWN_COLUMNS])
    more = len(names) - SHOWN_COLUMNS
    return f"column{'s' if len(names) > 1 else ''} {shown}" + (
        f" and {more} more" if more > 0 else ""
    )
