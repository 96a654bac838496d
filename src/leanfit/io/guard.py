"""Bad rows: found row by row while the data streams, then skipped or quarantined.

Typed inputs (Parquet, Arrow IPC, JSON lines, frames) have no text to misparse: their
only bad rows hold ``inf`` in a number column (:meth:`Guard.finite`; ``line`` is then
the row number from 1, and the quarantine file holds the row as a JSON object).

A row is *bad* when its line cannot be parsed (a field count other than the
header's, bytes that are not UTF-8, an empty line) or a value does not fit its
column's type (text in a number column, a number out of the type's range, ``inf``
where numbers must be finite). ``NaN`` is a missing value, not a bad one.

With ``--bad-rows skip`` or ``quarantine`` each CSV file is first *screened* for its
column types: one streaming query reads it as raw lines and as text fields side by
side and keeps only the suspect lines (a comma count other than the header's, bytes
that are not UTF-8, a value that does not fit); those few are re-read as CSV in
Python to say why. Every pass then reads the file with Polars' typed parser and
leaves the bad lines out by number. The set of bad rows depends only on the file and
the types: not on chunk sizes, the memory limit or the engine.

:class:`Guard` is the policy and the record of one command; :meth:`Guard.write`
writes the quarantine file: a CSV whose columns are ``file``, ``line`` and
``reason``, followed by the original line's bytes unchanged.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from leanfit.errors import InputError
from leanfit.io.diagnose import FIX, first_unbalanced_quote
from leanfit.io.readers import is_url, open_stream, polars_reads

TEXT = "__leanfit_text"
LINE = "__leanfit_line"
RAW = "__leanfit_raw_"
POLICIES = ("error", "skip", "quarantine")
FLOAT32_MAX = 3.4028234663852886e38


@dataclass
class Guard:
    """How a command treats bad rows (``policy``), and the bad rows it met."""

    policy: str = "error"
    quarantine: Path | None = None
    found: dict[tuple[str, int], str] = field(default_factory=dict)
    _screened: set = field(default_factory=set, repr=False)
    _typed_rows: dict[tuple[str, int], bytes] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise InputError(
                f"--bad-rows must be one of {', '.join(POLICIES)}. Got {self.policy!r}."
            )

    @property
    def active(self) -> bool:
        """Whether bad rows are looked for row by row (skip or quarantine)."""
        return self.policy != "error"

    @property
    def count(self) -> int:
        return len(self.found)

    def scan(self, paths, types: Mapping[str, pl.DataType]) -> pl.LazyFrame:
        """The good rows of the CSV input ``paths`` (an Input) read with ``types``: each
        file is screened once for these types (:meth:`screen`), then read by Polars'
        typed parser with its bad lines left out by number."""
        frames = []
        separator = paths.form.separator
        for path in paths:
            if not polars_reads(path) or is_url(path):
                raise InputError(
                    f"{path}: --bad-rows skip or quarantine reads local CSV files (plain, "
                    ".gz or .zst); decompress it or copy it here first."
                )
            layout = self.screen(path, types, separator)
            bad = sorted(line for source, line in self.found if source == str(path))
            frames.append(good_rows(path, separator, layout, 2, bad))
        return pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]

    def screen(self, path, types: Mapping[str, pl.DataType], separator: str = ",") -> dict:
        """Find the bad lines of ``path`` for ``types`` (once); its column layout."""
        layout = {n: types.get(n, pl.String) for n in header_names(path, separator)}
        key = (str(path), tuple(layout.items()))
        if key not in self._screened:
            try:
                with warnings.catch_warnings():  # Polars warns, then raises, on a bad quote
                    warnings.simplefilter("ignore")
                    suspects = _suspects(path, layout, separator).collect(engine="streaming")
            except pl.exceptions.ComputeError as exc:
                if "malformed" not in str(exc):
                    raise
                problem = first_unbalanced_quote(Path(path)) or f"{path}: {exc}"
                raise InputError(
                    f"{problem.removesuffix(FIX)}--bad-rows skip or quarantine leaves out "
                    "rows, not a quote that runs on: fix that row."
                ) from None
            except pl.exceptions.ShapeError:  # more lines than rows: the screen reads lines
                raise InputError(
                    f"{path}: a quoted field holds a line break, and --bad-rows skip or "
                    "quarantine reads one row per line. Run without --bad-rows (the first "
                    "bad row then stops the run, naming its line), or remove the line "
                    "breaks from the quoted fields."
                ) from None
            for line, text in suspects.iter_rows():
                why = line_reason(text.rstrip("\r"), layout, separator)
                if why is not None:
                    self.found.setdefault((str(path), line), why)
            self._screened.add(key)
        return layout

    def screened(self, path, types: Mapping[str, pl.DataType], separator: str = ",") -> bool:
        """Whether ``path`` was screened (or vouched for) for ``types``."""
        layout = {n: types.get(n, pl.String) for n in header_names(path, separator)}
        return (str(path), tuple(layout.items())) in self._screened

    def vouch(self, paths, types: Mapping[str, pl.DataType]) -> None:
        """Count the CSV input ``paths`` (an Input) as screened for ``types``: every row
        already screened fits them (a schema made from those rows)."""
        if paths.form.format != "csv":
            return
        for path in paths:
            names = header_names(path, paths.form.separator)
            layout = {n: types.get(n, pl.String) for n in names}
            self._screened.add((str(path), tuple(layout.items())))

    def finite(self, lf: pl.LazyFrame, source: str) -> pl.LazyFrame:
        """The rows of one typed file or frame (Parquet, IPC, JSON lines, in-memory) whose
        numbers are finite. Typed data has no text to misparse, so its only bad rows are
        those holding ``inf``: found once per ``source`` (numbered from 1) and recorded."""
        floats = [n for n, t in lf.collect_schema().items() if t.is_float()]
        if not floats:
            return lf
        bad = pl.any_horizontal([pl.col(n).is_infinite().fill_null(False) for n in floats])
        if source not in self._screened:
            found = lf.with_row_index(LINE, offset=1).filter(bad).collect(engine="streaming")
            for row in found.iter_rows(named=True):
                key = (source, row.pop(LINE))
                name = next(n for n in floats if row[n] is not None and math.isinf(row[n]))
                self.found.setdefault(key, f"column '{name}': {row[name]} is not a finite number")
                self._typed_rows[key] = json.dumps(row, default=str).encode()
            self._screened.add(source)
        return lf.filter(~bad)

    def warning(self) -> str:
        """One sentence on the bad rows met (and where they went)."""
        first = min(self.found)
        where = f"first: {Path(first[0]).name}, line {first[1]}: {self.found[first]}"
        went = f"written to {self.quarantine}" if self.policy == "quarantine" else "skipped"
        return f"{self.count:,} bad rows {went} ({where})."

    def write(self) -> str | None:
        """Write the quarantine file (policy quarantine); its path, or None."""
        if self.policy != "quarantine" or self.quarantine is None:
            return None
        from leanfit.io.outputs import atomic_path

        wanted = sorted(self.found)
        typed = bool(wanted) and wanted[0] in self._typed_rows
        if typed:  # the row as a JSON object, in one quoted field
            header = b"row"
            texts = [b'"' + self._typed_rows[k].replace(b'"', b'""') + b'"' for k in wanted]
        else:
            header = _header_bytes(Path(wanted[0][0])) if wanted else b""
            texts = _raw_lines(wanted)
        with atomic_path(self.quarantine) as tmp, open(tmp, "wb") as out:
            out.write(b"file,line,reason," + header + b"\n")
            for (source, line), text in zip(wanted, texts, strict=True):
                reason = self.found[(source, line)].replace('"', '""')
                out.write(f'{_csv_field(source)},{line},"{reason}",'.encode() + text + b"\n")
        return str(self.quarantine)


def line_reason(text: str, layout: Mapping[str, pl.DataType], separator: str = ",") -> str | None:
    """Why the line ``text`` of a file with columns ``layout`` is a bad row, or None."""
    if text == "":
        return "empty line"
    if "\ufffd" in text:
        return "bytes that are not UTF-8"
    fields = next(csv.reader([text], delimiter=separator))
    if len(fields) != len(layout):
        return f"expected {len(layout)} fields, found {len(fields)}"
    for (name, dtype), value in zip(layout.items(), fields, strict=True):
        why = _field_reason(value.strip(), dtype)
        if why:
            return f"column '{name}': {why}"
    return None


def _field_reason(value: str, dtype: pl.DataType) -> str | None:
    if not value or dtype == pl.String or isinstance(dtype, pl.Enum | pl.Categorical):
        return None
    shown = value[:40]
    if dtype.is_numeric():
        try:
            number = float(value)
        except ValueError:
            return f"'{shown}' is not a number"
        if math.isnan(number):
            return None
        if math.isinf(number) or (dtype == pl.Float32 and abs(number) > FLOAT32_MAX):
            return f"{shown} is not a finite number of {dtype}"
        if dtype.is_integer() and pl.select(_value(pl.lit(value), dtype)).item() is None:
            return f"{shown} does not fit {dtype}"
        return None
    if dtype == pl.Boolean:
        return None if value.lower() in ("true", "false") else f"'{shown}' is not true or false"
    if dtype.is_temporal() and pl.select(_value(pl.lit(value), dtype)).item() is None:
        return f"'{shown}' is not a date"
    return None


def _csv_field(text: str) -> str:
    return f'"{text}"' if any(c in text for c in ',"\n') else text


def _header_bytes(path: Path) -> bytes:
    with open_stream(str(path)) as f:
        return f.readline().rstrip(b"\r\n")


def _raw_lines(wanted: list[tuple[str, int]]) -> list[bytes]:
    """The bytes of each (file, line) in ``wanted`` (sorted), read once per file."""
    out: list[bytes] = []
    by_file: dict[str, list[int]] = {}
    for source, line in wanted:
        by_file.setdefault(source, []).append(line)
    for source, lines in by_file.items():
        targets, found, number = set(lines), {}, 0
        with open_stream(source) as f:
            for raw in f:
                number += 1
                if number in targets:
                    found[number] = raw.rstrip(b"\r\n")
                    if len(found) == len(targets):
                        break
        out += [found.get(line, b"") for line in lines]
    return out


def header_names(path, separator: str = ",") -> list[str]:
    """The column names of a CSV file's header line."""
    return pl.read_csv(path, separator=separator, n_rows=0, encoding="utf8-lossy").columns


