"""Hostile inputs, options, bundles and faults, each run as the user runs it.

Every case writes its inputs in its own folder (small, generated: nothing committed)
and runs ``python -m leanfit.cli ...`` there in a subprocess. A case that must fail
is checked for its exit code, exactly one ``Error:`` line (the last line of stderr;
only progress lines may precede it) naming what was wrong and where, no traceback,
and no partial output (its outputs absent, no ``.partial`` file left). A case that
must succeed is checked against an independent reference: rows counted by Python's
csv module, or a Parquet file's row count from its footer.

The selected cases' subprocesses run a few at a time in one module fixture (they
are mostly interpreter start-up), then each test reads its own result. OS faults: a
file size limit (``RLIMIT_FSIZE``, SIGXFSZ ignored so that the write fails with
EFBIG) and, where ``mount`` is permitted (as root), a full and a read-only tmpfs.
"""

from __future__ import annotations

import csv
import errno
import gzip
import io
import json
import re
import resource
import shlex
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

PROGRESS = re.compile(r"^[A-Za-z-]+: (\d{1,3}% )?[\d,]+ (rows|rounds), ")  # plain progress lines
WORKERS = 3
HEADER = "x,f,c,label\n"
LATE = 10_200  # a line after the rows the column types are inferred from
BIG = 2_000  # rows whose outputs pass the file size limit of the fault cases


def rows(n: int, start: int = 0, bad: dict[int, str] | None = None) -> str:
    """``n`` data lines of ``x,f,c,label``; the row numbers in ``bad`` replaced."""
    bad = bad or {}
    return "".join(
        bad.get(i, f"{i},{(i * 7) % 13 + 0.5},{'abc'[i % 3]},{'yn'[(i // 2) % 2]}") + "\n"
        for i in range(start, start + n)
    )


def data(n: int = 200, bad: dict[int, str] | None = None) -> str:
    return HEADER + rows(n, bad=bad)


def parquet(n: int = 200, columns: list[str] | None = None) -> bytes:
    table = pacsv.read_csv(io.BytesIO(data(n).encode()))
    sink = io.BytesIO()
    pq.write_table(table.select(columns or table.column_names), sink, row_group_size=50)
    return sink.getvalue()


def nested_parquet() -> bytes:
    import pyarrow as pa

    sink = io.BytesIO()
    pq.write_table(pa.table({"x": [[1, 2], [3]] * 10, "label": ["y", "n"] * 10}), sink)
    return sink.getvalue()


