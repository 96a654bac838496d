"""Boosted trees on Dask: ``xgboost.dask`` fed by blocks resident on the workers.

Each partition is parsed once, on a worker, into the float32 matrix of
:func:`leanfit.boost.feature_matrix` (the schema's storage types; categories as
their index in the schema's category list, declared categorical), with labels and
weights, on each side of the holdout split (global row numbers, as in
``BatchIter``). The blocks stay on their worker and become the chunks of dask
arrays, from which ``xgboost.dask.DaskQuantileDMatrix`` builds its quantized
matrices; training uses :func:`leanfit.boost._params`, so parameters and codes are
the local engine's. The quantile sketches of the workers are merged, so the bin
cuts (hence the trees) differ slightly from a single-process fit; on one partition
the booster is the local one.
"""

from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np
import polars as pl

from leanfit.dask_engine import Cluster, merge_metrics, tree_reduce
from leanfit.dask_parts import Part, read_part
from leanfit.dask_train import SIDES, Job, metrics_part
from leanfit.errors import ConfigError, InputError
from leanfit.schema import Schema
from leanfit.train import holdout_mask, label_codes


def boost_part(part: Part, offset: int, job: Job) -> dict[str, tuple]:
    """The partition's ``feature_matrix`` rows, labels and weights on each side."""
    from leanfit.boost import SPLIT_KEY, feature_matrix
    from leanfit.schema import storage_expr

    opts, schema = job.opts, job.schema
    frame = read_part(part, job.types)
    exprs = [storage_expr(schema.column(f.name)) for f in job.features]
    exprs.append(pl.col(schema.target))
    if opts.split_by:
        exprs.append(pl.col(opts.split_by).hash(seed=opts.seed).alias(SPLIT_KEY))
    frame = frame.select(exprs)
    keys = np.arange(offset, offset + frame.height, dtype=np.uint64)
    if opts.split_by:
        keys = frame.get_column(SPLIT_KEY).to_numpy()
    y = label_codes(frame, schema)
    held = holdout_mask(keys, opts.holdout, opts.seed) if opts.holdout else np.zeros(len(y), bool)
    weights = job.weights
    out = {}
    for name, mask in zip(SIDES, (~held, held)):
        keep = mask & (y >= 0)
        X = feature_matrix(frame.filter(pl.Series(keep)), job.features)
        ys = y[keep]
        w = None if weights is None else weights[ys]
        out[name] = (X, ys.astype(np.float32), w)
    return out


def boost_blocks(blocks: dict, which: str) -> list:
    X, y, w = blocks[which]
    return [(X, y, w)] if len(y) else []


def _pick(blocks: dict, which: str, item: int):
    return blocks[which][item]


def fit_booster(cl: Cluster, parts, offsets, schema: Schema, opts, boost, types, started):
    """XGBoost through ``xgboost.dask`` on blocks resident on the workers."""
    import dask
    import dask.array as da
    import xgboost.dask as xgb_dask

    from leanfit.boost import (
        BoostedModel,
        BoostOptions,
        _importance,
        _params,
        _xgb_names,
        boost_features,
    )

    c = cl.client
    bopts = boost or BoostOptions()
    bopts.check()
    if bopts.early_stopping_rounds and not opts.holdout:
        raise ConfigError("--early-stopping-rounds needs a holdout (--holdout > 0).")
    features, notes = boost_features(schema, opts.drop)
    if not features:
        raise ConfigError("no feature columns left to train on.")
    job = c.scatter(Job(schema, opts, types, features=features), broadcast=True)
    blocks = c.map(boost_part, parts, offsets, job=job, pure=False)
    shapes = c.gather(c.map(lambda b: {s: len(b[s][1]) for s in SIDES}, blocks, pure=False))
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
        "feature_names": _xgb_names(features),
    }
    dtrain = xgb_dask.DaskQuantileDMatrix(c, train[0], train[1], weight=train[2], **common)
    evals = []
    if held is not None:
        dheld = xgb_dask.DaskQuantileDMatrix(
            c, held[0], held[1], weight=held[2], ref=dtrain, **common
        )
        evals = [(dheld, "holdout")]
    result = xgb_dask.train(
        c,
        _params(len(schema.classes), opts.seed, bopts),
        dtrain,
        num_boost_round=bopts.rounds,
        evals=evals,
        early_stopping_rounds=bopts.early_stopping_rounds,
        verbose_eval=False,
    )
    booster = result["booster"]
    trained = booster.num_boosted_rounds()
    if bopts.early_stopping_rounds:
        booster = booster[: booster.best_iteration + 1]
    model = BoostedModel(booster, features, len(schema.classes))
    k = len(schema.classes)
    metrics = None
    if held is not None:
        shared = c.scatter(model, broadcast=True)
        holdout = c.map(boost_blocks, blocks, which="holdout", pure=False)
        per_part = c.map(metrics_part, holdout, model=shared, n_classes=k, pure=False)
        metrics = tree_reduce(c, per_part, merge_metrics).result()
    n_train = sum(s["train"] for s in shapes)
    n_held = sum(s["holdout"] for s in shapes)
    summary = {
        "model": "xgboost",
        "options": asdict(opts),
        "boost_options": asdict(bopts),
        "engine": "dask",
        "partitions": len(parts),
        "rows_train": n_train,
        "rows_holdout": n_held,
        "features": len(features),
        "dropped": [col.name for col in schema.columns if col.name not in model.feature_names],
        "notes": notes,
        "matrix": "DaskQuantileDMatrix",
        "rounds_trained": trained,
        "best_iteration": booster.num_boosted_rounds() - 1,
        "feature_importance": _importance(model),
        "metrics": metrics.result(class_names=[str(x) for x in schema.classes])
        if metrics
        else None,
        "train_seconds": round(time.perf_counter() - started, 3),
    }
    return model, None, summary
