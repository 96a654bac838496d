"""Boosted trees on Dask: ``xgboost.dask`` fed by blocks resident on the workers.

Each partition is parsed once, on a worker, into the float32 matrices of
:func:`leanfit.encode.batches.tree_sides` (the local engine's columns, codes and
split, with global row numbers). The blocks stay on their worker and become the
chunks of dask arrays, from which ``xgboost.dask.DaskQuantileDMatrix`` builds its
quantized matrices; training uses :func:`leanfit.models.booster.booster_params` and
the summary :func:`~leanfit.models.booster.booster_summary`, as locally. The quantile sketches of the workers are merged, so the bin
cuts (hence the trees) differ slightly from a single-process fit; on one partition
the booster is the local one.
"""

from __future__ import annotations

import time

import numpy as np

from leanfit.encode.batches import SIDES, tree_columns, tree_sides
from leanfit.encode.trees import boost_features, xgb_names
from leanfit.engines.dask.cluster import (
    Cluster,
    follow,
    gather_following,
    merge_metrics,
    tree_reduce,
)
from leanfit.engines.dask.train import Job, Layout, metrics_part
from leanfit.engines.shared import holdout_result
from leanfit.errors import ConfigError, InputError
from leanfit.io.partitions import Part, read_part
from leanfit.memory import Monitor
from leanfit.models.booster import (
    BoostedModel,
    RoundReport,
    best_rounds,
    booster_params,
    booster_summary,
)
from leanfit.options import BoostOptions, Plan
from leanfit.schema.columns import Schema


def boost_part(part: Part, offset: int, job: Job) -> dict[str, tuple]:
    """The partition's feature matrix, labels and weights on each side of the split."""
    frame = read_part(part, job.types)
    frame = frame.select(tree_columns(frame.schema, job.schema, job.features, job.opts))
    empty = (np.zeros((0, len(job.features)), np.float32), np.zeros(0, np.float32), None)
    out = dict.fromkeys(SIDES, empty)
    out |= dict(tree_sides(frame, offset, job.schema, job.features, job.opts, job.weights))
    return out


def boost_blocks(blocks: dict, which: str) -> list:
    X, y, w = blocks[which]
    return [(X, y, w)] if len(y) else []


def _pick(blocks: dict, which: str, item: int):
    return blocks[which][item]


ROUNDS_TOPIC = "leanfit-boost-round"


def send_round(event: dict) -> None:
    """On a worker, after a round (:class:`~leanfit.models.booster.RoundReport`): the
    first worker sends the round's event to the client, as a Dask event."""
    from distributed import get_worker
    from xgboost import collective

    if collective.get_rank() == 0:  # numpy numbers as Python's: events are msgpack'd
        plain = {k: v.item() if hasattr(v, "item") else v for k, v in event.items()}
        get_worker().log_event(ROUNDS_TOPIC, plain)


def fit_booster(cl: Cluster, where: Layout, schema: Schema, opts, boost, memory=None):
    """XGBoost through ``xgboost.dask`` on blocks resident on the workers; return
    (model, None, summary). ``memory.progress`` hears of every round."""
    import dask
    import dask.array as da
    import xgboost.dask as xgb_dask

    started = time.perf_counter()
    c, parts = cl.client, where.parts
    progress = (memory or Monitor.unbounded()).progress
    bopts = boost or BoostOptions()
    bopts.check()
    bopts = bopts.effective(opts.holdout)
    features, notes = boost_features(schema, opts.drop)
    if not features:
        raise ConfigError("no feature columns left to train on.")
    job = c.scatter(Job(schema, opts, where.types, features=features), broadcast=True)
    blocks = c.map(boost_part, parts, where.offsets, job=job, pure=False)
    with progress.stage("encode"):
        progress.plan(where.rows)
        futures = c.map(lambda b: {s: len(b[s][1]) for s in SIDES}, blocks, pure=False)
        shapes = gather_following(c, futures, progress, lambda shape: sum(shape.values()))
    weighted = opts.class_weight is not None

    def collection(which: str):
        """Dask arrays (X, y, w) over the partitions' blocks on ``which`` side."""
        found = [(f, s[which]) for f, s in zip(blocks, shapes) if s[which]]
        if not found:
            return None
        out = []
        for item, dims in ((0, (len(features),)), (1, ()), (2, ())):
            if item == 2 and not weighted:
                out.append(None)
                continue
            dtype = np.float32
            pieces = [
                da.from_delayed(dask.delayed(_pick)(f, which, item), shape=(n, *dims), dtype=dtype)
                for f, n in found
            ]
            out.append(da.concatenate(pieces))
        return out

    train, held = collection("train"), collection("holdout")
    if train is None:
        raise InputError("no training rows: every labelled row fell in the holdout.")
    if bopts.early_stopping_rounds and held is None:
        raise InputError("no holdout rows to watch for early stopping; raise --holdout.")
    common = {
        "max_bin": bopts.max_bin,
        "enable_categorical": True,
        "feature_types": ["c" if f.kind == "category" else "q" for f in features],
        "feature_names": xgb_names(features),
    }
    dtrain = xgb_dask.DaskQuantileDMatrix(c, train[0], train[1], weight=train[2], **common)
    evals = []
    if held is not None:
        dheld = xgb_dask.DaskQuantileDMatrix(
            c, held[0], held[1], weight=held[2], ref=dtrain, **common
        )
        evals = [(dheld, "holdout")]

    def each_round(event: tuple) -> None:  # on the client, from send_round
        progress.note({k: v for k, v in event[1].items() if k != "worker"})
        progress.advance()

    with progress.stage("boost"):
        progress.plan(bopts.rounds, unit="rounds")
        c.subscribe_topic(ROUNDS_TOPIC, each_round)
        try:
            result = xgb_dask.train(
                c,
                booster_params(len(schema.classes), opts.seed, bopts),
                dtrain,
                num_boost_round=bopts.rounds,
                evals=evals,
                early_stopping_rounds=bopts.early_stopping_rounds,
                verbose_eval=False,
                callbacks=[RoundReport(send_round)],
            )
        finally:
            c.unsubscribe_topic(ROUNDS_TOPIC)
    booster = result["booster"]
    model = BoostedModel(best_rounds(booster, bopts), features, len(schema.classes))
    metrics = None
    if held is not None:
        shared = c.scatter(model, broadcast=True)
        holdout = c.map(boost_blocks, blocks, which="holdout", pure=False)
        k = len(schema.classes)
        per_part = c.map(metrics_part, holdout, model=shared, encoder=None, n_classes=k, pure=False)
        whole = tree_reduce(c, per_part, merge_metrics)
        with progress.stage("holdout"):
            progress.plan(sum(s["holdout"] for s in shapes))
            follow(per_part, progress, [s["holdout"] for s in shapes])
        metrics = whole.result()
    names = [str(x) for x in schema.classes]
    metrics, cut = holdout_result(metrics, opts.threshold, names)
    summary = booster_summary(
        model,
        schema,
        opts.as_dict(),
        bopts,
        rows=(sum(s["train"] for s in shapes), sum(s["holdout"] for s in shapes)),
        rounds_trained=booster.num_boosted_rounds(),
        notes=notes,
        metrics=metrics,
    ) | ({"threshold": cut} if cut is not None else {})
    return (
        model,
        None,
        summary
        | {
            "plan": Plan().as_dict(),
            "engine": "dask",
            "partitions": len(parts),
            "matrix": "DaskQuantileDMatrix",
            "train_seconds": round(time.perf_counter() - started, 3),
        },
    )
