"""The cost model: what a run holds in memory, in bytes, as measured on this machine.

Every planner asks here: the parser's buffers, the bytes one more row per chunk
costs across every copy alive at once, the model's coefficients, XGBoost's matrix.
The functions take descriptions (a schema's columns, an encoder's widths, tree
features) and return bytes; :meth:`~leanfit.memory.Monitor.plan` turns them into
rows per chunk under the limit.

>>> from leanfit.schema import Column
>>> age = Column("age", "integer", "uint8", "Int64", count=10, nulls=0)
>>> bytes_per_row(age), bytes_per_row(age, pandas_default=True)
(1.0, 8.0)
"""

from __future__ import annotations

import math
from typing import Any

from leanfit.metrics import DEFAULT_BINS

# Measured here (bench/memory.py): what Polars' streaming CSV reader holds with
# 4 MiB read chunks on 2 threads, and how many copies of a chunk are alive at once
# while it is parsed (reader queue, frame, slices) and encoded (block, train/holdout
# selection, scikit-learn's float64 copy).
PARSER_BYTES = 60_000_000  # training and prediction read with 1 MiB chunks (measured ~45 MB)
INSPECT_BYTES = 210_000_000  # the inspect query reads with 4 MiB chunks
# A text level counted by the inspect pass (schema.counting): its hash, count and slot,
# their copies while levels are inserted, and the value's 16-byte view (its text
# besides, beyond 12 bytes); measured 47 to 77 bytes a level here at 800k levels.
LEVEL_BYTES = 64
COUNTING_SHARE = 0.05  # of the room left: exact counts stop there (then a summary)
MIN_LEVEL_CAP, MAX_LEVEL_CAP = 10_000, 1 << 22
PARSED_COPIES = 5
ENCODED_COPIES = 8
# A run also holds memory per column, whatever the rows: Polars' CSV reader keeps
# buffers per column, and the schema, encoder and expressions an entry each (measured,
# 2 threads: 11 KB a column over 10,000 and 50,000 columns with 1 MiB reads; the
# inspect query's 4 MiB reads, 30 KB). A parsed chunk holds at most CHUNK_CELLS cells
# and never more rows than the data, so its rows shrink as the columns grow (data of
# up to 32 columns keeps 131,072 rows).
PARSER_COLUMN_BYTES = 11_000
ENCODED_COLUMN_BYTES = 100_000  # see encoding_bytes
INSPECT_COLUMN_BYTES = 30_000
CHUNK_CELLS = 1 << 22

_WIDTHS = {"bool": 1 / 8, "date32": 4, "timestamp[us]": 8, "float16": 2, "float32": 4, "float64": 8}


def bytes_per_row(col: Any, *, pandas_default: bool = False) -> float:
    """In-memory bytes per row of a schema column: with its chosen storage, or as
    pandas loads a CSV by default."""
    text = (col.mean_bytes or 0.0) + 8
    if pandas_default:
        if col.kind in ("categorical", "high_cardinality") or col.read_as == "Date":
            return text
        return 1.0 if col.kind == "boolean" and not col.nulls else 8.0
    validity = 1 / 8 if col.nulls else 0.0
    if col.storage == "string":
        return text + validity
    if col.storage.startswith("dictionary"):
        return _int_width(col.storage[11:-1]) + validity
    return _WIDTHS.get(col.storage) or _int_width(col.storage) + validity


def _int_width(name: str) -> int:
    return int(name.removeprefix("u").removeprefix("int")) // 8


def parser_bytes(columns: int, *, inspect: bool = False) -> int:
    """The parser's buffers for a file of ``columns`` columns, whatever the rows."""
    if inspect:
        return INSPECT_BYTES + columns * INSPECT_COLUMN_BYTES
    return PARSER_BYTES + columns * PARSER_COLUMN_BYTES


def chunk_rows_cap(schema: Any, rows: int | None = None) -> int:
    """The most rows a parsed chunk of the schema's columns may have (``CHUNK_CELLS``),
    and never more than the data's ``rows`` when known."""
    cap = CHUNK_CELLS // max(len(schema.columns), 1)
    return max(1, min(cap, rows) if rows else cap)


def nonzeros_per_row(schema: Any, names: list[str]) -> float:
    """The mean non-zero values of a row over the columns ``names`` (from their zeros)."""
    wanted = set(names)
    found = sum(c.count - (c.zeros or 0) for c in schema.columns if c.name in wanted)
    return found / max(schema.rows, 1)


