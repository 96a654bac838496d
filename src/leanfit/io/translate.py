"""The one place where errors of other libraries become leanfit errors.

Polars (and the pyarrow readers behind it) say *that* a file is bad, in their own
words; :func:`translated` turns that into an :class:`~leanfit.errors.InputError`
naming the file and line (found by a diagnostic re-read, only on the error path,
so the fast path pays nothing) or, for a value that does not fit its column's
parser type, a :class:`~leanfit.errors.ColumnTypeError`. No other module catches
a Polars error.

Faults of the operating system (a full disk, a read-only folder, a file size
limit) become one sentence naming the path and what to do in :func:`fault_error`,
which the command line calls for any error that is not leanfit's own.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import resource
import shutil
import tempfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import polars as pl

from leanfit.errors import ColumnTypeError, InputError, LeanfitError, SchemaMismatch
from leanfit.io.diagnose import locate_problem
from leanfit.io.formats import CSV, Input

TYPE_ERROR = re.compile(
    r"could not parse `(?P<value>.*?)` as dtype `(?P<dtype>[^`]*)` at column '(?P<column>[^']*)'"
)
CAST_ERROR = re.compile(
    r"conversion from `str` to `(?P<dtype>[^`]*)` failed in column '(?P<column>[^']*)' "
    r"for \d+ out of \d+ values: \[\"(?P<value>.*?)\""
)
OS_ERROR_CODE = re.compile(r"\((?:os error|errno) (\d+)\)|\[errno (\d+)\]", re.IGNORECASE)
SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")
PARTIAL = re.compile(r"^\.(?P<name>.+)\.partial-\d+$")
WRITE_FAULTS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


@contextlib.contextmanager
def translated(
    paths: list[Path] | None = None, *, where: str | None = None, out: Path | None = None
) -> Iterator[None]:
    """Run the block; a Polars error in it becomes a leanfit error.

    With ``paths`` (the input files being read) the error names the file and line;
    with only ``where`` (e.g. ``"a feature column"``) it becomes a
    :class:`~leanfit.errors.SchemaMismatch` saying what did not fit. A fault of the
    operating system (a full disk) is raised as an :class:`OSError` with its errno,
    for :func:`fault_error` to name the output; ``out``, a file the block writes, is
    checked for a full disk when Polars says only that writing failed.
    """
    try:
        yield
    except LeanfitError:
        raise
    except (pl.exceptions.PolarsError, OSError, EOFError) as exc:  # EOF: a truncated stream
        code = fault_code(exc)
        if code is None and out is not None and disk_full(out):
            code = errno.ENOSPC
        if code is not None and isinstance(exc, OSError):
            raise
        if code is not None:
            raise OSError(code, os.strerror(code), None if out is None else str(out)) from None
        if paths is None:
            what = where or "the data"
            raise SchemaMismatch(f"{what} has the wrong type: {first_line(exc)}") from None
        raise as_input_error(exc, paths) from None


@contextlib.contextmanager
def located_values(paths: Input) -> Iterator[None]:
    """Run the block (which encodes frames of the CSV input ``paths``); a text value
    that does not convert to its column's type is named with its file and line."""
    try:
        yield
    except SchemaMismatch as exc:
        cast = CAST_ERROR.search(str(exc))
        if cast is None or paths.form.format != "csv":
            raise
        where = first_line_holding(paths, cast["column"], cast["value"])
        if where is None:
            raise
        raise InputError(_does_not_convert(where, cast)) from None


def _does_not_convert(where: str, cast: re.Match) -> str:
    return (
        f"{where}, column '{cast['column']}': value {cast['value']!r} does not convert "
        f"to the column's type ({cast['dtype']}). Fix that row, or give "
        "--bad-rows skip (or quarantine) to leave such rows out."
    )


def first_line_holding(paths: Input, column: str, value: str) -> str | None:
    """``FILE, line N`` of the first row of ``paths`` whose ``column`` holds ``value``."""
    for path in paths:
        rows = pl.scan_csv(path, separator=paths.form.separator, infer_schema=False)
        found = (
            rows.with_row_index("row")
            .filter(pl.col(column).str.strip_chars() == value)
            .select(pl.col("row").first())
            .collect()
            .item()
        )
        if found is not None:
            return f"{path}, line {found + 2}"
    return None


def verified_parquet(path: Path) -> int:
    """The rows of a Parquet file just written, read from its footer. Polars may leave
    a truncated file without an error when the disk fills: that is an OSError here."""
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(path).num_rows
    except Exception:  # pyarrow raises several kinds for a damaged footer
        code = errno.ENOSPC if disk_full(path) else errno.EIO
        raise OSError(code, os.strerror(code), str(path)) from None


