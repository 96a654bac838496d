"""The training loop: streaming passes, holdout by row hash, epochs, early stopping.

Pass 1 parses the data, encodes each chunk, splits it into train and holdout rows
by a hash of the row number (or of a key column) and feeds the train rows to the
model. When more passes are needed (several epochs, the exact logistic, the
holdout evaluation) the encoded blocks go to a :class:`~leanfit.cache.BlockCache`,
so later passes read compact binary blocks instead of parsing CSV again. Epochs
after the first visit the cached blocks in a new seeded order, and shuffle the
rows inside each block.
"""

from __future__ import annotations

import inspect as pyinspect
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace

import numpy as np
import polars as pl

from leanfit.cache import BlockCache
from leanfit.encode import Encoder
from leanfit.errors import ConfigError, InputError, SchemaMismatch
from leanfit.memory import (
    ENCODED_COPIES,
    MIN_ROWS,
    PARSED_COPIES,
    PARSER_BYTES,
    Monitor,
    current_rss,
)
from leanfit.metrics import StreamingMetrics
from leanfit.models import INCREMENTAL, MODELS, import_library, make_model, scores
from leanfit.schema import Schema, bytes_per_row, inspect
from leanfit.sources import DEFAULT_BATCH_ROWS, iter_batches, resolve_paths, scan

Progress = Callable[[dict], None]
SHRINK_AT = 0.9  # share of the memory limit past which chunks are halved
LABEL = "__leanfit_label"
UNKNOWN_LABEL = -2


@dataclass(frozen=True)
class TrainOptions:
    """How to train; each field is a ``leanfit train`` option."""

    model: str = "sgd"
    epochs: int = 1
    holdout: float = 0.2
    class_weight: str | None = None
    seed: int = 0
    split_by: str | None = None
    drop: tuple[str, ...] = ()
    batch_rows: int | None = None  # None: planned from the memory budget
    C: float = 1.0
    tol: float = 1e-4
    patience: int = 2
    hash_width: int = 1024
    missing_indicators: bool = False

    def check(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"--model must be one of {', '.join(MODELS)}. Got {self.model!r}.")
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1. Got {self.epochs}.")
        if not 0.0 <= self.holdout < 1.0:
            raise ConfigError(f"--holdout must be in [0, 1). Got {self.holdout}.")
        if self.class_weight not in (None, "balanced"):
            raise ConfigError(f"--class-weight must be 'balanced'. Got {self.class_weight!r}.")
        if self.batch_rows is not None and self.batch_rows < 1:
            raise ConfigError(f"--batch-rows must be at least 1. Got {self.batch_rows}.")


def label_codes(frame: pl.DataFrame, schema: Schema) -> np.ndarray:
    """Class codes 0..k-1 of the target column; -1 where the label is missing."""
    codes = pl.Series(range(len(schema.classes)), dtype=pl.Int32)
    target = frame.get_column(schema.target)
    try:
        mapped = target.replace_strict(schema.classes, codes, return_dtype=pl.Int32)
    except pl.exceptions.PolarsError:
        unseen = sorted(set(target.drop_nulls().unique().to_list()) - set(schema.classes))[:5]
        raise SchemaMismatch(
            f"target '{schema.target}' has labels {unseen} the model was not trained on "
            f"(classes: {schema.classes})."
        ) from None
    return mapped.fill_null(-1).to_numpy()


def label_expr(schema: Schema) -> pl.Expr:
    """Class codes 0..k-1 of the target; -1 where it is missing, -2 for an unknown label.

    Matched through an Enum of the classes' text (``replace_strict`` would take Polars
    out of streaming and gather the whole column first)."""
    classes = pl.Series(schema.classes).cast(pl.String)
    target = pl.col(schema.target)
    code = target.cast(pl.String).cast(pl.Enum(classes), strict=False).to_physical()
    return (
        pl.when(target.is_null())
        .then(pl.lit(-1, pl.Int32))
        .when(code.is_null())
        .then(pl.lit(UNKNOWN_LABEL, pl.Int32))
        .otherwise(code.cast(pl.Int32))
    )


