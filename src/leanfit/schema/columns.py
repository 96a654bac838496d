"""The Schema the inspect pass writes, and its JSON: ``schema.json``.

schema.json keys (version 1):

``version``, ``sources`` (files read), ``rows``, ``target`` (or null),
``classes`` and ``class_counts`` (target levels in sorted order), ``warnings``,
and ``columns``: one object per column with ``name``, ``kind`` (integer, float,
boolean, categorical, high_cardinality, datetime, constant, id, target),
``feature`` (false for id, constant and target), ``read_as`` (the type the parser
reads), ``storage`` (the chosen type: int8..int64, uint8..uint64, float32,
float64, bool, date32, timestamp[us], dictionary<uint8|uint16|uint32>, string),
``count`` (non-null values), ``nulls``, ``min``, ``max``, ``mean``, ``std``
(population), ``distinct`` and ``distinct_exact`` (exact for counted text,
a HyperLogLog estimate otherwise), ``categories`` and ``category_counts`` (every
level, by descending frequency, when the levels were counted exactly: up to the
inspect pass's cap, planned from the memory limit), ``top_categories``,
``top_category_counts`` and ``top_count_error`` (a text column counted past that
cap: its most frequent levels, each count at most ``top_count_error`` below the
true one; ``note`` says so), ``decimals``
(float32: every value is k / 10**decimals with |k| < 10**6, so
``round(x32 * 10**d) / 10**d`` gives back the parsed float64 exactly),
``mean_bytes`` (strings), ``note`` (e.g. where a column was widened), ``zeros``
(number columns: values equal to 0) and ``sparse`` (a number feature at least
``SPARSE_SHARE`` of whose values are 0: encoded as CSR; schemas written before
``zeros`` and ``sparse`` existed load with none and false), and with
``--lossy-floats float16`` (float columns; see :mod:`leanfit.schema.lossy`)
``float16_max_abs_error``, ``float16_max_rel_error`` and ``float16_beyond_range``
(the measured round trip through float16 over every value), the schema then also
holding ``lossy_tolerance`` (the relative error allowed; storage ``float16`` where met).
"""

from __future__ import annotations

import decimal
import io
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import polars as pl

from leanfit.errors import ConfigError, InputError, SchemaMismatch
from leanfit.io.outputs import atomic_path
from leanfit.io.sizes import estimate_rows

SCHEMA_VERSION = 1


@dataclass
class Column:
    """What the inspect pass learned about one column."""

    name: str
    kind: str
    storage: str
    read_as: str
    count: int
    nulls: int
    feature: bool = True
    min: float | int | str | bool | None = None
    max: float | int | str | bool | None = None
    mean: float | None = None
    std: float | None = None
    distinct: int | None = None
    distinct_exact: bool = False
    categories: list | None = None
    category_counts: list[int] | None = None
    top_categories: list | None = None
    top_category_counts: list[int] | None = None
    top_count_error: int | None = None
    decimals: int | None = None
    mean_bytes: float | None = None
    note: str | None = None
    float16_max_abs_error: float | None = None
    float16_max_rel_error: float | None = None
    float16_beyond_range: int | None = None
    zeros: int | None = None
    sparse: bool = False


@dataclass
class Schema:
    """The single source of truth for every stage after inspect."""

    sources: list[str]
    rows: int
    columns: list[Column]
    target: str | None = None
    classes: list = field(default_factory=list)
    class_counts: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    lossy_tolerance: float | None = None
    version: int = SCHEMA_VERSION

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise InputError(f"column '{name}' is not in the schema; columns: {self.names()}.")

    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def features(self) -> list[Column]:
        return [c for c in self.columns if c.feature]

    def rows_in(self, paths: list) -> int | None:
        """The rows of ``paths`` as progress expects them: the inspected count when this
        schema was made from them, else an estimate (``leanfit.io.source.estimate_rows``)."""
        given = [os.path.abspath(str(p)) for p in paths]
        return (
            self.rows
            if given == [os.path.abspath(s) for s in self.sources]
            else estimate_rows(paths)
        )

    def read_overrides(self) -> dict[str, pl.DataType]:
        """Parser types for the columns the inspect pass had to widen (text), and for
        every float column (Polars infers text from ``nan`` spelled so)."""
        read = {"String": pl.String, "Float64": pl.Float64}
        return {c.name: read[c.read_as] for c in self.columns if c.read_as in read}

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(asdict(self), indent=1, default=_json_default)
        if path is not None:
            with atomic_path(path) as tmp:
                tmp.write_text(text)
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Schema:
        """The schema in ``text_or_path`` (JSON text or a schema.json file), checked:
        anything but a leanfit schema of this version is an InputError saying what."""
        text, name = _schema_text(text_or_path)
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            where = f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
            raise InputError(f"{name} is not a leanfit schema ({where}); {REMAKE}.") from None
        problem = _schema_problem(raw)
        if problem:
            raise InputError(f"{name} is not a leanfit schema ({problem}); {REMAKE}.")
        names = {f.name for f in fields(Column)}
        raw["columns"] = [
            Column(**{k: v for k, v in c.items() if k in names}) for c in raw["columns"]
        ]
        return cls(**{k: v for k, v in raw.items() if k in SCHEMA_FIELDS})

    def check_data(self, data, purpose: str = "train") -> None:
        """Refuse data whose columns do not match this schema, saying what differs.

        ``purpose``: ``train`` and ``shrink`` need exactly the schema's columns;
        ``evaluate`` its features and target; ``predict`` its features (other columns
        are fine there: columns are matched by name). Types are judged on the first
        rows read as text, so a few bad values (bad rows) are not a mismatch.
        """
        from leanfit.io.source import resolve_paths

        paths = resolve_paths(data)
        problems = data_mismatch(self, _sample(paths), purpose)
        if not problems:
            return
        if purpose in ("train", "shrink"):
            whose, advice = "the schema", "give the data it was made from, or make a new one "
            advice += "with leanfit inspect"
        else:
            whose, advice = "the model's schema", "give data with the model's columns"
        raise SchemaMismatch(f"{paths[0]} does not match {whose}: {'; '.join(problems)}; {advice}.")