def damaged_parquet() -> bytes:
    raw = bytearray(parquet(2000))
    raw[8 : len(raw) // 2] = b"\x07" * (len(raw) // 2 - 8)  # pages garbage, footer intact
    return bytes(raw)


def gz(content: str, keep: float = 1.0) -> bytes:
    packed = gzip.compress(content.encode())
    return packed[: int(len(packed) * keep)]


def wide(columns: int) -> str:
    names = ",".join(f"c{i}" for i in range(columns))
    return (
        f"{names},label\n" + ",".join(["1"] * columns) + ",y\n" + ",".join(["2"] * columns) + ",n\n"
    )


csv.field_size_limit(1 << 30)


def csv_rows(path: Path) -> int:
    """Data rows of a CSV file as Python's csv module counts them (header excluded)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8-sig") as f:
        return sum(1 for _ in csv.reader(f)) - 1


def file_rows(path: Path) -> int:
    if path.is_dir():
        return sum(file_rows(p) for p in path.iterdir())
    return pq.read_metadata(path).num_rows if path.suffix == ".parquet" else csv_rows(path)


# --------------------------------------------------------------------------- checks


def same_rows(output: str, data_file: str) -> Callable:
    """The output has one row per data row."""
    return lambda d, r: file_rows(d / output) == file_rows(d / data_file)


def json_rows(data_file: str) -> Callable:
    """``--json`` says ``rows`` is the data's row count."""
    return lambda d, r: json.loads(r.stdout)["rows"] == file_rows(d / data_file)


def json_is(key: str, value) -> Callable:
    return lambda d, r: json.loads(r.stdout)[key] == value


def made(name: str) -> Callable:
    return lambda d, r: (d / name).is_file()


def loads(name: str) -> Callable:
    """The bundle the command wrote loads, and predicts."""

    def check(d: Path, r) -> bool:
        from leanfit import load

        return load(d / name).predict_proba(d / "t.csv").shape[0] > 0

    return check


def both(*checks: Callable) -> Callable:
    return lambda d, r: all(check(d, r) for check in checks)


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """``files`` (name: text, bytes, or a function giving them) are written in the
    case's folder, then ``argv`` runs there (``{model}`` and ``{schema}``: the shared
    ones). ``error``: a regex the Error line matches (None: the command succeeds).
    ``check(folder, result)`` compares with a reference."""

    id: str
    files: dict
    argv: str
    error: str | None = None
    exit_code: int = 1
    outputs: tuple[str, ...] = ()
    check: Callable | None = None
    fault: str | None = None  # fsize, full or readonly
    waits_for: str | None = None
    fsize: int = 4_000
    slow: bool = False


def fails(id, files, argv, error, code=1, out=(), **more) -> Case:
    return Case(id, files, argv, error, code, tuple([out] if isinstance(out, str) else out), **more)


def works(id, files, argv, check, **more) -> Case:
    return Case(id, files, argv, check=check, **more)


# fmt: off
GOOD = {"data.csv": data()}
TRAIN = "train data.csv --target label --out m.leanfit"
PREDICT = "predict {model} data.csv --out p.csv"
DIR_AB = {"dir/a.csv": "x,y,label\n1,2,y\n3,4,n\n"}

CSV_CASES = [
    fails("empty-file", {"e.csv": ""}, "inspect e.csv", r"^Error: e\.csv, line 1: .*empty"),
    fails("header-only", {"h.csv": HEADER}, "inspect h.csv", r"h\.csv, line 2: .*no data rows"),
    fails("whitespace-only", {"w.csv": "  \n"}, "inspect w.csv", r"w\.csv, line 2: .*no data rows", slow=True),
    fails("no-header-row", {"n.csv": rows(20)}, "inspect n.csv -t label", r"n\.csv: target column 'label' not found", slow=True),
    works("bom", {"b.csv": "\ufeff" + data(50)}, "inspect b.csv -t label --json",
       both(json_rows("b.csv"), lambda d, r: "x" in json.loads(r.stdout)["kinds"])),
    works("crlf", {"r.csv": data(50).replace("\n", "\r\n")}, "inspect r.csv -t label --json",
       both(json_rows("r.csv"), json_is("classes", ["n", "y"]))),
    works("quoted-commas-and-newlines", {"q.csv": 'x,t,label\n1,"a,b",y\n2,"c\nd",n\n3,"e ""f""",y\n'},
       "inspect q.csv -t label --json", json_rows("q.csv")),
    fails("ragged-row-at-the-end-of-a-large-file", {"g.csv": data(12_000) + "1,2\n"}, "inspect g.csv",
      r"g\.csv, line 12002: expected 4 fields, found 2"),
    fails("too-many-fields", {"t.csv": data(30, {20: "1,2,a,y,9"})}, "inspect t.csv",
      r"t\.csv, line 22: expected 4 fields, found 5", slow=True),
    fails("invalid-utf8", {"u.csv": data(10).encode() + b"11,2.5,\xff\xfe,y\n"}, "inspect u.csv",
      r"u\.csv, line 12: invalid UTF-8"),
    fails("text-late-in-a-number-column-at-predict", {"a.csv": data(LATE + 100, {LATE: f"{LATE},abc,a,y"})},
      "predict {model} a.csv --out p.csv", rf"a\.csv, line {LATE + 2}, column 'f': value 'abc'",
      out="p.csv"),
    fails("inf", {"data.csv": data(300, {150: "150,inf,a,y"})}, "inspect data.csv",
      r"data\.csv, line 152, column 'f'.*finite", out="m.leanfit"),
    fails("inf-on-dask", {"data.csv": data(300, {150: "150,inf,a,y"})}, "train data.csv -t label --out m.leanfit --engine dask",
      r"data\.csv, line 152, column 'f'.*finite", out="m.leanfit"),
    fails("minus-inf-at-train", {"data.csv": data(300, {150: "150,-inf,a,y"})}, TRAIN,
      r"data\.csv, line 152, column 'f'.*finite", out="m.leanfit", slow=True),
    works("nan-is-a-missing-value", {"data.csv": data(300, {150: "150,NaN,a,y"})}, TRAIN,
       made("m.leanfit")),
    works("1e308-in-a-float32-range-column", {"data.csv": data(300, {150: "150,1e308,a,y"})}, TRAIN,
       made("m.leanfit")),
    fails("one-class", {"data.csv": data(50).replace(",n\n", ",y\n")}, "inspect data.csv -t label",
      r"target 'label' has 1 class"),
    fails("300k-classes", {"data.csv": lambda: "x,label\n" + "".join(f"{i},k{i}\n" for i in range(300_000))},
      "inspect data.csv -t label", r"target 'label' has more than [\d,]+ distinct values", slow=True),
    fails("target-entirely-empty", {"data.csv": re.sub(",[yn]\n", ",\n", data(50))},
      "inspect data.csv -t label", r"target 'label' has 0 class", slow=True),
    fails("duplicate-column-names", {"d.csv": "x,x,label\n1,2,y\n3,4,n\n"}, "inspect d.csv",
      r"d\.csv, line 1: column 2 is named 'x' like column 1"),
    works("columns-named-like-leanfit-internals",
       {"data.csv": "__leanfit_label,__leanfit_line,label\n"
        + "".join(f"{i},{i % 5},{'yn'[i % 2]}\n" for i in range(100))},
       TRAIN + " --holdout 0", made("m.leanfit")),
    works("a-3MB-line", {"v.csv": "t,label\n" + "a" * 3_000_000 + ",y\nb,n\n"},
       "inspect v.csv -t label --json", json_rows("v.csv"), slow=True),
    works("5000-column-header", {"w.csv": wide(5000)}, "inspect w.csv -t label --json",
       json_is("columns", 5001), slow=True),
    fails("empty-line-in-the-middle", {"e.csv": HEADER + rows(5) + "\n" + rows(5, 5)}, "inspect e.csv",
      r"e\.csv, line 7: the line is empty"),
    fails("empty-line-at-predict", {"e.csv": HEADER + rows(5) + "\n" + rows(5, 5)},
      "predict {model} e.csv --out p.csv", r"e\.csv, line 7: the line is empty", out="p.csv"),
    fails("ragged-row-at-dask-predict-leaves-no-partial-folder",
      {"g.csv": data(12_000, {11_000: "1,2.5,a,y,9"})}, "predict {model} g.csv --out p --engine dask",
      r"g\.csv, line 11002: expected 4 fields, found 5", out="p"),
    works("bad-rows-skipped-on-dask-are-warned-of", {"r.csv": data(100, {50: "1,2"})},
       "evaluate {model} r.csv --engine dask --bad-rows skip --json",
       lambda d, r: any("1 bad rows skipped" in w for w in json.loads(r.stdout)["warnings"])),
    fails("empty-line-at-predict-on-dask", {"e.csv": HEADER + rows(5) + "\n" + rows(5, 5)},
      "predict {model} e.csv --out p --engine dask", r"e\.csv, line 7: the line is empty", out="p"),
    works("a-row-of-empty-fields-is-a-row", {"e.csv": HEADER + rows(5) + ",,,\n" + rows(5, 5)},
       "predict {model} e.csv --out p.csv", lambda d, r: file_rows(d / "p.csv") == 11),
    fails("truncated-csv-gz", {"t.csv.gz": gz(data(40_000), 0.5)}, "inspect t.csv.gz",
      r"t\.csv\.gz, line \d+: the gzip data ends early"),
    fails("csv-gz-that-is-not-gzip", {"t.csv.gz": data(10)}, "inspect t.csv.gz", r"t\.csv\.gz is not gzip'd", slow=True),
    fails("csv-that-is-gzip", {"t.csv": gz(data(10))}, "inspect t.csv",
      r"t\.csv is gzip'd; give it a \.csv\.gz name"),
    works("csv-gz", {"t.csv.gz": gz(data(500))}, "inspect t.csv.gz --json", json_rows("t.csv.gz"), slow=True),
    fails("target-missing-from-the-data", GOOD, "inspect data.csv -t churn",
      r"data\.csv: target column 'churn' not found"),
    fails("only-the-target-column", {"y.csv": "label\n" + "y\nn\n" * 20}, "train y.csv -t label --out m.leanfit",
      r"no feature to learn from: besides the target 'label' the data has no column", out="m.leanfit"),
    works("nan-label-is-a-missing-label", {"data.csv": "x,label\n" + "".join(f"{i},{('0', '1', 'NaN')[i % 3]}\n" for i in range(60))},
       TRAIN + " --json", both(json_is("rows_unlabelled", 20), lambda d, r: json.loads(r.stdout)["rows"] == 60)),
    works("trailing-separator-on-every-line", {"t.csv": data(60).replace("\n", ",\n")},
       "train t.csv --target label --out m.leanfit", loads("m.leanfit")),
    works("a-column-always-empty", {"t.csv": "x,gone,f,c,label\n" + re.sub(r"(?m)^(\d+),", r"\1,,", rows(60))},
       "train t.csv --target label --out m.leanfit", loads("m.leanfit"), slow=True),
    fails("continuous-target", {"t.csv": "x,y\n" + "".join(f"{i},{i / 7:.4f}\n" for i in range(50))},
      "train t.csv --target y --out m.leanfit", r"target 'y' holds numbers that are not whole \(e\.g\. ",
      out="m.leanfit"),
    fails("quoted-line-break-under-bad-rows-skip", {"q.csv": 'x,t,label\n1,"a\nb",y\n2,c,n\n' * 3},
      "inspect q.csv --bad-rows skip", r"q\.csv: a quoted field holds a line break, and --bad-rows"),
    fails("shrink-to-a-name-not-parquet", GOOD, "shrink data.csv out.arrow",
      r"out\.arrow: shrink writes Parquet; give OUT a \.parquet name", out="out.arrow"),
    fails("keep-a-column-named-like-a-prediction",
      {"k.csv": HEADER.replace("\n", ",prediction\n") + rows(20).replace("\n", ",old\n")},
      "predict {model} k.csv --out p.csv --keep prediction",
      r"--keep prediction: the predictions have a column of that name", out="p.csv"),
    fails("bare-carriage-returns", {"r.csv": data(20).replace("\n", "\r")}, "inspect r.csv",
      r"r\.csv, line 1: the lines end with a bare carriage return"),
    fails("a-bom-and-nothing-else", {"b.csv": "\ufeff"}, "inspect b.csv", r"b\.csv: .*empty"),
    fails("unbalanced-quote-late-in-a-large-file",
      {"q.csv": data(300_000, {250_000: '250000,2.5,"a,y'})}, "inspect q.csv",
      r"q\.csv, line 250002: ", slow=True),
    fails("unbalanced-quote-under-bad-rows-skip", {"q.csv": data(20_000, {15_000: '15000,2.5,"a,y'})},
      "inspect q.csv --bad-rows skip",
      r"q\.csv, line 15002: a quote opens a field .* leaves out rows, not a quote that runs on"),
    fails("a-zip-named-csv", {"z.csv": b"PK\x03\x04" + bytes(100)}, "inspect z.csv",
      r"z\.csv is a zip archive \(a leanfit model is one\), not data"),
    fails("text-early-in-a-number-column-at-predict", {"a.csv": data(100, {5: "abc,2.5,a,y"})},
      "predict {model} a.csv --out p.csv",
      r"a\.csv, line 7, column 'x': value 'abc' does not convert to the column's type", out="p.csv"),
    fails("text-early-in-a-number-column-at-train-with-a-schema", {"a.csv": data(100, {5: "abc,2.5,a,y"})},
      "train a.csv --schema {schema} --out m.leanfit",
      r"a\.csv, line 7, column 'x': value 'abc' does not convert to the column's type", out="m.leanfit"),
    fails("text-early-in-a-number-column-on-dask", {"a.csv": data(100, {5: "abc,2.5,a,y"})},
      "train a.csv --schema {schema} --out m.leanfit --engine dask",
      r"a\.csv, line 7, column 'x': value 'abc' does not convert to the column's type", out="m.leanfit"),
    works("integers-beyond-64-bits-are-kept-as-text",
      {"t.csv": "big,x,label\n" + "".join(f"{10**22 + i},{i % 7},{'yn'[i % 2]}\n" for i in range(40))},
      "train t.csv --target label --out m.leanfit", loads("m.leanfit")),
    fails("inf-in-the-second-file-of-a-folder",
      {"d/a.csv": "x,label\n1,y\n2,n\n", "d/b.csv": "x,label\n3,y\ninf,n\n"}, "inspect d",
      r"^Error: d/b\.csv, line 3, column 'x': the value is not a finite number"),
    fails("utf-16-with-a-bom", {"u.csv": data(20).encode("utf-16")}, "inspect u.csv -t label",
      r"u\.csv is UTF-16 text .* leanfit reads UTF-8"),
    fails("utf-16-without-a-bom", {"u.csv": data(20).encode("utf-16-le")}, "inspect u.csv",
      r"u\.csv is UTF-16 text .* leanfit reads UTF-8", slow=True),
    works("numbers-with-na-as-r-writes-them-are-not-silently-text",
      {"n.csv": "x,label\n" + "".join(f"{'NA' if i % 5 == 0 else i / 4},{'yn'[i % 2]}\n" for i in range(80))},
      "inspect n.csv -t label --json",
       lambda d, r: any("x: read as text" in w and "'NA'" in w for w in json.loads(r.stdout)["warnings"])),
    works("ragged-row-skipped", {"r.csv": data(100) + "1,2\n"},
       "predict {model} r.csv --out p.csv --bad-rows skip", lambda d, r: file_rows(d / "p.csv") == 100),
]

PARQUET_CASES = [
    fails("parquet-with-a-list-column", {"l.parquet": lambda: nested_parquet()}, "inspect l.parquet",
      r"l\.parquet: column 'x' holds List\(Int64\) values; leanfit reads flat columns"),
    fails("parquet-that-is-csv", {"x.parquet": data()}, "inspect x.parquet", r"x\.parquet is not a Parquet file"),
    fails("csv-that-is-parquet", {"x.csv": parquet}, "inspect x.csv",
      r"x\.csv is a Parquet file; give it a \.parquet name"),
    fails("truncated-parquet", {"t.parquet": lambda: parquet()[:700]}, "inspect t.parquet",
      r"t\.parquet: the Parquet file is truncated"),
    fails("zero-byte-parquet", {"z.parquet": b""}, "inspect z.parquet", r"z\.parquet, line 1: the file is empty", slow=True),
    fails("parquet-with-damaged-pages", {"d.parquet": damaged_parquet}, "inspect d.parquet",
      r"d\.parquet: (the Parquet file is damaged|could not read)"),
    works("parquet", {"d.parquet": parquet}, "inspect d.parquet --json", json_rows("d.parquet"), slow=True),
    works("parquet-predict", {"d.parquet": parquet}, "predict {model} d.parquet --out p.parquet",
       same_rows("p.parquet", "d.parquet")),
    fails("parquet-lacking-a-feature", {"x.parquet": lambda: parquet(columns=["x", "c", "label"])},
      "predict {model} x.parquet --out p.csv",
      r"x\.parquet does not match the model's schema: it lacks column 'f'", out="p.csv", slow=True),
    fails("parquet-files-in-another-order",
      {"dir/a.parquet": parquet, "dir/b.parquet": lambda: parquet(columns=["label", "x", "f", "c"])},
      "inspect dir", r"dir/b\.parquet has columns in another order than dir/a\.parquet"),
]

FOLDER_CASES = [
    fails("directory-without-data-files", {"dir/notes.txt": "hi"}, "inspect dir",
      r"dir: the directory holds no data files \(CSV, TSV, Parquet"),
    fails("glob-matching-nothing", {}, "inspect 'none*.csv'", r"none\*\.csv: no file matches"),
    fails("mixed-csv-and-parquet", {"dir/a.csv": data(), "dir/b.parquet": parquet}, "inspect dir",
      r"mix CSV \(dir/a\.csv\) and Parquet \(dir/b\.parquet\)"),
    fails("columns-in-another-order", DIR_AB | {"dir/b.csv": "y,x,label\n2,1,y\n"}, "inspect dir",
      r"dir/b\.csv has columns in another order than dir/a\.csv \(first difference: column 1 is "
      r"'y', expected 'x'\); give files with the same header"),
    fails("file-lacking-a-column", DIR_AB | {"dir/b.csv": "x,label\n1,y\n"}, "inspect dir",
      r"dir/b\.csv lacks column 'y', which dir/a\.csv has"),
    fails("file-with-an-extra-column", DIR_AB | {"dir/b.csv": "x,y,z,label\n1,2,0,y\n"}, "inspect dir",
      r"dir/b\.csv has column 'z', which dir/a\.csv has not", slow=True),
    works("directory-of-matching-files", {"dir/a.csv": data(30), "dir/b.csv": HEADER + rows(40, 30)},
       "inspect dir --json", json_rows("dir")),
    works("glob", {"a1.csv": data(30), "a2.csv": HEADER + rows(40, 30)}, "inspect 'a*.csv' --json",
       json_is("rows", 70), slow=True),
    fails("missing-input-file", {}, "inspect nope.csv", r"nope\.csv: no such file or directory"),
]
# fmt: on


def uses_shared(make: Callable) -> Callable:
    """Mark a file maker that takes the shared schema and model."""
    make.uses_shared = True
    return make


def schema_edit(edit: Callable[[dict], object]) -> Callable:
    """The shared schema.json changed by ``edit`` (which returns new JSON or None)."""

    @uses_shared
    def make(shared) -> str:
        raw = json.loads(shared.schema.read_text())
        changed = edit(raw)
        return json.dumps(raw if changed is None else changed)

    return make


# fmt: off
WITH_SCHEMA = "train data.csv --schema s.json --out m.leanfit"
NOT_SCHEMA = r"s\.json is not a leanfit schema \("
SCHEMA_CASES = [
    fails("schema-not-json", GOOD | {"s.json": '{"version": 1,\n "rows": 3\n "x": 1}'}, WITH_SCHEMA,
      NOT_SCHEMA + r"line 3, column 2: Expecting ',' delimiter\); make one with leanfit inspect",
      out="m.leanfit"),
    fails("schema-a-json-list", GOOD | {"s.json": "[1, 2]"}, WITH_SCHEMA, NOT_SCHEMA + "a JSON list",
      out="m.leanfit", slow=True),
    fails("schema-of-another-tool", GOOD | {"s.json": '{"type": "object"}'}, WITH_SCHEMA,
      NOT_SCHEMA + r"no 'version'\)", out="m.leanfit", slow=True),
    fails("schema-of-another-version", GOOD | {"s.json": schema_edit(lambda s: s.update(version=9))},
      WITH_SCHEMA, NOT_SCHEMA + r"version 9; this leanfit reads version 1\)", out="m.leanfit", slow=True),
    fails("schema-with-an-unknown-kind",
      GOOD | {"s.json": schema_edit(lambda s: s["columns"][1].update(kind="weird"))}, WITH_SCHEMA,
      NOT_SCHEMA + r"columns\[1\]\.kind is 'weird'", out="m.leanfit"),
    fails("schema-with-a-wrong-type",
      GOOD | {"s.json": schema_edit(lambda s: s["columns"][0].update(count="many"))}, WITH_SCHEMA,
      NOT_SCHEMA + r"columns\[0\]\.count is 'many', not int\)", out="m.leanfit", slow=True),
    fails("schema-without-columns", GOOD | {"s.json": schema_edit(lambda s: {k: v for k, v in s.items() if k != "columns"})},
      WITH_SCHEMA, NOT_SCHEMA + r"no 'columns'\)", out="m.leanfit", slow=True),
    fails("schema-binary", GOOD | {"s.json": b"\xff\xfe\x00garbage"}, WITH_SCHEMA,
      NOT_SCHEMA + r"not UTF-8 text\)", out="m.leanfit", slow=True),
    fails("schema-missing", GOOD, WITH_SCHEMA,
      r"s\.json: the schema file does not exist; make one with leanfit inspect", out="m.leanfit"),
    fails("schema-columns-differ-from-the-data",
      {"o.csv": "p,q,label\n1,1,y\n2,2,n\n"}, "train o.csv --schema {schema} --out m.leanfit",
      r"o\.csv does not match the schema: it lacks columns 'x', 'f', 'c'; it has columns 'p', 'q' "
      r"that the schema has not", out="m.leanfit"),
    fails("schema-types-differ-from-the-data",
      {"o.csv": HEADER + "".join(f"a{i},{i},c,y\n" for i in range(20))},
      "train o.csv --schema {schema} --out m.leanfit",
      r"o\.csv does not match the schema: column 'x' holds text such as 'a0'", out="m.leanfit"),
    fails("shrink-with-the-schema-of-other-data", {"o.csv": "p,label\n1,y\n"},
      "shrink o.csv o.parquet --schema {schema}",
      r"o\.csv does not match the schema: it lacks columns", out="o.parquet", slow=True),
    fails("target-differs-from-the-schema", GOOD, "train data.csv --schema {schema} -t x --out m.leanfit",
      r"--target x differs from the schema's target label", out="m.leanfit", slow=True),
]

OPTION_CASES = [
    fails("memory-limit-abc", GOOD, TRAIN + " --memory-limit abc", r"--memory-limit 'abc' is not a size"),
    fails("memory-limit-200-percent", GOOD, TRAIN + " --memory-limit 200%",
      r"--memory-limit '200%': a share of memory is above 0% and at most 100%", out="m.leanfit"),
    fails("quarantine-without-bad-rows-quarantine", GOOD, TRAIN + " --quarantine q.csv",
      r"--quarantine q\.csv is written only with --bad-rows quarantine", out=("m.leanfit", "q.csv")),
    fails("memory-limit-1KB", GOOD, TRAIN + " --memory-limit 1KB",
      r"--memory-limit .* is below the .* this run needs", code=2, out="m.leanfit"),
    fails("holdout-1.5", GOOD, TRAIN + " --holdout 1.5", r"'--holdout': 1\.5 is not in the range"),
    fails("epochs-0", GOOD, TRAIN + " --epochs 0", r"'--epochs': 0 is not in the range", slow=True),
    fails("batch-rows-0", GOOD, TRAIN + " --batch-rows 0", r"'--batch-rows': 0 is not in the range", slow=True),
    fails("model-nope", GOOD, TRAIN + " --model nope", r"'--model'.*'nope' is not one of", slow=True),
    fails("early-stopping-without-holdout", GOOD,
      TRAIN + " --model xgboost --early-stopping-rounds 3 --holdout 0",
      r"--early-stopping-rounds needs a holdout", out="m.leanfit"),
    fails("split-by-a-missing-column", GOOD, TRAIN + " --split-by customer",
      r"--split-by 'customer' is not a column of data\.csv", out="m.leanfit"),
    fails("drop-the-target", GOOD, TRAIN + " --drop label", r"--drop 'label' names the target column",
      out="m.leanfit"),
    fails("drop-a-missing-column", GOOD, TRAIN + " --drop nope", r"--drop 'nope' is not a column of data\.csv",
      out="m.leanfit", slow=True),
    fails("scheduler-without-dask", GOOD, TRAIN + " --scheduler tcp://127.0.0.1:1",
      r"--scheduler needs --engine dask", out="m.leanfit"),
    fails("unknown-option", GOOD, TRAIN + " --frobnicate", r"No such option '--frobnicate'", code=2),
    fails("missing-argument", {}, "predict {model}", r"Missing argument 'DATA'", code=2, slow=True),
    fails("keep-a-missing-column", GOOD, PREDICT + " --keep nope",
      r"--keep names columns not in the data: \['nope'\]", out="p.csv", slow=True),
    works("out-into-missing-folders", GOOD, "train data.csv -t label --out new/deep/m.leanfit",
       made("new/deep/m.leanfit")),
    fails("out-under-a-file", GOOD, "train data.csv -t label --out data.csv/m.leanfit",
      r"data\.csv: a part of this path is a file, not a folder; choose another --out"),
    fails("out-is-a-directory", GOOD | {"folder/keep.txt": "x"}, "predict {model} data.csv --out folder",
      r"--out folder is a directory"),
    fails("out-is-the-input", GOOD, "predict {model} data.csv --out data.csv",
      r"--out data\.csv is the input", check=lambda d, r: csv_rows(d / "data.csv") == 200),
]

APPLY_CASES = [
    fails("predict-lacking-a-feature", {"n.csv": "x,c,label\n1,a,y\n"}, "predict {model} n.csv --out p.csv",
      r"n\.csv does not match the model's schema: it lacks column 'f'", out="p.csv"),
    fails("evaluate-without-the-target", {"n.csv": "x,f,c\n1,2.5,a\n"}, "evaluate {model} n.csv",
      r"n\.csv does not match the model's schema: it lacks column 'label'"),
    fails("evaluate-an-unseen-label", {"u.csv": HEADER + "1,2.5,a,maybe\n"}, "evaluate {model} u.csv",
      r"target 'label' has labels \['maybe'\] the model was not trained on"),
    works("predict", GOOD, PREDICT + " --proba", same_rows("p.csv", "data.csv")),
    works("predict-reordered-and-extra-columns",
       {"data.csv": "extra,label,c,f,x\n" + "".join(f"{i},y,{'abc'[i % 3]},{i % 5}.5,{i}\n" for i in range(77))},
       PREDICT, same_rows("p.csv", "data.csv"), slow=True),
    works("predict-an-unseen-category", {"data.csv": HEADER + "1,2.5,never-seen,y\n2,3.5,a,n\n"}, PREDICT,
       same_rows("p.csv", "data.csv"), slow=True),
    works("predict-to-csv-gz", GOOD, "predict {model} data.csv --out p.csv.gz",
       same_rows("p.csv.gz", "data.csv"), slow=True),
    works("evaluate", GOOD, "evaluate {model} data.csv --json",
       lambda d, r: json.loads(r.stdout)["metrics"]["n_rows"] == 200),
]
# fmt: on


def bundle(edit: Callable[[dict[str, bytes]], dict[str, bytes]]) -> Callable:
    """The shared bundle with its members changed by ``edit``."""

    @uses_shared
    def make(shared) -> bytes:
        with zipfile.ZipFile(shared.model) as zf:
            members = edit({n: zf.read(n) for n in zf.namelist()})
        sink = io.BytesIO()
        with zipfile.ZipFile(sink, "w") as zf:
            for name, raw in members.items():
                zf.writestr(name, raw)
        return sink.getvalue()

    return make


# fmt: off
WITH_BUNDLE = "predict m.leanfit data.csv --out p.csv"
BUNDLE_CASES = [
    fails("bundle-not-a-zip", GOOD | {"m.leanfit": "hello"}, WITH_BUNDLE,
      r"m\.leanfit: not a valid leanfit model bundle", out="p.csv"),
    fails("bundle-with-a-pickle", GOOD | {"m.leanfit": bundle(lambda m: m | {"arrays/evil.pkl": b"\x80\x04K\x01."})},
      WITH_BUNDLE, r"m\.leanfit: .*evil\.pkl", out="p.csv"),
    fails("bundle-truncated", GOOD | {"m.leanfit": uses_shared(lambda shared: shared.model.read_bytes()[:300])},
      WITH_BUNDLE, r"m\.leanfit: ", out="p.csv"),
    fails("bundle-missing", GOOD, WITH_BUNDLE, r"m\.leanfit: no such model file", out="p.csv"),
    fails("bundle-that-is-a-csv", GOOD | {"m.leanfit": data()}, "evaluate m.leanfit data.csv",
      r"m\.leanfit: not a valid leanfit model bundle", slow=True),
    fails("bundle-without-its-model",
      GOOD | {"m.leanfit": bundle(lambda m: {k: v for k, v in m.items() if k != "model.json"})},
      WITH_BUNDLE, r"m\.leanfit: ", out="p.csv"),
]

BIG_DATA = {"data.csv": data(BIG)}
FAULT_CASES = [
    fails("file-size-limit-predict", BIG_DATA, PREDICT + " --proba",
      r"file too large writing p\.csv \(.*ulimit -f\); raise it or choose another --out",
      out="p.csv", fault="fsize"),
    fails("file-size-limit-shrink", BIG_DATA, "shrink data.csv s.parquet",
      r"file too large writing s\.parquet", out="s.parquet", fault="fsize", slow=True),
    fails("file-size-limit-inspect-out", BIG_DATA, "inspect data.csv --out s.json",
      r"file too large writing s\.json", out="s.json", fault="fsize", fsize=500, slow=True),
    fails("file-size-limit-train-cache", BIG_DATA, TRAIN + " --epochs 2",
      r"file too large writing the temporary folder .*; raise it or choose another --tmp-dir",
      out="m.leanfit", fault="fsize"),
    fails("disk-full-predict", GOOD, "predict {model} data.csv --out disk/p.csv",
      r"no space left on device writing disk/p\.csv; free space or choose another --out",
      out="disk/p.csv", fault="full"),
    fails("disk-full-shrink", GOOD, "shrink data.csv disk/s.parquet",
      r"no space left on device writing disk/s\.parquet; free space or choose another OUT",
      out="disk/s.parquet", fault="full"),
    fails("disk-full-train", GOOD, "train data.csv -t label --out disk/m.leanfit",
      r"no space left on device writing disk/m\.leanfit", out="disk/m.leanfit", fault="full"),
    fails("disk-full-inspect-out", GOOD, "inspect data.csv --out disk/s.json",
      r"no space left on device writing disk/s\.json", out="disk/s.json", fault="full", slow=True),
    fails("read-only-folder-predict", GOOD, "predict {model} data.csv --out ro/p.csv",
      r"ro/p\.csv is on a read-only file system; choose another --out", out="ro/p.csv", fault="readonly"),
    fails("read-only-folder-train", GOOD, "train data.csv -t label --out ro/sub/m.leanfit",
      r"ro/sub is on a read-only file system; choose another --out", out="ro/sub/m.leanfit",
      fault="readonly", slow=True),
    fails("read-only-memory-trace", GOOD, "inspect data.csv --memory-trace ro/t.csv",
      r"ro/t\.csv is on a read-only file system; choose another --memory-trace", out="ro/t.csv",
      fault="readonly"),
]
# fmt: on

GROUPS = {
    "csv": CSV_CASES,
    "parquet": PARQUET_CASES,
    "folders": FOLDER_CASES,
    "schema": SCHEMA_CASES,
    "options": OPTION_CASES,
    "apply": APPLY_CASES,
    "bundles": BUNDLE_CASES,
    "faults": FAULT_CASES,
}
CASES = [case for group in GROUPS.values() for case in group]


def params() -> list:
    def marks(case: Case) -> list:
        reason = f"waits for {case.waits_for}"
        waits = [pytest.mark.xfail(reason=reason, strict=False)] if case.waits_for else []
        return waits + ([pytest.mark.slow] if case.slow else [])

    return [pytest.param(case, id=case.id, marks=marks(case)) for case in CASES]


# --------------------------------------------------------------------------- running


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> SimpleNamespace:
    """A tiny training file, its schema and a model, made once with the library."""
    import leanfit

    folder = tmp_path_factory.mktemp("shared")
    (folder / "train.csv").write_text(data(400))
    schema = leanfit.inspect(folder / "train.csv", target="label")
    schema.to_json(folder / "schema.json")
    leanfit.train(folder / "train.csv", schema=schema, out=folder / "model.leanfit")
    return SimpleNamespace(schema=folder / "schema.json", model=folder / "model.leanfit")


@pytest.fixture(scope="module")
def results(request, shared, tmp_path_factory) -> dict[str, SimpleNamespace]:
    """The selected cases run a few at a time; their results by case id."""
    chosen = {
        item.callspec.params["case"].id
        for item in request.session.items
        if hasattr(item, "callspec") and isinstance(item.callspec.params.get("case"), Case)
    }
    base = tmp_path_factory.mktemp("hostile")
    cases = [case for case in CASES if case.id in chosen]
    with ThreadPoolExecutor(WORKERS) as pool:
        done = pool.map(lambda case: run_case(case, base / case.id, shared), cases)
        return dict(zip([case.id for case in cases], done, strict=True))


def run_case(case: Case, folder: Path, shared) -> SimpleNamespace:
    folder.mkdir(parents=True)
    for name, content in case.files.items():
        write(folder / name, content, shared)
    argv = shlex.split(case.argv.format(model=shared.model, schema=shared.schema))
    try:
        with Fault(case, folder) as preexec:
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "leanfit.cli", *argv],
                capture_output=True,
                text=True,
                cwd=folder,
                preexec_fn=preexec,
                timeout=120,
                check=False,
            )
            seconds = time.perf_counter() - started
            partials = [p.name for p in folder.rglob("*") if ".partial" in p.name]
            present = [o for o in case.outputs if (folder / o).exists()]
    except FaultUnavailable as why:
        return SimpleNamespace(skipped=str(why))
    return SimpleNamespace(
        skipped=None,
        returncode=done.returncode,
        stdout=done.stdout,
        stderr=done.stderr,
        partials=partials,
        outputs_present=present,
        folder=folder,
        seconds=seconds,
    )