def lenient_sample(paths, overrides: Mapping[str, pl.DataType] | None) -> pl.DataFrame:
    """The first rows of the data read leniently: ragged lines truncated or filled, values
    that do not parse as null, and a text column whose values are all but a few numbers
    read as a number column. Types are chosen from it; a later value that does not fit
    them is a bad row."""
    sample = pl.read_csv(
        paths[0],
        separator=paths.form.separator,
        n_rows=10_000,
        infer_schema_length=10_000,
        schema_overrides=dict(overrides or {}),
        truncate_ragged_lines=True,
        ignore_errors=True,
        encoding="utf8-lossy",
    )
    numbers = [
        pl.col(n).str.strip_chars().cast(pl.Float64, strict=False)
        for n, t in sample.schema.items()
        if t == pl.String and n not in (overrides or {}) and _mostly_numbers(sample.get_column(n))
    ]
    return sample.with_columns(numbers)


def lenient_types(paths, overrides: Mapping[str, pl.DataType] | None) -> dict:
    """The column types of :func:`lenient_sample`."""
    return dict(lenient_sample(paths, overrides).schema)


def _mostly_numbers(column: pl.Series) -> bool:
    """Whether all but a few of a text column's values (at most 1%) are numbers."""
    present = column.drop_nulls()
    numbers = present.str.strip_chars().cast(pl.Float64, strict=False).drop_nulls()
    return numbers.len() > 0 and present.len() - numbers.len() <= 0.01 * present.len()


