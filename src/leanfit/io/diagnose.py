"""Finding the line of a problem in a CSV file, after the fast parser failed.

The streaming parser says *that* a file is bad, not always *where*. These checks
re-read the file once, only on that error path, and name the first bad line.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "bad.csv"
>>> _ = p.write_bytes(b"a,b\\n1,2\\n3,4,5\\n")
>>> print(locate_problem([p]))
bad.csv, line 3: expected 2 fields, found 3 (3,4,5). Fix or remove that row, or give --bad-rows skip (or quarantine) to leave such rows out.
"""

from __future__ import annotations

import codecs
import functools
import io
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from leanfit.errors import InputError
from leanfit.io.readers import open_stream

BLOCK = 1 << 24
FIX = "Fix or remove that row, or give --bad-rows skip (or quarantine) to leave such rows out."


def first_invalid_utf8(path: Path) -> str | None:
    """The first line holding bytes that are not UTF-8, or None."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines_before = 0
    with open_stream(str(path)) as f:
        while block := f.read(BLOCK):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                line = lines_before + block.count(b"\n", 0, exc.start) + 1
                return (
                    f"{path.name}, line {line}: invalid UTF-8 bytes {block[exc.start : exc.end]!r}. "
                    "Re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)."
                )
            lines_before += block.count(b"\n")
    return None


def first_ragged_row(path: Path, separator: str = ",") -> str | None:
    """The first row whose field count differs from the header's, else the first empty
    line (of a file of two columns or more), or None."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    found: list[str] = []

    def on_invalid(row) -> str:
        if not found:
            line = row.number if row.number is not None else "?"
            found.append(
                f"{path.name}, line {line}: expected {row.expected_columns} fields, "
                f"found {row.actual_columns} ({row.text.strip()[:80]}). {FIX}"
            )
        return "skip"

    with open_stream(str(path)) as f:
        header = f.read(1 << 16).split(b"\n", 1)[0].decode("utf-8", "replace")
    names = _header_names(header, separator)
    convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in names})
    parse = pacsv.ParseOptions(
        delimiter=separator,
        invalid_row_handler=on_invalid,
        ignore_empty_lines=False,
        newlines_in_values=True,  # an unbalanced quote: its field runs on, the row is ragged
    )
    read = pacsv.ReadOptions(use_threads=False)  # row numbers are known only when unthreaded
    blank = False  # a row of empty fields: an empty line, or only separators
    try:
        reader = pacsv.open_csv(
            str(path), read_options=read, parse_options=parse, convert_options=convert
        )
        for batch in reader:
            if found:
                break
            blank = blank or (len(names) > 1 and _has_blank_row(batch))
    except pa.ArrowInvalid:  # a quoted field that never closes, or no rows at all
        return found[0] if found else first_unbalanced_quote(path)
    if found:
        return found[0]
    return first_empty_line(path, separator) if blank else None


def first_unbalanced_quote(path: Path) -> str | None:
    """The first line holding an odd number of quotes: where a quoted field opens and
    does not close on its line (or None)."""
    with open_stream(str(path)) as f:
        for number, line in enumerate(f, start=1):
            if line.count(b'"') % 2:
                return (
                    f"{path.name}, line {number}: a quote opens a field that does not close "
                    f"on its line ({line.strip()[:80].decode('utf-8', 'replace')}). {FIX}"
                )
    return None


def _has_blank_row(batch) -> bool:
    import pyarrow.compute as pc

    empty = [pc.equal(column, "") for column in batch.columns]
    return bool(batch.num_rows) and pc.any(functools.reduce(pc.and_, empty)).as_py()


def first_empty_line(path: Path, separator: str = ",") -> str | None:
    """The first empty line outside quoted fields, or None (Python's csv module: the
    only reader here that tells an empty line from a row of empty fields)."""
    import csv

    with open_stream(str(path)) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
        reader = csv.reader(text, delimiter=separator)
        for row in reader:
            if not row:
                return f"{path.name}, line {reader.line_num}: the line is empty. {FIX}"
    return None


def _header_names(header: str, separator: str = ",") -> list[str]:
    import csv

    return next(csv.reader([header.rstrip("\r")], delimiter=separator))


def locate_problem(paths: list[Path], separator: str = ",") -> str | None:
    """Describe the first invalid-UTF-8 or ragged line among CSV ``paths``."""
    for path in map(Path, paths):
        try:
            problem = first_invalid_utf8(path) or first_ragged_row(path, separator)
        except (EOFError, OSError) as exc:  # a compressed stream cut short or damaged
            return (
                f"{path}: the compressed data ends early or is damaged ({exc}); "
                "copy or compress it again."
            )
        if problem:
            return problem
    return None


def refusing_empty_lines(frames: Iterator[pl.DataFrame], paths) -> Iterator[pl.DataFrame]:
    """``frames`` of the CSV input ``paths``, stopped at the first empty line: Polars
    reads one as a row of nulls, which would get a prediction of its own. A row of
    nulls sends the files to :func:`refuse_short_rows` (once: a row of empty fields
    is a row)."""
    checked = False
    for frame in frames:
        if not checked and has_row_of_nulls(frame):
            refuse_short_rows(paths)
            checked = True
        yield frame


def has_row_of_nulls(frame: pl.DataFrame) -> bool:
    """Whether a row of ``frame`` is all nulls: an empty line, or a row of empty fields."""
    return frame.select(pl.all_horizontal(pl.all().is_null()).any()).item()


def refuse_short_rows(paths) -> None:
    """Polars fills the missing fields of a short row (an empty line too) with nulls,
    which look like empty last fields: when the last column has nulls, re-read the CSV
    files of the input ``paths`` (local ones) to tell them apart and raise
    :class:`~leanfit.errors.InputError` naming the first short row."""
    if paths.form.format != "csv":
        return
    for path in paths:
        problem = None if "://" in path else first_ragged_row(Path(path), paths.form.separator)
        if problem:
            raise InputError(problem)
