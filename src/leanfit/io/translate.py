"""The one place where errors of other libraries become leanfit errors.

Polars (and the pyarrow readers behind it) say *that* a file is bad, in their own
words; :func:`translated` turns that into an :class:`~leanfit.errors.InputError`
naming the file and line (found by a diagnostic re-read, only on the error path,
so the fast path pays nothing) or, for a value that does not fit its column's
parser type, a :class:`~leanfit.errors.ColumnTypeError`. No other module catches
a Polars error.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from leanfit.errors import ColumnTypeError, InputError, LeanfitError, SchemaMismatch
from leanfit.io.diagnose import locate_problem

TYPE_ERROR = re.compile(
    r"could not parse `(?P<value>.*?)` as dtype `(?P<dtype>[^`]*)` at column '(?P<column>[^']*)'"
)


@contextlib.contextmanager
def translated(paths: list[Path] | None = None, *, where: str | None = None) -> Iterator[None]:
    """Run the block; a Polars error in it becomes a leanfit error.

    With ``paths`` (the input files being read) the error names the file and line;
    with only ``where`` (e.g. ``"a feature column"``) it becomes a
    :class:`~leanfit.errors.SchemaMismatch` saying what did not fit.
    """
    try:
        yield
    except LeanfitError:
        raise
    except pl.exceptions.PolarsError as exc:
        if paths is None:
            what = where or "the data"
            raise SchemaMismatch(f"{what} has the wrong type: {first_line(exc)}") from None
        raise as_input_error(exc, paths) from None


def as_input_error(exc: Exception, paths: list[Path]) -> InputError:
    """An InputError naming file and line for a Polars parse error over ``paths``."""
    type_error = TYPE_ERROR.search(str(exc))
    if type_error:
        return ColumnTypeError(type_error["column"], type_error["value"], type_error["dtype"])
    local = [p for p in paths if "://" not in str(p) or str(p).startswith("file://")]
    found = locate_problem([Path(str(p).removeprefix("file://")) for p in local])
    if found:
        return InputError(found)
    return InputError(f"{', '.join(map(str, paths))}: could not read the data ({first_line(exc)}).")


def first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
