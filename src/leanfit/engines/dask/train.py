"""Training on Dask: the local engine's models, fitted from partitions held by workers.

A cheap first pass counts the rows of every partition, so each partition knows
its first global row number and the holdout split selects exactly the rows the
local engine selects. Each partition is then parsed and encoded once, on a worker
(:func:`leanfit.encode.batches.encode_part`, as locally), into train and holdout
blocks that stay in that worker's memory (Dask spills them to disk past 70% of the
worker's share). What differs from the local engine is only where the sums run:

* ``nb``: per-partition naive Bayes models, merged (:mod:`leanfit.models.merge`);
* ``logistic``: :meth:`ExactLogisticRegression.fit_terms` with the loss and
  gradient summed by one task per worker on its resident blocks
  (:func:`~leanfit.models.logistic.block_terms`, as locally);
* ``xgboost``: ``xgboost.dask`` (:mod:`leanfit.engines.dask.boost`);
* ``sgd``, ``hinge``, ``passive-aggressive``, ``perceptron``: per-epoch model
  averaging. Every epoch each partition continues the current model over its own
  shuffled rows, in parallel; the models are then averaged, weighted by rows.
  ``mlp`` is not offered (its optimiser state does not average).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np

from leanfit.costs import max_slots
from leanfit.encode.batches import SIDES, class_weights, encode_part, encoded_columns
from leanfit.encode.encoder import Encoder
from leanfit.engines.dask.cluster import (
    Cluster,
    follow,
    gather_following,
    merge_metrics,
    partitions_for,
    row_offsets,
    tree_reduce,
)
from leanfit.engines.shared import EarlyStopping, block_metrics, holdout_result, log_loss_sum
from leanfit.errors import ConfigError, InputError
from leanfit.io.partitions import Part, read_part
from leanfit.models.merge import average_models, merge_naive_bayes
from leanfit.models.predictor import predictor_for
from leanfit.models.registry import model_for
from leanfit.options import INCREMENTAL, Plan, TrainOptions
from leanfit.progress import Progress
from leanfit.schema.columns import Schema
from leanfit.summary import linear_summary


@dataclass
class Job:
    """What every partition task needs; scattered once to every worker."""

    schema: Schema
    opts: TrainOptions
    types: dict | None
    encoder: Encoder | None = None
    features: list | None = None  # boosted trees

    @property
    def weights(self) -> np.ndarray | None:
        return class_weights(self.schema, self.opts)


# --------------------------------------------------------------------------- worker side


def encoded_partition(part: Part, offset: int, job: Job) -> dict[str, list]:
    """The partition's encoded ``(X, y, w)`` blocks on each side of the holdout split."""
    frame = read_part(part, job.types)
    frame = frame.select(encoded_columns(frame.schema, job.schema, job.encoder, job.opts))
    weights = job.weights
    out: dict[str, list] = {side: [] for side in SIDES}
    rows = Plan().rows(job.opts)
    for start in range(0, frame.height, rows):
        X, y, train = encode_part(
            frame.slice(start, rows), offset + start, job.schema, job.encoder, job.opts, False
        )
        for side, mask in zip(SIDES, (train, ~train)):
            if mask.any():
                keep = np.flatnonzero(mask)
                ys = y[keep]
                out[side].append((X[keep], ys, None if weights is None else weights[ys]))
    return out


def side(blocks: dict, which: str) -> list:
    return blocks[which]


def side_rows(blocks: dict) -> tuple[int, int]:
    return tuple(sum(len(y) for _, y, _ in blocks[s]) for s in SIDES)


def nb_part(blocks: list, job: Job):
    """A naive Bayes model of the partition's train rows (None when it has none)."""
    model = model_for(job.opts, sparse=job.encoder.sparse)
    classes = np.arange(len(job.schema.classes))
    for X, y, w in blocks:
        kwargs = {"classes": classes} if not hasattr(model, "classes_") else {}
        if not job.encoder.sparse:  # GaussianNB sums in the dtype of X: float64 is exact
            X = X.astype(np.float64)
        model.partial_fit(X, y, sample_weight=w, **kwargs)
    return model if hasattr(model, "classes_") else None


def terms_part(partitions: list[list], coef: np.ndarray, fit_intercept: bool):
    """Loss sum, gradient and weight sum of the train blocks of some partitions."""
    from leanfit.models.logistic import block_terms  # scikit-learn only when used

    loss, grad, sw = 0.0, np.zeros_like(coef), 0.0
    for blocks in partitions:
        for X, y, w in blocks:
            block_loss, block_grad, block_sw = block_terms(coef, X, y, w, fit_intercept)
            loss, grad, sw = loss + block_loss, grad + block_grad, sw + block_sw
    return loss, grad, sw