def write(path: Path, content, shared) -> None:
    if callable(content):
        content = content(shared) if getattr(content, "uses_shared", False) else content()
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


class FaultUnavailable(Exception):
    """The fault cannot be made here (mounting is not permitted)."""


class Fault:
    """The OS fault of a case around its run: a file size limit for the child (its
    ``preexec_fn``), or a full or read-only tmpfs mounted in the case's folder."""

    def __init__(self, case: Case, folder: Path):
        self.case, self.folder, self.mounted = case, folder, None

    def __enter__(self):
        if self.case.fault == "fsize":
            return limit_file_size(self.case.fsize)
        if self.case.fault in ("full", "readonly"):
            full = self.case.fault == "full"
            point = self.folder / ("disk" if full else "ro")
            point.mkdir()
            options = "size=256k" if full else "ro,size=64k"
            mount = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                capture_output=True,
                text=True,
                check=False,
            )
            if mount.returncode:
                raise FaultUnavailable(f"mount is not permitted here: {mount.stderr.strip()}")
            self.mounted = point
            if full:
                fill(point)
        return None

    def __exit__(self, *exc) -> None:
        if self.mounted is not None:
            subprocess.run(["umount", "-l", str(self.mounted)], check=False)


def limit_file_size(size: int) -> Callable[[], None]:
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return preexec


