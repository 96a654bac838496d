"""Training on this machine: streaming passes, holdout by row hash, epochs, early stopping.

Pass 1 parses the data, encodes each chunk, splits it into train and holdout rows
(:mod:`leanfit.encode.batches`) and feeds the train rows to the model. When more
passes are needed (several epochs, the exact logistic, the holdout evaluation) the
encoded blocks go to a :class:`~leanfit.encode.cache.BlockCache`, so later passes
read compact binary blocks instead of parsing CSV again. Epochs after the first
visit the cached blocks in a new seeded order, and shuffle the rows inside each block.
"""

from __future__ import annotations

import functools
import inspect as pyinspect
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from leanfit.costs import (
    PARSER_BYTES,
    chunk_row_bytes,
    chunk_rows_cap,
    encoding_bytes,
    max_slots,
    model_bytes,
    reader_bytes,
)
from leanfit.encode.batches import RowCounts, class_weights, encode_part, encoded_columns
from leanfit.encode.cache import BlockCache
from leanfit.encode.encoder import Encoder
from leanfit.engines.checkpoint import (
    Checkpoint,
    Evaluations,
    checkpointing,
    open_checkpoint,
    restore_trainer,
    save_trainer,
)
from leanfit.engines.local.lossy import linear_holdout, lossy_summary
from leanfit.engines.shared import (
    EarlyStopping,
    block_metrics,
    holdout_result,
    log_loss_sum,
    save_trained,
)
from leanfit.errors import ConfigError, InputError
from leanfit.io.guard import Guard
from leanfit.io.outputs import checks_output
from leanfit.io.readers import largest_row_group
from leanfit.io.scan import iter_batches
from leanfit.io.source import resolve_paths
from leanfit.memory import MIN_ROWS, Monitor, current_rss
from leanfit.metrics import threshold_rule
from leanfit.models.registry import import_library, model_for, scores
from leanfit.options import INCREMENTAL, BoostOptions, CheckpointOptions, Plan, TrainOptions
from leanfit.runrecord import LearningCurve
from leanfit.schema.columns import Schema
from leanfit.schema.inspection import inspect
from leanfit.schema.lossy import apply_lossy
from leanfit.schema.rules import check_target, scan_with_schema
from leanfit.summary import linear_summary

SHRINK_AT = 0.9  # share of the memory limit past which chunks are halved


@dataclass
class Cursor:
    """Where a first pass is: the next row, the rows per chunk, and whether the last
    chunk ended a batch read (only then is the pass resumable from ``row``)."""

    row: int = 0
    rows: int | None = None
    whole: bool = False


def encoded_blocks(
    data,
    schema: Schema,
    encoder: Encoder,
    opts: TrainOptions,
    memory: Monitor | None = None,
    *,
    one_hot: bool = False,
    rows: int | None = None,
    guard: Guard | None = None,
    counts: RowCounts | None = None,
    cursor: Cursor | None = None,
) -> Iterator[tuple]:
    """Yield ``(X, y, train_mask)`` per chunk: encoded rows with a known label
    (``X`` a :class:`~leanfit.encode.onehot.OneHotBlock` if ``one_hot``).

    Chunks are ``rows`` rows (default: ``opts.batch_rows``); when the resident set
    nears the memory limit, later chunks are cut in half (down to ``MIN_ROWS``).
    ``counts`` (if given) counts the rows read and those without a label; with an
    active ``guard``, bad rows are left out (and recorded there). A ``cursor`` starts
    the pass at its row (with its rows per chunk) and follows it.
    """
    memory = memory or Monitor.unbounded()
    cursor = cursor or Cursor()
    rows = cursor.rows or rows or Plan().rows(opts)
    counts = counts if counts is not None else RowCounts()
    paths = resolve_paths(data)
    lf = scan_with_schema(paths, schema, guard)
    lf = lf.select(encoded_columns(lf.collect_schema(), schema, encoder, opts))
    start = cursor.row
    for batch in iter_batches(lf.slice(start) if start else lf, paths, rows):
        memory.check()
        memory.progress.advance(batch.height)
        counts.add(batch)
        if memory.pressure > SHRINK_AT and rows > MIN_ROWS:
            rows //= 2
        for offset in range(0, batch.height, rows):
            part = batch.slice(offset, rows)
            cursor.row, cursor.rows = start + offset + part.height, rows
            cursor.whole = offset + rows >= batch.height
            yield encode_part(part, start + offset, schema, encoder, opts, one_hot)
        start += batch.height


