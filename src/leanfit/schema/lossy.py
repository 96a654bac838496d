"""float16 storage on request (``--lossy-floats float16``): measured, never assumed.

The inspect pass measures, over every value of each float column, what storing it as
float16 would do: the largest absolute and relative error of the round trip as leanfit
stores it (float64 -> float32 -> float16 -> float, Polars' casts, as numpy's
``x.astype(np.float32).astype(np.float16)``), and the count of values beyond float16's
range (|x| > 65504). These merge across pieces (max, max, sum), so the Dask engine
measures the same. The relative error counts every non-zero value, those float16 holds
only as subnormals (below 6.1e-5) or flushes to 0 too, so their precision loss
disqualifies a column exactly when it passes the tolerance.

:func:`choose_float16` then stores a float column as float16 where no value is beyond the
range and the relative error is within the tolerance, and records the measured error in
the schema (``float16_max_abs_error``, ``float16_max_rel_error``,
``float16_beyond_range``) with the tolerance (``lossy_tolerance``), so the choice can be
made again from a saved schema.json with another tolerance, without a pass.

>>> import polars as pl
>>> x = pl.DataFrame({"x": [0.5, 1.1, -3.0, 1e5, None]})
>>> abs_error, rel_error, beyond = x.select(error_exprs("x", pl.col("x"))).row(0)
>>> f"{abs_error:.3g} {rel_error:.3g} {beyond}"  # 1.1 is 1.0996 as float16; 1e5 is beyond
'0.000391 0.000355 1'
"""

from __future__ import annotations

import copy

import polars as pl

from leanfit.errors import ConfigError
from leanfit.schema.columns import Schema

FLOAT16_MAX = 65504.0
KEYS = ("f16_abs", "f16_rel", "f16_beyond")
NOTE = "as float16: "


def tolerance(lossy) -> float | None:
    """The relative error ``lossy`` (LossyOptions, checked; or None) allows; None: not
    asked for."""
    if lossy is None:
        return None
    lossy.check()
    if lossy.lossy_floats is None:
        return None
    return lossy.lossy_tolerance


def rounded(c: pl.Expr) -> pl.Expr:
    """The value as float16 storage gives it back (as float64)."""
    return c.cast(pl.Float32).cast(pl.Float16).cast(pl.Float64)


def error_exprs(name: str, c: pl.Expr) -> list[pl.Expr]:
    """The float16 statistics of one float column (NaN already made null)."""
    c = c.cast(pl.Float64)
    inside = c.abs() <= FLOAT16_MAX
    error = (c - rounded(c)).abs()
    return [
        error.filter(inside).max().alias(f"{name}:f16_abs"),
        (error / c.abs()).filter(inside & (c != 0)).max().alias(f"{name}:f16_rel"),
        (~inside).sum().alias(f"{name}:f16_beyond"),
    ]


def merge_errors(name: str, each: list[dict]) -> dict:
    """The pieces' float16 statistics of ``name``, merged (max, max, sum)."""
    out = {}
    for key in KEYS[:2]:
        found = [s[f"{name}:{key}"] for s in each if s[f"{name}:{key}"] is not None]
        out[f"{name}:{key}"] = max(found) if found else None
    out[f"{name}:f16_beyond"] = sum(s[f"{name}:f16_beyond"] or 0 for s in each)
    return out


def record_errors(schema: Schema, stats: dict, tolerance: float) -> None:
    """Write the measured errors of merged ``stats`` into the schema's float columns, then
    choose their storage with ``tolerance``."""
    for col in schema.columns:
        if col.kind == "float" and f"{col.name}:f16_abs" in stats:
            col.float16_max_abs_error = stats[f"{col.name}:f16_abs"] or 0.0
            col.float16_max_rel_error = stats[f"{col.name}:f16_rel"] or 0.0
            col.float16_beyond_range = int(stats[f"{col.name}:f16_beyond"])
    choose_float16(schema, tolerance)


def measured(col) -> bool:
    return col.float16_max_rel_error is not None


def choose_float16(schema: Schema, tolerance: float) -> None:
    """float16 for every measured float column within ``tolerance``; the exact storage
    (float32 where the column has few decimals, else float64) for the others, with a
    note saying why."""
    schema.lossy_tolerance = tolerance
    for col in filter(measured, schema.columns):
        if col.float16_beyond_range:
            col.storage = _exact_storage(col)
            why = f"{col.float16_beyond_range:,} values beyond its range (±{FLOAT16_MAX:.0f})"
        elif col.float16_max_rel_error > tolerance:
            col.storage = _exact_storage(col)
            why = f"relative error up to {col.float16_max_rel_error:.3g}, above {tolerance:g}"
        else:
            col.storage = "float16"
            why = (
                f"relative error at most {col.float16_max_rel_error:.3g} (absolute "
                f"{col.float16_max_abs_error:.3g}), within {tolerance:g}"
            )
        _note(col, f"{why}: stored as {col.storage}")


def _note(col, text: str) -> None:
    """Set the float16 part of the column's note, keeping what it said before."""
    kept = (col.note or "").split(NOTE)[0].rstrip("; ")
    col.note = f"{kept}; {NOTE}{text}" if kept else NOTE + text


def _exact_storage(col) -> str:
    """The storage the exact rules chose: float32 when the column has few decimals."""
    return "float32" if col.decimals is not None else "float64"


def apply_lossy(schema: Schema, lossy) -> Schema:
    """A copy of ``schema`` with the choice of ``lossy`` (LossyOptions) made again from its
    recorded errors; without ``--lossy-floats``, ``schema`` as it was made (its choice,
    if any, was asked for when it was)."""
    if tolerance(lossy) is None:
        return schema
    if schema.lossy_tolerance is None:
        raise ConfigError(
            "--lossy-floats float16: this schema was made without it, so its float columns' "
            "error as float16 was not measured. Make it again with leanfit inspect "
            "--lossy-floats float16, or leave out --schema."
        )
    schema = copy.deepcopy(schema)
    choose_float16(schema, lossy.lossy_tolerance)
    return schema


def unrounded_schema(schema: Schema) -> Schema | None:
    """A copy of ``schema`` whose float16 columns have their exact storage back (None:
    it has none): what reading them without ``--lossy-floats`` gives."""
    if not any(c.storage == "float16" and measured(c) for c in schema.columns):
        return None
    exact = copy.deepcopy(schema)
    for col in exact.columns:
        if col.storage == "float16" and measured(col):
            col.storage = _exact_storage(col)
    return exact


def lossy_report(schema: Schema) -> dict | None:
    """The ``lossy`` summary key: the tolerance and each measured column's storage and
    error (None when the schema was made without ``--lossy-floats``)."""
    if schema.lossy_tolerance is None:
        return None
    columns = {
        col.name: {
            "storage": col.storage,
            "max_abs_error": col.float16_max_abs_error,
            "max_rel_error": col.float16_max_rel_error,
            "beyond_range": col.float16_beyond_range,
        }
        for col in filter(measured, schema.columns)
    }
    float16 = [name for name, c in columns.items() if c["storage"] == "float16"]
    return {
        "floats": "float16",
        "tolerance": schema.lossy_tolerance,
        "float16": float16,
        "columns": columns,
    }


def lossy_key(schema: Schema) -> dict:
    """``{"lossy": report}`` for a summary, or nothing without ``--lossy-floats``."""
    report = lossy_report(schema)
    return {} if report is None else {"lossy": report}
