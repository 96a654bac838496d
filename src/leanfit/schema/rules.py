"""The rules that turn an inspect pass's statistics into kinds and storage types.

Both engines call :func:`choose_column` and :func:`describe_target` on the same
statistics (``leanfit.schema.statistics``), so they cannot disagree on a rule. A
column's storage is the smallest type holding every value exactly: the narrowest
integer for integer-valued data, float32 where every value is written with few
enough decimals, dictionary codes for text whose levels were all counted (up to the
inspect plan's cap of levels).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from leanfit.errors import ConfigError, InputError
from leanfit.io.scan import scan
from leanfit.schema.columns import Column, Schema

CATEGORY_CAP = 200_000  # levels counted exactly when no budget plans the cap (Dask)
LOW_CARDINALITY = 1_000
FLOAT32_DIGITS = 6
MAX_DECIMALS = 9
SPARSE_SHARE = 0.9  # of a number column's values being 0: a sparse column


def has_decimals(c: pl.Expr, decimals: int) -> pl.Expr:
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


def looks_low_cardinality(sample: pl.Series) -> bool:
    """Whether a text column of the sample is worth counting: not an id (nearly every
    value distinct). A column of 20,000 levels has 78% of 10,000 sampled rows distinct."""
    present = sample.drop_nulls()
    return present.len() < 1_000 or present.n_unique() <= 0.9 * present.len()


def guess_decimals(sample: pl.Series) -> int | None:
    """The fewest decimals that write every sampled value exactly, or None."""
    values = sample.drop_nulls().drop_nans().to_numpy()
    with np.errstate(over="ignore", invalid="ignore"):
        for decimals in range(MAX_DECIMALS + 1):
            scale = 10.0**decimals
            if (np.round(values * scale) / scale == values).all():
                return decimals
    return None


def choose_column(
    name: str, dtype, stats: dict, plan: Any, counts: Any, rows: int, is_target: bool
) -> Column:
    """The Column of ``name`` from merged ``stats``, the inspect ``plan`` and the
    category ``counts`` (anything whose ``counts(name)`` gives ``counting.Levels``)."""
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
    chooser(col, dtype, stats, plan, counts)
    col.zeros = stats.get(f"{name}:zeros")
    if is_target:
        col.kind, col.feature = "target", False
    elif col.count == 0 or (col.min is not None and col.min == col.max and not nulls):
        col.kind, col.feature = "constant", False
    col.sparse = (
        bool(col.feature and col.kind in ("integer", "float") and col.zeros is not None)
        and col.zeros >= SPARSE_SHARE * col.count
    )
    return col


def _choose_numeric(col: Column, dtype, stats: dict, plan: Any, counts: Any) -> None:
    name = col.name
    col.min, col.max = stats[f"{name}:min"], stats[f"{name}:max"]
    col.mean, col.std = stats[f"{name}:mean"], stats[f"{name}:std"]
    col.distinct = stats.get(f"{name}:hll")
    decimals = plan.decimals.get(name) if stats.get(f"{name}:exact") else None
    exact_int = _finite(col.min, col.max) and max(abs(col.min), abs(col.max)) <= 2**53
    integral = dtype.is_integer() or (decimals == 0 and exact_int)
    if integral and col.count:
        lo, hi = int(col.min), int(col.max)
        try:
            col.kind, col.storage = "integer", smallest_int(lo, hi)
        except ConfigError:  # only text holds them exactly
            col.kind, col.storage, col.feature = "id", "string", False
            col.note = f"integers from {lo} to {hi}, beyond 64 bits: kept as text, not a feature"
            return
        if dtype.is_float():
            col.note = "integer-valued floats: stored as integers (nulls kept)"
        if col.distinct is not None and col.distinct >= 0.9 * col.count and col.count > 1_000:
            col.kind, col.feature = "id", False
        return
    stored = "float16" if dtype == pl.Float16 else "float32" if dtype == pl.Float32 else "float64"
    col.kind, col.storage = "float", stored
    bound = max(abs(col.min or 0.0), abs(col.max or 0.0))
    if (
        decimals is not None
        and dtype != pl.Float16
        and _finite(col.min, col.max)
        and bound * 10**decimals < 10**FLOAT32_DIGITS
    ):
        col.storage, col.decimals = "float32", decimals


def _choose_widened(col: Column, dtype, stats: dict, plan: Any, counts: Any) -> None:
    name = col.name
    col.read_as = "String"
    if stats[f"{name}:not_float"] == 0:
        _choose_numeric(col, pl.Float64, stats, plan, counts)
        col.kind, col.storage, col.decimals = "float", "float64", None
        line = stats[f"{name}:first_not_int"] + 2
        col.note = f"widened to float: line {line} holds the first non-integer value"
    else:
        _choose_text(col, dtype, stats, plan, counts)
        line = stats[f"{name}:first_not_float"] + 2
        col.note = f"widened to string: line {line} holds the first non-numeric value"


def _choose_text(col: Column, dtype, stats: dict, plan: Any, counts: Any) -> None:
    name = col.name
    col.mean_bytes = stats[f"{name}:bytes"]
    found = counts.counts(name) if name in plan.counted else None
    if found is None or not found.exact:  # not counted, or past the cap of levels
        col.distinct, col.storage = stats[f"{name}:text_hll"], "string"
        unique = col.distinct >= 0.95 * col.count
        col.kind, col.feature = ("id", False) if unique else ("high_cardinality", True)
        if found is not None:
            _top_levels(col, found, plan.cap)
        return
    col.distinct, col.distinct_exact = len(found.values), True
    col.kind = "categorical" if col.distinct <= LOW_CARDINALITY else "high_cardinality"
    col.categories, col.category_counts = found.values, found.counts
    col.storage = f"dictionary<{smallest_int(0, max(col.distinct - 1, 0))}>"
    col.min, col.max = min(col.categories, default=None), max(col.categories, default=None)


def _top_levels(col: Column, found: Any, cap: int) -> None:
    """A column counted past the cap: its most frequent levels, with approximate counts."""
    col.top_categories, col.top_category_counts = found.values, found.counts
    col.top_count_error = found.error
    said = (
        f"more than {cap:,} levels: counted exactly up to that cap (planned from the memory "
        f"limit), then only the most frequent (top_categories, each count at most "
        f"{found.error:,} low); distinct is a HyperLogLog estimate"
    )
    col.note = f"{col.note}; {said}" if col.note else said


def _choose_boolean(col: Column, dtype, stats: dict, plan: Any, counts: Any) -> None:
    col.kind, col.storage, col.distinct, col.distinct_exact = "boolean", "bool", 2, True
    if col.count:
        col.mean = stats[f"{col.name}:true"] / col.count
        col.min, col.max = col.mean == 1.0, col.mean > 0.0


def _choose_temporal(col: Column, dtype, stats: dict, plan: Any, counts: Any) -> None:
    col.kind = "datetime"
    col.storage = "date32" if dtype == pl.Date else "timestamp[us]"
    col.min, col.max = stats[f"{col.name}:min"], stats[f"{col.name}:max"]
    col.distinct = stats[f"{col.name}:hll"]


def is_missing_label(label: Any) -> bool:
    """A NaN label (the number, or the text ``NaN`` in any case) is a missing one."""
    return str(label).lower() == "nan"


def describe_target(schema: Schema, counter: Any) -> None:
    """Classes, class counts and warnings about the target (sorted labels, missing)."""
    found = counter.counts(schema.target)
    most = min(counter.cap, CATEGORY_CAP)
    if not found.exact or len(found.values) > most:
        raise InputError(
            f"target '{schema.target}' has more than {most:,} distinct values; "
            "a classifier needs a label column with few classes."
        )
    pairs = zip(found.values, found.counts)
    counts = sorted((label, n) for label, n in pairs if not is_missing_label(label))
    refuse_continuous(schema.target, [label for label, _ in counts])
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


def refuse_continuous(target: str, labels: list) -> None:
    """Refuse a target of numbers that are not whole, as scikit-learn's classifiers
    do ("Unknown label type: continuous"): a regression target, not classes."""
    fractional = next((x for x in labels if isinstance(x, float) and not x.is_integer()), None)
    if fractional is not None:
        raise InputError(
            f"target '{target}' holds numbers that are not whole (e.g. {fractional!r}): "
            "its values look continuous, and leanfit trains classifiers. Give a column "
            "of classes (e.g. the values binned)."
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


def storage_dtype(col: Column) -> pl.DataType:
    """The Polars type that holds ``col`` in its chosen storage."""
    if col.storage.startswith("dictionary"):
        return pl.Enum(col.categories)
    simple = {"bool": pl.Boolean, "date32": pl.Date, "timestamp[us]": pl.Datetime("us")}
    simple |= {"float16": pl.Float16, "float32": pl.Float32, "float64": pl.Float64}
    simple["string"] = pl.String
    if col.storage in simple:
        return simple[col.storage]
    return getattr(pl, col.storage.capitalize().replace("Uint", "UInt"))


def read_types(schema: Schema) -> dict[str, pl.DataType]:
    """The type each column is read as when rows are checked one by one (bad rows
    skipped or quarantined): its storage type, with text for dictionary columns and
    float64 for every float (checked finite)."""
    types = {}
    for col in schema.columns:
        text = col.storage == "string" or col.storage.startswith("dictionary")
        dtype = pl.String if text else storage_dtype(col)
        types[col.name] = pl.Float64 if dtype.is_float() else dtype
    return types


def scan_with_schema(paths: list, schema: Schema, guard=None) -> pl.LazyFrame:
    """A streaming scan of ``paths`` for the stages after inspect: the parser's types
    from ``schema``, and with an active ``guard`` every row checked against them."""
    if guard is not None and guard.active:
        return scan(paths, types=read_types(schema), guard=guard)
    return scan(paths, schema.read_overrides())


def storage_expr(col: Column, read: pl.DataType | None = None) -> pl.Expr:
    """Cast the parsed column (of type ``read``, default the schema's ``read_as``) to its
    storage type (strict: a misfit raises). Text holding dates (a Parquet or frame
    column that a CSV parser would have read as dates) is parsed as dates."""
    c = pl.col(col.name)
    text_storage = col.storage == "string" or col.storage.startswith("dictionary")
    as_text = read == pl.String if read is not None else col.read_as == "String"
    if as_text and col.kind == "datetime":
        dtype = storage_dtype(col)
        return c.str.strip_chars().str.to_datetime().cast(dtype)
    if as_text and not text_storage:
        c = c.str.strip_chars().cast(pl.Float64)
    return c.cast(storage_dtype(col))


def check_target(schema: Schema, target: str | None) -> None:
    """Refuse a schema without a target, with another one than ``--target``, or with no
    feature column."""
    if target and schema.target != target:
        if schema.target:
            raise ConfigError(
                f"--target {target} differs from the schema's target {schema.target}."
            )
        raise ConfigError("the schema has no target: run `leanfit inspect --target` to make one.")
    if schema.target is None:
        raise ConfigError("give --target: the label column to learn.")
    if not schema.features:
        others = [f"{c.name} ({c.kind})" for c in schema.columns if c.name != schema.target]
        raise ConfigError(
            f"no feature to learn from: besides the target '{schema.target}' the data has "
            f"{', '.join(others) if others else 'no column'}. Give data with at least one "
            "column that varies and is not an id."
        )
