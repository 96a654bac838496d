"""HyperLogLog sketches of distinct counts that merge across pieces of the input.

Polars' ``approx_n_unique`` cannot be merged, so a piece read on a Dask worker keeps
a sketch of 2**14 one-byte registers over Polars' 64-bit ``hash`` (seed 0; a null
counts as one value, as in Polars); sketches merge by register maximum, and the
estimate is the standard one with linear counting for small counts (relative error
about 0.8%). The id rule (``distinct >= 0.9 * count``) sees the same answer as on
one piece unless a column sits within a percent or two of it.

>>> import polars as pl
>>> abs(hll_estimate(hll_registers(pl.Series(range(100_000)))) - 100_000) < 2_000
True
"""

from __future__ import annotations

import math
import threading

import numpy as np
import polars as pl

HLL_BITS = 14
HLL_M = 1 << HLL_BITS


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
