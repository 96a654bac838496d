"""The inspect pass on Dask: statistics per partition, merged exactly on the client.

Every partition runs one streaming Polars query with statistics chosen so that
they merge without loss: counts and sums add; min and max take the min and max;
mean and population variance merge Chan-style from (count, mean, M2); exact
category counts add (a column past ``CATEGORY_CAP`` levels in a partition or in
the sum stops being counted, as in the local engine); the float32 exactness flag
is AND-ed. The merged statistics go into the same ``stats`` dict and ``_Plan``
the local engine builds, and the local engine's own decision code
(``schema._column``, ``schema._describe_target``) picks kinds and storage types:
the two engines cannot disagree on a rule.

Distinct counts of integer, date and uncounted text columns are estimates in
both engines, but not the same estimate: the local engine reports Polars'
``approx_n_unique``, which cannot be merged; here each partition keeps a
HyperLogLog sketch of 2**14 one-byte registers over Polars' 64-bit ``hash``
(seed 0; a null counts as one value, as in Polars), sketches merge by register
maximum, and the estimate is the standard one with linear counting for small
counts (relative error about 0.8%). The id rule (``distinct >= 0.9 * count``)
sees the same answer unless a column sits within a percent or two of it.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
import polars as pl

from leanfit.counting import ValueCounter
from leanfit.dask_parts import Part, is_url, plain_error, sample, scan_part
from leanfit.errors import InputError
from leanfit.schema import (
    CATEGORY_CAP,
    ROW,
    Schema,
    _column,
    _describe_target,
    _guess_decimals,
    _has_decimals,
    _looks_low_cardinality,
    _Plan,
)
from leanfit.sources import ColumnTypeError, as_input_error

HLL_BITS = 14
HLL_M = 1 << HLL_BITS


@dataclass
class InspectPlan:
    """What every partition needs to know: parser types and the sample's decisions."""

    types: dict
    decimals: dict[str, int]
    counted: list[str]
    widened: list[str]
    target: str | None

    @property
    def sketched(self) -> list[str]:
        """Columns whose distinct count is estimated (HyperLogLog)."""
        names = []
        for name, dtype in self.types.items():
            if (
                name in self.widened
                or dtype == pl.String
                or dtype.is_temporal()
                or dtype.is_integer()
            ):
                names.append(name)
        return names


def make_plan(paths: list[str], widened: list[str], target: str | None) -> InspectPlan:
    """Read the sample (on a worker) and make the same choices as ``schema._plan``."""
    frame = sample(paths, dict.fromkeys(widened, pl.String))
    if target is not None and target not in frame.columns:
        raise InputError(
            f"{paths[0]}: target column '{target}' not found. Columns: {', '.join(frame.columns)}."
        )
    decimals, counted = {}, []
    for name, dtype in frame.schema.items():
        if name in widened:
            counted.append(name)
        elif dtype == pl.String:
            if _looks_low_cardinality(frame.get_column(name)) or name == target:
                counted.append(name)
        elif dtype.is_float():
            found = _guess_decimals(frame.get_column(name))
            if found is not None:
                decimals[name] = found
    if target is not None and target not in counted:
        counted.append(target)
    return InspectPlan(dict(frame.schema), decimals, counted, list(widened), target)


# --------------------------------------------------------------------------- per partition