class Trainer:
    """Runs the passes for one model; see the module docstring. Given a fitted
    ``model`` and its ``encoder`` (``leanfit update``), it continues that model."""

    def __init__(
        self,
        schema: Schema,
        opts: TrainOptions,
        memory: Monitor | None = None,
        plan: Plan | None = None,
        guard: Guard | None = None,
        checkpoint: Checkpoint | None = None,
        *,
        model=None,
        encoder: Encoder | None = None,
    ):
        opts.check()
        self.schema, self.opts = schema, opts
        self.memory = memory or Monitor.unbounded()
        self.progress = self.memory.progress
        self.plan = plan or Plan()
        self.guard = guard
        self.counts = RowCounts()
        self.encoder = encoder or Encoder.from_options(schema, opts)
        self.model = model if model is not None else model_for(opts, sparse=self.encoder.sparse)
        self.classes = np.arange(len(schema.classes))
        self.class_weights = class_weights(schema, opts)
        self.rng = np.random.default_rng(opts.seed)
        self.history: list[dict] = []
        self.rows_seen = 0
        self.train_rows = 0
        # where the run is, all of it saved in a checkpoint: the stage ("parse", then
        # "epochs" or "lbfgs"), the first pass's cursor, the epoch, its block order and
        # the next block's index, the early stopping, the L-BFGS passes
        self.stage, self.cursor, self.epoch, self.order, self.index = "parse", Cursor(), 2, None, 0
        self.stopper = EarlyStopping(opts.patience)
        self.passes: Evaluations | None = None
        self.checkpoint, self.caches = checkpoint, {}
        if checkpoint is not None and checkpoint.saved:
            restore_trainer(checkpoint, self)
        else:  # the schema and plan: a resumed run never inspects again
            self._save(force=True)

    def weights(self, y: np.ndarray) -> np.ndarray | None:
        return None if self.class_weights is None else self.class_weights[y]

    def fit(self, data, train_cache: BlockCache, holdout_cache: BlockCache) -> None:
        self.caches = {"train": train_cache, "holdout": holdout_cache}
        incremental = self.opts.model in INCREMENTAL
        if self.stage == "parse":
            self._first_pass(data, train_cache, holdout_cache)
        if self.train_rows == 0:
            raise InputError("no training rows: every labelled row fell in the holdout.")
        if self.stage == "parse":
            self.stage = "epochs" if incremental else "lbfgs"
            self._save(force=True)
        if incremental:
            self._later_epochs(train_cache, holdout_cache)
        else:
            with self.progress.stage("L-BFGS"):
                self._fit_exact(train_cache)

    @property
    def epochs_done(self) -> int:
        """Epochs the incremental model has learned (0 for the exact logistic)."""
        return self.epoch - 1 if self.opts.model in INCREMENTAL else 0

    def _save(self, force: bool = False) -> None:
        """Save a checkpoint (when there is one) if ``force``d or due."""
        if self.checkpoint is not None and (force or self.checkpoint.due()):
            save_trainer(self.checkpoint, self, self.caches)

    def _first_pass(self, data, train_cache: BlockCache, holdout_cache: BlockCache) -> None:
        incremental = self.opts.model in INCREMENTAL
        keep_train = not incremental or self.opts.epochs > 1
        rows = self.schema.rows_in(resolve_paths(data))
        self.progress.plan(rows, passes=self.opts.epochs if incremental else 1)
        self.progress.advance(self.cursor.row)  # a resumed pass starts there
        if incremental:
            self.progress.note({"stage": "train", "epoch": 1})
        # rows are selected on the compact one-hot block, then expanded for the learner
        blocks = encoded_blocks(
            data,
            self.schema,
            self.encoder,
            self.opts,
            self.memory,
            one_hot=True,
            rows=self.plan.rows(self.opts),
            guard=self.guard,
            counts=self.counts,
            cursor=self.cursor,
        )
        # blocks are cached compact (one-hot slots) and expanded when learned from
        for X, y, train in blocks:
            if not train.all():
                holdout_cache.append(X[~train], y[~train], self.weights(y[~train]))
            rows = np.flatnonzero(train)  # in file order: the learners shuffle (shuffle=True)
            yt = y[rows]
            if len(yt) and keep_train:
                train_cache.append(X[rows], yt, self.weights(yt))
            if len(yt):
                self.train_rows += len(yt)
                if incremental:
                    self._learn(self.encoder.expand(X, rows), yt, self.weights(yt), epoch=1)
            del X, y, train, yt
            if self.cursor.whole:
                self._save()

    def _fit_exact(self, train_cache: BlockCache) -> None:
        """L-BFGS over the cached blocks, every pass recorded (:class:`Evaluations`);
        progress counts the rows of every pass, with no percent: their number is not
        known ahead (at most ``max_iter``), and a bar that restarted each pass said 100%
        long before the end."""
        from leanfit.models.logistic import blocks_terms, squares_pass  # loads scikit-learn

        n_features = self.encoder.n_features
        blocks = lambda: self._checked(train_cache.blocks())  # noqa: E731
        self.progress.plan(None)

        def passed(iteration: int, loss: float) -> None:
            event = {"stage": "lbfgs", "iteration": iteration, "loss": loss}
            self.progress.note(event | {"max_iter": self.model.max_iter})

        if self.passes is None:
            self.passes = Evaluations(squares_pass(blocks, n_features))
            self._save(force=True)
        terms = blocks_terms(blocks, self.model.fit_intercept)
        if self.checkpoint is not None:
            terms = self.passes.oracle(terms, after=lambda: self._save(force=True))
        self.model.fit_terms(
            terms,
            self.passes.squares,
            self.classes,
            n_features,
            progress=passed,
        )

    def _checked(self, blocks: Iterator) -> Iterator:
        """The blocks, with the memory limit checked before each."""
        for block in blocks:
            self.memory.check()
            self.progress.advance(len(block[1]))
            yield block

    def _learn(self, X, y, w, *, epoch: int) -> None:
        kwargs = {"classes": self.classes} if self.rows_seen == 0 else {}
        if w is not None:
            if "sample_weight" not in pyinspect.signature(self.model.partial_fit).parameters:
                raise ConfigError(f"--class-weight is not supported by --model {self.opts.model}.")
            kwargs["sample_weight"] = w
        self.model.partial_fit(X, y, **kwargs)
        self.rows_seen += len(y)

    def _later_epochs(self, train_cache: BlockCache, holdout_cache: BlockCache) -> None:
        while self.epoch <= self.opts.epochs:
            if self.order is None:
                if holdout_cache.rows:
                    held = self.encoder.plain(holdout_cache.blocks())
                    loss = holdout_loss(self.model, self.progress.counted(held))
                    if self.stopper.stop(self.epoch - 1, loss, self.history, self.progress.note):
                        break
                self.order = self.rng.permutation(train_cache.count)
                self.progress.note({"stage": "train", "epoch": self.epoch})
            for X, y, w in train_cache.blocks(self.order[self.index :]):
                self.progress.advance(len(y))
                order = self.rng.permutation(len(y))
                X = self.encoder.expand(X, order)
                self._learn(X, y[order], None if w is None else w[order], epoch=self.epoch)
                self.index += 1
                self._save()
            self.epoch, self.order, self.index = self.epoch + 1, None, 0
            self._save(force=True)


