"""Level counts and distinct-count sketches against independent references: pandas'
value_counts, Python's Counter, exact distinct counts and Misra-Gries' bounds."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pandas as pd
import polars as pl
import pytest

from leanfit.memory import Monitor, current_rss
from leanfit.schema import inspect
from leanfit.schema.counting import LevelCounts, Levels
from leanfit.schema.sketches import add_hashes, hll_estimate, new_registers
from leanfit.schema.statistics import MergedCounts
from leanfit.synth import write_many_levels

HLL_ERROR = 1.04 / 2**7  # relative standard error of 2**14 registers


def _stream(rng, rows: int, popular: int, new_share: float) -> np.ndarray:
    """Level ids: Zipf over ``popular`` levels, and a new level on ``new_share`` of rows."""
    ids = np.minimum(rng.zipf(1.3, rows), popular)
    new = rng.random(rows) < new_share
    ids[new] = popular + 1 + np.flatnonzero(new)
    return ids


def _count(summary: LevelCounts, ids: np.ndarray, group: int = 5_000) -> None:
    for start in range(0, len(ids), group):
        part = pl.Series("v", [f"level-number-{i}" for i in ids[start : start + group]])
        counted = part.value_counts()
        summary.add(counted["v"], counted["count"].to_numpy().astype(np.int64))


def _check_bounds(found, truth: Counter, rows: int, cap: int) -> None:
    """Misra-Gries: each count within ``error`` below the truth, ``error`` at most
    rows / (cap // 2 + 1), and every level more frequent than twice the error kept."""
    assert not found.exact and 0 < found.error <= rows / (cap // 2 + 1)
    for value, count in zip(found.values, found.counts):
        assert truth[value] - found.error <= count <= truth[value], value
    kept = set(found.values)
    assert {v for v, n in truth.items() if n > 2 * found.error} <= kept


def test_exact_below_the_cap_and_within_misra_gries_bounds_past_it():
    rng = np.random.default_rng(1)
    ids = _stream(rng, 200_000, 3_000, 0.05)
    truth = Counter(f"level-number-{i}" for i in ids)
    exact = LevelCounts(cap=len(truth))
    _count(exact, ids)
    top = exact.top()
    assert top.exact and dict(zip(top.values, top.counts)) == truth
    assert top.counts == sorted(top.counts, reverse=True)
    capped = LevelCounts(cap=4_000)
    _count(capped, ids)
    assert len(capped) <= 4_000
    _check_bounds(capped.top(), truth, len(ids), 4_000)


def test_pieces_merge_with_their_errors_added():
    """Dask's pieces: summaries of parts of the rows, merged, keep the bounds."""
    rng = np.random.default_rng(2)
    parts = [_stream(rng, 60_000, 2_000, 0.08) for _ in range(3)]
    truth = Counter(f"level-number-{i}" for ids in parts for i in ids)
    pieces = []
    for ids in parts:
        summary = LevelCounts(cap=3_000)
        _count(summary, ids)
        pieces.append({"counts": {"v": (summary.frame("v"), summary.error)}, "label_changes": 0})
    _check_bounds(MergedCounts(pieces, ["v"], cap=3_000).counts("v"), truth, 180_000, 3_000)


@pytest.mark.parametrize("distinct", [500, 20_000, 1_000_000])
def test_hyperloglog_within_its_error(distinct):
    values = pl.Series([f"id-{i:09d}" for i in range(distinct)])
    regs = new_registers()
    for start in range(0, distinct, 65_536):  # and each value seen twice
        hashes = values.slice(start, 65_536).hash(seed=0).to_numpy()
        add_hashes(regs, hashes)
        add_hashes(regs, hashes[::-1].copy())
    assert abs(hll_estimate(regs) - distinct) <= 3 * HLL_ERROR * distinct + 1


@pytest.fixture(scope="module")
def levels_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("levels") / "levels.csv"
    write_many_levels(path, rows=150_000, seed=5)
    return path


def test_inspect_counts_are_pandas_value_counts_below_the_cap(levels_csv):
    schema = inspect(levels_csv, target="label")
    df = pd.read_csv(levels_csv)
    for name in ("merchant", "segment"):
        col = schema.column(name)
        counts = df[name].value_counts()
        assert col.distinct_exact and col.distinct == len(counts), name
        assert dict(zip(col.categories, col.category_counts)) == counts.to_dict(), name
        assert col.top_categories is None and col.storage.startswith("dictionary")
    user = schema.column("user_id")
    assert user.kind == "id" and abs(user.distinct - len(df)) <= 3 * HLL_ERROR * len(df)


def test_inspect_past_a_small_budget_keeps_the_top_levels_and_says_so(levels_csv):
    """A budget with little room plans the smallest cap (10,000 levels); merchant has
    about 19,000: its distinct count is HyperLogLog's, its top levels within the error."""
    tight = Monitor(limit=int((current_rss() + 80e6) / 0.9))
    schema = inspect(levels_csv, target="label", memory=tight)
    df = pd.read_csv(levels_csv)
    merchant = schema.column("merchant")
    truth = Counter(df["merchant"])
    assert not merchant.distinct_exact and merchant.categories is None
    assert merchant.storage == "string" and merchant.kind == "high_cardinality"
    assert abs(merchant.distinct - len(truth)) <= 3 * HLL_ERROR * len(truth)
    cap = int(re.search(r"more than ([\d,]+) levels", merchant.note)[1].replace(",", ""))
    assert 10_000 <= cap < 12_000 and "HyperLogLog" in merchant.note  # near the smallest
    top = merchant.top_categories
    assert merchant.top_category_counts == sorted(merchant.top_category_counts, reverse=True)
    found = Levels(top, merchant.top_category_counts, merchant.top_count_error)
    _check_bounds(found, truth, len(df), cap)
    assert schema.column("segment").distinct_exact  # 1,000 levels: below the cap
