"""Statistics of many mostly-zero number columns, in numpy, while Polars streams.

A Polars query with a few statistics per column builds a plan of tens of thousands
of expressions for a file of thousands of count columns: planning it took longer
than parsing the file, and its per-expression state held hundreds of MB. Columns
that look mostly zero in the sample (at least ``ZERO_SHARE`` of it, when there are
``MIN_COLUMNS`` or more) are summed instead by :class:`WideStats`, a streaming step
that reads each morsel as one numpy block (a few for a long morsel). It gives the same
keys as the query (``name:nulls``, ``:n``, ``:min``, ``:max``, ``:mean``, ``:var``,
``:zeros``, ``:infinite`` and ``:exact`` where the plan has decimals), so pieces merge
as before; distinct counts are not estimated (a mostly-zero column is no id).

>>> import polars as pl
>>> wide = WideStats(["a"], {})
>>> _ = wide.attach(pl.LazyFrame({"a": [0, 0, 3, None]})).collect(engine="streaming")
>>> s = wide.stats()
>>> s["a:n"], s["a:nulls"], s["a:zeros"], s["a:max"], s["a:mean"]
(3, 1, 2, 3.0, 1.0)
"""

from __future__ import annotations

import threading

import numpy as np
import polars as pl

ZERO_SHARE = 0.5  # of the sample's values: a column summed by WideStats
MIN_COLUMNS = 64  # fewer such columns cost the query little
MANY_COLUMNS = 2_000  # number columns past which all are summed here (no distinct count)
GROUP_CELLS = 2_000_000  # cells per numpy block (16 MB of float64)
SMALL_INT = 2**20  # integers whose sums of squares stay exact in float64


def wide_columns(sample: pl.DataFrame, candidates: list[str]) -> list[str]:
    """The ``candidates`` (number columns) that look mostly zero in ``sample``, when
    there are enough of them to be worth their own pass; every one of them when there
    are ``MANY_COLUMNS`` or more (60,000 dense columns held 1.8 GB as query state)."""
    if len(candidates) >= MANY_COLUMNS:
        return list(candidates)
    found = []
    for name in candidates:
        values = sample.get_column(name)
        present = values.len() - values.null_count()
        if present and (values == 0).sum() >= ZERO_SHARE * present:
            found.append(name)
    return found if len(found) >= MIN_COLUMNS else []


class WideStats:
    """Counts, extremes, moments (merged Chan-style over morsels) and zeros of
    ``columns``; with ``decimals`` (name -> decimals) whether each value is written
    exactly with them. Extremes of the ``integers`` columns are ints."""

    def __init__(self, columns: list[str], decimals: dict[str, int], integers=()):
        self.columns, self.integers = columns, set(integers)
        self.decimals = np.array([decimals.get(c, -1) for c in columns])
        k = len(columns)
        self.rows = 0
        self.n, self.zeros, self.infinite = (np.zeros(k, np.int64) for _ in range(3))
        self.mean, self.m2 = np.zeros(k), np.zeros(k)
        self.lo, self.hi = np.full(k, np.inf), np.full(k, -np.inf)
        self.exact = np.ones(k, bool)
        self._lock = threading.Lock()

    def attach(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        return lf.map_batches(self._update, streamable=True, schema=lf.collect_schema())

    def _update(self, frame: pl.DataFrame) -> pl.DataFrame:
        group = max(1, GROUP_CELLS // max(frame.height, 1))
        starts = range(0, len(self.columns), group)
        parts = [(slice(s, s + group), self._block(frame, slice(s, s + group))) for s in starts]
        with self._lock:
            self.rows += frame.height
            for cols, part in parts:
                self._merge(cols, *part)
        return frame

    def _block(self, frame: pl.DataFrame, cols: slice) -> tuple:
        X = frame.select(self.columns[cols]).to_numpy()
        if X.dtype.kind in "iub" and X.size and np.abs(X).max() < SMALL_INT:
            return self._integers(X, self.decimals[cols])
        X = X.astype(np.float64, copy=False)
        infinite = np.isinf(X).sum(axis=0)
        present = ~np.isnan(X)
        n = present.sum(axis=0)
        zeros = (X == 0).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            lo = np.where(n > 0, np.nanmin(np.where(present, X, np.inf), axis=0), np.inf)
            hi = np.where(n > 0, np.nanmax(np.where(present, X, -np.inf), axis=0), -np.inf)
            mean = np.where(n > 0, np.nansum(X, axis=0) / np.maximum(n, 1), 0.0)
            m2 = np.nansum((X - mean) ** 2, axis=0)
        exact = self._exact(X, self.decimals[cols])
        return n, zeros, infinite, lo, hi, mean, m2, exact

    @staticmethod
    def _integers(X: np.ndarray, decimals: np.ndarray) -> tuple:
        """The block of integer columns without nulls: small sums are exact in float64."""
        rows, k = X.shape
        total = X.sum(axis=0, dtype=np.float64)
        squares = np.einsum("ij,ij->j", X, X, dtype=np.float64)
        mean = total / rows
        m2 = np.maximum(squares - total * mean, 0.0)
        n = np.full(k, rows)
        zeros = rows - np.count_nonzero(X, axis=0)
        lo, hi = X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)
        return n, zeros, np.zeros(k, np.int64), lo, hi, mean, m2, np.ones(k, bool)

    @staticmethod
    def _exact(X: np.ndarray, decimals: np.ndarray) -> np.ndarray:
        """``schema.rules.has_decimals`` of every value (NaN passes), per column."""
        scale = 10.0 ** np.maximum(decimals, 0)
        with np.errstate(invalid="ignore", over="ignore"):
            scaled = X * scale
            nearest = np.round(scaled)
            ok = (np.abs(scaled - nearest) <= 1e-9) & ((nearest != 0) | (X == 0))
        ok = np.where(decimals == 0, (np.round(X) == X), ok) | np.isnan(X)
        return ok.all(axis=0)

    def _merge(self, cols: slice, n, zeros, infinite, lo, hi, mean, m2, exact) -> None:
        total = self.n[cols] + n
        delta = mean - self.mean[cols]
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(total > 0, n / np.maximum(total, 1), 0.0)
            self.m2[cols] += m2 + np.where(n > 0, delta**2 * self.n[cols] * share, 0.0)
        self.mean[cols] += delta * share
        self.n[cols] = total
        self.zeros[cols] += zeros
        self.infinite[cols] += infinite
        self.lo[cols] = np.minimum(self.lo[cols], lo)
        self.hi[cols] = np.maximum(self.hi[cols], hi)
        self.exact[cols] &= exact

    def stats(self) -> dict:
        """The keys of :func:`leanfit.schema.statistics.piece_stats`'s ``stats``."""
        out: dict = {}
        for i, name in enumerate(self.columns):
            n = int(self.n[i])
            number = int if name in self.integers else float
            out[f"{name}:nulls"] = self.rows - n
            out[f"{name}:n"] = n
            out[f"{name}:zeros"] = int(self.zeros[i])
            out[f"{name}:infinite"] = int(self.infinite[i])
            out[f"{name}:min"] = number(self.lo[i]) if n else None
            out[f"{name}:max"] = number(self.hi[i]) if n else None
            out[f"{name}:mean"] = float(self.mean[i]) if n else None
            out[f"{name}:var"] = float(self.m2[i] / n) if n else None
            if self.decimals[i] >= 0:
                out[f"{name}:exact"] = bool(self.exact[i])
        return out
