"""Training on this machine: streaming passes, holdout by row hash, epochs, early stopping.

Pass 1 parses the data, encodes each chunk, splits it into train and holdout rows
(:mod:`leanfit.encode.batches`) and feeds the train rows to the model. When more
passes are needed (several epochs, the exact logistic, the holdout evaluation) the
encoded blocks go to a :class:`~leanfit.encode.cache.BlockCache`, so later passes
read compact binary blocks instead of parsing CSV again. Epochs after the first
visit the cached blocks in a new seeded order, and shuffle the rows inside each block.
"""

from __future__ import annotations

import inspect as pyinspect
import time
from collections.abc import Callable, Iterator

import numpy as np

from leanfit.costs import PARSER_BYTES, chunk_row_bytes, model_bytes
from leanfit.encode.batches import RowCounts, class_weights, encode_part, encoded_columns
from leanfit.encode.cache import BlockCache
from leanfit.encode.encoder import Encoder
from leanfit.engines.shared import EarlyStopping, block_metrics, log_loss_sum
from leanfit.errors import ConfigError, InputError
from leanfit.io.guard import Guard
from leanfit.io.outputs import checks_output
from leanfit.io.scan import iter_batches
from leanfit.io.source import resolve_paths
from leanfit.memory import MIN_ROWS, Monitor, current_rss
from leanfit.model import save_bundle
from leanfit.models.registry import import_library, model_for, scores
from leanfit.options import INCREMENTAL, BoostOptions, Plan, TrainOptions
from leanfit.runrecord import LearningCurve, run_record
from leanfit.schema.columns import Schema
from leanfit.schema.inspection import inspect
from leanfit.schema.rules import check_target, scan_with_schema
from leanfit.summary import linear_summary

Progress = Callable[[dict], None]
SHRINK_AT = 0.9  # share of the memory limit past which chunks are halved


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
) -> Iterator[tuple]:
    """Yield ``(X, y, train_mask)`` per chunk: encoded rows with a known label
    (``X`` a :class:`~leanfit.encode.onehot.OneHotBlock` if ``one_hot``).

    Chunks are ``rows`` rows (default: ``opts.batch_rows``); when the resident set
    nears the memory limit, later chunks are cut in half (down to ``MIN_ROWS``).
    ``counts`` (if given) counts the rows read and those without a label; with an
    active ``guard``, bad rows are left out (and recorded there).
    """
    memory = memory or Monitor.unbounded()
    rows = rows or Plan().rows(opts)
    counts = counts if counts is not None else RowCounts()
    paths = resolve_paths(data)
    lf = scan_with_schema(paths, schema, guard)
    lf = lf.select(encoded_columns(lf.collect_schema(), schema, encoder, opts))
    start = 0
    for batch in iter_batches(lf, paths, rows):
        memory.check()
        counts.add(batch)
        if memory.pressure > SHRINK_AT and rows > MIN_ROWS:
            rows //= 2
        for offset in range(0, batch.height, rows):
            part = batch.slice(offset, rows)
            yield encode_part(part, start + offset, schema, encoder, opts, one_hot)
        start += batch.height


class Trainer:
    """Runs the passes for one model; see the module docstring."""

    def __init__(
        self,
        schema: Schema,
        opts: TrainOptions,
        progress: Progress | None = None,
        memory: Monitor | None = None,
        plan: Plan | None = None,
        guard: Guard | None = None,
    ):
        opts.check()
        self.schema, self.opts, self.progress = schema, opts, progress or (lambda event: None)
        self.memory = memory or Monitor.unbounded()
        self.plan = plan or Plan()
        self.guard = guard
        self.counts = RowCounts()
        self.encoder = Encoder.from_options(schema, opts)
        self.model = model_for(opts, sparse=self.encoder.sparse)
        self.classes = np.arange(len(schema.classes))
        self.class_weights = class_weights(schema, opts)
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
            data,
            self.schema,
            self.encoder,
            self.opts,
            self.memory,
            one_hot=True,
            rows=self.plan.rows(self.opts),
            guard=self.guard,
            counts=self.counts,
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
        stopper = EarlyStopping(self.opts.patience)
        for epoch in range(2, self.opts.epochs + 1):
            if holdout_cache.rows:
                loss = holdout_loss(self.model, holdout_cache.blocks())
                if stopper.stop(epoch - 1, loss, self.history, self.progress):
                    break
            for X, y, w in train_cache.blocks(self.rng.permutation(train_cache.count)):
                order = self.rng.permutation(len(y))
                self._learn(X[order], y[order], None if w is None else w[order], epoch=epoch)


