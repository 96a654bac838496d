"""A streaming generator of wide, mostly-zero classification data.

Thousands of count columns (``n00000``, ``n00001``, ...) of which a share
``density`` is non-zero in each row (small counts 1..3), two dense float columns
(``x0``, ``x1``) and a binary ``label`` drawn from a hidden linear model of all of
them. Rows are made and written chunk by chunk: memory stays flat whatever the row
count, and grows with the columns only by one chunk's worth of cells. The same
seed gives the same file.

>>> first = next(sparse_batches(rows=500, columns=200, density=0.05, seed=1))
>>> first.num_rows, first.num_columns
(500, 203)
>>> counts = first.select([f"n{i:05d}" for i in range(200)])
>>> round(float(sum(c.to_numpy().astype(bool).sum() for c in counts.columns)) / (500 * 200), 2)
0.05
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from leanfit.errors import ConfigError
from leanfit.io.outputs import checks_output, write_batches
from leanfit.progress import Progress

CELLS_PER_CHUNK = 10_000_000  # rows per chunk x columns: ~10 MB of counts
MODEL_SEED = 2027
DENSE = ("x0", "x1")
MAX_COUNT = 3


def column_names(columns: int) -> list[str]:
    return [f"n{i:05d}" for i in range(columns)]


def sparse_batches(
    *, rows: int, columns: int, density: float = 0.01, seed: int = 0
) -> Iterator[pa.RecordBatch]:
    """Yield the rows as Arrow record batches of about ``CELLS_PER_CHUNK`` cells."""
    check_shape(rows, columns, density)
    model = np.random.default_rng([MODEL_SEED, columns])
    # effects scaled so the logit's spread stays near 2 whatever the width and density
    mean_square = np.mean(np.arange(1, MAX_COUNT + 1) ** 2)
    weights = model.normal(0.0, 2.0 / np.sqrt(columns * density * mean_square + 1), columns)
    dense_weights = model.normal(0.0, 0.8, len(DENSE))
    chunk = max(1, CELLS_PER_CHUNK // columns)
    names = column_names(columns)
    for index, start in enumerate(range(0, rows, chunk)):
        rng = np.random.default_rng([seed, index])
        n = min(chunk, rows - start)
        counts = np.zeros((n, columns), dtype=np.uint8)
        hits = rng.random((n, columns), dtype=np.float32) < density
        counts[hits] = rng.integers(1, MAX_COUNT + 1, int(hits.sum()), dtype=np.uint8)
        dense = rng.standard_normal((n, len(DENSE)))
        expected = density * (MAX_COUNT + 1) / 2 * weights.sum()
        logit = counts @ weights + dense @ dense_weights - expected
        label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
        arrays = [pa.array(np.round(dense[:, j], 4)) for j in range(len(DENSE))]
        arrays += [pa.array(counts[:, j]) for j in range(columns)]
        yield pa.RecordBatch.from_arrays([*arrays, pa.array(label)], [*DENSE, *names, "label"])


def check_shape(rows: int, columns: int, density: float) -> None:
    if rows < 1:
        raise ConfigError(f"make-data: --rows must be at least 1. Got {rows}.")
    if columns < 1:
        raise ConfigError(f"make-data: --sparse-columns must be at least 1. Got {columns}.")
    if not 0.0 < density <= 1.0:
        raise ConfigError(f"make-data: --density must be in (0, 1]. Got {density}.")


@checks_output("out", label="OUT")
def write_sparse_data(
    out: str | os.PathLike,
    *,
    rows: int,
    columns: int,
    density: float = 0.01,
    seed: int = 0,
    fmt: str | None = None,
    progress: Progress | None = None,
) -> dict:
    """Write generated wide, mostly-zero rows to ``out`` (CSV, CSV.gz or Parquet);
    return a summary. The file appears under its name only when complete."""
    progress = progress or Progress()
    progress.plan(rows)
    batches = sparse_batches(rows=rows, columns=columns, density=density, seed=seed)
    return write_batches(out, batches, fmt, progress.advance)