def squares_part(blocks: list, n_features: int) -> np.ndarray:
    """Column sums of squares and weight sum of a partition (see ``leanfit.models.logistic``)."""
    from leanfit.models.logistic import block_squares

    return sum((block_squares(X, y, w) for X, y, w in blocks), np.zeros(n_features + 1))


def metrics_part(blocks: list, model, encoder, n_classes: int):
    """StreamingMetrics of ``model`` on blocks (None when there are none)."""
    return block_metrics(predictor_for(model, encoder).proba, blocks, n_classes)


def loss_part(blocks: list, model) -> tuple[float, int]:
    return log_loss_sum(model, blocks)


def sgd_part(blocks: list, model, classes: np.ndarray, seed: int, epoch: int, index: int):
    """Continue ``model`` over the partition's train rows, shuffled; (model, rows)."""
    model = copy.deepcopy(model)
    rng = np.random.default_rng([seed, epoch, index])
    rows = 0
    for i in rng.permutation(len(blocks)):
        X, y, w = blocks[i]
        order = rng.permutation(len(y))
        kwargs = {} if hasattr(model, "classes_") else {"classes": classes}
        if w is not None:
            kwargs["sample_weight"] = w[order]
        model.partial_fit(X[order], y[order], **kwargs)
        rows += len(y)
    return (model, rows) if rows else (None, 0)


# --------------------------------------------------------------------------- client side


def check_model(opts: TrainOptions) -> None:
    if opts.model == "mlp":
        raise ConfigError(
            "--model mlp is not available with --engine dask (its optimiser state does not "
            "average across partitions). Use --engine local, or sgd, logistic, nb, xgboost."
        )


@dataclass
class Layout:
    """The input files, their partitions, each one's first global row number, the total
    number of rows and the parser types."""

    paths: list[str]
    parts: list[Part]
    offsets: list[int]
    rows: int
    types: dict | None


def layout(
    cl: Cluster, data, schema: Schema, block: int | None, guard=None, progress=None
) -> Layout:
    """Locate the partitions and count their rows (a cheap pass); with an active
    ``guard`` the rows are the good ones, read with the schema's types."""
    paths, parts, types = partitions_for(cl, data, schema, block, guard)
    offsets, rows = row_offsets(cl, parts, types, progress)
    return Layout(paths, parts, offsets, rows, types)


def fit(
    cl: Cluster, where: Layout, schema: Schema, opts: TrainOptions, progress: Progress | None = None
):
    """Train a linear or incremental ``opts.model``; return (model, encoder, summary)."""
    check_model(opts)
    progress = progress or Progress()
    started = time.perf_counter()
    c = cl.client
    parts, offsets, types = where.parts, where.offsets, where.types
    k = len(schema.classes)
    encoder = Encoder.from_options(schema, opts, max_slots(cl.worker_memory, k, opts.model))
    job = c.scatter(Job(schema, opts, types, encoder), broadcast=True)
    encoded = c.map(encoded_partition, parts, offsets, job=job, pure=False)
    train = c.map(side, encoded, which="train", pure=False)
    holdout = c.map(side, encoded, which="holdout", pure=False)
    with progress.stage("encode"):
        progress.plan(where.rows)
        futures = c.map(side_rows, encoded, pure=False)
        counts = np.array(gather_following(c, futures, progress, sum))
    del encoded, futures
    n_train, n_holdout = (int(x) for x in counts.sum(axis=0))
    if n_train == 0:
        raise InputError("no training rows: every labelled row fell in the holdout.")
    history: list[dict] = []
    epochs = 0  # of the sgd family
    if opts.model not in (*INCREMENTAL, "logistic"):
        raise ConfigError(f"--model {opts.model} is not available with --engine dask.")
    with progress.stage("L-BFGS" if opts.model == "logistic" else "fit"):
        if opts.model == "nb":
            progress.plan(n_train)
            futures = c.map(nb_part, train, job=job, pure=False)
            follow(futures, progress, counts[:, 0].tolist())
            model = merge_naive_bayes(c.gather(futures))
        elif opts.model == "logistic":
            model = _fit_logistic(c, train, counts[:, 0], opts, k, encoder.n_features, progress)
        else:
            model, epochs = _fit_sgd(
                c, train, holdout, counts, opts, k, encoder.sparse, history, progress
            )
    del train
    with progress.stage("holdout"):
        progress.plan(n_holdout)
        held = holdout_metrics(c, holdout, model, encoder, k, progress, counts[:, 1].tolist())
        names = [str(x) for x in schema.classes]
        metrics, cut = holdout_result(held, opts.threshold, names)
        if metrics and epochs:  # the last epoch's holdout loss, shown too
            last = {"epoch": epochs, "holdout_log_loss": metrics["log_loss"]}
            progress.note({"stage": "epoch", **last})
    summary = linear_summary(
        opts,
        Plan(),
        encoder,
        rows=(n_train, n_holdout),
        history=history,
        metrics=metrics,
        seconds=time.perf_counter() - started,
    ) | ({"threshold": cut} if cut is not None else {})
    return (
        model,
        encoder,
        summary
        | {
            "engine": "dask",
            "partitions": len(parts),
            "rows": where.rows,
        },
    )