def fill(point: Path) -> None:
    """Fill the filesystem at ``point`` to its last block."""
    with open(point / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("case", params())
def test_hostile(case: Case, results):
    result = results[case.id]
    if result.skipped:
        pytest.skip(result.skipped)
    assert "Traceback" not in result.stderr, result.stderr
    if case.check is not None:
        assert case.check(result.folder, result), result.stderr
    if case.error is None:
        assert result.returncode == 0, result.stderr
        return
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), result.stderr
    assert all(PROGRESS.match(line) for line in lines[:-1]), result.stderr
    assert re.search(case.error, lines[-1]), lines[-1]
    assert result.returncode == case.exit_code, lines[-1]
    assert not result.outputs_present, result.outputs_present
    assert not result.partials, result.partials


def test_the_suite_is_broad():
    assert len(CASES) >= 60 and all(len(group) >= 5 for group in GROUPS.values())
    assert len({case.id for case in CASES}) == len(CASES)


# --------------------------------------------------------------------------- the last resort


def test_an_unexpected_error_is_one_line_and_debug_raises_it(tmp_path, monkeypatch):
    import click
    from click.testing import CliRunner

    from leanfit.cli import command

    @click.command()
    @command
    def broken(memory):
        raise RuntimeError("the sky fell\nand more")

    monkeypatch.delenv("LEANFIT_DEBUG", raising=False)
    result = CliRunner().invoke(broken, [])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "Error: internal error (RuntimeError: the sky fell); please report it with the command "
        "line. Set LEANFIT_DEBUG=1 for the traceback."
    ]
    monkeypatch.setenv("LEANFIT_DEBUG", "1")
    raised = CliRunner().invoke(broken, [])
    assert isinstance(raised.exception, RuntimeError)


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            OSError(errno.ENOSPC, "No space left on device", ".m.leanfit.partial-7"),
            "no space left on device writing m.leanfit; free space or choose another --out.",
        ),
        (
            RuntimeError("parquet: underlying IO error: File too large (os error 27)"),
            "file too large writing m.leanfit (a file size limit, see ulimit -f); raise it or choose "
            "another --out.",
        ),
        (
            OSError("Error writing bytes: [errno 30] Read-only file system"),
            "m.leanfit is on a read-only file system; choose another --out.",
        ),
        (
            FileExistsError(errno.EEXIST, "File exists", "data.csv"),
            "data.csv: a part of this path is a file, not a folder; check the path and the disk.",
        ),
    ],
    ids=["enospc-partial", "efbig-in-a-message", "erofs-in-a-message", "parent-is-a-file"],
)
def test_os_faults_name_the_output(error, message):
    from leanfit.io.translate import fault_error

    assert str(fault_error(error, {"--out": "m.leanfit"})) == message
