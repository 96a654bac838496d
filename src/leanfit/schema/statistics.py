"""The inspect pass's statistics, each an expression with a merge rule.

A pass over one piece of the input (the whole input on the local engine, one
partition on Dask) runs :func:`piece_stats`: one streaming Polars query whose
statistics merge without loss: counts and sums add; min and max take the min and
max; mean and population variance merge Chan-style from (count, mean, M2); category
counts add (exact up to the plan's cap of levels, then summaries of the most frequent
levels whose errors add: :mod:`leanfit.schema.counting`); HyperLogLog registers take
the maximum; the float32 exactness flag is AND-ed; with ``--lossy-floats`` the float16
errors take the max (:mod:`leanfit.schema.lossy`). :func:`build_schema` merges the pieces and
applies the rules of :mod:`leanfit.schema.rules`, so both engines make the same
Schema from the same statistics.

Distinct counts of integer, date, and uncounted or past-the-cap text columns are
estimates: of text, the HyperLogLog sketches of :mod:`leanfit.schema.sketches`; of
numbers and dates, on one piece Polars' ``approx_n_unique`` (cheaper: sketching a
dozen number columns cost the inspect pass 10% more CPU), over many pieces, which that
cannot merge, sketches too.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from leanfit.errors import InputError
from leanfit.schema.columns import Schema
from leanfit.schema.counting import LevelCounts, Levels, ValueCounter
from leanfit.schema.lossy import error_exprs, merge_errors, record_errors
from leanfit.schema.rules import (
    CATEGORY_CAP,
    choose_column,
    describe_target,
    guess_decimals,
    has_decimals,
    looks_low_cardinality,
)
from leanfit.schema.sketches import hll_estimate
from leanfit.schema.wide import WideStats, wide_columns

ROW = "__leanfit_row__"


@dataclass
class InspectPlan:
    """What every piece needs to know: parser types, the sample's decisions and the
    levels a counted column may hold (``cap``: counted exactly up to it)."""

    types: dict
    decimals: dict[str, int]
    counted: list[str]
    widened: list[str]
    target: str | None
    float16_tolerance: float | None = None  # measure float16 errors (--lossy-floats)
    cap: int = CATEGORY_CAP
    wide: list[str] = field(default_factory=list)  # summed in numpy (schema.wide)
    # text columns of numbers but for a spelling of a missing value: name -> spellings
    spelled_missing: dict[str, list[str]] = field(default_factory=dict)

    @functools.cached_property
    def sketched(self) -> list[str]:
        """Columns whose distinct count is estimated."""
        wide, widened = set(self.wide), set(self.widened)
        return [
            name
            for name, dtype in self.types.items()
            if name not in wide
            and (name in widened or dtype == pl.String or dtype.is_temporal() or dtype.is_integer())
        ]


def make_plan(
    sample: pl.DataFrame,
    widened: list[str],
    target: str | None,
    source: str,
    float16_tolerance: float | None = None,
) -> InspectPlan:
    """The choices made on the sample of ``source`` (the first input file): which text
    columns to count exactly (those that look low-cardinality, and the target) and the
    decimals of float columns; float16 errors are measured given a tolerance."""
    if target is not None and target not in sample.columns:
        raise InputError(
            f"{source}: target column '{target}' not found. Columns: {', '.join(sample.columns)}."
        )
    refuse_nested(sample.schema, source)
    decimals, counted = {}, []
    for name, dtype in sample.schema.items():
        if name in widened:
            counted.append(name)
        elif dtype == pl.String:
            if looks_low_cardinality(sample.get_column(name)) or name == target:
                counted.append(name)
        elif dtype.is_float():
            found = guess_decimals(sample.get_column(name))
            if found is not None:
                decimals[name] = found
    if target is not None and target not in counted:
        counted.append(target)
    numbers = [
        name
        for name, dtype in sample.schema.items()
        if dtype.is_numeric() and name != target and name not in widened
    ]
    wide = wide_columns(sample, numbers)
    types = dict(sample.schema)
    spelled = {
        name: found
        for name, dtype in types.items()
        if dtype == pl.String and name not in widened and name != target
        if (found := missing_spellings(sample.get_column(name)))
    }
    return InspectPlan(
        types,
        decimals,
        counted,
        list(widened),
        target,
        float16_tolerance,
        wide=wide,
        spelled_missing=spelled,
    )


MISSING_SPELLINGS = {"na", "n/a", "#n/a", "null", "none", "nil", "missing", "-", "?", "."}


def missing_spellings(column: pl.Series) -> list[str]:
    """The spellings of a missing value (``NA``, ``null``, ...) in a text column whose
    every other value is a number (pandas reads them as missing; Polars as text)."""
    present = column.drop_nulls()
    words = present.filter(present.str.strip_chars().cast(pl.Float64, strict=False).is_null())
    spellings = words.unique().sort().to_list()
    if len(words) == len(present) or not spellings:
        return []
    return spellings if all(w.strip().lower() in MISSING_SPELLINGS for w in spellings) else []


FLOAT64_DIGITS = 15  # a decimal of at most this many digits is held exactly by a float64


def refuse_nested(schema: pl.Schema, source: str) -> None:
    """Lists, structs and binary values are not table cells leanfit can learn from;
    durations, times of day and decimals of more digits than a float64 holds it cannot
    keep exactly."""
    for name, dtype in schema.items():
        if dtype.is_nested() or dtype in (pl.Binary, pl.Object):
            raise InputError(
                f"{source}: column '{name}' holds {dtype} values; leanfit reads flat columns "
                "(numbers, text, dates, booleans). Flatten it or write the data without it."
            )
        if dtype in (pl.Duration, pl.Time) or (
            isinstance(dtype, pl.Decimal) and (dtype.precision or 38) > FLOAT64_DIGITS
        ):
            raise InputError(
                f"{source}: column '{name}' holds {dtype} values, which leanfit cannot keep "
                "exactly (it reads numbers, text, dates and booleans). Write it as a number "
                "(e.g. seconds, or a float64 if its digits allow) or as text."
            )


def piece_stats(
    lf: pl.LazyFrame, plan: InspectPlan, *, mergeable: bool, on_rows: Callable | None = None
) -> dict:
    """Statistics of one piece of the input, read from ``lf``: ``stats`` (one row of
    Polars aggregates), ``counts`` (per counted column its levels and counts, and the
    error of those counts: 0 while exact), ``sketches`` (HyperLogLog registers, which
    merge across pieces: of every estimated column with ``mergeable``, else of text
    columns only, the others' estimates being Polars' own in ``stats``) and
    ``label_changes``.

    A value that does not fit its parser type raises
    :class:`~leanfit.errors.ColumnTypeError` (once translated by the caller).
    ``on_rows`` is told the rows of each morsel read.
    """
    if plan.widened:
        lf = lf.with_row_index(ROW)
    sketched = plan.sketched if mergeable else [n for n in plan.sketched if _is_text(n, plan)]
    counter = ValueCounter(
        plan.counted, sketched=sketched, target=plan.target, cap=plan.cap, on_rows=on_rows
    )
    lf = counter.attach(lf)
    integers = [name for name in plan.wide if plan.types[name].is_integer()]
    wide = WideStats(plan.wide, plan.decimals, integers)
    if plan.wide:
        lf = wide.attach(lf)
    stats = lf.select(_exprs(plan, polars_distinct=not mergeable))
    stats = stats.collect(engine="streaming").row(0, named=True) | wide.stats()
    counter.finish()
    counts = {name: (found.frame(name), found.error) for name, found in counter.levels.items()}
    return {
        "stats": stats,
        "counts": counts,
        "sketches": counter.registers,
        "label_changes": counter.label_changes,
    }


def _is_text(name: str, plan: InspectPlan) -> bool:
    return name in plan.widened or plan.types[name] == pl.String


def _exprs(plan: InspectPlan, *, polars_distinct: bool) -> list[pl.Expr]:
    exprs = [pl.len().alias("__rows__")]
    wide = set(plan.wide)
    for name, dtype in plan.types.items():
        if name in wide:
            continue
        c = pl.col(name)
        if dtype.is_float():  # NaN is a missing value; inf is counted (and refused)
            exprs.append(c.is_infinite().sum().alias(f"{name}:infinite"))
            if dtype == pl.Float16:  # its sums would overflow
                c = c.cast(pl.Float32)
            c = c.fill_nan(None)
            if plan.float16_tolerance is not None:
                exprs += error_exprs(name, c)
        exprs.append(c.null_count().alias(f"{name}:nulls"))
        if name in plan.widened:
            exprs += _widened(name, c, plan.float16_tolerance is not None) + _text(name, c)
        elif dtype == pl.String:
            exprs += _text(name, c)
        elif dtype.is_numeric():
            exprs += _moments(name, c)
            if name in plan.decimals:
                exprs.append(has_decimals(c, plan.decimals[name]).all().alias(f"{name}:exact"))
        elif dtype == pl.Boolean:
            exprs.append(c.sum().alias(f"{name}:true"))
        else:
            exprs += [c.min().alias(f"{name}:min"), c.max().alias(f"{name}:max")]
        if polars_distinct and name in plan.sketched and not _is_text(name, plan):
            exprs.append(c.approx_n_unique().alias(f"{name}:hll"))
    return exprs


def _moments(name: str, c: pl.Expr) -> list[pl.Expr]:
    return [
        c.count().alias(f"{name}:n"),
        c.min().alias(f"{name}:min"),
        c.max().alias(f"{name}:max"),
        c.mean().alias(f"{name}:mean"),
        c.var(ddof=0).alias(f"{name}:var"),
        (c == 0).sum().alias(f"{name}:zeros"),
    ]


def _text(name: str, c: pl.Expr) -> list[pl.Expr]:
    return [c.str.len_bytes().mean().alias(f"{name}:bytes")]


def _widened(name: str, c: pl.Expr, float16: bool) -> list[pl.Expr]:
    """Statistics of a numeric column read as text because of a late odd value."""
    parsed = c.str.strip_chars().cast(pl.Float64, strict=False)
    as_float = parsed.fill_nan(None)
    as_int = c.str.strip_chars().cast(pl.Int64, strict=False)
    row = pl.col(ROW)
    return [
        parsed.is_infinite().sum().alias(f"{name}:infinite"),
        *_moments(name, as_float),
        (c.is_not_null() & parsed.is_null()).sum().alias(f"{name}:not_float"),
        row.filter(c.is_not_null() & parsed.is_null()).min().alias(f"{name}:first_not_float"),
        row.filter(c.is_not_null() & as_int.is_null()).min().alias(f"{name}:first_not_int"),
    ] + (error_exprs(name, as_float) if float16 else [])


# --------------------------------------------------------------------------- merge


class MergedCounts:
    """The pieces' category counts, added up (nulls left out): exact up to ``cap``
    levels, else the most frequent levels within the summed errors."""

    def __init__(self, pieces: list[dict], names: list[str], cap: int):
        self.cap = cap
        self.label_changes = sum(p["label_changes"] for p in pieces)
        self._levels: dict[str, Levels] = {}
        for name in names:
            merged = LevelCounts(cap, error=sum(p["counts"][name][1] for p in pieces))
            for frame, _ in (p["counts"][name] for p in pieces):
                if frame.height:
                    merged.add(frame.get_column(name), frame.get_column("count").to_numpy())
            self._levels[name] = merged.top()

    def counts(self, name: str) -> Levels:
        return self._levels[name]


def merge_stats(pieces: list[dict], plan: InspectPlan) -> dict:
    """One ``stats`` dict over every piece, in input order."""
    rows = [p["stats"]["__rows__"] for p in pieces]
    offsets = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(int).tolist()
    each = [p["stats"] for p in pieces]
    out: dict = {"__rows__": int(sum(rows))}
    for name, dtype in plan.types.items():
        out[f"{name}:nulls"] = sum(s[f"{name}:nulls"] for s in each)
        if f"{name}:n" in each[0]:
            out |= _merge_moments(name, each)
        elif f"{name}:min" in each[0]:
            out[f"{name}:min"] = _extreme(each, f"{name}:min", "min")
            out[f"{name}:max"] = _extreme(each, f"{name}:max", "max")
        if f"{name}:zeros" in each[0]:
            out[f"{name}:zeros"] = sum(s[f"{name}:zeros"] for s in each)
        if f"{name}:exact" in each[0]:
            out[f"{name}:exact"] = all(s[f"{name}:exact"] is not False for s in each)
        if f"{name}:f16_abs" in each[0]:
            out |= merge_errors(name, each)
        if f"{name}:true" in each[0]:
            out[f"{name}:true"] = sum(s[f"{name}:true"] or 0 for s in each)
        if f"{name}:bytes" in each[0]:
            weights = [r - s[f"{name}:nulls"] for r, s in zip(rows, each)]
            total = sum(weights)
            sums = sum(w * s[f"{name}:bytes"] for w, s in zip(weights, each) if w)
            out[f"{name}:bytes"] = sums / total if total else None
        if name in plan.widened:
            out[f"{name}:not_float"] = sum(s[f"{name}:not_float"] for s in each)
            for key in ("first_not_float", "first_not_int"):
                found = [
                    s[f"{name}:{key}"] + o
                    for s, o in zip(each, offsets)
                    if s[f"{name}:{key}"] is not None
                ]
                out[f"{name}:{key}"] = min(found) if found else None
        out |= _distinct(name, dtype, pieces, plan)
    return out


def _distinct(name: str, dtype, pieces: list[dict], plan: InspectPlan) -> dict:
    """The distinct-count estimate: Polars' own on one piece (numbers and dates), else
    the merged sketches."""
    key = f"{name}:{'text_hll' if _is_text(name, plan) else 'hll'}"
    if len(pieces) == 1 and key in pieces[0]["stats"]:
        return {key: pieces[0]["stats"][key]}
    if all(name in p["sketches"] for p in pieces):  # sketched on every piece
        return {key: hll_estimate(np.maximum.reduce([p["sketches"][name] for p in pieces]))}
    return {}


def _extreme(each: list[dict], key: str, which: str):
    values = [s[key] for s in each if s[key] is not None]
    if len(values) < 2:
        return values[0] if values else None
    return getattr(pl.Series(values), which)()


def _merge_moments(name: str, each: list[dict]) -> dict:
    """Chan et al.'s merge of (count, mean, M2): exact up to float rounding."""
    n = [s[f"{name}:n"] for s in each]
    total = sum(n)
    out = {
        f"{name}:min": _extreme(each, f"{name}:min", "min"),
        f"{name}:max": _extreme(each, f"{name}:max", "max"),
        f"{name}:mean": None,
        f"{name}:std": None,
    }
    if not total:
        return out
    means = [float(s[f"{name}:mean"]) if k else 0.0 for s, k in zip(each, n)]
    mean = math.fsum(k * m for k, m in zip(n, means)) / total
    m2 = math.fsum(k * float(s[f"{name}:var"] or 0.0) for s, k in zip(each, n) if k)
    m2 += math.fsum(k * (m - mean) ** 2 for k, m in zip(n, means) if k)
    out[f"{name}:mean"] = mean
    out[f"{name}:std"] = math.sqrt(max(m2, 0.0) / total)
    return out


