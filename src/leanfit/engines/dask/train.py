"""Training on Dask: the local engine's models, fitted from partitions held by workers.

A cheap first pass counts the rows of every partition, so each partition knows
its first global row number and the holdout split selects exactly the rows the
local engine selects. Each partition is then parsed and encoded once, on a worker
(:func:`leanfit.encode.batches.encode_part`, as locally), into train and holdout
blocks that stay in that worker's memory (Dask spills them to disk past 70% of the
worker's share): partition ``i`` on worker ``i mod workers``
(:meth:`~leanfit.engines.dask.cluster.Cluster.place`), and every later task on its
blocks there too, so blocks never travel. What differs from the local engine is only
where the sums run:

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
    resolved,
    row_offsets,
    tree_reduce,
)
from leanfit.engines.shared import EarlyStopping, block_metrics, holdout_result, log_loss_sum
from leanfit.errors import ConfigError, InputError
from leanfit.io.partitions import Part, read_part
from leanfit.io.translate import located_values, translated
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
    """The partition's encoded ``(X, y, w)`` blocks on each side of the holdout split,
    compact (:class:`~leanfit.encode.onehot.OneHotBlock`, as the local engine caches
    them: a third of CSR's bytes to hold and to read in every L-BFGS evaluation) and
    expanded only where a model needs plain rows."""
    frame = read_part(part, job.types)
    with located_values(part.input), translated(where="a feature column"):
        frame = frame.select(encoded_columns(frame.schema, job.schema, job.encoder, job.opts))
    weights = job.weights
    out: dict[str, list] = {side: [] for side in SIDES}
    rows = Plan().rows(job.opts)
    for start in range(0, frame.height, rows):
        with located_values(part.input), translated(where="a feature column"):
            X, y, train = encode_part(
                frame.slice(start, rows), offset + start, job.schema, job.encoder, job.opts, True
            )
        for side, mask in zip(SIDES, (train, ~train)):
            if mask.any():
                keep = np.flatnonzero(mask)
                ys = y[keep]
                out[side].append((X[keep], ys, None if weights is None else weights[ys]))
    return out


def side_rows(blocks: dict) -> tuple[int, int]:
    return tuple(sum(len(y) for _, y, _ in blocks[s]) for s in SIDES)


def nb_part(encoded: dict, job: Job):
    """A naive Bayes model of the partition's train rows (None when it has none)."""
    model = model_for(job.opts, sparse=job.encoder.sparse)
    classes = np.arange(len(job.schema.classes))
    for X, y, w in job.encoder.plain(encoded["train"]):
        kwargs = {"classes": classes} if not hasattr(model, "classes_") else {}
        if not job.encoder.sparse:  # GaussianNB sums in the dtype of X: float64 is exact
            X = X.astype(np.float64)
        model.partial_fit(X, y, sample_weight=w, **kwargs)
    return model if hasattr(model, "classes_") else None


def terms_part(partitions: list[dict], coef: np.ndarray, fit_intercept: bool):
    """Loss sum, gradient, weight sum and rows of the train blocks of some partitions."""
    from leanfit.models.logistic import block_terms  # scikit-learn only when used

    loss, grad, sw, rows = 0.0, np.zeros_like(coef), 0.0, 0
    for encoded in partitions:
        for X, y, w in encoded["train"]:
            block_loss, block_grad, block_sw = block_terms(coef, X, y, w, fit_intercept)
            loss, grad, sw = loss + block_loss, grad + block_grad, sw + block_sw
            rows += len(y)
    return loss, grad, sw, rows


def squares_part(encoded: dict, n_features: int) -> np.ndarray:
    """Column sums of squares and weight sum of a partition (see ``leanfit.models.logistic``)."""
    from leanfit.models.logistic import block_squares

    blocks = encoded["train"]
    return sum((block_squares(X, y, w) for X, y, w in blocks), np.zeros(n_features + 1))


def metrics_part(blocks: list, model, encoder, n_classes: int):
    """StreamingMetrics of ``model`` on blocks (None when there are none)."""
    return block_metrics(predictor_for(model, encoder).proba, blocks, n_classes)


def holdout_part(encoded: dict, model, job: Job):
    """StreamingMetrics of ``model`` on the partition's holdout rows (None without)."""
    held = job.encoder.plain(encoded["holdout"])
    return metrics_part(held, model, job.encoder, len(job.schema.classes))


def loss_part(encoded: dict, model, job: Job) -> tuple[float, int]:
    return log_loss_sum(model, job.encoder.plain(encoded["holdout"]))


def sgd_part(encoded: dict, model, job: Job, epoch: int, index: int):
    """Continue ``model`` over the partition's train rows, shuffled; (model, rows)."""
    model = copy.deepcopy(model)
    classes = np.arange(len(job.schema.classes))
    rng = np.random.default_rng([job.opts.seed, epoch, index])
    rows = 0
    blocks = encoded["train"]
    for i in rng.permutation(len(blocks)):
        X, y, w = blocks[i]
        order = rng.permutation(len(y))
        kwargs = {} if hasattr(model, "classes_") else {"classes": classes}
        if w is not None:
            kwargs["sample_weight"] = w[order]
        model.partial_fit(job.encoder.expand(X, order), y[order], **kwargs)
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
    return Layout(paths, parts, offsets, rows, resolved(types))


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
    encoded = [
        c.submit(encoded_partition, part, offset, job, **cl.place(i), pure=False)
        for i, (part, offset) in enumerate(zip(parts, offsets, strict=True))
    ]
    first = _first_pass(cl, opts.model, encoded, job, encoder.n_features)
    with progress.stage("encode"):
        progress.plan(where.rows)
        futures = on_blocks(cl, side_rows, encoded)
        counts = np.array(gather_following(c, futures, progress, sum))
    del futures
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
            follow(first, progress, counts[:, 0].tolist())
            model = merge_naive_bayes(c.gather(first))
        elif opts.model == "logistic":
            model = _fit_logistic(cl, encoded, first, counts[:, 0], opts, k, progress)
        else:
            model, epochs = _fit_sgd(cl, encoded, counts, job, opts, encoder, history, progress)
    with progress.stage("holdout"):
        progress.plan(n_holdout)
        held = holdout_metrics(cl, encoded, model, job, progress, counts[:, 1].tolist())
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


def _first_pass(cl: Cluster, model: str, encoded: list, job, n_features: int) -> list:
    """The fit's first pass over the blocks, submitted with the encoding so that each
    task starts as soon as its blocks are made, with no wait for the client:
    naive Bayes models, or the logistic's column squares (none for the sgd family)."""
    if model == "nb":
        return on_blocks(cl, nb_part, encoded, job)
    if model == "logistic":
        return on_blocks(cl, squares_part, encoded, n_features)
    return []


def on_blocks(cl: Cluster, fn, encoded: list, *args) -> list:
    """``fn(encoded[i], *args)`` for every partition ``i``, on the worker holding its
    blocks (a task elsewhere would first copy them there)."""
    c = cl.client
    return [c.submit(fn, e, *args, **cl.place(i), pure=False) for i, e in enumerate(encoded)]


def holdout_metrics(cl: Cluster, encoded: list, model, job, progress: Progress, rows: list):
    """The holdout blocks' StreamingMetrics, merged on the workers (None without rows);
    ``progress`` advances by ``rows[i]`` as partition ``i`` is scored."""
    shared = cl.client.scatter(model, broadcast=True)
    per_part = on_blocks(cl, holdout_part, encoded, shared, job)
    whole = tree_reduce(cl.client, per_part, merge_metrics)
    follow(per_part, progress, rows)
    return whole.result()


def _fit_logistic(
    cl: Cluster, encoded: list, per_part: list, rows: np.ndarray, opts: TrainOptions, k, progress
):
    """The exact logistic, each loss/gradient evaluation summed by one task per worker
    on the blocks it holds (``per_part``: futures of each partition's column squares;
    ``rows``: the train rows of each partition)."""
    c, model = cl.client, model_for(opts)
    held = len(cl.addresses) or 1  # partition i is on worker i % held (Cluster.place)
    groups = [encoded[j::held] for j in range(min(held, len(encoded)))]

    def terms(coef: np.ndarray):
        tasks = [
            c.submit(terms_part, group, coef, model.fit_intercept, **cl.place(j), pure=False)
            for j, group in enumerate(groups)
        ]
        parts = c.gather(tasks)  # one round trip per evaluation
        progress.advance(sum(p[3] for p in parts))
        return (
            sum(p[0] for p in parts),
            np.sum([p[1] for p in parts], axis=0),
            sum(p[2] for p in parts),
        )

    progress.plan(None)  # passes not known ahead (see the local engine's _fit_exact)
    follow(per_part, progress, rows.tolist())
    squares = sum(c.gather(per_part))
    n_features = len(squares) - 1
    if squares[-1] <= 0:
        raise InputError("the training rows hold no samples (or only zero sample weights).")

    def passed(iteration: int, loss: float) -> None:
        event = {"stage": "lbfgs", "iteration": iteration, "loss": loss}
        progress.note(event | {"max_iter": model.max_iter})

    return model.fit_terms(terms, squares, np.arange(k), n_features, progress=passed)


def _fit_sgd(cl: Cluster, encoded, counts, job, opts: TrainOptions, encoder, history, progress):
    """Per-epoch model averaging (see the module docstring), with the local engine's
    holdout-loss early stopping between epochs (``counts``: each partition's train and
    holdout rows); return the model and the epochs it was trained."""
    c, model = cl.client, model_for(opts, sparse=encoder.sparse)
    stopper = EarlyStopping(opts.patience)
    progress.plan(int(counts.sum()), passes=opts.epochs)
    for epoch in range(1, opts.epochs + 1):
        if epoch > 1 and counts[:, 1].any():
            shared = c.scatter(model, broadcast=True)
            losses = on_blocks(cl, loss_part, encoded, shared, job)
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
            c.submit(sgd_part, e, shared, job, epoch, i, **cl.place(i), pure=False)
            for i, e in enumerate(encoded)
        ]
        follow(futures, progress, counts[:, 0].tolist())
        model = average_models(c.gather(futures), model)
    return model, epoch