def holdout_metrics(c, holdout: list, model, encoder, k: int, progress: Progress, rows: list):
    """The holdout blocks' StreamingMetrics, merged on the workers (None without rows);
    ``progress`` advances by ``rows[i]`` as partition ``i`` is scored."""
    shared = c.scatter(model, broadcast=True)
    per_part = c.map(metrics_part, holdout, model=shared, encoder=encoder, n_classes=k, pure=False)
    whole = tree_reduce(c, per_part, merge_metrics)
    follow(per_part, progress, rows)
    return whole.result()


def _fit_logistic(
    c, train: list, rows: np.ndarray, opts: TrainOptions, k: int, n_features: int, progress
):
    """The exact logistic, each loss/gradient evaluation summed by one task per worker
    on the blocks it holds (``rows``: the train rows of each partition)."""
    model = model_for(opts)
    groups = _by_worker(c, train)
    of_part = {f.key: int(n) for f, n in zip(train, rows, strict=True)}
    group_rows = [sum(of_part[f.key] for f in futures) for _, futures in groups]
    n_train = int(sum(rows))

    def terms(coef: np.ndarray):
        tasks = [
            c.submit(
                terms_part,
                futures,
                coef,
                model.fit_intercept,
                workers=[w],
                allow_other_workers=True,
                pure=False,
            )
            for w, futures in groups
        ]
        follow(tasks, progress, group_rows)
        parts = c.gather(tasks)
        return (
            sum(p[0] for p in parts),
            np.sum([p[1] for p in parts], axis=0),
            sum(p[2] for p in parts),
        )

    progress.plan(n_train, passes=2)  # column squares, first evaluation
    futures = c.map(squares_part, train, n_features=n_features, pure=False)
    follow(futures, progress, rows.tolist())
    squares = sum(c.gather(futures))
    if squares[-1] <= 0:
        raise InputError("the training rows hold no samples (or only zero sample weights).")

    def passed(iteration: int, loss: float) -> None:
        event = {"stage": "lbfgs", "iteration": iteration, "loss": loss}
        progress.note(event | {"max_iter": model.max_iter})
        progress.plan(n_train)

    return model.fit_terms(terms, squares, np.arange(k), n_features, progress=passed)


def _by_worker(c, futures: list) -> list[tuple[str, list]]:
    """The futures grouped by the worker holding them (one task per worker and L-BFGS
    evaluation instead of one per partition), in partition order."""
    from distributed import wait

    wait(futures)
    holders = c.who_has(futures)
    groups: dict[str, list] = {}
    for f in futures:
        groups.setdefault(sorted(holders[f.key])[0], []).append(f)
    return sorted(groups.items())


def _fit_sgd(
    c, train, holdout, counts, opts: TrainOptions, k: int, sparse: bool, history, progress
):
    """Per-epoch model averaging (see the module docstring), with the local engine's
    holdout-loss early stopping between epochs (``counts``: each partition's train and
    holdout rows); return the model and the epochs it was trained."""
    model = model_for(opts, sparse=sparse)
    classes = np.arange(k)
    stopper = EarlyStopping(opts.patience)
    progress.plan(int(counts.sum()), passes=opts.epochs)
    for epoch in range(1, opts.epochs + 1):
        if epoch > 1 and holdout:
            shared = c.scatter(model, broadcast=True)
            losses = c.map(loss_part, holdout, model=shared, pure=False)
            follow(losses, progress, counts[:, 1].tolist())
            sums = c.gather(losses)
            count = sum(n for _, n in sums)
            if count and stopper.stop(
                epoch - 1, sum(t for t, _ in sums) / count, history, progress.note
            ):
                break
        progress.note({"stage": "train", "epoch": epoch})
        shared = c.scatter(model, broadcast=True)
        futures = [
            c.submit(sgd_part, blocks, shared, classes, opts.seed, epoch, i, pure=False)
            for i, blocks in enumerate(train)
        ]
        follow(futures, progress, counts[:, 0].tolist())
        model = average_models(c.gather(futures), model)
    return model, epoch
