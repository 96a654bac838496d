"""Exact value counts of chosen columns, taken while Polars streams the data.

Polars' ``value_counts`` is not a streaming aggregation: in a streaming query it
gathers the whole column first. :class:`ValueCounter` instead runs as a
``map_batches(streamable=True)`` step: it counts each morsel as it passes and
merges the partial counts now and then, so memory is bounded by the number of
distinct values (and a column past ``cap`` distinct values stops being counted).
It also counts label changes between neighbouring rows inside each morsel,
which is how a sorted or grouped target shows (changes across morsel boundaries
are not seen: a few per morsel of about 10,000 rows).

>>> import polars as pl
>>> counter = ValueCounter(["c"], target="c")
>>> out = pl.LazyFrame({"c": ["a", "b", "a", "a"]}).pipe(counter.attach).collect(engine="streaming")
>>> counter.counts("c")
[('a', 3), ('b', 1)]
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import polars as pl

MERGE_EVERY = 4  # partial counts kept before merging: memory flat in rows
COUNT_ROWS = 65_536  # morsels are a few thousand rows: counting them in groups is cheaper


class ValueCounter:
    """Counts the values of ``columns`` in every morsel that passes through (and tells
    ``on_rows`` how many rows each morsel had)."""

    def __init__(
        self,
        columns: list[str],
        *,
        target: str | None = None,
        cap: int = 200_000,
        on_rows: Callable[[int], None] | None = None,
    ):
        self.cap, self.on_rows = cap, on_rows
        self.target = target
        self.label_changes = 0
        self.overflowed: set[str] = set()
        self._parts: dict[str, list[pl.DataFrame]] = {name: [] for name in columns}
        self._pending: list[pl.DataFrame] = []
        self._pending_rows = 0
        self._lock = threading.Lock()

    def attach(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        """``lf`` with the counting step in its streaming plan."""
        return lf.map_batches(self._count, streamable=True, schema=lf.collect_schema())

    def _count(self, frame: pl.DataFrame) -> pl.DataFrame:
        changes = 0
        if self.target is not None and frame.height > 1:
            labels = frame.get_column(self.target)
            changes = int((labels != labels.shift()).sum())
        with self._lock:
            self.label_changes += changes
            self._pending.append(frame.select(list(self._parts)))
            self._pending_rows += frame.height
            if self._pending_rows >= COUNT_ROWS:
                self._count_pending()
        if self.on_rows is not None:
            self.on_rows(frame.height)
        return frame

    def _count_pending(self) -> None:
        if not self._pending:
            return
        group = pl.concat(self._pending)
        self._pending, self._pending_rows = [], 0
        for name, parts in self._parts.items():
            if name not in self.overflowed:
                parts.append(group.get_column(name).value_counts())
                if len(parts) >= MERGE_EVERY:
                    self._merge(name)

    def _merge(self, name: str) -> None:
        merged = pl.concat(self._parts[name]).group_by(name).agg(pl.col("count").sum())
        if merged.height > self.cap:
            self.overflowed.add(name)
            self._parts[name] = []
        else:
            self._parts[name] = [merged]

    def counts(self, name: str) -> list[tuple] | None:
        """(value, count) pairs by descending count, nulls left out; None past the cap."""
        self._count_pending()
        if name in self.overflowed:
            return None
        if self._parts[name]:
            self._merge(name)
        if name in self.overflowed or not self._parts[name]:
            return None if name in self.overflowed else []
        merged = (
            self._parts[name][0].drop_nulls(name).sort(["count", name], descending=[True, False])
        )
        return list(merged.iter_rows())