def _suspects(path, types: Mapping[str, pl.DataType], separator: str = ",") -> pl.LazyFrame:
    """The line numbers and text of the lines of ``path`` that may be bad rows for
    ``types`` (columns in header order). The file is read three ways side by side: as
    raw lines, as text fields and by the typed parser (a value it cannot read becomes
    null). A line is suspect when its comma count is not the header's (quotes may hide
    commas), it holds bytes that are not UTF-8, or a value is present as text but null
    or not finite as typed; the caller re-reads each suspect line as CSV to decide."""
    names = list(types)
    common = {"encoding": "utf8-lossy", "raise_if_empty": False, "truncate_ragged_lines": True}
    fields = {**common, "separator": separator}
    typed = pl.scan_csv(path, schema=parse_layout(types), ignore_errors=True, **fields)
    typed = typed.with_columns(fitted(types))
    texts = pl.scan_csv(
        path, infer_schema=False, with_column_names=lambda cols: [RAW + c for c in cols], **fields
    )
    lines = pl.scan_csv(
        path,
        has_header=False,
        skip_lines=1,
        separator="\x1f",
        quote_char=None,
        schema={TEXT: pl.String},
        empty_string_is_null=False,
        **common,
    )
    lf = pl.concat([lines, texts, typed], how="horizontal").with_row_index(LINE, offset=2)
    misfits = [_misfit(pl.col(RAW + name), pl.col(name), dtype) for name, dtype in types.items()]
    line = pl.col(TEXT)
    commas = line.str.count_matches(separator, literal=True)
    suspect = (commas != len(names) - 1) | line.str.contains("\ufffd", literal=True)
    if misfits:
        suspect = suspect | pl.any_horizontal(misfits)
    return lf.filter(suspect).select(pl.col(LINE).cast(pl.Int64), line)


