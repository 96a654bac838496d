"""Bad rows: found row by row while the data streams, then skipped or quarantined.

With ``--bad-rows skip`` or ``quarantine`` a CSV file is scanned twice side by side
in one streaming query: as raw lines (every line one text value) and as fields
(every column as text, ragged lines truncated). A row is *bad* when its line cannot
be parsed (a field count other than the header's, bytes that are not UTF-8, an empty
line) or a value does not fit its column's type (text in a number column, a number
out of the stored type's range, ``inf`` where numbers must be finite). Every other
value is converted to its column's type; ``NaN`` counts as a missing value. Rows keep
their line number, so the set of bad rows depends only on the file: not on chunk
sizes, the memory limit or the engine.

:class:`Guard` is the policy and the record of one command: every scan made under
it filters bad rows out and records them (file, line, reason); :meth:`Guard.write`
then writes the quarantine file: a CSV whose columns are ``file``, ``line`` and
``reason``, followed by the original line's bytes unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from leanfit.errors import InputError

TEXT = "__leanfit_text"
LINE = "__leanfit_line"
FILE = "__leanfit_file"
BAD = "__leanfit_bad"
POLICIES = ("error", "skip", "quarantine")
FLOAT32_MAX = 3.4028234663852886e38


@dataclass
class Guard:
    """How a command treats bad rows (``policy``), and the bad rows it met."""

    policy: str = "error"
    quarantine: Path | None = None
    found: dict[tuple[str, int], str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

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

    def scan(self, paths: list[Path], types: Mapping[str, pl.DataType]) -> pl.LazyFrame:
        """The good rows of CSV ``paths`` with columns ``types``; bad rows are recorded."""
        frames = [_guarded_file(path, types) for path in paths]
        lf = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
        lf = lf.map_batches(self._record, streamable=True, schema=lf.collect_schema())
        return lf.filter(pl.col(BAD).is_null()).drop(TEXT, LINE, FILE, BAD)

    def _record(self, frame: pl.DataFrame) -> pl.DataFrame:
        bad = frame.filter(pl.col(BAD).is_not_null()).select(FILE, LINE, BAD)
        if bad.height:
            with self._lock:
                for source, line, reason in bad.iter_rows():
                    self.found.setdefault((source, line), reason)
        return frame

    def summary(self) -> dict:
        """The row-accounting keys of the bad rows met."""
        return {"rows_bad": self.count, "bad_rows": self.policy}

    def write(self) -> str | None:
        """Write the quarantine file (policy quarantine); its path, or None."""
        if self.policy != "quarantine" or self.quarantine is None:
            return None
        from leanfit.io.outputs import atomic_path

        wanted = sorted(self.found)
        with atomic_path(self.quarantine) as tmp, open(tmp, "wb") as out:
            header = _header_bytes(Path(wanted[0][0])) if wanted else b""
            out.write(b"file,line,reason," + header + b"\n")
            for (source, line), text in zip(wanted, _raw_lines(wanted), strict=True):
                reason = self.found[(source, line)].replace('"', '""')
                out.write(f'{_csv_field(source)},{line},"{reason}",'.encode() + text + b"\n")
        return str(self.quarantine)


def _csv_field(text: str) -> str:
    return f'"{text}"' if any(c in text for c in ',"\n') else text


def _open(path: Path):
    import gzip

    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _header_bytes(path: Path) -> bytes:
    with _open(path) as f:
        return f.readline().rstrip(b"\r\n")


def _raw_lines(wanted: list[tuple[str, int]]) -> list[bytes]:
    """The bytes of each (file, line) in ``wanted`` (sorted), read once per file."""
    out: list[bytes] = []
    by_file: dict[str, list[int]] = {}
    for source, line in wanted:
        by_file.setdefault(source, []).append(line)
    for source, lines in by_file.items():
        targets, found, number = set(lines), {}, 0
        with _open(Path(source)) as f:
            for raw in f:
                number += 1
                if number in targets:
                    found[number] = raw.rstrip(b"\r\n")
                    if len(found) == len(targets):
                        break
        out += [found.get(line, b"") for line in lines]
    return out


def header_names(path: Path) -> list[str]:
    """The column names of a CSV file's header line."""
    return pl.read_csv(path, n_rows=0, encoding="utf8-lossy").columns


