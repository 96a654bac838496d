"""Where the data is: files, directories, globs and fsspec URLs, resolved once.

:func:`resolve_paths` expands local inputs into data files (one format at a time);
:func:`resolve` does the same for inputs that may be URLs (``s3://``, ``file://``),
as strings a Dask worker can open. :func:`open_bytes` and :func:`size` read either.
"""

from __future__ import annotations

import glob as globlib
from pathlib import Path

from leanfit.errors import InputError

DATA_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".parquet", ".pq")


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
