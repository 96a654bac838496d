"""Boosted trees on this machine: XGBoost ``hist`` fed batch by batch from the typed scan.

:class:`BatchIter` streams the data cast to the schema's storage types and hands
XGBoost one float32 block per batch (:mod:`leanfit.encode.trees`). XGBoost quantizes
the stream into a ``QuantileDMatrix``, or into an ``ExtMemQuantileDMatrix`` paged to
a temporary folder when the estimate of :func:`~leanfit.costs.estimate_matrix_bytes`
exceeds half of the memory limit.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import polars as pl
import xgboost as xgb

from leanfit.costs import estimate_matrix_bytes, reader_bytes, tree_row_bytes
from leanfit.encode.batches import RowCounts, class_weights, tree_columns, tree_sides
from leanfit.encode.cache import BlockCache
from leanfit.encode.trees import Feature, boost_features, xgb_names
from leanfit.engines.checkpoint import Checkpoint
from leanfit.engines.local.boost_checkpoint import BoostCheckpoint
from leanfit.engines.local.lossy import lossy_summary
from leanfit.engines.shared import holdout_result, save_trained
from leanfit.errors import ConfigError, InputError, MemoryBudgetExceeded, SchemaMismatch
from leanfit.io.guard import Guard
from leanfit.io.readers import largest_row_group
from leanfit.io.scan import iter_batches
from leanfit.io.source import resolve_paths
from leanfit.io.tempfiles import owned_tempdir
from leanfit.memory import MAX_ROWS as MAX_PAGE_ROWS
from leanfit.memory import Monitor
from leanfit.metrics import StreamingMetrics
from leanfit.models.booster import (
    BoostedModel,
    RoundReport,
    best_rounds,
    booster_params,
    booster_summary,
)
from leanfit.options import BoostOptions, Plan, TrainOptions
from leanfit.progress import Progress
from leanfit.schema.columns import Schema
from leanfit.schema.lossy import unrounded_schema
from leanfit.schema.rules import scan_with_schema

QUANTIZE_PASSES = {"train": 4, "holdout": 3}  # XGBoost's reads of each side's iterator
Batch = tuple[np.ndarray, np.ndarray, np.ndarray | None]


class BatchIter(xgb.DataIter):
    """The ``which`` side ("train" or "holdout") of the split, batch by batch.

    Rows are split as every stage splits them (:func:`leanfit.encode.batches.tree_sides`);
    rows without a label are skipped. After a
    pass, ``rows`` holds the number of rows it handed over (None before). With
    ``blocks``, the first pass stores its blocks and later passes read them back;
    a ``sibling`` (the other side, with its own ``blocks``) is filled by the same
    parse, so the file is parsed once for both sides.
    """

    def __init__(
        self,
        data,
        schema: Schema,
        opts: TrainOptions,
        which: str = "train",
        *,
        features: list[Feature] | None = None,
        cache_prefix: str | None = None,
        blocks: BlockCache | None = None,
        sibling: BatchIter | None = None,
        rows: int | None = None,
        guard: Guard | None = None,
        progress: Progress | None = None,
    ) -> None:
        if which not in ("train", "holdout"):
            raise ConfigError(f"BatchIter: which must be 'train' or 'holdout'. Got {which!r}.")
        super().__init__(cache_prefix=cache_prefix, release_data=True)
        self.schema, self.opts, self.which = schema, opts, which
        self.features = features or boost_features(schema, opts.drop)[0]
        self.weights = class_weights(schema, opts)
        self.types = ["c" if f.kind == "category" else "q" for f in self.features]
        self.names = xgb_names(self.features)
        self.batch_rows = rows or Plan().rows(opts)
        self.guard, self.counts = guard, RowCounts()
        self.progress = progress or Progress()
        self.paths, self.lf = self._scan(data)
        self.rows: int | None = None
        self._seen, self._pass = 0, None
        self.blocks, self._cached = blocks, None
        if sibling is not None and (sibling.blocks is None or sibling.which == which):
            raise ConfigError("BatchIter: a sibling must be the other side, with blocks.")
        self.sibling = sibling

    def _scan(self, data) -> tuple[list[Path], pl.LazyFrame]:
        paths = resolve_paths(data)
        lf = scan_with_schema(paths, self.schema, self.guard)
        split = [self.opts.split_by] if self.opts.split_by else []
        needed = [f.name for f in self.features] + [self.schema.target, *split]
        missing = [n for n in needed if n not in lf.collect_schema().names()]
        if missing:
            raise SchemaMismatch(f"{paths[0]}: columns {missing} of the schema are missing.")
        exprs = tree_columns(lf.collect_schema(), self.schema, self.features, self.opts)
        return paths, lf.select(exprs)

    def batches(self) -> Iterator[Batch]:
        """One pass: ``(X, y, w)`` per batch with rows on this side.

        With ``blocks``, the first complete pass parses and stores the blocks, and
        later passes read them back instead of parsing again.
        """
        if self._cached is not None:
            yield from self.blocks.blocks(self._cached)
            return
        first = self.blocks.count if self.blocks else 0
        other = self.sibling if self.sibling is not None and self.sibling._cached is None else None
        other_first = other.blocks.count if other else 0
        for side, (X, y, w) in self._parse(both=other is not None):
            if side != self.which:
                other.blocks.append(X, y, w)
                continue
            if self.blocks is not None:
                self.blocks.append(X, y, w)
            yield X, y, w
        if self.blocks is not None:
            self._cached = np.arange(first, self.blocks.count)
        if other is not None:
            other._cached = np.arange(other_first, other.blocks.count)

    def _parse(self, both: bool = False) -> Iterator[tuple[str, Batch]]:
        """``(side, batch)`` for this side, and with ``both`` for the other side too."""
        opts, start, self.counts = self.opts, 0, RowCounts()
        if self.which == "holdout" and not opts.holdout and not both:
            return
        for frame in iter_batches(self.lf, self.paths, self.batch_rows):
            height = frame.height
            sides = tree_sides(
                frame, start, self.schema, self.features, opts, self.weights, self.counts
            )
            del frame
            start += height
            for side, batch in sides:
                if side == self.which or both:
                    yield side, batch

    def reuse_blocks(self, rows: int) -> None:
        """Read the ``rows`` rows of ``blocks`` (a checkpoint's, filled by an earlier
        run's first pass) instead of parsing."""
        self._cached, self.rows = np.arange(self.blocks.count), rows

    def reset(self) -> None:
        """Restart the scan at the first row."""
        self._pass, self._seen = None, 0

    def next(self, input_data: Callable) -> bool:
        """Hand XGBoost the next batch; False at the end of a pass."""
        self._pass = self._pass or self.batches()
        item = next(self._pass, None)
        if item is None:
            self.rows = self._seen
            self.reset()
            return False
        X, y, w = item
        self._seen += len(y)
        self.progress.advance(len(y))
        input_data(data=X, label=y, weight=w, feature_types=self.types, feature_names=self.names)
        return True


def _boost(
    iters: list[BatchIter],
    schema: Schema,
    opts: TrainOptions,
    bopts: BoostOptions,
    external: bool,
    memory: Monitor,
    saver: BoostCheckpoint | None = None,
    init: xgb.Booster | None = None,
) -> xgb.Booster:
    """Quantize train (then holdout, with the train bins) and boost; matrices die on
    return. The memory limit is checked after every round. A ``saver`` saves the run
    after the parse and as rounds go, and continues the rounds it saved; ``init``: continue
    that booster with ``bopts.rounds`` more rounds (``leanfit update``)."""
    kind = xgb.ExtMemQuantileDMatrix if external else xgb.QuantileDMatrix
    common = {"max_bin": bopts.max_bin, "enable_categorical": True, "nthread": bopts.nthread}
    progress = memory.progress
    with progress.stage("quantize"):
        shares = {"train": 1 - opts.holdout, "holdout": opts.holdout}
        rows = schema.rows_in(iters[0].paths) or 0
        progress.plan(rows * sum(QUANTIZE_PASSES[s] * shares[s] for s in shares))
        train = _quantize(kind, iters[0], **common)
        if train is None:
            raise InputError("no training rows: every labelled row fell in the holdout.")
        evals = [
            (m, "holdout") for it in iters[1:] if (m := _quantize(kind, it, ref=train, **common))
        ]
    _release_free_heap()  # what the parse freed, before XGBoost allocates its per-row state
    if bopts.early_stopping_rounds and not evals:
        raise InputError("no holdout rows to watch for early stopping; raise --holdout.")

    def each_round(event: dict) -> None:
        memory.check()
        progress.note(event)
        progress.advance()

    start = init
    if saver is not None:
        saver.after_parse()
        start = saver.booster() or init
    base = init.num_boosted_rounds() if init is not None else 0
    done = start.num_boosted_rounds() - base if start is not None else 0
    callbacks = [RoundReport(each_round, done)]  # rounds of this run: update adds to base
    if saver is not None:
        callbacks += saver.callbacks(bopts, start)
    with progress.stage("boost"):
        progress.plan(bopts.rounds, unit="rounds")
        progress.advance(done)
        return xgb.train(
            booster_params(len(schema.classes), opts.seed, bopts),
            train,
            num_boost_round=bopts.rounds - done,
            evals=evals,
            early_stopping_rounds=None if saver else bopts.early_stopping_rounds,
            verbose_eval=False,
            callbacks=callbacks,
            xgb_model=start,
        )


def _release_free_heap() -> None:
    """Return the C heap's free pages to the OS (glibc ``malloc_trim``; elsewhere a no-op)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _quantize(kind: type, it: BatchIter, **kwargs) -> xgb.DMatrix | None:
    """The quantized matrix of ``it``'s rows, or None when that side has none."""
    try:
        return kind(it, **kwargs)
    except xgb.core.XGBoostError:
        if it.rows == 0:
            return None
        raise


def holdout_metrics(
    model: BoostedModel, holdout: BatchIter, progress: Progress
) -> StreamingMetrics:
    """:class:`StreamingMetrics` of ``model`` on the holdout rows, batch by batch."""
    metrics = StreamingMetrics(model.n_classes)
    for X, y, _ in progress.counted(holdout.batches()):
        metrics.update(y.astype(np.int64), model.proba(X))
    return metrics


def fit_booster(
    data,
    schema: Schema,
    train_options: TrainOptions,
    boost_options: BoostOptions,
    memory: Monitor | None = None,
    *,
    plan: Plan | None = None,
    guard: Guard | None = None,
    checkpoint: Checkpoint | None = None,
    init: BoostedModel | None = None,
) -> tuple[BoostedModel, dict]:
    """Train boosted trees on ``data`` in streaming passes.

    Parameters
    ----------
    data : path, directory, glob or list of them
        CSV or Parquet input, read with ``schema``'s types.
    schema : Schema
        The inspect result, with a target.
    train_options : TrainOptions
        Uses ``holdout``, ``seed``, ``split_by``, ``drop``, ``class_weight``, ``batch_rows``.
    boost_options : BoostOptions
        XGBoost settings.
    memory : Monitor, optional
        Checked after each boosting round; its ``progress`` hears of every round.
    plan : Plan, optional
        Rows per batch and the memory limit under which the matrix may go to disk (in
        pages of ``plan.page_rows`` rows).
    guard : Guard, optional
        How bad rows are treated.
    checkpoint : Checkpoint, optional
        Where the run is saved as it goes (the first pass's blocks, the rounds), and
        what it resumes from (:mod:`leanfit.engines.checkpoint`).
    init : BoostedModel, optional
        A trained model to continue (``leanfit update``): its features and trees are
        kept and ``boost_options.rounds`` more trees are added.

    Returns
    -------
    model : BoostedModel
        Trimmed to the best round when early stopping is on.
    summary : dict
        Rows, matrix kind, rounds, the top gains (``feature_importance``) and the
        holdout ``metrics`` (None without a holdout).
    """
    opts, bopts, plan = train_options, boost_options, plan or Plan()
    memory = memory or Monitor.unbounded()
    opts.check()
    bopts.check()
    if schema.target is None:
        raise ConfigError("the schema has no target: run `leanfit inspect --target` to make one.")
    bopts = bopts.effective(opts.holdout)
    started = time.perf_counter()
    features, notes = (init.features, []) if init else boost_features(schema, opts.drop)
    if not features:
        raise ConfigError("no feature columns left to train on.")
    estimate = estimate_matrix_bytes(schema, features, bopts.max_bin, holdout=opts.holdout)
    external = plan.memory_limit is not None and estimate > plan.memory_limit / 2
    rows = plan.rows(opts)
    if external and plan.page_rows:  # fewer, larger pages: less state per page, faster
        rows = plan.page_rows
    if external:
        estimate = estimate_matrix_bytes(
            schema, features, bopts.max_bin, holdout=opts.holdout, external=True, batch_rows=rows
        )
    with owned_tempdir("leanfit-xgb-") as tmp:
        kept = checkpoint.cache if checkpoint else lambda side: BlockCache(tmp)
        iters = _iters(
            data, schema, opts, features, tmp, external, rows, guard, memory.progress, kept
        )
        saver = checkpoint and BoostCheckpoint(checkpoint, schema, plan, iters)
        booster = _boost(iters, schema, opts, bopts, external, memory, saver, init and init.booster)
        trained = booster.num_boosted_rounds()
        model = BoostedModel(best_rounds(booster, bopts), features, len(schema.classes))
        names = [str(c) for c in schema.classes]
        held = iters[1].rows if opts.holdout else 0
        with memory.progress.stage("holdout"):
            memory.progress.plan(held)
            metrics, cut = holdout_result(
                holdout_metrics(model, iters[1], memory.progress) if held else None,
                opts.threshold,
                names,
            )
        cache_bytes = sum(it.blocks.nbytes for it in iters if it.blocks)
    summary = booster_summary(
        model,
        schema,
        opts.as_dict() | {"batch_rows": rows},
        bopts,
        rows=(iters[0].rows, held),
        rounds_trained=trained,
        notes=notes,
        metrics=metrics,
    )
    counts = iters[0].counts.summary(guard, f"'{schema.target}'")
    return model, {"input": iters[0].paths.shown} | summary | counts | {
        "plan": plan.as_dict(),
        "matrix": "ExtMemQuantileDMatrix" if external else "QuantileDMatrix",
        "matrix_estimate_bytes": estimate,
        "cache_bytes": cache_bytes,
        "train_seconds": round(time.perf_counter() - started, 3),
    } | ({"threshold": cut} if cut is not None else {})


def plan_booster(
    schema: Schema, opts: TrainOptions, memory: Monitor, libraries: int, data=None
) -> Plan:
    """Rows per batch from the budget (reading ``data``), and pages of two batches when
    the budget holds them (XGBoost keeps some state per page: fewer pages use less
    memory, train faster)."""
    limit = memory.budget
    if opts.batch_rows is not None:
        return Plan(batch_rows=opts.batch_rows, memory_limit=limit)
    features, _ = boost_features(schema, opts.drop)
    row_bytes = tree_row_bytes(schema, len(features))
    reader = reader_bytes(schema, None if data is None else largest_row_group(resolve_paths(data)))
    rows = memory.plan(fixed=reader, row_bytes=row_bytes, baseline=libraries)
    page_rows = None
    if rows == MAX_PAGE_ROWS:
        fixed = reader + MAX_PAGE_ROWS * row_bytes
        with contextlib.suppress(MemoryBudgetExceeded):
            more = memory.plan(fixed=fixed, row_bytes=row_bytes, baseline=libraries)
            page_rows = rows + min(more, MAX_PAGE_ROWS)
    return Plan(batch_rows=rows, memory_limit=limit, page_rows=page_rows)


def train_booster(
    data,
    schema: Schema,
    opts: TrainOptions,
    boost,
    memory: Monitor,
    out,
    libraries: int,
    guard: Guard | None = None,
    checkpoint: Checkpoint | None = None,
) -> dict:
    """``leanfit train --model xgboost``: plan, train with the limit checked after every
    round, save (``checkpoint``: saved as it goes, or resumed)."""
    if checkpoint and checkpoint.saved:
        plan = Plan(**checkpoint.progress["plan"])
    else:
        plan = plan_booster(schema, opts, memory, libraries, data)
    with memory.stage("train"):
        model, summary = fit_booster(
            data,
            schema,
            opts,
            boost or BoostOptions(),
            memory,
            plan=plan,
            guard=guard,
            checkpoint=checkpoint,
        )
    unrounded = unrounded_trees(data, schema, opts, model.features, guard, summary["metrics"])
    row_bytes = tree_row_bytes(schema, len(model.features))
    cut = summary.get("threshold")
    reader = reader_bytes(schema, largest_row_group(resolve_paths(data)))
    summary |= lossy_summary(schema, memory, cut, unrounded, model.proba, row_bytes, reader)
    return save_trained(out, schema, None, model, summary, memory)


def unrounded_trees(data, schema, opts, features, guard, holdout) -> Callable | None:
    """The holdout rows with the float16 columns (--lossy-floats) read unrounded, in
    chunks of so many rows (engines.local.lossy); None without such columns or holdout."""
    exact = unrounded_schema(schema)
    if exact is None or not holdout:
        return None
    features = [dataclasses.replace(f, float16=False) for f in features]
    return lambda rows: BatchIter(
        data, exact, opts, "holdout", features=features, rows=rows, guard=guard
    ).batches()


def _iters(
    data,
    schema,
    opts,
    features,
    tmp: str,
    external: bool,
    rows: int,
    guard: Guard | None,
    progress,
    cache: Callable[[str], BlockCache],
) -> list[BatchIter]:
    """The train iterator (and the holdout one, filled by the same parse), caching their
    blocks in ``cache(side)``; with ``external``, XGBoost's pages go to ``tmp``."""
    sides = ["holdout", "train"] if opts.holdout else ["train"]
    iters: list[BatchIter] = []
    for side in sides:
        it = BatchIter(
            data,
            schema,
            opts,
            side,
            features=features,
            cache_prefix=f"{tmp}/{side}" if external else None,
            blocks=cache(side),
            sibling=iters[0] if iters else None,
            rows=rows,
            guard=guard,
            progress=progress,
        )
        iters.append(it)
    return iters[::-1]