def disk_full(path: Path, margin: int = 1 << 20) -> bool:
    """Whether the filesystem of ``path`` has less than ``margin`` bytes free."""
    try:
        return shutil.disk_usage(Path(path).absolute().parent).free < margin
    except OSError:
        return False


def as_input_error(exc: Exception, paths: list[Path]) -> InputError:
    """An InputError naming file and line for a Polars parse error over ``paths``."""
    type_error = TYPE_ERROR.search(str(exc))
    if type_error:
        return ColumnTypeError(type_error["column"], type_error["value"], type_error["dtype"])
    form = paths.form if isinstance(paths, Input) else CSV
    cast = CAST_ERROR.search(str(exc))
    if cast and isinstance(paths, Input) and form.format == "csv":
        where = first_line_holding(paths, cast["column"], cast["value"])
        if where is not None:
            return InputError(_does_not_convert(where, cast))
    local = [Path(p) for p in map(str, paths) if "://" not in p]
    if form.format == "csv":
        found = broken_gzip(local) or locate_problem(local, form.separator)
    else:
        found = broken_parquet(local) if form.format == "parquet" else None
    if found:
        return InputError(found)
    return InputError(f"{', '.join(map(str, paths))}: could not read the data ({first_line(exc)}).")


def as_leanfit_error(exc: Exception, data, outputs: Mapping[str, object]) -> LeanfitError:
    """Any error of a command as a leanfit error with a one-sentence message: a value
    that does not parse with its file and line, an OS fault naming its path
    (:func:`fault_error`), anything else as an internal error to report."""
    if isinstance(exc, ColumnTypeError) and data:
        return located(exc, data)
    if isinstance(exc, LeanfitError):
        return exc
    return fault_error(exc, outputs) or LeanfitError(
        f"internal error ({type(exc).__name__}: {first_line(exc)}); please report it with "
        "the command line. Set LEANFIT_DEBUG=1 for the traceback."
    )


def located(error: ColumnTypeError, data) -> InputError:
    """``error`` with the file and line of the first value that does not parse (a
    diagnostic re-read of the CSV files of ``data``, only on this error path)."""
    from leanfit.io.source import resolve_paths

    try:
        paths = resolve_paths(data)
    except LeanfitError:
        return error
    if paths.form.format != "csv":
        return error
    column, value = error.column, error.value.strip()
    for path in paths:
        rows = pl.scan_csv(path, separator=paths.form.separator, infer_schema=False)
        rows = rows.select(pl.col(column)).with_row_index("row")
        try:
            hit = rows.filter(pl.col(column).str.strip_chars() == value).head(1).collect()
        except (pl.exceptions.PolarsError, OSError):
            continue
        if hit.height:
            return InputError(
                f"{path}, line {hit['row'][0] + 2}, column '{column}': value {error.value!r} "
                f"does not parse as {error.dtype}; fix that row, or give --bad-rows skip to "
                "leave such rows out."
            )
    return error


def broken_gzip(paths: list[Path]) -> str | None:
    """The first gzip'd file that ends early or is damaged, with the line it breaks at."""
    for path in paths:
        if path.name.endswith(".gz"):
            lines, problem = _gzip_lines(path)
            if problem:
                return (
                    f"{path}, line {lines + 1}: the gzip data {problem}; the file is "
                    "truncated or damaged: copy or compress it again."
                )
    return None


def _gzip_lines(path: Path) -> tuple[int, str | None]:
    """Lines that decompress, and what is wrong (None: the whole stream is sound)."""
    lines, inflate = 0, zlib.decompressobj(16 + zlib.MAX_WBITS)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            while chunk:
                try:
                    lines += inflate.decompress(chunk).count(b"\n")
                except zlib.error as exc:
                    return lines, f"is damaged ({exc})"
                chunk = inflate.unused_data if inflate.eof else b""
                if inflate.eof and chunk:  # the next member of a multi-member file
                    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    return lines, None if inflate.eof else "ends early"


def broken_parquet(paths: list[Path]) -> str | None:
    """The first Parquet file whose footer or pages cannot be read."""
    import pyarrow.parquet as pq

    for path in paths:
        if path.suffix not in (".parquet", ".pq"):
            continue
        try:
            with pq.ParquetFile(path) as f:
                for group in range(f.metadata.num_row_groups):
                    f.read_row_group(group)
        except Exception as exc:  # pyarrow raises several kinds for a damaged file
            return (
                f"{path}: the Parquet file is damaged or truncated ({first_line(exc)}); "
                "write it again."
            )
    return None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- faults

