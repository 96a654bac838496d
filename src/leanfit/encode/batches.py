"""From parsed frames to training batches: labels, the holdout split and weights.

Both engines and every model kind split rows the same way: a row is held out by a
hash of its row number counted from 0 over the whole input (or of its
``--split-by`` key) and the seed, so the split does not depend on chunk sizes,
partitions or the engine. Rows without a label are left out of both sides.

>>> holdout_mask(np.arange(8, dtype=np.uint64), 0.5, 0).tolist()
[True, True, False, True, False, False, False, True]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from leanfit.encode.encoder import Encoder
from leanfit.encode.trees import Feature, feature_matrix
from leanfit.errors import ConfigError, SchemaMismatch
from leanfit.options import TrainOptions
from leanfit.schema.columns import Schema
from leanfit.schema.rules import storage_expr

LABEL = "__leanfit_label"
SPLIT_KEY = "__split_key__"
UNKNOWN_LABEL = -2
SIDES = ("train", "holdout")


def label_expr(schema: Schema) -> pl.Expr:
    """Class codes 0..k-1 of the target; -1 where it is missing (null or NaN: see
    :func:`~leanfit.schema.rules.is_missing_label`), -2 for an unknown label.

    Matched through an Enum of the classes' text (``replace_strict`` would take Polars
    out of streaming and gather the whole column first)."""
    classes = pl.Series(schema.classes).cast(pl.String)
    text = pl.col(schema.target).cast(pl.String)
    code = text.cast(pl.Enum(classes), strict=False).to_physical()
    return (
        pl.when(text.is_null() | (text.str.to_lowercase() == "nan"))
        .then(pl.lit(-1, pl.Int32))
        .when(code.is_null())
        .then(pl.lit(UNKNOWN_LABEL, pl.Int32))
        .otherwise(code.cast(pl.Int32))
    )


def label_codes(frame: pl.DataFrame, schema: Schema) -> np.ndarray:
    """Class codes 0..k-1 of the target column; -1 where the label is missing.

    Raises :class:`SchemaMismatch` naming labels the schema does not know."""
    y = frame.select(label_expr(schema)).to_series().to_numpy()
    check_labels(y, frame, schema)
    return y


def check_labels(y: np.ndarray, frame: pl.DataFrame, schema: Schema) -> None:
    """Refuse codes of unknown labels (``UNKNOWN_LABEL``), naming a few of them."""
    if not (y == UNKNOWN_LABEL).any():
        return
    known = set(map(str, schema.classes))
    values = frame.get_column(schema.target).drop_nulls().cast(pl.String).unique()
    unseen = sorted(set(values.to_list()) - known)[:5]
    raise SchemaMismatch(
        f"target '{schema.target}' has labels {unseen} the model was not trained on "
        f"(classes: {schema.classes})."
    )


@dataclass
class RowCounts:
    """The rows one pass read and those it could not learn from, for the summary's
    row accounting: ``rows = rows_train + rows_holdout + rows_unlabelled + rows_bad``."""

    read: int = 0
    unlabelled: int = 0

    def add(self, frame: pl.DataFrame) -> None:
        """Count a frame of :func:`encoded_columns` (its label codes)."""
        self.add_labels(frame.get_column(LABEL).to_numpy())

    def add_labels(self, y: np.ndarray) -> None:
        self.read += len(y)
        self.unlabelled += int((y == -1).sum())

    def summary(self, guard=None, target: str = "the target") -> dict:
        """``rows``, ``rows_unlabelled``, ``rows_bad`` and a warning for each row not used."""
        bad = guard.count if guard is not None else 0
        warnings = []
        if self.unlabelled:
            warnings.append(f"{self.unlabelled:,} rows have no {target} value: not used.")
        if bad:
            warnings.append(guard.warning())
        counts = {"rows": self.read + bad, "rows_unlabelled": self.unlabelled, "rows_bad": bad}
        return counts | ({"warnings": warnings} if warnings else {})


def holdout_mask(keys: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A deterministic pseudo-random split: splitmix64 of the key and seed."""
    z = keys.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / 2.0**53 < fraction


def split_key_exprs(opts: TrainOptions) -> list[pl.Expr]:
    """The hashed ``--split-by`` key, when there is one."""
    if not opts.split_by:
        return []
    return [pl.col(opts.split_by).hash(seed=opts.seed).alias(SPLIT_KEY)]


