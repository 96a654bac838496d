"""A streaming generator of realistic classification data.

Rows are made and written chunk by chunk, so memory stays flat whatever the row
count. The same seed gives the same file, byte for byte.

The table mimics a customer data set: a unique ``customer_id``; twenty float
columns of very different scales (amounts, rates, sensor readings, counts that
are integers but have gaps, as pandas would load them as float64); small integer
columns; a boolean; a signup date; string categoricals of about 5, 100 and
100,000 levels (``levels``: another count for ``product``); and the ``label``, drawn from a model with linear effects,
categorical effects, an interaction and a threshold, so that boosted trees beat a
linear model.

With ``drift`` > 0 the population shifts (a new batch of data from a changed world,
for ``leanfit update``): the numeric columns of ``DRIFTED_NUMERIC`` move by ``drift``
of their spread, ``plan`` gains the levels of ``NEW_PLANS`` (with their own effects) on
a share of rows, and the linear effects move towards other ones (fully at ``drift`` 1).

>>> import pyarrow as pa
>>> first = next(generate_batches(rows=1_000, seed=1))
>>> first.num_rows, "label" in first.column_names
(1000, True)
>>> first.equals(next(generate_batches(rows=1_000, seed=1)))
True
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from leanfit.errors import ConfigError
from leanfit.io.outputs import checks_output, write_batches
from leanfit.progress import Progress

CHUNK_ROWS = 100_000
MODEL_SEED = 2026  # the hidden model behind the label: the same population for every seed
GENERATOR_BYTES = 150_000_000  # one chunk drawn, assembled and being written
SMALL_LEVELS = np.array(["basic", "plus", "pro", "team", "enterprise"])
MID_LEVELS = 100
BIG_LEVELS = 100_000
NEW_PLANS = np.array(["premium", "legacy"])  # levels of ``plan`` that only drift brings
DRIFTED_NUMERIC = ("monthly_fee", "score_a", "latency_ms")
DRIFTED_COLUMNS = (*DRIFTED_NUMERIC, "plan")
NEW_PLAN_SHARE = 0.25  # rows with a new plan at drift 1


@dataclass(frozen=True)
class FloatColumn:
    """How one float column is drawn: ``loc + scale * N(0, 1)`` or a skewed law."""

    name: str
    loc: float
    scale: float
    decimals: int | None  # None: full float64 precision
    missing: float = 0.0
    law: str = "normal"  # normal | abs (of a normal) | lognormal | uniform | poisson


FLOAT_COLUMNS = (
    FloatColumn("balance", 0.0, 1.0, 2, law="lognormal"),
    FloatColumn("monthly_fee", 40.0, 12.0, 2),
    FloatColumn("usage_rate", 0.0, 1.0, 3, missing=0.03, law="uniform"),
    FloatColumn("tenure_months", 48.0, 30.0, 0, law="abs"),
    FloatColumn("score_a", 0.0, 1.0, 4),
    FloatColumn("score_b", 0.0, 1.0, 4),
    FloatColumn("score_c", 0.0, 1.0, 4, missing=0.05),
    FloatColumn("latency_ms", 120.0, 35.0, 0, law="abs"),
    FloatColumn("temperature", 21.5, 3.0, 2),
    FloatColumn("ratio_small", 0.0, 1e-3, 6),
    FloatColumn("sensor", 0.0, 1.0, None),
    FloatColumn("discount", 0.1, 0.05, 3),
    FloatColumn("visits_30d", 3.0, 0.0, 0, missing=0.02, law="poisson"),
    FloatColumn("tickets_90d", 1.0, 0.0, 0, missing=0.04, law="poisson"),
    FloatColumn("spend_total", 0.0, 1.2, 2, law="lognormal"),
    FloatColumn("avg_session_min", 14.0, 5.0, 1),
    FloatColumn("page_views", 40.0, 0.0, 0, missing=0.01, law="poisson"),
    FloatColumn("nps", 7.0, 2.0, 0),
    FloatColumn("lat", 48.0, 4.0, 4),
    FloatColumn("lon", 8.0, 6.0, 4),
)


def _draw_float(
    spec: FloatColumn, rng: np.random.Generator, n: int, drift: float = 0.0
) -> pa.Array:
    if spec.law == "lognormal":
        values = np.exp(3.0 + spec.scale * rng.standard_normal(n))
    elif spec.law == "uniform":
        values = rng.random(n)
    elif spec.law == "poisson":
        values = rng.poisson(spec.loc, n).astype(np.float64)
    else:
        values = spec.loc + spec.scale * rng.standard_normal(n)
    if spec.law == "abs":
        values = np.abs(values)
    if drift and spec.name in DRIFTED_NUMERIC:
        values = values + drift * spec.scale
    if spec.decimals is not None:
        values = np.round(values, spec.decimals)
    mask = rng.random(n) < spec.missing if spec.missing else None
    return pa.array(values, mask=mask)


class _Effects:
    """The hidden model behind the label, fixed by the class count: files made with
    other seeds are new samples of the same population (a test set for a model)."""

    def __init__(self, classes: int, drift: float = 0.0):
        rng = np.random.default_rng([MODEL_SEED, classes])
        width = 1 if classes == 2 else classes
        self.linear = rng.normal(0.0, 0.6, (8, width))
        self.small = rng.normal(0.0, 0.8, (len(SMALL_LEVELS), width))
        self.mid = rng.normal(0.0, 0.5, (MID_LEVELS, width))
        self.interaction = rng.normal(0.0, 1.2, width)
        self.threshold = rng.normal(0.0, 1.0, width)
        self.big_scale = 0.6
        self.intercept = np.zeros(width)
        if drift:
            changed = np.random.default_rng([MODEL_SEED, classes, 1])
            weight = min(drift, 1.0)
            self.linear = (1 - weight) * self.linear + weight * changed.normal(0.0, 0.6, (8, width))
            new_plans = changed.normal(0.0, 1.5, (len(NEW_PLANS), width))
            self.small = np.vstack([self.small, new_plans])

    def logits(self, c: dict[str, np.ndarray]) -> np.ndarray:
        z = np.column_stack(
            [
                np.log(c["balance"]) - 3.0,
                (c["monthly_fee"] - 40.0) / 12.0,
                np.nan_to_num(c["usage_rate"], nan=0.5) - 0.5,
                (c["tenure_months"] - 48.0) / 30.0,
                c["score_a"],
                c["score_b"],
                (c["latency_ms"] - 120.0) / 35.0,
                c["flag"].astype(np.float64) - 0.5,
            ]
        )
        out = z @ self.linear + self.small[c["plan"]] + self.mid[c["region"]]
        out += np.outer(c["score_a"] * c["score_b"], self.interaction)
        out += np.outer((c["tenure_months"] < 24.0) & c["flag"], self.threshold * 2.0)
        big_effect = ((c["product"] * 2654435761) % 1000) / 1000.0 - 0.5
        out += self.big_scale * big_effect[:, None]
        return out + self.intercept


def _plan_shares(drift: float) -> tuple[int, list[float]]:
    """How many plans there are and the share of each (new plans only with drift)."""
    shares = [0.4, 0.25, 0.2, 0.1, 0.05]
    if not drift:
        return len(SMALL_LEVELS), shares
    new = NEW_PLAN_SHARE * min(drift, 1.0)
    shares = [s * (1 - new) for s in shares] + [new / len(NEW_PLANS)] * len(NEW_PLANS)
    return len(shares), shares


def _draw_features(
    rng: np.random.Generator, n: int, start: int, drift: float = 0.0, levels: int = BIG_LEVELS
) -> dict[str, np.ndarray]:
    plans, shares = _plan_shares(drift)
    return {
        "customer_id": np.arange(start, start + n, dtype=np.int64) * 7 + 1_000_000,
        "flag": rng.random(n) < 0.35,
        "plan": rng.choice(plans, n, p=shares),
        "region": np.minimum((rng.pareto(1.2, n) * 8).astype(np.int64), MID_LEVELS - 1),
        "product": np.minimum((rng.pareto(0.7, n) * 50).astype(np.int64), levels - 1),
        "age": rng.integers(18, 90, n, dtype=np.int64),
        "household": rng.integers(1, 8, n, dtype=np.int64),
        "zip_offset": rng.integers(-500, 500, n, dtype=np.int64),
        "logins": rng.poisson(300, n).astype(np.int64),
        "signup_day": rng.integers(0, 3650, n, dtype=np.int64),
    }


def _assemble(raw: dict, floats: dict, label: np.ndarray) -> pa.RecordBatch:
    mid_names = pa.array([f"region_{i:03d}" for i in range(MID_LEVELS)])
    columns = {"customer_id": pa.array(raw["customer_id"])}
    columns.update(floats)
    for name in ("age", "household", "zip_offset", "logins"):
        columns[name] = pa.array(raw[name])
    columns["is_member"] = pa.array(raw["flag"])
    columns["signup_date"] = pa.array(raw["signup_day"].astype("datetime64[D]") + 14975)
    columns["plan"] = pa.array(np.concatenate([SMALL_LEVELS, NEW_PLANS])[raw["plan"]])
    columns["region"] = mid_names.take(pa.array(raw["region"]))
    columns["product"] = pa.array(np.char.add("p", raw["product"].astype(str)))
    columns["label"] = pa.array(label)
    return pa.RecordBatch.from_pydict(columns)


def _chunk(
    effects: _Effects,
    seed: int,
    index: int,
    n: int,
    classes: int,
    drift: float = 0.0,
    levels: int = BIG_LEVELS,
) -> pa.RecordBatch:
    rng = np.random.default_rng([seed, index])
    raw = _draw_features(rng, n, index * CHUNK_ROWS, drift, levels)
    floats = {spec.name: _draw_float(spec, rng, n, drift) for spec in FLOAT_COLUMNS}
    numeric = {name: arr.to_numpy(zero_copy_only=False) for name, arr in floats.items()}
    logits = effects.logits({**numeric, **raw})
    if classes == 2:
        label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logits[:, 0]))).astype(np.int64)
    else:
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        label = (rng.random((n, 1)) > probs.cumsum(axis=1)).sum(axis=1).astype(np.int64)
    return _assemble(raw, floats, label)


def _calibrate(effects: _Effects, positive_rate: float) -> None:
    """Set the intercept so that about ``positive_rate`` of rows are positive."""
    rng = np.random.default_rng([MODEL_SEED, 104729])
    n = 50_000
    raw = _draw_features(rng, n, 0)
    floats = {s.name: _draw_float(s, rng, n).to_numpy(zero_copy_only=False) for s in FLOAT_COLUMNS}
    base = effects.logits({**floats, **raw})[:, 0]
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        rate = np.mean(1.0 / (1.0 + np.exp(-(base + mid))))
        lo, hi = (mid, hi) if rate < positive_rate else (lo, mid)
    effects.intercept = np.array([(lo + hi) / 2])


def generate_batches(
    *,
    rows: int,
    seed: int = 0,
    classes: int = 2,
    positive_rate: float = 0.3,
    drift: float = 0.0,
    levels: int = BIG_LEVELS,
) -> Iterator[pa.RecordBatch]:
    """Yield the rows as Arrow record batches of at most ``CHUNK_ROWS`` rows (``drift``:
    a shifted population, see the module docstring; the intercept stays the one of the
    unshifted population, so the label balance moves too; ``levels``: the most levels
    ``product`` takes, its rarest ones pooled into the last).

    Memory: one chunk at a time, about 60 MB for 100,000 rows.
    """
    if rows < 1:
        raise ConfigError(f"make-data: --rows must be at least 1. Got {rows}.")
    if classes < 2:
        raise ConfigError(f"make-data: --classes must be at least 2. Got {classes}.")
    if not 0.0 < positive_rate < 1.0:
        raise ConfigError(f"make-data: --positive-rate must be in (0, 1). Got {positive_rate}.")
    if not 0.0 <= drift <= 10.0:
        raise ConfigError(f"make-data: --drift must be in [0, 10]. Got {drift}.")
    if levels < 2:
        raise ConfigError(f"make-data: --levels must be at least 2. Got {levels}.")
    effects = _Effects(classes)
    if classes == 2:
        _calibrate(effects, positive_rate)
    if drift:
        intercept, effects = effects.intercept, _Effects(classes, drift)
        effects.intercept = intercept
    for index, start in enumerate(range(0, rows, CHUNK_ROWS)):
        n = min(CHUNK_ROWS, rows - start)
        yield _chunk(effects, seed, index, n, classes, drift, levels)


@checks_output("out", label="OUT")
def write_data(
    out: str | os.PathLike,
    *,
    rows: int,
    seed: int = 0,
    classes: int = 2,
    positive_rate: float = 0.3,
    fmt: str | None = None,
    progress: Progress | None = None,
    drift: float = 0.0,
    levels: int = BIG_LEVELS,
) -> dict:
    """Write generated rows to ``out`` (CSV, CSV.gz or Parquet); return a summary.

    The file appears under its name only when complete; ``progress`` (if given) counts
    the rows written.
    """
    progress = progress or Progress()
    progress.plan(rows)
    batches = generate_batches(
        rows=rows,
        seed=seed,
        classes=classes,
        positive_rate=positive_rate,
        drift=drift,
        levels=levels,
    )
    return write_batches(out, batches, fmt, progress.advance)


POPULAR_MERCHANTS = 5_000
NEW_MERCHANT_SHARE = 0.1


@checks_output("out", label="OUT")
def write_many_levels(out: str | os.PathLike, *, rows: int, seed: int = 0) -> dict:
    """Write a CSV whose text columns have many levels, for the inspect pass's memory.

    ``user_id`` is unique; ``merchant`` is one of 5,000 popular levels (Zipf) on 90% of
    the rows and a new level on each of the rest, so its levels grow with the rows;
    ``segment`` has 1,000 levels; with eight floats and a binary ``label``. Text values
    are longer than 12 bytes (Polars keeps those outside its string views). Written
    chunk by chunk, like :func:`write_data`.
    """
    chunks = (
        _levels_chunk(np.random.default_rng([seed, i]), start, min(CHUNK_ROWS, rows - start))
        for i, start in enumerate(range(0, rows, CHUNK_ROWS))
    )
    return write_batches(out, chunks, "csv", lambda rows: None)


def _levels_chunk(rng: np.random.Generator, start: int, n: int) -> pa.RecordBatch:
    import polars as pl

    x = rng.normal(size=(n, 8)).round(4)
    popular = np.minimum(rng.zipf(1.2, n), POPULAR_MERCHANTS) - 1
    label = x[:, 0] + 0.5 * (popular % 7 == 0) + rng.logistic(size=n) > 1.0
    raw = pl.DataFrame(
        {f"x{i}": x[:, i] for i in range(8)}
        | {"row": np.arange(start, start + n), "popular": popular}
        | {"new": rng.random(n) < NEW_MERCHANT_SHARE, "segment": rng.integers(0, 1_000, n)}
    )
    row = pl.col("row").cast(pl.String).str.zfill(10)
    frame = raw.select(
        *(f"x{i}" for i in range(8)),
        user_id=pl.format("user-{}", row),
        merchant=pl.when("new")
        .then(pl.format("merchant-new-{}", row))
        .otherwise(pl.format("merchant-{}", pl.col("popular"))),
        segment=pl.format("segment-{}-of-many", pl.col("segment")),
        label=pl.Series(label.astype(np.int8)),
    )
    return frame.to_arrow().to_batches()[0]