FAULT_WORDS = {
    "no space left on device": errno.ENOSPC,
    "disk quota exceeded": errno.EDQUOT,
    "file too large": errno.EFBIG,
    "read-only file system": errno.EROFS,
}
TEMP_WRITERS = ("encode/cache.py", "engines/local/boost.py")  # write under the temp folder
TEMP_ADVICE = "choose another --tmp-dir (or TMPDIR)"


def fault_code(exc: BaseException) -> int | None:
    """The errno of an OS fault, also when a library put it only in its message."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int):
        return code
    text = str(exc)
    found = OS_ERROR_CODE.search(text)
    if found:
        return int(found[1] or found[2])
    words = next((c for w, c in FAULT_WORDS.items() if w in text.lower()), None)
    if words is not None:
        return words
    if isinstance(exc, OSError) and SHORT_WRITE.search(text):  # numpy's tofile: no errno
        limited = resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY
        return errno.EFBIG if limited else errno.ENOSPC
    return None


def fault_error(exc: BaseException, outputs: Mapping[str, object]) -> LeanfitError | None:
    """An OS fault as one sentence: what happened, to which path, what to do.

    ``outputs`` maps each output option of the command (``--out``) to its path (or
    None). Returns None when ``exc`` is not an OS fault.
    """
    code = fault_code(exc)
    if code is None:
        return None
    given = {flag: str(path) for flag, path in outputs.items() if path}
    path = _own_path(exc)
    temp = tempfile.gettempdir()
    if path is None and _raised_in(exc, TEMP_WRITERS):
        path = temp
    elif path is None and len(given) == 1:
        path = next(iter(given.values()))
    flag = next((f for f, p in given.items() if path and _same_place(path, p)), None)
    if flag and path != temp:
        advice = f"choose another {flag}"
        path = path if _inside(given[flag], path) else given[flag]  # not its hidden temporary
    elif path and (path == temp or _in_leanfit_temp(path, temp)):
        path, advice = f"the temporary folder {temp}", TEMP_ADVICE
    else:
        advice = "check the path and the disk"
    return LeanfitError(_fault_sentence(code, path or "a file", advice))


def _fault_sentence(code: int, where: str, advice: str) -> str:
    if code == errno.ENOSPC:
        return f"no space left on device writing {where}; free space or {advice}."
    if code == errno.EDQUOT:
        return f"disk quota exceeded writing {where}; free space or {advice}."
    if code == errno.EFBIG:
        return f"file too large writing {where} (a file size limit, see ulimit -f); raise it or {advice}."
    if code == errno.EROFS:
        return f"{where} is on a read-only file system; {advice}."
    if code in (errno.EACCES, errno.EPERM):
        return f"{where}: permission denied; check its permissions or {advice}."
    if code in (errno.ENOTDIR, errno.EEXIST):
        return f"{where}: a part of this path is a file, not a folder; {advice}."
    if code == errno.EISDIR:
        return f"{where} is a folder, not a file; {advice}."
    if code == errno.ENOENT:
        return f"{where}: no such file or directory; {advice}."
    return f"{where}: {os.strerror(code).lower()}; {advice}."


def _own_path(exc: BaseException) -> str | None:
    """The path the error names, as the user knows it (not the temporary name)."""
    for name in (getattr(exc, "filename2", None), getattr(exc, "filename", None)):
        if name:
            head, tail = os.path.split(str(name))
            partial = PARTIAL.match(tail)
            return os.path.join(head, partial["name"]) if partial else str(name)
    return None


def _raised_in(exc: BaseException, modules: tuple[str, ...]) -> bool:
    """Whether the innermost leanfit frame of ``exc`` is in one of ``modules``."""
    innermost = None
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename.replace(os.sep, "/")
        if "/leanfit/" in name and not name.endswith("io/translate.py"):
            innermost = name
        tb = tb.tb_next
    return innermost is not None and innermost.endswith(modules)


def _same_place(path: str, output: str) -> bool:
    """``path`` is the output, a folder on the way to it, or a hidden file beside it
    (``.NAME.partial-PID``, ``.NAME.lock``)."""
    a, b = os.path.abspath(path), os.path.abspath(output)
    folder, name = os.path.split(b)
    beside = os.path.dirname(a) == folder and os.path.basename(a).startswith(f".{name}.")
    return a == b or beside or _inside(b, a)


def _in_leanfit_temp(path: str, temp: str) -> bool:
    """``path`` lies in a folder leanfit made under the temp folder."""
    if not _inside(path, temp):
        return False
    below = os.path.relpath(os.path.abspath(path), os.path.abspath(temp))
    return below.split(os.sep)[0].startswith("leanfit")


def _inside(path: str, folder: str) -> bool:
    return os.path.abspath(path).startswith(os.path.abspath(folder).rstrip(os.sep) + os.sep)