def check_training_columns(data, target: str | None, opts, schema: Schema | None) -> None:
    """Before any pass over ``data``: refuse a schema whose columns differ from the
    data's, ``--split-by`` or ``--drop`` naming a column the data has not, and
    ``--drop`` naming the target (``opts``: the TrainOptions)."""
    from leanfit.io.source import column_names, resolve_paths

    paths = resolve_paths(data)
    if schema is not None:
        schema.check_data(paths, "train")
    names = column_names(paths)
    for flag, name in (("--split-by", opts.split_by), *(("--drop", d) for d in opts.drop)):
        if name is not None and name not in names:
            raise ConfigError(f"{flag} {name!r} is not a column of {paths[0]} ({_listed(names)}).")
    target = target or (schema.target if schema else None)
    if target is not None and target in opts.drop:
        raise ConfigError(
            f"--drop {target!r} names the target column, which is never a feature; "
            "leave it out of --drop."
        )


REMAKE = "make one with leanfit inspect"
KINDS = (
    "integer",
    "float",
    "boolean",
    "categorical",
    "high_cardinality",
    "datetime",
    "constant",
    "id",
    "target",
)
STORAGE = re.compile(
    r"u?int(8|16|32|64)|float(16|32|64)|bool|date32|timestamp\[us\]|string|dictionary<uint(8|16|32)>"
)
SCHEMA_FIELDS = {f.name for f in fields(Schema)}
SAMPLE_ROWS = 10_000
BOOLEAN_TEXT = {"true": True, "false": False, "1": True, "0": False}
PYTHON_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}


