"""HyperLogLog sketches of distinct counts that merge across pieces of the input.

Polars' ``approx_n_unique`` cannot be merged, and inside a streaming query it
drifts (measured here: 14.7 million for 16 million distinct strings, which put an
id column below the id rule), so text columns on every engine, and every estimated
column of a Dask partition, keep a sketch of 2**14 one-byte registers over Polars'
64-bit ``hash`` (seed 0; a null counts as one value, as in Polars); sketches merge by
register maximum, and the estimate is the standard one with linear counting for
small counts (relative error about 0.8%).

>>> import polars as pl
>>> regs = new_registers()
>>> add_hashes(regs, pl.Series(range(100_000)).hash(seed=0).to_numpy())
>>> abs(hll_estimate(regs) - 100_000) < 2_000
True
"""

from __future__ import annotations

import math

import numpy as np

HLL_BITS = 14
HLL_M = 1 << HLL_BITS
REST_BITS = 64 - HLL_BITS


def new_registers() -> np.ndarray:
    return np.zeros(HLL_M, dtype=np.uint8)


def add_hashes(regs: np.ndarray, hashes: np.ndarray) -> None:
    """Add values, given by their 64-bit hashes, to the registers ``regs``: the top bits
    of a hash pick a register, which keeps the largest rank (the position of the first
    one bit) of the rest. Only hashes that would raise their register are ranked."""
    h = hashes.view(np.int64)
    index = (h >> REST_BITS) & (HLL_M - 1)
    rest = h & ((1 << REST_BITS) - 1)
    # rank(rest) > r exactly when rest < 2**(REST_BITS - r); no rest is below 2**-1
    below = np.left_shift(1, np.maximum(REST_BITS - regs.astype(np.int64), -1))
    raises = rest < below[index]
    index, rest = index[raises], rest[raises].astype(np.float64)  # exact below 2**53
    rank = (REST_BITS + 1 - np.frexp(rest)[1]).astype(np.uint8)
    np.maximum.at(regs, index, rank)


def hll_estimate(regs: np.ndarray) -> int:
    m = float(HLL_M)
    alpha = 0.7213 / (1.0 + 1.079 / m)
    estimate = alpha * m * m / float(np.sum(np.ldexp(1.0, -regs.astype(np.int64))))
    zeros = int(np.count_nonzero(regs == 0))
    if estimate <= 2.5 * m and zeros:
        estimate = m * math.log(m / zeros)
    return round(estimate)