def holdout_mask(keys: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A deterministic pseudo-random split: splitmix64 of the key and seed.

    >>> holdout_mask(np.arange(8, dtype=np.uint64), 0.5, 0).tolist()
    [True, True, False, True, False, False, False, True]
    """
    z = keys.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / 2.0**53 < fraction


def encoded_blocks(
    data,
    schema: Schema,
    encoder: Encoder,
    opts: TrainOptions,
    memory: Monitor | None = None,
    *,
    one_hot: bool = False,
) -> Iterator[tuple]:
    """Yield ``(X, y, train_mask)`` per chunk: encoded rows with a known label
    (``X`` a :class:`~leanfit.encode.OneHotBlock` if ``one_hot``).

    Chunks are ``opts.batch_rows`` rows; when the resident set nears the memory
    limit, later chunks are cut in half (down to ``MIN_ROWS``).
    """
    memory = memory or Monitor.unbounded()
    rows = opts.batch_rows or DEFAULT_BATCH_ROWS
    paths = resolve_paths(data)
    lf = scan(paths, schema.read_overrides())
    lf = lf.select(encoded_columns(lf.collect_schema(), schema, encoder, opts))
    start = 0
    for batch in iter_batches(lf, paths, rows):
        memory.check()
        if memory.pressure > SHRINK_AT and rows > MIN_ROWS:
            rows //= 2
        for offset in range(0, batch.height, rows):
            part = batch.slice(offset, rows)
            yield _encoded_part(part, start + offset, schema, encoder, opts, one_hot)
        start += batch.height


def encoded_columns(
    columns: pl.Schema, schema: Schema, encoder: Encoder, opts: TrainOptions
) -> list[pl.Expr]:
    """What the training reads of each row: the encoder's parts (computed by Polars
    while it streams), the target and the split key."""
    exprs = [*encoder.exprs(columns), pl.col(schema.target), label_expr(schema).alias(LABEL)]
    if opts.split_by:
        exprs.append(pl.col(opts.split_by).hash(seed=opts.seed).alias("__split_key__"))
    return exprs


def _encoded_part(
    frame: pl.DataFrame, start: int, schema: Schema, encoder: Encoder, opts, one_hot: bool
) -> tuple:
    """``(X, y, train_mask)`` of a frame of :func:`encoded_columns`."""
    y = frame.get_column(LABEL).to_numpy()
    if (y == UNKNOWN_LABEL).any():
        label_codes(frame, schema)  # raises, naming the labels
    if opts.split_by:
        keys = frame.get_column("__split_key__").to_numpy()
    else:
        keys = np.arange(start, start + frame.height, dtype=np.uint64)
    labelled = y >= 0
    X = encoder.from_parts(frame, one_hot=one_hot)
    del frame  # the parsed chunk is done with; only the encoded block lives on
    train = ~holdout_mask(keys, opts.holdout, opts.seed) if opts.holdout else np.ones_like(labelled)
    if not labelled.all():
        X, y, train = X[labelled], y[labelled], train[labelled]
    return X, y, train


def chunk_row_bytes(schema: Schema, encoder: Encoder, model: str = "") -> float:
    """Memory one more row per chunk costs, over every copy alive at once.

    The exact logistic holds a few more (two cached blocks in flight and their float64
    copies); measured at 2M rows: 343 MB peak under a 400 MB limit.
    """
    parsed = sum(bytes_per_row(c, pandas_default=True) for c in schema.columns)
    width = encoder.n_dense + len(encoder.categorical) if encoder.sparse else encoder.n_features
    encoded = width * (8 if encoder.sparse else 4)
    copies = ENCODED_COPIES + (4 if model == "logistic" else 0)
    return PARSED_COPIES * parsed + copies * encoded


def model_bytes(encoder: Encoder, n_classes: int, model: str) -> int:
    """Coefficients and their working copies (and the MLP's hidden layer)."""
    per_class = encoder.n_features * 8 * (64 if model == "mlp" else max(n_classes - 1, 1))
    return 6 * per_class + 2 * 65_536 * 8 * n_classes  # + the metrics' score histograms


class Trainer:
    """Runs the passes for one model; see the module docstring."""

    def __init__(
        self,
        schema: Schema,
        opts: TrainOptions,
        progress: Progress | None = None,
        memory: Monitor | None = None,
    ):
        opts.check()
        self.schema, self.opts, self.progress = schema, opts, progress or (lambda event: None)
        self.memory = memory or Monitor.unbounded()
        self.encoder = Encoder.from_schema(
            schema,
            drop=opts.drop,
            hash_width=opts.hash_width,
            missing_indicators=opts.missing_indicators,
        )
        self.model = make_model(
            opts.model, seed=opts.seed, sparse=self.encoder.sparse, C=opts.C, tol=opts.tol
        )
        self.classes = np.arange(len(schema.classes))
        self.class_weights = _balanced_weights(schema) if opts.class_weight else None
        self.rng = np.random.default_rng(opts.seed)
        self.history: list[dict] = []
        self.rows_seen = 0
        self.train_rows = 0
        self.started = time.perf_counter()

    def weights(self, y: np.ndarray) -> np.ndarray | None:
        return None if self.class_weights is None else self.class_weights[y]

    def fit(self, data, train_cache: BlockCache, holdout_cache: BlockCache) -> None:
        incremental = self.opts.model in INCREMENTAL
        keep_train = not incremental or self.opts.epochs > 1
        # rows are selected on the compact one-hot block, then expanded for the learner
        blocks = encoded_blocks(
            data, self.schema, self.encoder, self.opts, self.memory, one_hot=True
        )
        for X, y, train in blocks:
            if not train.all():
                held = self.encoder.expand(X[~train])
                holdout_cache.append(held, y[~train], self.weights(y[~train]))
            rows = np.flatnonzero(train)
            if incremental:
                rows = self.rng.permutation(rows)  # select and shuffle in one copy
            Xt, yt = X[rows], y[rows]
            del X, y, train
            if incremental:
                Xt = self.encoder.expand(Xt)
            if not len(yt):
                continue
            self.train_rows += len(yt)
            if keep_train:
                train_cache.append(Xt, yt, self.weights(yt))
            if incremental:
                self._learn(Xt, yt, self.weights(yt), epoch=1)
            del Xt, yt
        if self.train_rows == 0:
            raise InputError("no training rows: every labelled row fell in the holdout.")
        if incremental:
            self._later_epochs(train_cache, holdout_cache)
        else:
            self.model.fit_blocks(
                lambda: self._checked(train_cache.blocks()),
                self.classes,
                self.encoder.n_features,
                progress=lambda it, loss: self.progress(
                    {"stage": "lbfgs", "iteration": it, "loss": loss}
                ),
            )

    def _checked(self, blocks: Iterator) -> Iterator:
        """The blocks, with the memory limit checked before each."""
        for block in blocks:
            self.memory.check()
            yield block

    def _learn(self, X, y, w, *, epoch: int) -> None:
        kwargs = {"classes": self.classes} if self.rows_seen == 0 else {}
        if w is not None:
            if "sample_weight" not in pyinspect.signature(self.model.partial_fit).parameters:
                raise ConfigError(f"--class-weight is not supported by --model {self.opts.model}.")
            kwargs["sample_weight"] = w
        self.model.partial_fit(X, y, **kwargs)
        self.rows_seen += len(y)
        rate = self.rows_seen / max(time.perf_counter() - self.started, 1e-9)
        self.progress(
            {"stage": "train", "epoch": epoch, "rows": self.rows_seen, "rows_per_s": rate}
        )

    def _later_epochs(self, train_cache: BlockCache, holdout_cache: BlockCache) -> None:
        best, stale = np.inf, 0
        for epoch in range(2, self.opts.epochs + 1):
            if holdout_cache.rows:
                loss = holdout_loss(self.model, holdout_cache)
                self.history.append({"epoch": epoch - 1, "holdout_log_loss": loss})
                self.progress({"stage": "epoch", "epoch": epoch - 1, "holdout_log_loss": loss})
                best, stale = (loss, 0) if loss < best - 1e-4 else (best, stale + 1)
                if stale >= self.opts.patience:
                    break
            for X, y, w in train_cache.blocks(self.rng.permutation(train_cache.count)):
                order = self.rng.permutation(len(y))
                self._learn(X[order], y[order], None if w is None else w[order], epoch=epoch)


def holdout_loss(model, cache: BlockCache) -> float:
    total, count = 0.0, 0
    for X, y, _ in cache.blocks():
        p = np.clip(scores(model, X)[np.arange(len(y)), y], 1e-15, 1.0)
        total -= float(np.log(p).sum())
        count += len(y)
    return total / max(count, 1)


def evaluate_blocks(model, blocks, n_classes: int) -> dict:
    metrics = StreamingMetrics(n_classes)
    for X, y, _ in blocks:
        metrics.update(y, scores(model, X))
    return metrics.result()


def _balanced_weights(schema: Schema) -> np.ndarray:
    counts = np.asarray(schema.class_counts, dtype=np.float64)
    return (counts.sum() / (len(counts) * np.maximum(counts, 1.0))).astype(np.float32)


def train(
    data,
    target: str | None = None,
    *,
    schema: Schema | None = None,
    out=None,
    options: TrainOptions | None = None,
    progress: Progress | None = None,
    memory: Monitor | None = None,
    boost=None,
) -> dict:
    """Train a model on ``data``; save the bundle to ``out``; return the summary.

    ``boost`` holds the :class:`~leanfit.boost.BoostOptions` of ``--model xgboost``.

    Memory: chunks of ``options.batch_rows`` rows, or as many as ``memory``'s limit
    allows after the libraries, the parser's buffers and the model are counted.
    """
    from leanfit.predict import save_bundle

    opts = options or TrainOptions()
    opts.check()
    memory = memory or Monitor.unbounded()
    # Import the model's library first: the baseline is then interpreter and libraries,
    # and a hopeless limit is refused before any data is read. Memory an inspect pass
    # below leaves to the allocator is reused by the training pass, not added to it.
    import_library(opts.model)
    libraries = current_rss()
    memory.plan(fixed=PARSER_BYTES)
    schema = schema or inspect(data, target=target, memory=memory)
    check_target(schema, target)
    if opts.model == "xgboost":
        return _train_booster(data, schema, opts, boost, progress, memory, out, libraries)
    started = time.perf_counter()
    trainer = Trainer(schema, opts, progress, memory)
    if opts.batch_rows is None:
        fixed = PARSER_BYTES + model_bytes(trainer.encoder, len(schema.classes), opts.model)
        row_bytes = chunk_row_bytes(schema, trainer.encoder, opts.model)
        rows = memory.plan(fixed=fixed, row_bytes=row_bytes, baseline=libraries)
        trainer.opts = opts = replace(opts, batch_rows=rows)
    with BlockCache() as train_cache, BlockCache() as holdout_cache:
        with memory.stage("train"):
            trainer.fit(data, train_cache, holdout_cache)
        with memory.stage("evaluate"):
            metrics = (
                evaluate_blocks(trainer.model, holdout_cache.blocks(), len(schema.classes))
                if holdout_cache.rows
                else None
            )
        summary = {
            "model": opts.model,
            "options": asdict(opts),
            "rows_train": trainer.train_rows,
            "rows_holdout": holdout_cache.rows,
            "features": trainer.encoder.n_features,
            "sparse": trainer.encoder.sparse,
            "dropped": trainer.encoder.dropped,
            "epochs_run": len(trainer.history) + 1 if opts.model in INCREMENTAL else None,
            "history": trainer.history,
            "cache_bytes": train_cache.nbytes + holdout_cache.nbytes,
            "train_seconds": round(time.perf_counter() - started, 3),
            "metrics": metrics,
        }
    if out is not None:
        with memory.stage("save"):
            save_bundle(out, schema, trainer.encoder, trainer.model, summary)
        summary["model_path"] = str(out)
    return summary


def check_target(schema: Schema, target: str | None) -> None:
    """Refuse a schema without a target, or with another one than ``--target``."""
    if target and schema.target != target:
        if schema.target:
            raise ConfigError(
                f"--target {target} differs from the schema's target {schema.target}."
            )
        raise ConfigError("the schema has no target: run `leanfit inspect --target` to make one.")
    if schema.target is None:
        raise ConfigError("give --target: the label column to learn.")


def _train_booster(
    data, schema: Schema, opts: TrainOptions, boost, progress, memory, out, libraries: int
) -> dict:
    """Boosted trees: XGBoost fed by leanfit's own typed stream (see leanfit.boost)."""
    from leanfit.boost import BoostOptions, boost_features, fit_booster
    from leanfit.predict import save_bundle

    boost = boost or BoostOptions()
    if boost.memory_limit is None and memory.limit < Monitor.unbounded().limit:
        boost = replace(boost, memory_limit=memory.limit)
    if opts.batch_rows is None:
        from leanfit.errors import MemoryBudgetExceeded
        from leanfit.memory import MAX_ROWS

        features, _ = boost_features(schema, opts.drop)
        parsed = sum(bytes_per_row(c, pandas_default=True) for c in schema.columns)
        row_bytes = PARSED_COPIES * parsed + ENCODED_COPIES * 4 * len(features)
        rows = memory.plan(fixed=PARSER_BYTES, row_bytes=row_bytes, baseline=libraries)
        opts = replace(opts, batch_rows=rows)
        # external-memory pages of two chunks when the budget holds them (XGBoost keeps
        # some state per page: fewer pages use less memory and train faster)
        fixed = PARSER_BYTES + MAX_ROWS * row_bytes
        if boost.page_rows is None and rows == MAX_ROWS:
            try:
                more = memory.plan(fixed=fixed, row_bytes=row_bytes, baseline=libraries)
                boost = replace(boost, page_rows=rows + min(more, MAX_ROWS))
            except MemoryBudgetExceeded:
                pass

    def checked(event: dict) -> None:  # the limit is checked after every round
        memory.check()
        if progress is not None:
            progress(event)

    with memory.stage("train"):
        model, summary = fit_booster(data, schema, opts, boost, checked)
    if out is not None:
        with memory.stage("save"):
            save_bundle(out, schema, None, model, summary)
        summary["model_path"] = str(out)
    return summary
