"""Mostly-zero number columns as CSR, straight from the parsed columns.

The inspect pass marks a number feature ``sparse`` when at least 90% of its values
are 0 (``schema.rules.SPARSE_SHARE``). When a schema has ``MIN_COLUMNS`` or more of
them (thousands of count or indicator columns, say), the encoder leaves them out of
its dense float32 block: each chunk's parsed columns become a CSR block of their
non-zeros, so an encoded row costs memory in proportion to its non-zeros, not to
the width. Their values are scaled by the column's standard deviation but not
centred (centring would fill every zero), as scikit-learn's
``StandardScaler(with_mean=False)``; a missing value is 0.

>>> import polars as pl
>>> specs = [{"name": "a", "scale": 2.0}, {"name": "b", "scale": 1.0}]
>>> parts = pl.DataFrame({"a": [0, 4, 0], "b": [1.0, None, 0.0]})
>>> sparse_block(parts, specs).toarray().tolist()
[[0.0, 1.0], [2.0, 0.0], [0.0, 0.0]]
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp

from leanfit.errors import SchemaMismatch
from leanfit.schema.columns import Schema

MIN_COLUMNS = 16  # fewer sparse columns stay in the dense block, standardised
F32_MAX = float(np.finfo(np.float32).max)


def sparse_specs(schema: Schema, drop: tuple[str, ...] = ()) -> list[dict]:
    """``name`` and ``scale`` of each sparse feature of ``schema`` (none when fewer
    than ``MIN_COLUMNS``)."""
    cols = [c for c in schema.columns if c.sparse and c.feature and c.name not in drop]
    if len(cols) < MIN_COLUMNS:
        return []
    return [{"name": c.name, "scale": _scale(c.std)} for c in cols]


def _scale(std: float | None) -> float:
    return float(std) if std is not None and np.isfinite(std) and std > 0 else 1.0


def sparse_exprs(specs: list[dict], schema: pl.Schema) -> list[pl.Expr]:
    """The parsed sparse columns, as numbers (a column read as text is parsed)."""
    exprs = []
    for spec in specs:
        c, dtype = pl.col(spec["name"]), schema[spec["name"]]
        if dtype == pl.String:
            c = c.str.strip_chars().cast(pl.Float64)
        elif not (dtype.is_numeric() or dtype == pl.Boolean):
            raise SchemaMismatch(
                f"column '{spec['name']}' holds {dtype} values where numbers were expected."
            )
        exprs.append(c)
    return exprs


def sparse_block(parts: pl.DataFrame, specs: list[dict]) -> sp.csr_matrix:
    """The float32 CSR block of the sparse columns of ``parts`` (a frame holding them),
    built column by column: measured at 4,000 columns, 7x less CPU than numpy blocks of
    a few hundred columns, and no block's copy of the parsed chunk."""
    rows, values, ends = [], [], [0]
    for spec in specs:
        column = parts.get_column(spec["name"]).to_numpy()
        found = np.flatnonzero(column)
        value = column[found].astype(np.float64)
        present = ~np.isnan(value)  # a missing value is 0
        if not present.all():
            found, value = found[present], value[present]
        rows.append(found.astype(np.int32))
        values.append(np.clip(value / spec["scale"], -F32_MAX, F32_MAX).astype(np.float32))
        ends.append(ends[-1] + len(found))
    shape = (parts.height, len(specs))
    if not specs:
        return sp.csr_matrix(shape, dtype=np.float32)
    by_column = sp.csc_matrix((np.concatenate(values), np.concatenate(rows), ends), shape)
    return by_column.tocsr()  # sorted indices: the cache relies on them
