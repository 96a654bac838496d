"""Category counts and distinct-count sketches, taken while Polars streams the data.

Polars' ``value_counts`` is not a streaming aggregation: in a streaming query it
gathers the whole column first. :class:`ValueCounter` instead runs as a
``map_batches(streamable=True)`` step: it adds each morsel's hashes of sketched
columns to their HyperLogLog registers (:mod:`leanfit.schema.sketches`), and gathers
the counted columns of morsels into groups of about ``COUNT_ROWS`` rows whose level
counts go to a :class:`LevelCounts` each (a counted column's sketch takes the hashes
of its levels), so memory is bounded by the cap on levels, not by rows. It also counts label changes between neighbouring rows inside each morsel,
which is how a sorted or grouped target shows (changes across morsel boundaries are
not seen: a few per morsel of about 10,000 rows).

:class:`LevelCounts` counts exactly while a column has at most ``cap`` levels; past
that it becomes a Misra-Gries summary of the most frequent levels, in its mergeable
form (Agarwal et al., "Mergeable summaries", 2012): whenever more than ``cap`` levels
are held, the count of the ``cap // 2 + 1``-th largest is subtracted from every level
and the levels left at zero are dropped. ``error`` is the sum of what was subtracted,
so every count kept is at most ``error`` below the level's true count, ``error`` is at
most rows / (cap // 2 + 1), and every level more frequent than ``error`` is kept.
Summaries of pieces of the input merge by adding: their errors add.

A level is held as a 64-bit hash (8 bytes), its count (8), where its value is (8) and
the value itself (measured at peak, with the working copies: ``costs.LEVEL_BYTES``).
Two distinct values with the same 64-bit hash would be counted as one: with a
million levels, a chance of about 3 in 10**8.

>>> import polars as pl
>>> counter = ValueCounter(["c"], target="c", cap=1_000)
>>> out = pl.LazyFrame({"c": ["a", "b", "a", "a"]}).pipe(counter.attach).collect(engine="streaming")
>>> counter.finish()
>>> counter.levels["c"].top()
Levels(values=['a', 'b'], counts=[3, 1], error=0)
>>> summary = LevelCounts(cap=2)
>>> summary.add(pl.Series(["a", "b", "c"]), np.array([5, 1, 2]))
>>> summary.add(pl.Series(["a", "d"]), np.array([1, 1]))
>>> summary.top()
Levels(values=['a'], counts=[4], error=2)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from leanfit.schema.sketches import add_hashes, new_registers

COUNT_ROWS = 65_536  # morsels are a few thousand rows: counting them in groups is cheaper
HASH_SEED = 0  # the sketches' seed too: one hash of a group's levels serves both


def level_hashes(values: pl.Series) -> np.ndarray:
    return values.hash(seed=HASH_SEED).to_numpy()


@dataclass
class Levels:
    """Levels by descending count (ties by value); ``error`` 0 when the counts are exact,
    else how far below its true count each count may be."""

    values: list
    counts: list[int]
    error: int

    @property
    def exact(self) -> bool:
        return self.error == 0


class LevelCounts:
    """Counts of one column's levels: exact up to ``cap`` levels, then the most frequent
    levels' counts within ``error`` (see the module's doc)."""

    def __init__(self, cap: int, error: int = 0):
        self.cap, self.error = cap, error
        self._keys = np.empty(0, np.uint64)  # level hashes, sorted
        self._counts = np.empty(0, np.int64)
        self._slots = np.empty(0, np.int64)  # where each level's value is in _values
        self._values: list[pl.Series] = []  # values in the order first seen
        self._stored = 0

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, values: pl.Series, counts: np.ndarray, hashes: np.ndarray | None = None) -> None:
        """Count ``counts`` more rows of each of ``values`` (distinct, no null)."""
        hashes = level_hashes(values) if hashes is None else hashes
        pos = np.searchsorted(self._keys, hashes)
        known = pos < len(self._keys)
        known[known] = self._keys[pos[known]] == hashes[known]
        np.add.at(self._counts, pos[known], counts[known])
        if not known.all():
            new = ~known
            self._insert(values.filter(pl.Series(new)), counts[new], hashes[new])
        if len(self._keys) > self.cap:
            self._prune()

    def _insert(self, values: pl.Series, counts: np.ndarray, hashes: np.ndarray) -> None:
        order = np.argsort(hashes, kind="stable")
        at = np.searchsorted(self._keys, hashes[order])
        self._keys = np.insert(self._keys, at, hashes[order])
        self._counts = np.insert(self._counts, at, counts[order])
        self._slots = np.insert(self._slots, at, self._stored + order)
        self._values.append(_compact(values))
        self._stored += len(values)

    def _prune(self) -> None:
        """Misra-Gries: subtract the (cap // 2 + 1)-th largest count from every level."""
        rank = len(self._counts) - self.cap // 2 - 1
        cut = np.partition(self._counts, rank)[rank]
        alive = self._counts > cut
        self._keys, self._slots = self._keys[alive], self._slots[alive]
        self._counts = self._counts[alive] - cut
        self.error += int(cut)
        if self._stored > 2 * len(self._keys):  # the dropped levels' values go too
            self._values = [_compact(self._gathered())]
            self._slots = np.arange(len(self._keys))
            self._stored = len(self._keys)

    def _gathered(self) -> pl.Series:
        """The values of the levels held, in the order of ``_keys``."""
        return pl.concat(self._values, rechunk=False).gather(self._slots)

    def frame(self, name: str) -> pl.DataFrame:
        """The levels held (``name``) and their counts (``count``), in no order."""
        if not len(self._keys):
            return pl.DataFrame({name: [], "count": []}, schema={name: pl.Null, "count": pl.Int64})
        return pl.DataFrame([self._gathered().alias(name), pl.Series("count", self._counts)])

    def top(self) -> Levels:
        """The levels by descending count; past the cap only those counted more often
        than ``error`` (the others may be noise)."""
        frame = self.frame("value").filter(pl.col("count") > self.error)
        frame = frame.sort(["count", "value"], descending=[True, False])
        return Levels(frame["value"].to_list(), frame["count"].to_list(), self.error)


def _compact(values: pl.Series) -> pl.Series:
    """``values`` in buffers of their own: Polars' strings taken from a bigger column
    are views that keep the whole column's bytes alive; a new string does not."""
    return values + "" if values.dtype == pl.String else values


class ValueCounter:
    """Counts the levels of ``counted`` columns (up to ``cap`` exactly) and sketches the
    distinct values of ``sketched`` ones in every morsel that passes through (and
    tells ``on_rows`` how many rows each morsel had)."""

    def __init__(
        self,
        counted: list[str],
        *,
        cap: int,
        sketched: Sequence[str] = (),
        target: str | None = None,
        on_rows: Callable[[int], None] | None = None,
    ):
        self.on_rows, self.target = on_rows, target
        self.label_changes = 0
        self.levels = {name: LevelCounts(cap) for name in counted}
        self.registers = {name: new_registers() for name in sketched}
        self._hashed = [name for name in sketched if name not in self.levels]
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
            for name in self._hashed:  # at once: a morsel kept for later keeps its parse
                add_hashes(self.registers[name], level_hashes(frame.get_column(name)))
            self._pending.append(frame.select(list(self.levels)))
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
        for name in self.levels:
            self._count_levels(name, group.get_column(name))

    def _count_levels(self, name: str, column: pl.Series) -> None:
        counted = column.rename("value").value_counts(name="count")
        values = counted.get_column("value")
        hashes = level_hashes(values)
        if name in self.registers:  # a null is one value to the sketch, as in Polars
            add_hashes(self.registers[name], hashes)
        present = values.is_not_null().to_numpy()
        self.levels[name].add(
            values.filter(pl.Series(present)),
            counted.get_column("count").to_numpy()[present].astype(np.int64),
            hashes[present],
        )

    def finish(self) -> None:
        """Count the rows still pending (call once the stream has ended)."""
        with self._lock:
            self._count_pending()