def holdout_loss(model, blocks) -> float:
    total, count = log_loss_sum(model, blocks)
    return total / max(count, 1)


def evaluate_blocks(model, blocks, n_classes: int, class_names: list[str], rule=None) -> tuple:
    """The holdout metrics and the ``--threshold`` cut (engines.shared.holdout_result)."""
    metrics = block_metrics(lambda X: scores(model, X), blocks, n_classes)
    return holdout_result(metrics, rule, class_names)


@checks_output("out", inputs=("data",))
def train(
    data,
    target: str | None = None,
    *,
    schema: Schema | None = None,
    out=None,
    options: TrainOptions | None = None,
    memory: Monitor | None = None,
    boost: BoostOptions | None = None,
    guard: Guard | None = None,
    checkpoint: CheckpointOptions | None = None,
) -> dict:
    """Train a model on ``data``; save the bundle to ``out``; return the summary.

    ``boost`` holds the :class:`~leanfit.options.BoostOptions` of ``--model xgboost``;
    ``guard`` how bad rows are treated (:class:`~leanfit.io.guard.Guard`); progress is
    reported to ``memory.progress`` (:mod:`leanfit.progress`);
    ``checkpoint`` where and how often the run is saved, and whether it resumes
    (:mod:`leanfit.engines.checkpoint`).

    Memory: chunks of ``options.batch_rows`` rows, or as many as ``memory``'s limit
    allows after the libraries, the parser's buffers and the model are counted.
    """
    opts = options or TrainOptions()
    opts.check()
    memory = memory or Monitor.unbounded()
    LearningCurve.of(memory.progress)
    # Import the model's library first: the baseline is then interpreter and libraries
    # (the process as the command found it, plus the library), and a hopeless limit is
    # refused before any data is read. Memory that checks or an inspect pass leave to the
    # allocator is reused by the training pass, not added to it.
    before = current_rss()
    import_library(opts.model)
    libraries = (
        current_rss() + min(memory.baseline - before, 0) if memory.baseline else current_rss()
    )
    memory.plan(fixed=PARSER_BYTES)
    data = resolve_paths(data)  # once: a one-shot stream of frames is read here
    memory.refuse_mapped(data)
    boost = boost or BoostOptions()
    saved = open_checkpoint(data, target, out, opts, boost, memory, checkpoint)
    with checkpointing(saved):
        summary = _train(data, target, schema, out, opts, memory, boost, guard, saved, libraries)
    return summary | ({"checkpoint": saved.report()} if saved else {})