def _schema_text(text_or_path: str | Path) -> tuple[str, str]:
    """The JSON text, and how to name it in an error."""
    text = str(text_or_path)
    if text.lstrip().startswith("{"):
        return text, "the schema"
    path = Path(text_or_path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise InputError(f"{path}: the schema file {what}; {REMAKE}.")
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except UnicodeDecodeError:
        raise InputError(f"{path} is not a leanfit schema (not UTF-8 text); {REMAKE}.") from None


def _schema_problem(raw) -> str | None:
    """What makes ``raw`` (parsed JSON) not a schema of this version, or None."""
    if not isinstance(raw, dict):
        return f"a JSON {type(raw).__name__}, not an object"
    if "version" not in raw:
        return "no 'version'"
    if raw["version"] != SCHEMA_VERSION:
        return f"version {raw['version']!r}; this leanfit reads version {SCHEMA_VERSION}"
    for key in ("sources", "rows", "columns"):
        if key not in raw:
            return f"no {key!r}"
    problem = _fields_problem(raw, fields(Schema), "")
    if problem:
        return problem
    for index, col in enumerate(raw["columns"]):
        problem = _column_problem(col, f"columns[{index}]")
        if problem:
            return problem
    names = [c["name"] for c in raw["columns"]]
    if len(set(names)) < len(names):
        return "a column name appears twice"
    if raw.get("target") is not None and raw["target"] not in names:
        return f"target {raw['target']!r} is not one of its columns"
    if len(raw.get("classes", [])) != len(raw.get("class_counts", [])):
        return "'classes' and 'class_counts' differ in length"
    return None


def _column_problem(col, where: str) -> str | None:
    if not isinstance(col, dict):
        return f"{where} is not an object"
    for key in ("name", "kind", "storage", "read_as", "count", "nulls"):
        if key not in col:
            return f"{where} has no {key!r}"
    problem = _fields_problem(col, fields(Column), f"{where}.")
    if problem:
        return problem
    if col["kind"] not in KINDS:
        return f"{where}.kind is {col['kind']!r}, not one of {', '.join(KINDS)}"
    if not STORAGE.fullmatch(col["storage"]):
        return f"{where}.storage {col['storage']!r} is not a storage type"
    levels = col.get("categories")
    if col["storage"].startswith("dictionary") and not (levels or col["kind"] == "constant"):
        return f"{where} is stored as a dictionary but has no 'categories'"
    return None


def _fields_problem(raw: dict, declared, prefix: str) -> str | None:
    """The first declared field whose value in ``raw`` has the wrong JSON type."""
    for f in declared:
        if f.name not in raw or f.name == "columns":
            continue
        if not _fits(raw[f.name], str(f.type)):
            return f"{prefix}{f.name} is {raw[f.name]!r}, not {f.type}"
    return None


def _fits(value, annotation: str) -> bool:
    """Whether a JSON value fits a field annotation such as ``list[int] | None``."""
    for option in (part.strip() for part in annotation.split("|")):
        if option == "None" and value is None:
            return True
        if option.startswith("list"):
            inner = option[5:-1] if "[" in option else None
            if isinstance(value, list) and (inner is None or all(_fits(v, inner) for v in value)):
                return True
        elif _is_scalar(value, option):
            return True
    return False


def _is_scalar(value, option: str) -> bool:
    """``value`` is a JSON ``str``, ``int``, ``float`` or ``bool`` as ``option`` says
    (true and false are not numbers here, though Python counts them as ints)."""
    if isinstance(value, bool):
        return option == "bool"
    return option in PYTHON_TYPES and isinstance(value, PYTHON_TYPES[option])


def data_mismatch(schema: Schema, sample: pl.DataFrame, purpose: str) -> list[str]:
    """What differs between the schema and the first rows of the data, one phrase each."""
    if purpose in ("train", "shrink"):
        needed = schema.names()
    else:
        needed = [c.name for c in schema.features]
        needed += [schema.target] if purpose == "evaluate" and schema.target else []
    problems = []
    found, known = set(sample.columns), set(schema.names())
    missing = [n for n in needed if n not in found]
    if missing:
        problems.append(f"it lacks {_listed(missing)}")
    extra = [n for n in sample.columns if n not in known]
    if extra and purpose in ("train", "shrink"):
        problems.append(f"it has {_listed(extra)} that the schema has not")
    for col in schema.columns:
        if col.name in found:
            misfit = _misfit(col, sample.get_column(col.name))
            if misfit:
                problems.append(f"column '{col.name}' {misfit} where the schema has {col.kind}")
    return problems


def _sample(paths) -> pl.DataFrame:
    """The first rows of an input: typed formats typed, CSV as text (ragged rows and bad
    bytes tolerated: they are bad rows, not a mismatch)."""
    from leanfit.io.readers import head_bytes
    from leanfit.io.scan import scan

    if paths.form.typed:
        return scan(paths).head(SAMPLE_ROWS).collect()
    head = head_bytes(paths[0], 1 << 20)
    return pl.read_csv(
        io.BytesIO(head[: head.rfind(b"\n") + 1] or head),
        separator=paths.form.separator,
        n_rows=SAMPLE_ROWS,
        infer_schema=False,
        truncate_ragged_lines=True,
        encoding="utf8-lossy",
    )


def _misfit(col: Column, values: pl.Series) -> str | None:
    """How ``values`` do not fit the column, or None when most of them do."""
    family = _family(col.read_as)
    if family is None or values.null_count() == values.len():
        return None
    if values.dtype != pl.String:
        fits = {"number": values.dtype.is_numeric(), "date": values.dtype.is_temporal()}
        fits["boolean"] = values.dtype == pl.Boolean or values.dtype.is_integer()
        return None if fits[family] else f"holds {values.dtype} values"
    text = values.drop_nulls().str.strip_chars()
    if family == "number":
        parsed = text.cast(pl.Float64, strict=False)
    elif family == "boolean":
        parsed = text.str.to_lowercase().replace_strict(BOOLEAN_TEXT, default=None)
    else:
        parsed = text.str.to_datetime(strict=False)
    if parsed.null_count() <= text.len() / 2:
        return None
    example = text.filter(parsed.is_null())[0]
    return f"holds text such as {example!r}"


def _family(read_as: str) -> str | None:
    if read_as.startswith(("Int", "UInt", "Float")):
        return "number"
    if read_as == "Boolean":
        return "boolean"
    return "date" if read_as.startswith(("Date", "Datetime")) else None


def _listed(names: list[str], shown: int = 8) -> str:
    words = ", ".join(repr(n) for n in names[:shown])
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"column{'s' if len(names) > 1 else ''} {words}{more}"


def _json_default(value):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):  # a statistic of a decimal column (15 digits)
        return float(value)
    raise TypeError(f"cannot store {type(value).__name__} in schema.json")