def parsed_row_bytes(schema: Any) -> float:
    """Bytes of one parsed row (every column, as the parser holds it)."""
    return sum(bytes_per_row(c, pandas_default=True) for c in schema.columns)


# Parquet (measured here, bench/parquet.py): Polars decodes a whole row group at a
# time (prefetching one: leanfit/_env.py) and passes it on in morsels of at most
# MORSEL_ROWS; when the consumer is slower than the reader (training), about
# MORSELS_WAITING of them wait in its channels. Trained from files of 131,072- and
# 1,000,000-row groups the 2M-row demo data held 167 and 318 MB more than from
# 8,192-row groups (planned: 163 and 388). leanfit shrink sizes groups to GROUP_BYTES
# as parsed (8,192 rows of the demo data), for ~10% more reading CPU than 32,768.
GROUP_BYTES = 2 << 20
MORSEL_ROWS, MORSELS_WAITING = 100_000, 5
MIN_GROUP_ROWS, MAX_GROUP_ROWS = 1_024, 131_072
# pandas: a level of a categorical costs its text and about this much more (index,
# hash table); plain text costs its bytes and an 8-byte offset per row.
CATEGORY_BYTES, TEXT_OFFSET_BYTES = 40, 8


def group_rows(schema: Any) -> int:
    """Rows per Parquet row group so that a group, as parsed, holds about GROUP_BYTES
    (a power of two).

    >>> from leanfit.schema import Column, Schema
    >>> wide = Schema([], 0, [Column(f"x{i}", "float", "float32", "Float64", 1, 0) for i in range(64)])
    >>> group_rows(wide), group_rows(Schema([], 0, wide.columns[:2]))
    (4096, 131072)
    """
    rows = GROUP_BYTES / max(parsed_row_bytes(schema), 1.0)
    return min(max(1 << round(math.log2(rows)), MIN_GROUP_ROWS), MAX_GROUP_ROWS)


def reader_bytes(schema: Any, group_rows: int | None = None) -> int:
    """What the reader holds whatever the chunk size: the CSV parser's buffers (they
    grow with the columns), or for Parquet (``group_rows``: its largest row group) a
    decoded group and the morsels waiting after it."""
    parser = parser_bytes(len(schema.columns))
    if not group_rows:
        return parser
    rows = group_rows + MORSELS_WAITING * min(group_rows, MORSEL_ROWS)
    return max(parser, int(rows * parsed_row_bytes(schema)))


def dictionary_pays(col: Any, rows: int) -> bool:
    """Whether a text column takes less memory as a dictionary (codes, and each level
    once) than as plain text, as pandas holds either.

    >>> from leanfit.schema import Column
    >>> plan = Column("plan", "categorical", "dictionary<uint8>", "String", 10, 0,
    ...               distinct=5, mean_bytes=4.5)
    >>> dictionary_pays(plan, 1_000), dictionary_pays(plan, 5)
    (True, False)
    """
    distinct, text = col.distinct or 0, col.mean_bytes or 0.0
    code = 1 if distinct <= 127 else 2 if distinct <= 32_767 else 4
    as_dictionary = rows * code + distinct * (text + CATEGORY_BYTES)
    return as_dictionary < rows * (text + TEXT_OFFSET_BYTES)


def chunk_row_bytes(schema: Any, encoder: Any, model: str = "") -> float:
    """Memory one more row per chunk costs, over every copy alive at once.

    The exact logistic holds a few more (two cached blocks in flight and their float64
    copies); measured at 2M rows: 343 MB peak under a 400 MB limit. A CSR block costs 8
    bytes (value and index) per non-zero of its sparse number columns.
    """
    width = encoder.n_dense + len(encoder.categorical) if encoder.sparse else encoder.n_features
    encoded = width * (8 if encoder.sparse else 4)
    sparse = [s["name"] for s in getattr(encoder, "sparse_numeric", ())]
    encoded += 8 * nonzeros_per_row(schema, sparse) if sparse else 0
    copies = ENCODED_COPIES + (4 if model == "logistic" else 0)
    return PARSED_COPIES * parsed_row_bytes(schema) + copies * encoded


def tree_row_bytes(schema: Any, n_features: int) -> float:
    """Memory one more row per chunk costs while the booster's blocks are made."""
    return PARSED_COPIES * parsed_row_bytes(schema) + ENCODED_COPIES * 4 * n_features


LBFGS_MEMORY = 10  # the corrections SciPy's L-BFGS-B keeps (its ``maxcor``)
MODEL_SHARE = 0.25  # the most of the memory limit a linear model's coefficients may take


