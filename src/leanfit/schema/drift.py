"""How new data differs from the data a schema describes: the drift summary.

:class:`Drift` is fed the new data frame by frame (read with the old schema's types)
and compares each feature column with the schema's statistics:

* numbers (and booleans): the mean shift and the std change in units of the old
  std, the values below the old minimum and above the old maximum;
* categoricals: the levels the schema does not know (on how many rows, counted
  exactly; how many, exactly up to ``cap`` levels counted per column, past it the
  most frequent ones: :class:`~leanfit.schema.counting.LevelCounts`, as inspect
  counts) and how far the level shares moved: the total variation distance
  between old and new shares, levels under ``POOLED_BELOW`` of the old rows pooled
  (rare levels of a big column differ between any two samples);
* every column: the share of missing values, old and new;
* the target: the share of each class, old and new.

Each column gets one ``shift`` (the largest of its measures, all near 0 for a new
sample of the same population); columns at ``SHIFTED_AT`` or more are named as
shifted. Memory: the per-frame aggregates and the new data's level counts (at most
``cap`` levels a column).

>>> from leanfit.schema.columns import Column, Schema
>>> cols = [Column("x", "float", "float64", "Float64", 4, 0, min=0.0, max=3.0, mean=1.5,
...                std=1.0),
...         Column("c", "categorical", "dictionary<uint8>", "String", 4, 0,
...                categories=["a", "b"], category_counts=[2, 2])]
>>> drift = Drift(Schema(sources=[], rows=4, columns=cols))
>>> drift.add(pl.DataFrame({"x": [3.5, 4.5, 5.5, 6.5], "c": ["a", "z", "z", None]}))
>>> result = drift.result()
>>> result["shifted"]
['x', 'c']
>>> x, c = result["columns"]
>>> x["mean_shift"], x["above_max"], c["new_levels"], c["new_level_rows"]
(3.5, 4, 1, 2)
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from leanfit.schema.columns import Column, Schema
from leanfit.schema.counting import LevelCounts
from leanfit.schema.rules import CATEGORY_CAP

SHIFTED_AT = 0.2  # a column whose shift reaches this is named as shifted
LEVEL_COUNTS = {"level": pl.String, "count": pl.Int64}
POOLED_BELOW = 0.01  # levels under this share of the old rows are pooled
NULL_RATE_FLOOR = 0.01  # a null-rate change is measured in units of at least sqrt(this)
NUMERIC = ("integer", "float", "boolean")
EXAMPLES = 5  # new levels listed by name (the most frequent)


class Drift:
    """Statistics of new data against ``schema``, merged frame by frame."""

    def __init__(self, schema: Schema, cap: int = CATEGORY_CAP):
        self.schema = schema
        self.columns = list(schema.features)
        self.rows = 0
        self.nulls = dict.fromkeys(self.names, 0)
        self.moments = {c.name: (0, 0.0, 0.0) for c in self.numeric}
        self.outside = {c.name: [0, 0] for c in self.numeric}
        self.levels = {c.name: LevelCounts(cap) for c in self.categorical}
        self.new_rows = {c.name: 0 for c in self.categorical}  # rows of unknown levels
        self.known = {
            c.name: pl.Series([str(level) for level in c.categories], dtype=pl.String)
            for c in self.categorical
        }
        self.labels = np.zeros(len(schema.classes), dtype=np.int64)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def numeric(self) -> list[Column]:
        return [c for c in self.columns if c.kind in NUMERIC]

    @property
    def categorical(self) -> list[Column]:
        return [c for c in self.columns if c.kind not in NUMERIC and c.categories is not None]

    def add(self, frame: pl.DataFrame, labels: np.ndarray | None = None) -> None:
        """Count one frame (``labels``: its class codes, -1 where missing)."""
        self.rows += frame.height
        row = frame.select(self._exprs(frame.schema)).row(0, named=True)
        for name in self.names:
            self.nulls[name] += row[f"{name}:nulls"]
        for c in self.numeric:
            self.moments[c.name] = _merged(
                self.moments[c.name], row[f"{c.name}:n"], row[f"{c.name}:mean"], row[f"{c.name}:m2"]
            )
            if c.kind != "boolean":
                self.outside[c.name][0] += row[f"{c.name}:below"] or 0
                self.outside[c.name][1] += row[f"{c.name}:above"] or 0
        for c in self.categorical:
            values = frame.get_column(c.name).drop_nulls().cast(pl.String)
            self.new_rows[c.name] += int((~values.is_in(self.known[c.name])).sum())
            counts = values.rename("level").value_counts(name="count")
            levels = counts.get_column("level")
            self.levels[c.name].add(levels, counts.get_column("count").to_numpy().astype(np.int64))
        if labels is not None:
            self.labels += np.bincount(labels[labels >= 0], minlength=len(self.labels))

    def _exprs(self, types: pl.Schema) -> list[pl.Expr]:
        exprs = [pl.col(n).null_count().alias(f"{n}:nulls") for n in self.names]
        for c in self.numeric:
            value = _number(c.name, types[c.name])
            exprs += [
                value.count().alias(f"{c.name}:n"),
                value.mean().alias(f"{c.name}:mean"),
                (value.var(ddof=0) * value.count()).alias(f"{c.name}:m2"),
            ]
            if c.kind != "boolean" and c.min is not None:
                exprs += [
                    (value < float(c.min)).sum().alias(f"{c.name}:below"),
                    (value > float(c.max)).sum().alias(f"{c.name}:above"),
                ]
        return exprs

    def result(self) -> dict:
        """The drift summary: ``rows``, ``threshold``, ``columns`` (largest shift
        first), ``shifted`` (their names) and ``labels``."""
        columns = [self._numeric(c) for c in self.numeric]
        columns += [self._categorical(c) for c in self.categorical]
        done = {c["column"] for c in columns}
        columns += [self._common(c) for c in self.columns if c.name not in done]
        columns.sort(key=lambda c: -c["shift"])
        return {
            "rows": self.rows,
            "threshold": SHIFTED_AT,
            "shifted": [c["column"] for c in columns if c["shift"] >= SHIFTED_AT],
            "columns": columns,
            "labels": self._labels(),
        }

    def _common(self, c: Column) -> dict:
        old = c.nulls / max(c.count + c.nulls, 1)
        new = self.nulls[c.name] / max(self.rows, 1)
        shift = abs(new - old) / math.sqrt(max(old * (1 - old), NULL_RATE_FLOOR))
        return {
            "column": c.name,
            "kind": c.kind,
            "shift": _rounded(shift),
            "null_rate_old": _rounded(old),
            "null_rate_new": _rounded(new),
        }

    def _numeric(self, c: Column) -> dict:
        n, mean, m2 = self.moments[c.name]
        old_mean = float(c.mean or 0.0)
        old_std = c.std if c.std else math.sqrt(max(old_mean * (1 - old_mean), 0.0))
        old_std = old_std if old_std and math.isfinite(old_std) else 1.0
        std = math.sqrt(m2 / n) if n else 0.0
        mean_shift = (mean - old_mean) / old_std if n else 0.0
        std_shift = (std - old_std) / old_std if n else 0.0
        entry = self._common(c)
        entry["shift"] = _rounded(max(entry["shift"], abs(mean_shift), abs(std_shift)))
        entry |= {
            "mean_old": _rounded(old_mean),
            "mean_new": _rounded(mean),
            "std_old": _rounded(old_std),
            "std_new": _rounded(std),
            "mean_shift": _rounded(mean_shift),
            "std_shift": _rounded(std_shift),
        }
        if c.kind != "boolean":
            entry |= {"below_min": self.outside[c.name][0], "above_max": self.outside[c.name][1]}
        return entry

    def level_counts(self, name: str) -> dict:
        """Rows of each level of categorical ``name`` in the new data (past the cap:
        of the most frequent levels, each within the summary's error)."""
        top = self.levels[name].top()
        return dict(zip(top.values, top.counts))

    def _unknown(self, c: Column) -> pl.DataFrame:
        """``level``, ``count`` of the levels the schema does not know, most rows first."""
        top = self.levels[c.name].top()
        counts = pl.DataFrame({"level": top.values, "count": top.counts}, schema=LEVEL_COUNTS)
        return counts.filter(~pl.col("level").is_in(self.known[c.name]))

    def _categorical(self, c: Column) -> dict:
        new = self._unknown(c)
        known = self.known[c.name].to_list()
        total = self.rows - self.nulls[c.name]
        old_counts = np.asarray(c.category_counts or [0] * len(known), dtype=np.float64)
        old_share = old_counts / max(old_counts.sum(), 1.0)
        top = [level for level, share in zip(known, old_share) if share >= POOLED_BELOW]
        by_level = self.level_counts(c.name)
        new_share = np.asarray([by_level.get(level, 0) for level in top]) / max(total, 1)
        old_top = old_share[old_share >= POOLED_BELOW]
        pooled = abs((1 - old_top.sum()) - (1 - new_share.sum()))
        moved = 0.5 * (np.abs(old_top - new_share).sum() + pooled) if total else 0.0
        entry = self._common(c)
        entry["shift"] = _rounded(max(entry["shift"], moved))
        return entry | {
            "levels_moved": _rounded(moved),
            "new_levels": new.height,
            "new_level_rows": self.new_rows[c.name],
            "new_level_examples": new.get_column("level").head(EXAMPLES).to_list(),
        }

    def _labels(self) -> dict:
        old = np.asarray(self.schema.class_counts, dtype=np.float64)
        return {
            "classes": [str(c) for c in self.schema.classes],
            "rows_new": self.labels.tolist(),
            "share_old": [_rounded(s) for s in old / max(old.sum(), 1.0)],
            "share_new": [_rounded(s) for s in self.labels / max(self.labels.sum(), 1)],
        }

    def new_levels(self, name: str) -> list[str]:
        """The levels of categorical ``name`` the schema does not know, most rows first."""
        return self._unknown(self.schema.column(name)).get_column("level").to_list()


def _number(name: str, dtype: pl.DataType) -> pl.Expr:
    """The column as float64 (text of a widened column parsed; NaN as missing)."""
    c = pl.col(name)
    if dtype == pl.String:
        c = c.str.strip_chars().cast(pl.Float64, strict=False)
    return c.cast(pl.Float64).fill_nan(None)


def _merged(old: tuple, n: int, mean: float | None, m2: float | None) -> tuple:
    """Chan's merge of (count, mean, sum of squared deviations)."""
    n0, mean0, m20 = old
    if not n:
        return old
    total = n0 + n
    delta = mean - mean0
    return total, mean0 + delta * n / total, m20 + (m2 or 0.0) + delta**2 * n0 * n / total


def _rounded(value: float) -> float:
    return round(float(value), 6)