def holdout_loss(model, blocks) -> float:
    total, count = log_loss_sum(model, blocks)
    return total / max(count, 1)


def evaluate_blocks(model, blocks, n_classes: int, class_names: list[str]) -> dict:
    metrics = block_metrics(lambda X: scores(model, X), blocks, n_classes)
    return metrics.result(class_names=class_names, curves=True)


@checks_output("out", inputs=("data",))
def train(
    data,
    target: str | None = None,
    *,
    schema: Schema | None = None,
    out=None,
    options: TrainOptions | None = None,
    progress: Progress | None = None,
    memory: Monitor | None = None,
    boost: BoostOptions | None = None,
    guard: Guard | None = None,
) -> dict:
    """Train a model on ``data``; save the bundle to ``out``; return the summary.

    ``boost`` holds the :class:`~leanfit.options.BoostOptions` of ``--model xgboost``;
    ``guard`` how bad rows are treated (:class:`~leanfit.io.guard.Guard`).

    Memory: chunks of ``options.batch_rows`` rows, or as many as ``memory``'s limit
    allows after the libraries, the parser's buffers and the model are counted.
    """
    opts = options or TrainOptions()
    opts.check()
    memory = memory or Monitor.unbounded()
    progress = LearningCurve(progress)
    # Import the model's library first: the baseline is then interpreter and libraries,
    # and a hopeless limit is refused before any data is read. Memory an inspect pass
    # below leaves to the allocator is reused by the training pass, not added to it.
    import_library(opts.model)
    libraries = current_rss()
    memory.plan(fixed=PARSER_BYTES)
    schema = schema or inspect(data, target=target, memory=memory, guard=guard)
    check_target(schema, target)
    if opts.model == "xgboost":
        # after import_library: XGBoost is then loaded without the dataframe libraries
        from leanfit.engines.local.boost import train_booster

        return train_booster(data, schema, opts, boost, progress, memory, out, libraries, guard)
    started = time.perf_counter()
    encoder = Encoder.from_options(schema, opts)
    fixed = PARSER_BYTES + model_bytes(encoder.n_features, len(schema.classes), opts.model)
    row_bytes = chunk_row_bytes(schema, encoder, opts.model)
    plan = Plan(batch_rows=opts.batch_rows)
    if opts.batch_rows is None:
        plan = Plan(batch_rows=memory.plan(fixed=fixed, row_bytes=row_bytes, baseline=libraries))
    trainer = Trainer(schema, opts, progress, memory, plan, guard)
    with BlockCache() as train_cache, BlockCache() as holdout_cache:
        with memory.stage("train"):
            trainer.fit(data, train_cache, holdout_cache)
        with memory.stage("evaluate"):
            metrics = (
                evaluate_blocks(
                    trainer.model,
                    holdout_cache.blocks(),
                    len(schema.classes),
                    [str(c) for c in schema.classes],
                )
                if holdout_cache.rows
                else None
            )
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
    summary = {"input": [str(p) for p in resolve_paths(data)], **summary}
    summary |= trainer.counts.summary(guard, f"'{schema.target}'")
    if out is not None:
        with memory.stage("save"):
            record = {"run_record": run_record(memory, progress, summary)}
            save_bundle(out, schema, trainer.encoder, trainer.model, summary | record)
        summary["output"] = str(out)
    return summary