def lenient_types(paths: list[Path], overrides: Mapping[str, pl.DataType] | None) -> dict:
    """The column types of the first rows, bad lines ignored; integers as Float64 (a
    late non-integer widens them, as in the strict pass) and dates left as text (the
    sample recognises them)."""
    sample = pl.read_csv(
        paths[0],
        n_rows=10_000,
        infer_schema_length=10_000,
        schema_overrides=dict(overrides or {}),
        truncate_ragged_lines=True,
        ignore_errors=True,
        encoding="utf8-lossy",
    )
    return {n: pl.Float64 if t.is_integer() else t for n, t in sample.schema.items()}


def _guarded_file(path: Path, types: Mapping[str, pl.DataType]) -> pl.LazyFrame:
    names = header_names(path)
    # columns the types do not name are read as text; missing ones are left to the
    # stage that needs them (it names what is missing)
    types = {n: types.get(n, pl.String) for n in names}
    text = {"encoding": "utf8-lossy", "raise_if_empty": False}
    fields = pl.scan_csv(
        path,
        schema=dict.fromkeys(names, pl.String),
        truncate_ragged_lines=True,
        empty_string_is_null=True,
        **text,
    )
    lines = pl.scan_csv(
        path,
        has_header=False,
        skip_lines=1,
        separator="\x1f",
        quote_char=None,
        schema={TEXT: pl.String},
        empty_string_is_null=False,
        **text,
    )
    lf = pl.concat([lines, fields], how="horizontal").with_row_index(LINE, offset=2)
    raw = {name: pl.col(name) for name in types}
    values = {name: _value(raw[name], dtype) for name, dtype in types.items()}
    reasons = [_line_reason(len(names))] + [
        _value_reason(name, raw[name], values[name], dtype) for name, dtype in types.items()
    ]
    return lf.select(
        pl.col(TEXT),
        pl.col(LINE).cast(pl.Int64),
        pl.lit(str(path)).alias(FILE),
        pl.coalesce(reasons).alias(BAD),
        *[value.alias(name) for name, value in values.items()],
    )


def _field_count() -> pl.Expr:
    """Fields of the raw line: separators outside quotes, plus one."""
    line = pl.col(TEXT)
    quoted = line.str.count_matches(r'(?:^|,)(?:"(?:[^"]|"")*"|[^,"]*)')
    plain = line.str.count_matches(",", literal=True) + 1
    return pl.when(line.str.contains('"', literal=True)).then(quoted).otherwise(plain)


def _line_reason(expected: int) -> pl.Expr:
    line = pl.col(TEXT)
    found = _field_count()
    return (
        pl.when(line == "")
        .then(pl.lit("empty line"))
        .when(line.str.contains("\ufffd", literal=True))
        .then(pl.lit("bytes that are not UTF-8"))
        .when(found != expected)
        .then(pl.format(f"expected {expected} fields, found {{}}", found))
    )


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


def _value_reason(name: str, raw: pl.Expr, value: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Why the column's value makes its row bad, or null."""
    present = raw.is_not_null() & (raw.str.strip_chars() != "")
    shown = raw.str.slice(0, 40)
    if dtype == pl.String or isinstance(dtype, pl.Enum | pl.Categorical):
        return pl.lit(None, pl.String)
    if dtype.is_numeric():
        number = _number(raw)
        nan = raw.str.strip_chars().str.to_lowercase() == "nan"
        misfit = present & number.is_null() & ~nan
        why = pl.when(misfit).then(pl.format(f"column '{name}': '{{}}' is not a number", shown))
        bound = FLOAT32_MAX if dtype == pl.Float32 else None
        if dtype.is_float():
            out = ~number.is_finite() if bound is None else ~(number.abs() <= bound)
            why = why.when(present & number.is_not_null() & out).then(
                pl.format(f"column '{name}': {{}} is not a finite number", shown)
            )
        else:
            fits = present & value.is_null() & number.is_not_null()
            why = why.when(fits).then(
                pl.format(f"column '{name}': {{}} does not fit {dtype}", shown)
            )
        return why
    kind = "a date" if dtype.is_temporal() else "true or false"
    return pl.when(present & value.is_null()).then(
        pl.format(f"column '{name}': '{{}}' is not {kind}", shown)
    )
