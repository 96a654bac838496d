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

from typing import Any

from leanfit.metrics import DEFAULT_BINS

# Measured here (bench/memory.py): what Polars' streaming CSV reader holds with
# 4 MiB read chunks on 2 threads, and how many copies of a chunk are alive at once
# while it is parsed (reader queue, frame, slices) and encoded (block, train/holdout
# selection, scikit-learn's float64 copy).
PARSER_BYTES = 60_000_000  # training and prediction read with 1 MiB chunks (measured ~45 MB)
INSPECT_BYTES = 210_000_000  # the inspect query reads with 4 MiB chunks
PARSED_COPIES = 5
ENCODED_COPIES = 8
# A run also holds memory per column, whatever the rows: Polars' CSV reader keeps
# buffers per column, and the schema, encoder and expressions an entry each (measured,
# 2 threads: 11 KB a column over 10,000 and 50,000 columns with 1 MiB reads; the
# inspect query's 4 MiB reads, 30 KB). A parsed chunk holds at most CHUNK_CELLS cells
# and never more rows than the data, so its rows shrink as the columns grow (data of
# up to 32 columns keeps 131,072 rows).
PARSER_COLUMN_BYTES = 11_000
INSPECT_COLUMN_BYTES = 30_000
CHUNK_CELLS = 1 << 22

_WIDTHS = {"bool": 1 / 8, "date32": 4, "timestamp[us]": 8, "float32": 4, "float64": 8}


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


def chunk_rows_cap(schema: Any) -> int:
    """The most rows a parsed chunk of the schema's data may have (``CHUNK_CELLS``)."""
    return max(1, min(CHUNK_CELLS // max(len(schema.columns), 1), schema.rows))


def nonzeros_per_row(schema: Any, names: list[str]) -> float:
    """The mean non-zero values of a row over the columns ``names`` (from their zeros)."""
    wanted = set(names)
    found = sum(c.count - (c.zeros or 0) for c in schema.columns if c.name in wanted)
    return found / max(schema.rows, 1)


def parsed_row_bytes(schema: Any) -> float:
    """Bytes of one parsed row (every column, as the parser holds it)."""
    return sum(bytes_per_row(c, pandas_default=True) for c in schema.columns)


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


def model_bytes(n_features: int, n_classes: int, model: str) -> int:
    """Coefficients and their working copies (and the MLP's hidden layer), and the
    metrics' score histograms."""
    per_class = n_features * 8 * (64 if model == "mlp" else max(n_classes - 1, 1))
    return 6 * per_class + 2 * DEFAULT_BINS * 8 * n_classes


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
