"""Rows as boosted trees read them: one float32 column per feature, no one-hot.

Numbers stay numbers (nulls as ``MISSING``), booleans are 0/1, dates days since
1970 and text categoricals their index in the schema's category list (declared
categorical to XGBoost, so trees split on sets of levels; past ``RANK_ABOVE`` levels
a number: the frequency rank). A missing value becomes
``MISSING`` (below every number) or, for a category, one more level: XGBoost's
quantized index of a matrix without gaps takes 1 byte per cell instead of 4 (its
CSR form for a matrix with any NaN), and trees build faster. Training and
prediction share :func:`feature_matrix`, so a value has the same code in both.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
import polars as pl

from leanfit.errors import ConfigError, SchemaMismatch
from leanfit.schema.columns import Schema

KINDS = {"integer": "number", "float": "number", "boolean": "bool", "datetime": "date"}
FLOAT32_MAX = float(np.finfo(np.float32).max)
MISSING = -1e30  # a missing number; finite (XGBoost refuses inf), below any real value
# Native categorical splits cost CPU per node growing with the levels, whatever the rows
# (measured, 300k rows, 100 rounds of depth 6: 4,786 levels +27% over the rank, 12,981
# levels +55%); up to 2**16 levels a quantized cell stays 2 bytes.
RANK_ABOVE = 16_384


@dataclass(frozen=True)
class Feature:
    """One model input; ``kind`` is number, bool, date, category or rank (the code of a
    high-cardinality category, ranked by frequency, used as a number); ``float16``: a
    number stored as float16 (``--lossy-floats``), read so wherever it comes from."""

    name: str
    kind: str
    categories: tuple[str, ...] | None = None
    float16: bool = False


def boost_features(schema: Schema, drop: tuple[str, ...] = ()) -> tuple[list[Feature], list[str]]:
    """The schema's features as model inputs, and a note per text column left out."""
    unknown = sorted(set(drop) - set(schema.names()))
    if unknown:
        raise ConfigError(f"--drop names columns not in the data: {unknown}.")
    features, notes = [], []
    for col in schema.features:
        if col.name in drop:
            continue
        if col.kind in KINDS:
            features.append(Feature(col.name, KINDS[col.kind], float16=col.storage == "float16"))
        elif col.categories is not None and col.storage.startswith("dictionary"):
            features.append(_text_feature(col, notes))
        else:
            notes.append(f"{col.name}: {col.kind} text without a category list; dropped")
    return features, notes


def _text_feature(col, notes: list[str]) -> Feature:
    """A text column with a category list: native categories (XGBoost splits on sets of
    levels), or with more than ``RANK_ABOVE`` levels the frequency rank as a number
    (splits on one threshold are far cheaper than searching partitions of that many
    levels)."""
    levels = len(col.categories)
    if levels <= RANK_ABOVE:
        return Feature(col.name, "category", tuple(col.categories))
    notes.append(
        f"{col.name}: {levels:,} levels (more than {RANK_ABOVE:,}) enter as their "
        "frequency rank, a number"
    )
    return Feature(col.name, "rank", tuple(col.categories))


def _feature_expr(feature: Feature, dtype: pl.DataType, dense: bool) -> pl.Expr:
    """``feature`` as float32; where missing (or an unseen category) NaN, or with
    ``dense`` ``MISSING`` (a category: one more level)."""
    c = pl.col(feature.name)
    if feature.kind in ("category", "rank"):
        enum = _enum(feature.categories or ())
        if dtype != enum:
            c = c.cast(pl.String).cast(enum, strict=False)
        c = c.to_physical()
    elif feature.kind == "date":
        c = c.str.to_datetime(strict=False) if dtype == pl.String else c
        c = c.dt.epoch("s").cast(pl.Float64) / 86_400.0
    elif dtype == pl.String:
        c = c.str.strip_chars()
    # beyond float32's range a number keeps its order at the range's ends
    c = c.cast(pl.Float64, strict=False).clip(-FLOAT32_MAX, FLOAT32_MAX).cast(pl.Float32)
    if feature.float16:
        c = c.cast(pl.Float16).cast(pl.Float32)
    if not dense:
        return c.fill_null(float("nan"))
    fill = float(len(feature.categories or ())) if feature.kind == "category" else MISSING
    return c.fill_nan(fill).fill_null(fill)


@functools.lru_cache(maxsize=64)
def _enum(categories: tuple[str, ...]) -> pl.Enum:
    """The Enum of a category list, built once (building it costs more than using it)."""
    return pl.Enum(list(categories))


def _accepts(kind: str, dtype: pl.DataType) -> bool:
    """Whether a column of ``dtype`` can feed a feature of ``kind`` (text is parsed)."""
    if kind in ("category", "rank") or dtype in (pl.String, pl.Null):
        return True
    if kind == "date":
        return dtype.is_temporal()
    return dtype.is_numeric() or dtype == pl.Boolean


def feature_matrix(
    frame: pl.DataFrame, features: list[Feature], *, dense: bool = True
) -> np.ndarray:
    """The C-contiguous float32 block ``(rows, len(features))``; columns matched by name.

    Missing values (and unseen categories) become ``MISSING``, or for a category
    its number of levels; with ``dense=False`` (models saved before) NaN.
    Raises :class:`SchemaMismatch` naming a feature column that is missing or of a
    type that cannot feed it (text is parsed).

    >>> f = [Feature("x", "number"), Feature("c", "category", ("a", "b"))]
    >>> frame = pl.DataFrame({"c": ["b", "zz"], "x": [1, None]})
    >>> feature_matrix(frame, f).tolist()
    [[1.0, 1.0], [-1.0000000150474662e+30, 2.0]]
    >>> feature_matrix(frame, f, dense=False).tolist()
    [[1.0, 1.0], [nan, nan]]
    """
    missing = [f.name for f in features if f.name not in frame.columns]
    if missing:
        raise SchemaMismatch(f"feature columns {missing} are missing from the data.")
    types = frame.schema
    for f in features:
        if not _accepts(f.kind, types[f.name]):
            raise SchemaMismatch(
                f"column '{f.name}' holds {types[f.name]}; the model needs {f.kind}."
            )
    exprs = [_feature_expr(f, types[f.name], dense) for f in features]
    return np.ascontiguousarray(frame.select(exprs).to_numpy(order="c"), dtype=np.float32)


def xgb_names(features: list[Feature]) -> list[str]:
    """Names XGBoost accepts (no ``[``, ``]``, ``<``); ``f0, f1, ...`` on a clash."""
    names = [re.sub(r"[\[\]<]", "_", f.name) for f in features]
    return names if len(set(names)) == len(names) else [f"f{i}" for i in range(len(names))]
