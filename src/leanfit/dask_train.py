"""Training on Dask: the local engine's models, fitted from partitions held by workers.

A cheap first pass counts the rows of every partition, so each partition knows
its first global row number and the holdout split selects exactly the rows the
local engine selects. Each partition is then parsed and encoded once, on a worker,
into train and holdout blocks that stay in that worker's memory (Dask spills them
to disk past 70% of the worker's share).

* ``nb``: per-partition naive Bayes counts, summed (Bernoulli: identical to the
  local model) or merged Chan-style (Gaussian: the same up to float rounding).
* ``logistic``: full-batch L-BFGS with the local engine's objective, options and
  block terms (:func:`leanfit.logistic._block_terms`): every evaluation is one
  task per partition on its resident blocks, summed on the client.
* ``xgboost``: ``xgboost.dask`` on the same float32 blocks and category codes as
  :func:`leanfit.boost.feature_matrix`, with the same parameters.
* ``sgd``, ``hinge``, ``passive-aggressive``, ``perceptron``: per-epoch model
  averaging. Every epoch each partition continues the current model over its own
  shuffled rows, in parallel; the models are then averaged, weighted by rows, and
  the sample counter ``t_`` advanced as if the partitions had run one after the
  other. ``mlp`` is not offered (its optimiser state does not average).
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from leanfit.dask_engine import Cluster, _locate, merge_metrics, row_offsets, tree_reduce
from leanfit.dask_parts import Part, parse_types, read_part
from leanfit.encode import Encoder
from leanfit.errors import ConfigError, InputError
from leanfit.models import INCREMENTAL, make_model, scores
from leanfit.schema import Schema
from leanfit.sources import DEFAULT_BATCH_ROWS
from leanfit.train import TrainOptions, _balanced_weights, _encoded_part, encoded_columns

SIDES = ("train", "holdout")


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
        return _balanced_weights(self.schema) if self.opts.class_weight else None


# --------------------------------------------------------------------------- worker side


def _frame(part: Part, job: Job) -> pl.DataFrame:
    frame = read_part(part, job.types)
    return frame.select(encoded_columns(frame.schema, job.schema, job.encoder, job.opts))


def encode_part(part: Part, offset: int, job: Job) -> dict[str, list]:
    """The partition's encoded ``(X, y, w)`` blocks on each side of the holdout split."""
    frame = _frame(part, job)
    weights = job.weights
    out: dict[str, list] = {side: [] for side in SIDES}
    rows = job.opts.batch_rows or DEFAULT_BATCH_ROWS
    for start in range(0, frame.height, rows):
        X, y, train = _encoded_part(
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
    model = make_model("nb", seed=job.opts.seed, sparse=job.encoder.sparse)
    classes = np.arange(len(job.schema.classes))
    for X, y, w in blocks:
        kwargs = {"classes": classes} if not hasattr(model, "classes_") else {}
        if not job.encoder.sparse:  # GaussianNB sums in the dtype of X: float64 is exact
            X = X.astype(np.float64)
        model.partial_fit(X, y, sample_weight=w, **kwargs)
    return model if hasattr(model, "classes_") else None


def terms_part(partitions: list[list], coef: np.ndarray, fit_intercept: bool):
    """Loss sum, gradient and weight sum of the train blocks of some partitions."""
    from leanfit.logistic import _block_terms

    loss, grad, sw = 0.0, np.zeros_like(coef), 0.0
    for blocks in partitions:
        for X, y, w in blocks:
            block_loss, block_grad, block_sw = _block_terms(coef, X, y, w, fit_intercept)
            loss, grad, sw = loss + block_loss, grad + block_grad, sw + block_sw
    return loss, grad, sw


def squares_part(blocks: list, n_features: int) -> np.ndarray:
    """Column sums of squares and weight sum of a partition (see ``leanfit.logistic``)."""
    from leanfit.logistic import _block_squares

    return sum((_block_squares(X, y, w) for X, y, w in blocks), np.zeros(n_features + 1))


def metrics_part(blocks: list, model, n_classes: int):
    """StreamingMetrics of ``model`` on blocks (None when there are none)."""
    from leanfit.metrics import StreamingMetrics

    if not blocks:
        return None
    metrics = StreamingMetrics(n_classes)
    for X, y, _ in blocks:
        metrics.update(np.asarray(y, dtype=np.int64), _proba(model, X))
    return metrics


def _proba(model, X) -> np.ndarray:
    if hasattr(model, "booster"):
        from leanfit.boost import _proba as boosted

        return boosted(model.booster.inplace_predict(X))
    return scores(model, X)


def loss_part(blocks: list, model) -> tuple[float, int]:
    total, count = 0.0, 0
    for X, y, _ in blocks:
        p = np.clip(scores(model, X)[np.arange(len(y)), y], 1e-15, 1.0)
        total -= float(np.log(p).sum())
        count += len(y)
    return total, count


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


def fit(cl: Cluster, data, schema: Schema, opts: TrainOptions, boost, progress, block):
    """Train ``opts.model``; return (model, encoder or None, summary)."""
    check_model(opts)
    progress = progress or (lambda event: None)
    started = time.perf_counter()
    c = cl.client
    paths, parts = _locate(cl, data, block)
    types = c.submit(parse_types, paths, schema.read_overrides(), pure=False).result()
    offsets, rows = row_offsets(cl, parts, types)
    if opts.model == "xgboost":
        from leanfit.dask_boost import fit_booster

        return fit_booster(cl, parts, offsets, schema, opts, boost, types, started)
    encoder = Encoder.from_schema(
        schema,
        drop=opts.drop,
        hash_width=opts.hash_width,
        missing_indicators=opts.missing_indicators,
    )
    job = c.scatter(Job(schema, opts, types, encoder), broadcast=True)
    encoded = c.map(encode_part, parts, offsets, job=job, pure=False)
    train = c.map(side, encoded, which="train", pure=False)
    holdout = c.map(side, encoded, which="holdout", pure=False)
    counts = np.array(c.gather(c.map(side_rows, encoded, pure=False)))
    del encoded
    n_train, n_holdout = (int(x) for x in counts.sum(axis=0))
    if n_train == 0:
        raise InputError("no training rows: every labelled row fell in the holdout.")
    k = len(schema.classes)
    history: list[dict] = []
    if opts.model == "nb":
        model = _merge_nb(c.gather(c.map(nb_part, train, job=job, pure=False)))
    elif opts.model == "logistic":
        model = _fit_logistic(c, train, opts, k, encoder.n_features, progress)
    elif opts.model in INCREMENTAL:
        model = _fit_sgd(c, train, holdout, opts, k, encoder.sparse, history, progress)
    else:
        raise ConfigError(f"--model {opts.model} is not available with --engine dask.")
    del train
    shared = c.scatter(model, broadcast=True)
    merged = tree_reduce(
        c, c.map(metrics_part, holdout, model=shared, n_classes=k, pure=False), merge_metrics
    )
    metrics = merged.result()
    summary = {
        "model": opts.model,
        "options": asdict(opts),
        "engine": "dask",
        "partitions": len(parts),
        "rows": rows,
        "rows_train": n_train,
        "rows_holdout": n_holdout,
        "features": encoder.n_features,
        "sparse": encoder.sparse,
        "dropped": encoder.dropped,
        "epochs_run": len(history) + 1 if opts.model in INCREMENTAL else None,
        "history": history,
        "train_seconds": round(time.perf_counter() - started, 3),
        "metrics": metrics.result() if metrics is not None else None,
    }
    return model, encoder, summary


def _merge_nb(models: list):
    """One naive Bayes model from per-partition ones: counts add, moments merge."""
    fitted = [m for m in models if m is not None]
    model = copy.deepcopy(fitted[0])
    if hasattr(model, "feature_count_"):  # BernoulliNB: sums of counts
        model.class_count_ = np.sum([m.class_count_ for m in fitted], axis=0)
        model.feature_count_ = np.sum([m.feature_count_ for m in fitted], axis=0)
        model._update_feature_log_prob(model._check_alpha())
        model._update_class_log_prior()
        return model
    n = np.array([m.class_count_ for m in fitted], dtype=np.float64)  # (parts, classes)
    mu = np.array([m.theta_ for m in fitted], dtype=np.float64)  # (parts, classes, features)
    var = np.array([m.var_ - m.epsilon_ for m in fitted], dtype=np.float64)
    total = n.sum(axis=0)
    safe = np.where(total > 0, total, 1.0)
    mean = (n[..., None] * mu).sum(axis=0) / safe[:, None]
    m2 = (n[..., None] * (var + (mu - mean) ** 2)).sum(axis=0)
    var_all = m2 / safe[:, None]
    overall = (total[:, None] * mean).sum(axis=0) / total.sum()
    spread = (total[:, None] * (var_all + (mean - overall) ** 2)).sum(axis=0) / total.sum()
    model.epsilon_ = model.var_smoothing * float(spread.max())
    dtype = fitted[0].theta_.dtype
    model.theta_ = mean.astype(dtype)
    model.var_ = (var_all + model.epsilon_).astype(dtype)
    model.class_count_ = total.astype(fitted[0].class_count_.dtype)
    model.class_prior_ = (total / total.sum()).astype(fitted[0].class_prior_.dtype)
    return model


def _fit_logistic(c, train: list, opts: TrainOptions, k: int, n_features: int, progress):
    """Full-batch L-BFGS exactly as ``ExactLogisticRegression._fit_source`` runs it, each
    loss/gradient evaluation a sum of per-partition terms computed where the blocks live."""
    from sklearn.exceptions import ConvergenceWarning

    from leanfit.logistic import curvature, minimize_lbfgs

    model = make_model("logistic", seed=opts.seed, C=opts.C, tol=opts.tol)
    fit_intercept, C = model.fit_intercept, model.C
    shape = (1 if k == 2 else k, n_features + int(fit_intercept))
    squares = sum(c.gather(c.map(squares_part, train, n_features=n_features, pure=False)))
    weight = float(squares[-1])
    if weight <= 0:
        raise InputError("the training rows hold no samples (or only zero sample weights).")
    evaluations = 0

    groups = _by_worker(c, train)

    def evaluate(theta):
        nonlocal evaluations
        coef = theta.reshape(shape)
        parts = c.gather(
            [
                c.submit(
                    terms_part,
                    futures,
                    coef,
                    fit_intercept,
                    workers=[w],
                    allow_other_workers=True,
                    pure=False,
                )
                for w, futures in groups
            ]
        )
        loss = sum(p[0] for p in parts)
        grad = np.sum([p[1] for p in parts], axis=0)
        sw = sum(p[2] for p in parts)
        W = coef[:, : shape[1] - int(fit_intercept)]
        objective = C * loss + 0.5 * float(np.sum(W * W))
        grad = grad * C
        grad[:, : W.shape[1]] += W
        evaluations += 1
        progress({"stage": "lbfgs", "iteration": evaluations, "loss": objective / (C * sw)})
        return objective, grad.ravel()

    x, n_iter, converged, message = minimize_lbfgs(
        evaluate,
        np.zeros(shape[0] * shape[1]),
        curvature(squares, C, shape[0], fit_intercept),
        model.tol * C * weight,
        model.max_iter,
    )
    if not converged:
        msg = f"L-BFGS did not converge ({message}); increase max_iter (or tol)."
        warnings.warn(msg, ConvergenceWarning, stacklevel=3)
    coef = x.reshape(shape)
    model.classes_ = np.arange(k)
    model.n_features_in_ = n_features
    model.coef_ = coef[:, :n_features].copy()
    model.intercept_ = coef[:, n_features].copy() if fit_intercept else np.zeros(shape[0])
    model.n_iter_ = n_iter
    return model


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


def _fit_sgd(c, train, holdout, opts: TrainOptions, k: int, sparse: bool, history, progress):
    """Per-epoch model averaging (see the module docstring), with the local engine's
    holdout-loss early stopping between epochs."""
    model = make_model(opts.model, seed=opts.seed, sparse=sparse, C=opts.C, tol=opts.tol)
    classes = np.arange(k)
    best, stale = np.inf, 0
    started = time.perf_counter()
    for epoch in range(1, opts.epochs + 1):
        if epoch > 1 and holdout:
            shared = c.scatter(model, broadcast=True)
            sums = c.gather(c.map(loss_part, holdout, model=shared, pure=False))
            count = sum(n for _, n in sums)
            if count:
                loss = sum(t for t, _ in sums) / count
                history.append({"epoch": epoch - 1, "holdout_log_loss": loss})
                progress({"stage": "epoch", "epoch": epoch - 1, "holdout_log_loss": loss})
                best, stale = (loss, 0) if loss < best - 1e-4 else (best, stale + 1)
                if stale >= opts.patience:
                    break
        shared = c.scatter(model, broadcast=True)
        futures = [
            c.submit(sgd_part, blocks, shared, classes, opts.seed, epoch, i, pure=False)
            for i, blocks in enumerate(train)
        ]
        model = _average(c.gather(futures), model)
        seen = int(model.t_ - 1)
        rate = seen / max(time.perf_counter() - started, 1e-9)
        progress({"stage": "train", "epoch": epoch, "rows": seen, "rows_per_s": rate})
    return model


def _average(results: list, start):
    """Row-weighted average of the partitions' models; ``t_`` as after a sequential pass."""
    fitted = [(m, n) for m, n in results if n]
    base = copy.deepcopy(fitted[0][0])
    total = float(sum(n for _, n in fitted))
    for key, value in vars(base).items():
        if (
            isinstance(value, np.ndarray)
            and value.dtype.kind == "f"
            and key != "_expanded_class_weight"
        ):
            mean = sum(n * np.asarray(vars(m)[key], dtype=np.float64) for m, n in fitted) / total
            setattr(base, key, mean.astype(value.dtype))
    t0 = float(getattr(start, "t_", 1.0))
    base.t_ = t0 + sum(float(m.t_) - t0 for m, _ in fitted)
    return base