def held_out(frame: pl.DataFrame, start: int, opts: TrainOptions) -> np.ndarray:
    """Which rows of ``frame`` (whose first row is row ``start`` of the input) are held out."""
    if not opts.holdout:
        return np.zeros(frame.height, dtype=bool)
    if opts.split_by:
        keys = frame.get_column(SPLIT_KEY).to_numpy()
    else:
        keys = np.arange(start, start + frame.height, dtype=np.uint64)
    return holdout_mask(keys, opts.holdout, opts.seed)


def balanced_weights(schema: Schema) -> np.ndarray:
    """Class weights inversely proportional to the schema's class counts."""
    counts = np.asarray(schema.class_counts, dtype=np.float64)
    return (counts.sum() / (len(counts) * np.maximum(counts, 1.0))).astype(np.float32)


def class_weights(schema: Schema, opts: TrainOptions) -> np.ndarray | None:
    """The weight of each class code under ``--class-weight`` (None: unweighted):
    ``balanced``, or ``CLASS=WEIGHT,...`` naming classes by their label value.

    >>> from leanfit.schema.columns import Schema
    >>> s = Schema([], 6, [], target="y", classes=["no", "yes"], class_counts=[4, 2])
    >>> class_weights(s, TrainOptions(class_weight="yes=5")).tolist()
    [1.0, 5.0]
    """
    if opts.class_weight is None:
        return None
    if opts.class_weight == "balanced":
        return balanced_weights(schema)
    names = [str(c) for c in schema.classes]
    weights = np.ones(len(names), dtype=np.float32)
    for item in opts.class_weight.split(","):
        label, weight = item.rsplit("=", 1)
        if label.strip() not in names:
            raise ConfigError(
                f"--class-weight: {label.strip()!r} is not a class of '{schema.target}' "
                f"(its classes: {', '.join(names)})."
            )
        weights[names.index(label.strip())] = float(weight)
    return weights


# --------------------------------------------------------------------------- linear models


def encoded_columns(
    columns: pl.Schema, schema: Schema, encoder: Encoder, opts: TrainOptions
) -> list[pl.Expr]:
    """What the training reads of each row: the encoder's parts (computed by Polars
    while it streams), the target, its label code and the split key."""
    exprs = [*encoder.exprs(columns), pl.col(schema.target), label_expr(schema).alias(LABEL)]
    return exprs + split_key_exprs(opts)


def encode_part(
    frame: pl.DataFrame, start: int, schema: Schema, encoder: Encoder, opts, one_hot: bool
) -> tuple:
    """``(X, y, train_mask)`` of the labelled rows of a frame of :func:`encoded_columns`."""
    y = frame.get_column(LABEL).to_numpy()
    check_labels(y, frame, schema)
    labelled = y >= 0
    train = ~held_out(frame, start, opts)
    X = encoder.from_parts(frame, one_hot=one_hot)
    del frame  # the parsed chunk is done with; only the encoded block lives on
    if not labelled.all():
        X, y, train = X[labelled], y[labelled], train[labelled]
    return X, y, train


# --------------------------------------------------------------------------- boosted trees


def tree_columns(
    columns: pl.Schema, schema: Schema, features: list[Feature], opts: TrainOptions
) -> list[pl.Expr]:
    """What boosting reads of each row: the features in storage types, the target and
    the split key."""
    exprs = [storage_expr(schema.column(f.name), columns.get(f.name)) for f in features]
    return [*exprs, pl.col(schema.target), *split_key_exprs(opts)]


def tree_sides(
    frame: pl.DataFrame,
    start: int,
    schema: Schema,
    features: list[Feature],
    opts: TrainOptions,
    weights: np.ndarray | None,
    counts: RowCounts | None = None,
):
    """``(side, (X, y, w))`` for each side of the split with labelled rows, of a frame of
    :func:`tree_columns` (``X`` the float32 matrix of
    :func:`~leanfit.encode.trees.feature_matrix`, ``y`` float32 class codes)."""
    y = label_codes(frame, schema)
    if counts is not None:
        counts.add_labels(y)
    held = held_out(frame, start, opts)
    X = feature_matrix(frame, features)
    del frame  # only the float32 block lives on
    for side, rows in zip(SIDES, (~held & (y >= 0), held & (y >= 0))):
        if rows.any():
            part = (X, y) if rows.all() else (X[rows], y[rows])
            w = None if weights is None else weights[part[1]]
            yield side, (part[0], part[1].astype(np.float32), w)