class Sketches:
    """HyperLogLog registers of some columns, updated on every morsel that streams by."""

    def __init__(self, columns: list[str]):
        self.registers = {name: np.zeros(HLL_M, dtype=np.uint8) for name in columns}
        self._lock = threading.Lock()

    def attach(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        return lf.map_batches(self._update, streamable=True, schema=lf.collect_schema())

    def _update(self, frame: pl.DataFrame) -> pl.DataFrame:
        found = {name: hll_registers(frame.get_column(name)) for name in self.registers}
        with self._lock:
            for name, regs in found.items():
                np.maximum(self.registers[name], regs, out=self.registers[name])
        return frame


def hll_registers(values: pl.Series) -> np.ndarray:
    """HyperLogLog registers of ``values``: the top bits of the hash pick a register,
    the position of the first one bit in the rest is kept if larger."""
    regs = np.zeros(HLL_M, dtype=np.uint8)
    if not values.len():
        return regs
    h = values.hash(seed=0).to_numpy()
    index = (h >> np.uint64(64 - HLL_BITS)).astype(np.intp)
    rest = (h & np.uint64((1 << (64 - HLL_BITS)) - 1)).astype(np.float64)  # exact below 2**53
    rank = (64 - HLL_BITS + 1 - np.frexp(rest)[1]).astype(np.uint8)
    np.maximum.at(regs, index, rank)
    return regs


def hll_estimate(regs: np.ndarray) -> int:
    m = float(HLL_M)
    alpha = 0.7213 / (1.0 + 1.079 / m)
    estimate = alpha * m * m / float(np.sum(np.ldexp(1.0, -regs.astype(np.int64))))
    zeros = int(np.count_nonzero(regs == 0))
    if estimate <= 2.5 * m and zeros:
        estimate = m * math.log(m / zeros)
    return round(estimate)


def _exprs(plan: InspectPlan) -> list[pl.Expr]:
    exprs = [pl.len().alias("__rows__")]
    for name, dtype in plan.types.items():
        c = pl.col(name)
        exprs.append(c.null_count().alias(f"{name}:nulls"))
        if name in plan.widened:
            as_float = c.str.strip_chars().cast(pl.Float64, strict=False)
            as_int = c.str.strip_chars().cast(pl.Int64, strict=False)
            row = pl.col(ROW)
            exprs += _moments(name, as_float) + _text(name, c)
            exprs += [
                (c.is_not_null() & as_float.is_null()).sum().alias(f"{name}:not_float"),
                row.filter(c.is_not_null() & as_float.is_null())
                .min()
                .alias(f"{name}:first_not_float"),
                row.filter(c.is_not_null() & as_int.is_null()).min().alias(f"{name}:first_not_int"),
            ]
        elif dtype == pl.String:
            exprs += _text(name, c)
        elif dtype.is_numeric():
            exprs += _moments(name, c)
            if name in plan.decimals:
                exact = _has_decimals(c, plan.decimals[name]).all()
                exprs.append(exact.alias(f"{name}:exact"))
        elif dtype == pl.Boolean:
            exprs.append(c.sum().alias(f"{name}:true"))
        else:
            exprs += [c.min().alias(f"{name}:min"), c.max().alias(f"{name}:max")]
    return exprs


def _moments(name: str, c: pl.Expr) -> list[pl.Expr]:
    return [
        c.count().alias(f"{name}:n"),
        c.min().alias(f"{name}:min"),
        c.max().alias(f"{name}:max"),
        c.mean().alias(f"{name}:mean"),
        c.var(ddof=0).alias(f"{name}:var"),
    ]


def _text(name: str, c: pl.Expr) -> list[pl.Expr]:
    return [c.str.len_bytes().mean().alias(f"{name}:bytes")]


def partition_stats(part: Part, plan: InspectPlan) -> dict:
    """Mergeable statistics of one partition, or ``{"widen": column}`` when a value
    does not fit its parser type (the client then widens that column and starts over)."""
    lf = scan_part(part, plan.types)  # workers import leanfit: Polars reads as _env.py set
    if plan.widened:
        lf = lf.with_row_index(ROW)
    counter = ValueCounter(plan.counted, target=plan.target, cap=CATEGORY_CAP)
    sketches = Sketches(plan.sketched)
    lf = sketches.attach(counter.attach(lf))
    try:
        stats = lf.select(_exprs(plan)).collect(engine="streaming").row(0, named=True)
    except pl.exceptions.PolarsError as exc:
        if not is_url(part.path):
            from pathlib import Path

            error = as_input_error(exc, [Path(part.path)])
            if isinstance(error, ColumnTypeError):
                return {"widen": error.column}
        raise plain_error(exc, part) from None
    counts = {}
    for name in plan.counted:
        found = counter.counts(name)
        dtype = plan.types[name]
        counts[name] = None if found is None else _as_frame(found, name, dtype)
    return {
        "stats": stats,
        "counts": counts,
        "sketches": sketches.registers,
        "label_changes": counter.label_changes,
    }


def _as_frame(pairs: list[tuple], name: str, dtype) -> pl.DataFrame:
    values, counts = zip(*pairs) if pairs else ((), ())
    return pl.DataFrame(
        {name: list(values), "count": list(counts)}, schema={name: dtype, "count": pl.Int64}
    )


# --------------------------------------------------------------------------- merge


class MergedCounts:
    """Plays ``ValueCounter`` for ``schema._column`` and ``schema._describe_target``."""

    def __init__(self, parts: list[dict], names: list[str]):
        self.label_changes = sum(p["label_changes"] for p in parts)
        self._counts: dict[str, list | None] = {}
        for name in names:
            frames = [p["counts"][name] for p in parts]
            if any(f is None for f in frames):
                self._counts[name] = None
                continue
            merged = pl.concat(frames).group_by(name).agg(pl.col("count").sum())
            if merged.height > CATEGORY_CAP:
                self._counts[name] = None
                continue
            merged = merged.drop_nulls(name).sort(["count", name], descending=[True, False])
            self._counts[name] = list(merged.iter_rows())

    def counts(self, name: str) -> list[tuple] | None:
        return self._counts[name]


def merge_stats(parts: list[dict], plan: InspectPlan) -> dict:
    """One ``stats`` dict with the keys of the local engine's query."""
    rows = [p["stats"]["__rows__"] for p in parts]
    offsets = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(int).tolist()
    each = [p["stats"] for p in parts]
    out: dict = {"__rows__": int(sum(rows))}
    for name, dtype in plan.types.items():
        out[f"{name}:nulls"] = sum(s[f"{name}:nulls"] for s in each)
        if f"{name}:n" in each[0]:
            out |= _merge_moments(name, each)
        if f"{name}:min" in each[0] and f"{name}:n" not in each[0]:
            out[f"{name}:min"] = _extreme(each, f"{name}:min", "min")
            out[f"{name}:max"] = _extreme(each, f"{name}:max", "max")
        if f"{name}:exact" in each[0]:
            out[f"{name}:exact"] = all(s[f"{name}:exact"] is not False for s in each)
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
        if name in plan.sketched:
            regs = np.maximum.reduce([p["sketches"][name] for p in parts])
            text = name in plan.widened or dtype == pl.String
            out[f"{name}:{'text_hll' if text else 'hll'}"] = hll_estimate(regs)
    return out


def _extreme(each: list[dict], key: str, which: str):
    values = [s[key] for s in each if s[key] is not None]
    if not values:
        return None
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


def build_schema(paths: list[str], parts: list[dict], plan: InspectPlan) -> Schema:
    """The Schema the local engine would write, from the partitions' statistics."""
    stats = merge_stats(parts, plan)
    rows = stats["__rows__"]
    if rows == 0:
        raise InputError(f"{paths[0]}, line 2: the file has a header but no data rows.")
    counter = MergedCounts(parts, plan.counted)
    local = _Plan(None, [], plan.decimals, plan.counted, set(plan.widened), counter)
    columns = [
        _column(name, dtype, stats, local, rows, name == plan.target)
        for name, dtype in plan.types.items()
    ]
    schema = Schema(sources=list(paths), rows=rows, columns=columns, target=plan.target)
    if plan.target is not None:
        _describe_target(schema, counter)
    return schema