def good_rows(source, separator: str, types, first_line: int, bad) -> pl.LazyFrame:
    """The rows of the CSV ``source`` (a path or bytes with its header) read by the typed
    parser as ``types`` (leniently: a bad value is null), its lines numbered from
    ``first_line`` and the ``bad`` ones left out."""
    lf = (
        pl.scan_csv(
            source,
            separator=separator,
            schema=parse_layout(types),
            truncate_ragged_lines=True,
            ignore_errors=True,
            encoding="utf8-lossy",
            raise_if_empty=False,
        )
        .with_columns(fitted(types))
        .with_row_index(LINE, offset=first_line)
    )
    if bad:
        lf = lf.filter(~pl.col(LINE).is_in(pl.Series(bad, dtype=pl.UInt32).implode()))
    return lf.drop(LINE)


def parse_layout(types: Mapping[str, pl.DataType]) -> dict[str, pl.DataType]:
    """The types the CSV parser reads ``types`` as: integers narrower than 64 bits as
    float64 (exact for them), so that ``-0`` or ``3.0`` parse; :func:`fitted` then casts
    them to their own type."""
    return {n: pl.Float64 if _narrow_integer(t) else t for n, t in types.items()}


def fitted(types: Mapping[str, pl.DataType]) -> list[pl.Expr]:
    """Each column read by :func:`parse_layout` in its type of ``types``: null where the
    number is not a whole one or out of the type's range."""
    whole = [(pl.col(n), t) for n, t in types.items() if _narrow_integer(t)]
    return [
        pl.when(c == c.round()).then(c.cast(t, strict=False)).alias(c.meta.output_name())
        for c, t in whole
    ]


def _narrow_integer(dtype: pl.DataType) -> bool:
    return dtype.is_integer() and dtype not in (pl.Int64, pl.UInt64)


def _number(raw: pl.Expr) -> pl.Expr:
    """Text as a float64 number; ``NaN`` (any case) is a missing value."""
    value = raw.str.strip_chars().cast(pl.Float64, strict=False)
    return pl.when(value.is_nan()).then(None).otherwise(value)


def _value(raw: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """The column's value in ``dtype`` (null where missing or bad)."""
    if dtype == pl.String or isinstance(dtype, pl.Enum | pl.Categorical):
        return raw.cast(dtype, strict=False) if dtype != pl.String else raw
    if dtype == pl.Boolean:
        low = raw.str.strip_chars().str.to_lowercase()
        return pl.when(low == "true").then(True).when(low == "false").then(False)
    if dtype == pl.Date:
        return raw.str.strip_chars().str.to_date(strict=False)
    if isinstance(dtype, pl.Datetime):
        return raw.str.strip_chars().str.to_datetime(strict=False).cast(dtype, strict=False)
    number = _number(raw)
    if dtype.is_float():
        return number.cast(dtype, strict=False)
    integral = pl.when(number == number.round()).then(number.cast(dtype, strict=False))
    return pl.coalesce(raw.str.strip_chars().cast(dtype, strict=False), integral)


def _misfit(raw: pl.Expr, typed: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Whether a value may not fit its column: present as text, but null (or, for
    floats, not finite) as the typed parser read it."""
    if dtype == pl.String or isinstance(dtype, pl.Enum | pl.Categorical):
        return pl.lit(False)
    unread = raw.is_not_null() & typed.is_null()
    return unread | typed.is_infinite() if dtype.is_float() else unread
