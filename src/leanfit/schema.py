"""The inspect pass and the Schema it writes: kinds, statistics and storage types.

One streaming Polars query computes every column's statistics while parsing;
the results choose the smallest storage type that holds every value exactly.
A value late in a file that does not fit the type inferred from the first rows
(``3.5`` or ``abc`` in an integer column) re-reads that column as text, and the
column is widened to float or string with the line of the first such value.

schema.json keys (version 1):

``version``, ``sources`` (files read), ``rows``, ``target`` (or null),
``classes`` and ``class_counts`` (target levels in sorted order), ``warnings``,
and ``columns``: one object per column with ``name``, ``kind`` (integer, float,
boolean, categorical, high_cardinality, datetime, constant, id, target),
``feature`` (false for id, constant and target), ``read_as`` (the type the parser
reads), ``storage`` (the chosen type: int8..int64, uint8..uint64, float32,
float64, bool, date32, timestamp[us], dictionary<uint8|uint16|uint32>, string),
``count`` (non-null values), ``nulls``, ``min``, ``max``, ``mean``, ``std``
(population), ``distinct`` and ``distinct_exact`` (exact for categoricals,
a HyperLogLog estimate otherwise), ``categories`` and ``category_counts`` (by
descending frequency; every level when at most ``CATEGORY_CAP``), ``decimals``
(float32: every value is k / 10**decimals with |k| < 10**6, so
``round(x32 * 10**d) / 10**d`` gives back the parsed float64 exactly),
``mean_bytes`` (strings), ``note`` (e.g. where a column was widened).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import polars as pl

from leanfit.counting import ValueCounter
from leanfit.errors import ConfigError, InputError, MemoryBudgetExceeded
from leanfit.memory import INSPECT_BYTES, PARSER_BYTES, Monitor
from leanfit.sources import (
    INSPECT_CHUNK,
    READ_CHUNK,
    ColumnTypeError,
    as_input_error,
    is_parquet,
    read_sample,
    resolve_paths,
    scan,
    set_read_chunk,
)

SCHEMA_VERSION = 1
CATEGORY_CAP = 200_000
LOW_CARDINALITY = 1_000
FLOAT32_DIGITS = 6
MAX_DECIMALS = 9
ROW = "__leanfit_row__"


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
    min: float | int | str | None = None
    max: float | int | str | None = None
    mean: float | None = None
    std: float | None = None
    distinct: int | None = None
    distinct_exact: bool = False
    categories: list | None = None
    category_counts: list[int] | None = None
    decimals: int | None = None
    mean_bytes: float | None = None
    note: str | None = None


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

    def read_overrides(self) -> dict[str, pl.DataType]:
        """Parser types for the columns the inspect pass had to widen."""
        return {c.name: pl.String for c in self.columns if c.read_as == "String"}

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(asdict(self), indent=1, default=_json_default)
        if path is not None:
            from leanfit.outputs import atomic_path

            with atomic_path(path) as tmp:
                tmp.write_text(text)
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Schema:
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            path = Path(text_or_path)
            if not path.exists():
                raise InputError(f"{path}: no such schema file. Run `leanfit inspect` to make one.")
            text = path.read_text()
        raw = json.loads(text)
        if raw.get("version") != SCHEMA_VERSION:
            raise InputError(f"schema version {raw.get('version')} is not {SCHEMA_VERSION}.")
        names = {f.name for f in fields(Column)}
        raw["columns"] = [
            Column(**{k: v for k, v in c.items() if k in names}) for c in raw["columns"]
        ]
        return cls(**raw)


def _json_default(value):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in schema.json")


# --------------------------------------------------------------------------- the pass


def inspect(data, target: str | None = None, *, memory: Monitor | None = None) -> Schema:
    """Run the streaming inspect pass over ``data`` and return its Schema.

    Memory: Polars' streaming engine holds a few parse buffers per thread plus
    the exact category counts of low-cardinality text columns.
    """
    paths = resolve_paths(data)
    memory = memory or Monitor.unbounded()
    read_chunk = _read_chunk(memory)
    set_read_chunk(read_chunk)  # before the sample: the first read may fix it
    with memory.stage("inspect"):
        return _inspect(paths, target, read_chunk)


def _read_chunk(memory: Monitor) -> int:
    """4 MiB reads when the budget allows them (faster), else 1 MiB (leaner)."""
    try:
        memory.plan(fixed=INSPECT_BYTES)
        return INSPECT_CHUNK
    except MemoryBudgetExceeded:
        memory.plan(fixed=PARSER_BYTES)
        return READ_CHUNK


def _inspect(paths: list, target: str | None, read_chunk: int = INSPECT_CHUNK) -> Schema:
    widened: dict[str, pl.DataType] = {}
    while True:
        sample = read_sample(paths, widened)
        types = sample.schema
        if target is not None and target not in types:
            raise InputError(
                f"{paths[0]}: target column '{target}' not found. Columns: {', '.join(types)}."
            )
        plan = _plan(paths, sample, widened, target, read_chunk)
        try:
            stats = plan.lf.select(plan.exprs).collect(engine="streaming").row(0, named=True)
        except pl.exceptions.PolarsError as exc:
            error = as_input_error(exc, paths)
            if isinstance(error, ColumnTypeError) and error.column not in widened:
                widened[error.column] = pl.String
                continue
            raise error from None
        break
    rows = stats["__rows__"]
    if rows == 0:
        raise InputError(f"{paths[0]}, line 2: the file has a header but no data rows.")
    if stats[f"{sample.columns[-1]}:nulls"]:
        _refuse_short_rows(paths)
    columns = [
        _column(name, dtype, stats, plan, rows, name == target) for name, dtype in types.items()
    ]
    schema = Schema(sources=[str(p) for p in paths], rows=rows, columns=columns, target=target)
    if target is not None:
        _describe_target(schema, plan.counter)
    return schema


def _refuse_short_rows(paths) -> None:
    """Polars fills the missing fields of a short row with nulls, which look like
    empty last fields. When the last column has nulls, re-read to tell them apart."""
    from leanfit.diagnose import first_ragged_row

    for path in paths:
        if not is_parquet(path):
            problem = first_ragged_row(path)
            if problem:
                raise InputError(problem)


@dataclass
class _Plan:
    lf: pl.LazyFrame
    exprs: list[pl.Expr]
    decimals: dict[str, int]
    counted: list[str]
    widened: set[str]
    counter: ValueCounter | None = None


def _plan(paths, sample: pl.DataFrame, widened: dict, target: str | None, read_chunk: int) -> _Plan:
    lf = scan(paths, types=sample.schema, read_chunk=read_chunk)
    if widened:
        lf = lf.with_row_index(ROW)
    plan = _Plan(lf, [pl.len().alias("__rows__")], {}, [], set(widened))
    for name, dtype in sample.schema.items():
        c = pl.col(name)
        plan.exprs += [c.null_count().alias(f"{name}:nulls")]
        if name in widened:
            plan.exprs += _widened_exprs(name, c) + _text_exprs(name, c, sketch=False)
            plan.counted.append(name)
        elif dtype == pl.String:
            counted = _looks_low_cardinality(sample.get_column(name)) or name == target
            plan.exprs += _text_exprs(name, c, sketch=not counted)
            if counted:
                plan.counted.append(name)
        elif dtype.is_numeric():
            plan.exprs += _numeric_exprs(name, c, distinct=dtype.is_integer())
            if dtype.is_float():
                decimals = _guess_decimals(sample.get_column(name))
                if decimals is not None:
                    plan.decimals[name] = decimals
                    plan.exprs += [_has_decimals(c, decimals).all().alias(f"{name}:exact")]
        elif dtype == pl.Boolean:
            plan.exprs += [c.sum().alias(f"{name}:true")]
        else:
            plan.exprs += [c.min().alias(f"{name}:min"), c.max().alias(f"{name}:max")]
            plan.exprs += [c.approx_n_unique().alias(f"{name}:hll")]
    if target is not None and target not in plan.counted:
        plan.counted.append(target)
    plan.counter = ValueCounter(plan.counted, target=target, cap=CATEGORY_CAP)
    plan.lf = plan.counter.attach(plan.lf)
    return plan


def _numeric_exprs(name: str, c: pl.Expr, *, distinct: bool = True) -> list[pl.Expr]:
    """Range and moments; a distinct-count sketch only where it can reveal an id."""
    exprs = [
        c.min().alias(f"{name}:min"),
        c.max().alias(f"{name}:max"),
        c.mean().alias(f"{name}:mean"),
        c.std(ddof=0).alias(f"{name}:std"),
    ]
    return [*exprs, c.approx_n_unique().alias(f"{name}:hll")] if distinct else exprs


def _text_exprs(name: str, c: pl.Expr, *, sketch: bool) -> list[pl.Expr]:
    """Mean length, and a distinct-count sketch for text that is not counted exactly."""
    exprs = [c.str.len_bytes().mean().alias(f"{name}:bytes")]
    return [*exprs, c.approx_n_unique().alias(f"{name}:text_hll")] if sketch else exprs


def _widened_exprs(name: str, c: pl.Expr) -> list[pl.Expr]:
    """Statistics of a numeric column read as text because of a late odd value."""
    as_float = c.str.strip_chars().cast(pl.Float64, strict=False)
    as_int = c.str.strip_chars().cast(pl.Int64, strict=False)
    row = pl.col(ROW)
    return [
        *_numeric_exprs(name, as_float, distinct=False),
        (c.is_not_null() & as_float.is_null()).sum().alias(f"{name}:not_float"),
        row.filter(c.is_not_null() & as_float.is_null()).min().alias(f"{name}:first_not_float"),
        row.filter(c.is_not_null() & as_int.is_null()).min().alias(f"{name}:first_not_int"),
    ]


def _has_decimals(c: pl.Expr, decimals: int) -> pl.Expr:
    """Whether a value is written exactly with ``decimals`` decimals.

    Beyond 0 decimals the test allows 1e-9 of the last decimal (float64 rounding
    of ``c * 10**decimals`` for |c| < 10**6 is below 3e-10), and requires the
    scaled value to stay under 10**FLOAT32_DIGITS, the float32 condition.
    """
    if decimals == 0:
        return (c.round() == c) | c.is_nan()
    scaled = c * 10.0**decimals
    nearest = scaled.round()
    return ((scaled - nearest).abs() <= 1e-9) & ((nearest != 0) | (c == 0))


def _looks_low_cardinality(sample: pl.Series) -> bool:
    present = sample.drop_nulls()
    return present.len() < 1_000 or present.n_unique() <= 0.5 * present.len()


def _guess_decimals(sample: pl.Series) -> int | None:
    """The fewest decimals that write every sampled value exactly, or None."""
    values = sample.drop_nulls().drop_nans().to_numpy()
    with np.errstate(over="ignore", invalid="ignore"):
        for decimals in range(MAX_DECIMALS + 1):
            scale = 10.0**decimals
            if (np.round(values * scale) / scale == values).all():
                return decimals
    return None


# --------------------------------------------------------------------------- choices


def _column(name: str, dtype, stats: dict, plan: _Plan, rows: int, is_target: bool) -> Column:
    nulls = stats[f"{name}:nulls"]
    col = Column(
        name=name, kind="", storage="", read_as=str(dtype), count=rows - nulls, nulls=nulls
    )
    chooser = _choose_numeric
    if name in plan.widened:
        chooser = _choose_widened
    elif dtype == pl.String:
        chooser = _choose_text
    elif dtype == pl.Boolean:
        chooser = _choose_boolean
    elif dtype.is_temporal():
        chooser = _choose_temporal
    chooser(col, dtype, stats, plan)
    if is_target:
        col.kind, col.feature = "target", False
    elif col.count == 0 or (col.min is not None and col.min == col.max and not nulls):
        col.kind, col.feature = "constant", False
    return col


def _choose_numeric(col: Column, dtype, stats: dict, plan: _Plan) -> None:
    name = col.name
    col.min, col.max = stats[f"{name}:min"], stats[f"{name}:max"]
    col.mean, col.std = stats[f"{name}:mean"], stats[f"{name}:std"]
    col.distinct = stats.get(f"{name}:hll")
    decimals = plan.decimals.get(name) if stats.get(f"{name}:exact") else None
    exact_int = _finite(col.min, col.max) and max(abs(col.min), abs(col.max)) <= 2**53
    integral = dtype.is_integer() or (decimals == 0 and exact_int)
    if integral and col.count:
        col.kind, col.storage = "integer", smallest_int(int(col.min), int(col.max))
        if dtype.is_float():
            col.note = "integer-valued floats: stored as integers (nulls kept)"
        if col.distinct is not None and col.distinct >= 0.9 * col.count and col.count > 1_000:
            col.kind, col.feature = "id", False
        return
    col.kind, col.storage = "float", "float64"
    bound = max(abs(col.min or 0.0), abs(col.max or 0.0))
    if (
        decimals is not None
        and _finite(col.min, col.max)
        and bound * 10**decimals < 10**FLOAT32_DIGITS
    ):
        col.storage, col.decimals = "float32", decimals


def _choose_widened(col: Column, dtype, stats: dict, plan: _Plan) -> None:
    name = col.name
    col.read_as = "String"
    if stats[f"{name}:not_float"] == 0:
        _choose_numeric(col, pl.Float64, stats, plan)
        col.kind, col.storage, col.decimals = "float", "float64", None
        line = stats[f"{name}:first_not_int"] + 2
        col.note = f"widened to float: line {line} holds the first non-integer value"
    else:
        _choose_text(col, dtype, stats, plan)
        line = stats[f"{name}:first_not_float"] + 2
        col.note = f"widened to string: line {line} holds the first non-numeric value"


def _choose_text(col: Column, dtype, stats: dict, plan: _Plan) -> None:
    name = col.name
    col.mean_bytes = stats[f"{name}:bytes"]
    counts = plan.counter.counts(name) if name in plan.counted else None
    if counts is None:  # not counted, or past CATEGORY_CAP distinct values
        col.distinct, col.storage = stats.get(f"{name}:text_hll", CATEGORY_CAP + 1), "string"
        unique = col.distinct >= 0.95 * col.count
        col.kind, col.feature = ("id", False) if unique else ("high_cardinality", True)
        return
    col.distinct, col.distinct_exact = len(counts), True
    col.kind = "categorical" if col.distinct <= LOW_CARDINALITY else "high_cardinality"
    kept = counts[:CATEGORY_CAP]
    col.categories = [value for value, _ in kept]
    col.category_counts = [count for _, count in kept]
    if col.distinct > CATEGORY_CAP:
        col.storage = "string"
    else:
        col.storage = f"dictionary<{smallest_int(0, max(col.distinct - 1, 0))}>"
        col.min, col.max = min(col.categories, default=None), max(col.categories, default=None)


def _choose_boolean(col: Column, dtype, stats: dict, plan: _Plan) -> None:
    col.kind, col.storage, col.distinct, col.distinct_exact = "boolean", "bool", 2, True
    if col.count:
        col.mean = stats[f"{col.name}:true"] / col.count
        col.min, col.max = col.mean == 1.0, col.mean > 0.0


def _choose_temporal(col: Column, dtype, stats: dict, plan: _Plan) -> None:
    col.kind = "datetime"
    col.storage = "date32" if dtype == pl.Date else "timestamp[us]"
    col.min, col.max = stats[f"{col.name}:min"], stats[f"{col.name}:max"]
    col.distinct = stats[f"{col.name}:hll"]


def _describe_target(schema: Schema, counter: ValueCounter) -> None:
    counts = counter.counts(schema.target)
    if counts is None:
        raise InputError(
            f"target '{schema.target}' has more than {CATEGORY_CAP:,} distinct values; "
            "a classifier needs a label column with few classes."
        )
    counts = sorted(counts)
    schema.classes = [label for label, _ in counts]
    schema.class_counts = [n for _, n in counts]
    if len(counts) < 2:
        raise InputError(
            f"target '{schema.target}' has {len(counts)} class(es); a classifier needs at least 2."
        )
    labelled = sum(schema.class_counts)
    expected = labelled * (1.0 - sum((n / labelled) ** 2 for n in schema.class_counts))
    if labelled > 1_000 and counter.label_changes < 0.5 * expected:
        schema.warnings.append(
            f"labels look sorted or grouped: the target changes {counter.label_changes:,} times "
            f"from one row to the next where a shuffled file would change about {expected:,.0f} "
            "times. Shuffle the file, or train with several epochs (chunks are shuffled per epoch)."
        )
    missing = schema.column(schema.target).nulls
    if missing:
        schema.warnings.append(
            f"{missing:,} rows have no '{schema.target}' value; they are skipped."
        )


def _finite(*values) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


INT_TYPES = [
    (t, lo, hi)
    for t, lo, hi in [
        ("uint8", 0, 2**8 - 1),
        ("int8", -(2**7), 2**7 - 1),
        ("uint16", 0, 2**16 - 1),
        ("int16", -(2**15), 2**15 - 1),
        ("uint32", 0, 2**32 - 1),
        ("int32", -(2**31), 2**31 - 1),
        ("uint64", 0, 2**64 - 1),
        ("int64", -(2**63), 2**63 - 1),
    ]
]


def smallest_int(lo: int, hi: int) -> str:
    """The narrowest integer type holding ``lo..hi``; unsigned when it can be.

    >>> smallest_int(0, 255), smallest_int(-1, 255), smallest_int(0, 70_000)
    ('uint8', 'int16', 'uint32')
    """
    for name, tlo, thi in INT_TYPES:
        if tlo <= lo and hi <= thi:
            return name
    raise ConfigError(f"integer range {lo}..{hi} does not fit in 64 bits")


# --------------------------------------------------------------------------- storage

_WIDTHS = {"bool": 1 / 8, "date32": 4, "timestamp[us]": 8, "float32": 4, "float64": 8}


def storage_dtype(col: Column) -> pl.DataType:
    """The Polars type that holds ``col`` in its chosen storage."""
    if col.storage.startswith("dictionary"):
        return pl.Enum(col.categories)
    simple = {"bool": pl.Boolean, "date32": pl.Date, "timestamp[us]": pl.Datetime("us")}
    simple |= {"float32": pl.Float32, "float64": pl.Float64, "string": pl.String}
    if col.storage in simple:
        return simple[col.storage]
    return getattr(pl, col.storage.capitalize().replace("Uint", "UInt"))


def storage_expr(col: Column) -> pl.Expr:
    """Cast the parsed column to its storage type (strict: a misfit raises)."""
    c = pl.col(col.name)
    text_storage = col.storage == "string" or col.storage.startswith("dictionary")
    if col.read_as == "String" and not text_storage:
        c = c.str.strip_chars().cast(pl.Float64)
    return c.cast(storage_dtype(col))


def bytes_per_row(col: Column, *, pandas_default: bool = False) -> float:
    """In-memory bytes per row: with the chosen storage, or as pandas loads a CSV."""
    text = (col.mean_bytes or 0.0) + 8
    if pandas_default:
        if col.kind in ("categorical", "high_cardinality") or col.read_as == "Date":
            return text
        return 1.0 if col.kind == "boolean" and not col.nulls else 8.0
    validity = 1 / 8 if col.nulls else 0.0
    if col.storage == "string":
        return text + validity
    if col.storage.startswith("dictionary"):
        return _int_width(col.storage[11:-1]) + validity
    return _WIDTHS.get(col.storage) or _int_width(col.storage) + validity


def _int_width(name: str) -> int:
    return int(name.removeprefix("u").removeprefix("int")) // 8
