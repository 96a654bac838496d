"""Where the data is: files, directories, globs and fsspec URLs, resolved once.

:func:`resolve_paths` expands local inputs into data files (one format at a time)
and checks them before any is parsed: each file's bytes are of its format (a
``.parquet`` that is really CSV is named as such), no header names a column twice,
and every file has the first file's columns in the same order (files are read by
position, so another order would put values under the wrong names). :func:`resolve`
does the same for inputs that may be URLs (``s3://``, ``file://``), as strings a
Dask worker can open. :func:`open_bytes` and :func:`size` read either.
"""

from __future__ import annotations

import csv
import glob as globlib
import gzip
from pathlib import Path

from leanfit.errors import InputError

DATA_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".parquet", ".pq")
PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"
SHOWN_COLUMNS = 8


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
    for path in paths:
        _check_content(path)
    _check_same_columns(paths)
    return paths


def is_parquet(path: Path) -> bool:
    return path.suffix in (".parquet", ".pq")


def _check_one_format(paths: list[Path]) -> None:
    kinds = {is_parquet(p) for p in paths}
    if len(kinds) > 1:
        parquet = next(p for p in paths if is_parquet(p))
        text = next(p for p in paths if not is_parquet(p))
        raise InputError(
            f"The inputs mix CSV ({text}) and Parquet ({parquet}) files; give one format at a time."
        )
    for path in paths:
        if path.stat().st_size == 0:
            raise InputError(f"{path}, line 1: the file is empty. Give a file with a header row.")


def _check_content(path: Path) -> None:
    """Refuse a file whose bytes are not of the format its name says."""
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(max(path.stat().st_size - 4, 0))
        tail = f.read(4)
    if is_parquet(path):
        if head != PARQUET_MAGIC:
            raise InputError(
                f"{path} is not a Parquet file (it does not start with PAR1); "
                "give a CSV file a .csv name."
            )
        if tail != PARQUET_MAGIC:
            raise InputError(
                f"{path}: the Parquet file is truncated (it does not end with PAR1); "
                "copy or write it again."
            )
    elif path.name.endswith(".gz"):
        if head[:2] != GZIP_MAGIC:
            raise InputError(f"{path} is not gzip'd; give plain CSV a .csv name.")
    elif head == PARQUET_MAGIC:
        raise InputError(f"{path} is a Parquet file; give it a .parquet name.")
    elif head[:2] == GZIP_MAGIC:
        raise InputError(f"{path} is gzip'd; give it a .csv.gz name.")


def header_names(path: Path) -> list[str]:
    """The column names of a data file: its CSV header row or its Parquet schema."""
    if is_parquet(path):
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="") as f:
            return next(csv.reader(f), [])
    except (EOFError, OSError):  # a damaged gzip: the reader names it
        return []


def _check_same_columns(paths: list[Path]) -> None:
    """Every file names each column once, and names the first file's columns in order."""
    first = header_names(paths[0])
    _check_unique(paths[0], first)
    for path in paths[1:]:
        names = header_names(path)
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


def is_url(path) -> bool:
    return "://" in str(path)


def local_path(path: str) -> str:
    return path[7:] if path.startswith("file://") else path


def open_bytes(path: str):
    if is_url(path) and not path.startswith("file://"):
        import fsspec

        return fsspec.open(path, "rb").open()
    return open(local_path(path), "rb")


def size(path: str) -> int:
    if is_url(path) and not path.startswith("file://"):
        import fsspec

        fs, _, (stripped,) = fsspec.core.get_fs_token_paths(path)
        return int(fs.size(stripped))
    return Path(local_path(path)).stat().st_size


def resolve(data) -> list[str]:
    """The data files of ``data`` (file, directory, glob, URL or a list), in order."""
    items = data if isinstance(data, list | tuple) else [data]
    if not any(is_url(i) and not str(i).startswith("file://") for i in items):
        return [str(p) for p in resolve_paths([local_path(str(i)) for i in items])]
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