def coef_bytes(n_classes: int, model: str) -> int:
    """What one more encoded column costs a model: its coefficients (per class; the
    MLP's 64 hidden units) and their working copies (SGD's average, gradients), and the
    exact logistic's L-BFGS-B history and workspace (``2 m + 5`` vectors of them)."""
    per_column = 64 if model == "mlp" else n_classes if model == "nb" else max(n_classes - 1, 1)
    copies = 6 + (2 * LBFGS_MEMORY + 5 if model == "logistic" else 0)
    return 8 * per_column * copies


def level_cap(room: float, columns: int, value_bytes: float) -> int:
    """Levels each of ``columns`` counted columns may hold exactly when counting gets
    ``COUNTING_SHARE`` of ``room`` bytes and a value takes ``value_bytes``.

    >>> level_cap(600e6, 1, 6.0), level_cap(100e6, 4, 30.0), level_cap(1e6, 1, 6.0)
    (468750, 13297, 10000)
    """
    share = COUNTING_SHARE * max(room, 0.0) / max(columns, 1)
    text = value_bytes if value_bytes > 12 else 0.0  # Polars keeps up to 12 inside the view
    levels = int(share // (LEVEL_BYTES + text))
    return min(max(levels, MIN_LEVEL_CAP), MAX_LEVEL_CAP)


def encoding_bytes(encoder: Any) -> int:
    """What the training stage holds per dense number column, whatever the rows: its
    Polars expressions (measured: 93 KB a column over 10,000 and 30,000 columns of 50
    rows). Thousands of them are planned so, not met past the limit."""
    return len(encoder.numeric) * ENCODED_COLUMN_BYTES


def model_bytes(n_features: int, n_classes: int, model: str) -> int:
    """Coefficients and their working copies (and the MLP's hidden layer), and the
    metrics' score histograms."""
    return n_features * coef_bytes(n_classes, model) + 2 * DEFAULT_BINS * 8 * n_classes


def max_slots(limit: int, n_classes: int, model: str) -> int:
    """The widest encoding whose model takes at most ``MODEL_SHARE`` of ``limit``: text
    levels past it share hashed slots (:class:`~leanfit.encode.encoder.Encoder`).

    >>> max_slots(1_000_000_000, 2, "logistic")  # 248 bytes a column
    1008064
    """
    return int(MODEL_SHARE * limit) // coef_bytes(n_classes, model)


# Measured here (XGBoost 3.2, hist, 2 threads, 4M and 8M rows of 29 features), in
# bytes per row beyond the quantized cells: a QuantileDMatrix holds each cell twice
# (row-wise index and column matrix) plus 8 (row pointers) and about 12 (labels,
# cuts, buffers); training adds about 36 per training row (gradients, prediction
# cache, row partitions). External memory keeps only the per-row state in memory
# (about 44 per training row, 16 per holdout row) and a few pages of the index.
QDM_ROW_BYTES, TRAIN_STATE_BYTES = 20, 36
EXTMEM_TRAIN_BYTES, EXTMEM_HOLDOUT_BYTES, EXTMEM_PAGES = 44, 16, 8


def estimate_matrix_bytes(
    schema: Any,
    features: list[Any],
    max_bin: int,
    *,
    holdout: float = 0.2,
    external: bool = False,
    batch_rows: int = 131_072,
) -> int:
    """Bytes XGBoost holds while it trains, beyond the interpreter and libraries.

    A cell takes 1, 2 or 4 bytes as the largest bin count of one feature (a bin per
    category level, plus one for missing) fits 8, 16 or 32 bits; the matrix has no
    gaps (missing values are ``MISSING``), so XGBoost uses its compact index.
    """
    per_feature = [
        len(f.categories or ()) + 1 if f.kind == "category" else max_bin for f in features
    ]
    most = max(per_feature, default=1)
    cell = 1 if most <= 2**8 else 2 if most <= 2**16 else 4
    train = int(schema.rows * (1 - holdout))
    held = schema.rows - train
    matrix = 2 * cell * len(features) + 8
    if external:
        pages = EXTMEM_PAGES * batch_rows * matrix
        return train * EXTMEM_TRAIN_BYTES + held * EXTMEM_HOLDOUT_BYTES + pages + 2**24
    in_memory = (train + held) * (matrix + QDM_ROW_BYTES) + train * TRAIN_STATE_BYTES
    return in_memory + 2**24