def _train(data, target, schema, out, opts, memory, boost, guard, saved, libraries):
    """:func:`train` once its checkpoint (``saved``: None without one) is open."""
    schema = (
        (saved and saved.schema())
        or schema
        or inspect(data, target=target, memory=memory, guard=guard, lossy=opts.lossy)
    )
    schema = apply_lossy(schema, opts.lossy)
    check_target(schema, target)
    if opts.threshold is not None:
        threshold_rule(opts.threshold, len(schema.classes))
    if opts.model == "xgboost":
        # after import_library: XGBoost is then loaded without the dataframe libraries
        from leanfit.engines.local.boost import train_booster

        return train_booster(data, schema, opts, boost, memory, out, libraries, guard, saved)
    started = time.perf_counter()
    encoder = (saved and saved.encoder()) or Encoder.from_options(
        schema, opts, max_slots(memory.limit, len(schema.classes), opts.model)
    )
    fixed = reader_bytes(schema, largest_row_group(data)) + encoding_bytes(encoder)
    fixed += model_bytes(encoder.n_features, len(schema.classes), opts.model)
    row_bytes, cap = (
        chunk_row_bytes(schema, encoder, opts.model),
        chunk_rows_cap(schema, schema.rows),
    )
    plan = Plan(batch_rows=opts.batch_rows, memory_limit=memory.budget)
    if saved and saved.saved:
        plan = Plan(**saved.progress["plan"])
    elif opts.batch_rows is None:
        rows = memory.plan(fixed=fixed, row_bytes=row_bytes, baseline=libraries, max_rows=cap)
        plan = Plan(batch_rows=rows, memory_limit=memory.budget)
    trainer = Trainer(schema, opts, memory, plan, guard, saved, encoder=encoder)
    caches = (
        (saved.cache("train"), saved.cache("holdout")) if saved else (BlockCache(), BlockCache())
    )
    with caches[0] as train_cache, caches[1] as holdout_cache:
        with memory.stage("train"):
            trainer.fit(data, train_cache, holdout_cache)
        with memory.stage("evaluate"):
            memory.progress.plan(holdout_cache.rows)
            names = [str(c) for c in schema.classes]
            metrics, cut = (
                evaluate_blocks(
                    trainer.model,
                    memory.progress.counted(trainer.encoder.plain(holdout_cache.blocks())),
                    len(schema.classes),
                    names,
                    opts.threshold,
                )
                if holdout_cache.rows
                else holdout_result(None, opts.threshold, names)
            )
            if metrics and trainer.epochs_done:  # the last epoch's holdout loss, shown too
                last = {"epoch": trainer.epochs_done, "holdout_log_loss": metrics["log_loss"]}
                memory.progress.note({"stage": "epoch", **last})
        summary = linear_summary(
            opts,
            plan,
            trainer.encoder,
            rows=(trainer.train_rows, holdout_cache.rows),
            history=trainer.history,
            metrics=metrics,
            seconds=time.perf_counter() - started,
        )
        summary["cache_bytes"] = train_cache.nbytes + holdout_cache.nbytes
        summary |= {"threshold": cut} if cut is not None else {}
        blocks_of = functools.partial(
            encoded_blocks, data, schema, opts=opts, memory=memory, one_hot=True, guard=guard
        )
        unrounded = linear_holdout(blocks_of, trainer.encoder, bool(metrics))
        row_bytes = chunk_row_bytes(schema, trainer.encoder, opts.model)
        proba = functools.partial(scores, trainer.model)
        summary |= lossy_summary(schema, memory, cut, unrounded, proba, row_bytes, fixed)
    summary = {"input": data.shown, **summary}
    summary |= trainer.counts.summary(guard, f"'{schema.target}'")
    return save_trained(out, schema, trainer.encoder, trainer.model, summary, memory)