def build_schema(sources: list[str], pieces: list[dict], plan: InspectPlan) -> Schema:
    """The Schema of the input from its pieces' statistics."""
    stats = merge_stats(pieces, plan)
    rows = stats["__rows__"]
    if rows == 0:
        raise InputError(f"{sources[0]}, line 2: the file has a header but no data rows.")
    counter = MergedCounts(pieces, plan.counted, plan.cap)
    columns = [
        choose_column(name, dtype, stats, plan, counter, rows, name == plan.target)
        for name, dtype in plan.types.items()
    ]
    schema = Schema(sources=list(sources), rows=rows, columns=columns, target=plan.target)
    if plan.target is not None:
        describe_target(schema, counter)
    if plan.float16_tolerance is not None:
        record_errors(schema, stats, plan.float16_tolerance)
    for name, spellings in plan.spelled_missing.items():
        schema.warnings.append(
            f"{name}: read as text, though its first values are numbers but for "
            f"{', '.join(map(repr, spellings))}, a spelling of a missing value that the parser "
            "reads as text. Write missing values as empty fields (or NaN) to have it read "
            "as numbers."
        )
    return schema


def infinite_columns(pieces: list[dict], plan: InspectPlan) -> list[str]:
    """The number columns holding ``inf`` or ``-inf`` in any piece."""
    return [name for name in plan.types if any(p["stats"].get(f"{name}:infinite") for p in pieces)]


def last_column_has_nulls(pieces: list[dict], plan: InspectPlan) -> bool:
    """Whether the last column has nulls anywhere: a short row looks like that."""
    last = list(plan.types)[-1]
    return any(p["stats"][f"{last}:nulls"] for p in pieces)
