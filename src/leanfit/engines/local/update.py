"""``leanfit update``: a trained model learns from new data, on this machine.

Two streaming passes over the new data, with the model's schema and encoder (its
standardisation and levels), split into train and holdout rows by the rules the model
was trained with (:mod:`leanfit.encode.batches`: same seed, same ``--holdout``, same
``--split-by``):

1. **drift and the old model**: the drift summary (:class:`~leanfit.schema.drift.Drift`)
   and the old model's metrics on the holdout rows, before anything is learned;
2. **learning**, through the training pipeline: an incremental model (sgd family, nb,
   mlp) continues with ``partial_fit`` chunk by chunk (``Trainer`` given the model);
   the exact logistic runs its L-BFGS over the new rows starting at its coefficients
   (warm start: the same minimiser as training from scratch on the new rows, reached in
   fewer passes); boosted trees get ``rounds`` more trees fitted to the new rows
   (``fit_booster`` given the booster). The new model's holdout metrics follow.

Levels the model has not seen go to the unknown slot, as when predicting; with
``extend_categories`` a linear model gives them their own slots (coefficients start
at 0). The drift summary, the metrics before and after and the levels added are
returned and stored in the new bundle's summary.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import polars as pl

from leanfit.costs import chunk_row_bytes, level_cap, model_bytes, reader_bytes
from leanfit.encode.batches import held_out, label_codes, split_key_exprs
from leanfit.encode.cache import BlockCache
from leanfit.encode.extend import with_new_levels
from leanfit.engines.local.train import Trainer, evaluate_blocks
from leanfit.errors import ConfigError, InputError
from leanfit.io.guard import Guard
from leanfit.io.outputs import checks_output
from leanfit.io.readers import largest_row_group
from leanfit.io.scan import iter_batches
from leanfit.io.sizes import estimate_rows
from leanfit.io.source import resolve_paths
from leanfit.memory import Monitor, current_rss
from leanfit.metrics import StreamingMetrics
from leanfit.model import Model, load, save_bundle
from leanfit.models.online import can_widen, resume, widen
from leanfit.options import INCREMENTAL, BoostOptions, Plan, TrainOptions, UpdateOptions
from leanfit.runrecord import LearningCurve, run_record
from leanfit.schema.columns import Schema
from leanfit.schema.drift import Drift
from leanfit.schema.rules import scan_with_schema
from leanfit.summary import linear_summary

UPDATABLE = (*INCREMENTAL, "logistic", "xgboost")


def updated_path(model_path) -> str:
    """The default output of ``leanfit update MODEL``: ``NAME.updated.SUFFIX`` beside it."""
    path = Path(model_path)
    return str(path.with_name(f"{path.stem}.updated{path.suffix or '.leanfit'}"))


@checks_output("out", inputs=("model_path", "data"))
def update(
    model_path,
    data,
    *,
    out=None,
    options: UpdateOptions | None = None,
    memory: Monitor | None = None,
    guard: Guard | None = None,
) -> dict:
    """Continue the bundle at ``model_path`` on ``data``; save it to ``out`` (never over
    an input); return the summary (see :func:`update_model`)."""
    memory = memory or Monitor.unbounded()
    LearningCurve.of(memory.progress)
    model = load(model_path, memory)
    updated, summary = update_model(model, data, options, memory=memory, guard=guard)
    summary = {"bundle": str(model_path), **summary}
    if out is not None:
        with memory.stage("save"):
            encoder = None if _kind(model) == "xgboost" else updated.encoder
            recorded = summary | {"run_record": run_record(memory)}  # for `leanfit report`
            save_bundle(out, updated.schema, encoder, updated.estimator, recorded)
        summary["output"] = str(out)
    return summary


def update_model(
    model: Model,
    data,
    options: UpdateOptions | None = None,
    *,
    holdout: float | None = None,
    memory: Monitor | None = None,
    guard: Guard | None = None,
) -> tuple[Model, dict]:
    """``model`` continued on ``data`` (a new :class:`Model`; ``model`` is unchanged), and
    the summary: rows, ``metrics_before`` (the old model on the new holdout rows),
    ``metrics`` (the new one on the same rows), ``drift`` and ``categories_added``.
    ``holdout`` overrides the model's holdout share (``partial_fit``: 0); with an active
    ``guard`` bad rows are left out of both passes and counted.

    The new data is read with :func:`lenient` types, so values past the old ranges and
    unseen levels are data, not bad rows."""
    opts = options or UpdateOptions()
    opts.check()
    memory = memory or Monitor.unbounded()
    kind = _kind(model)
    if kind not in UPDATABLE:
        raise ConfigError(f"model {kind!r} cannot be updated; models: {', '.join(UPDATABLE)}.")
    if opts.extend_categories and not can_widen(model.estimator):
        raise ConfigError(
            f"--extend-categories: model {kind!r} cannot take new category slots (only "
            "sgd, hinge, passive-aggressive, perceptron and logistic can); leave it out, "
            "and new levels go to the unknown slot."
        )
    model.schema.check_data(data, "evaluate")
    train_opts = _train_options(model, opts, holdout)
    started = time.perf_counter()
    plan = _plan(model, data, train_opts, memory)  # before reading: refused now, or never
    with memory.stage("drift"):
        drift, before = _first_pass(model, data, train_opts, memory, guard)
    added = _new_levels(model, drift) if opts.extend_categories else {}
    if kind == "xgboost":
        updated, summary = _boost_more(model, data, train_opts, opts, memory, guard, plan)
    else:
        grown = _grown(model, added, drift)
        updated, summary = _learn_more(grown, data, train_opts, memory, guard, plan)
    summary["train_seconds"] = round(time.perf_counter() - started, 3)
    result = drift.result()
    warnings = summary.get("warnings", []) + drift_warnings(result, set(added))
    warnings += worse_than_before(before, summary.get("metrics"))
    added = {name: len(levels) for name, levels in added.items()}
    summary |= {"metrics_before": before, "drift": result, "categories_added": added}
    return updated, summary | ({"warnings": warnings} if warnings else {})


def worse_than_before(before: dict | None, after: dict | None) -> list[str]:
    """A sentence when the updated model scores worse than the old one on the new
    holdout rows (an averaged SGD follows a change of units slowly, say)."""
    if not before or not after or after["log_loss"] <= before["log_loss"]:
        return []
    return [
        f"the updated model is worse than the old one on the new holdout rows (log loss "
        f"{after['log_loss']:.4g} against {before['log_loss']:.4g}): more --epochs, or "
        "retraining on the new data, may serve better."
    ]


def drift_warnings(drift: dict, extended: set[str]) -> list[str]:
    """A sentence each for shifted columns, values outside the trained range and levels
    the model has not seen (unless ``extended`` gave them slots)."""
    found = []
    if drift["shifted"]:
        found.append(f"the distribution moved in {', '.join(drift['shifted'])} (see drift).")
    outside = {c["column"]: c.get("below_min", 0) + c.get("above_max", 0) for c in drift["columns"]}
    outside = {k: n for k, n in outside.items() if n}
    if outside:
        found.append(
            f"{sum(outside.values()):,} values outside the trained range, in "
            f"{', '.join(outside)} (counted by column in drift)."
        )
    unseen = {
        c["column"]: c["new_level_rows"]
        for c in drift["columns"]
        if c.get("new_level_rows") and c["column"] not in extended
    }
    if unseen:
        found.append(
            f"{sum(unseen.values()):,} values in levels the model has not seen, in "
            f"{', '.join(unseen)}: they went to the unknown slot (--extend-categories "
            "gives them slots in linear models)."
        )
    return found


def _kind(model: Model) -> str:
    return model.meta["training"]["model"]


def _train_options(model: Model, opts: UpdateOptions, holdout: float | None) -> TrainOptions:
    """The options the model was trained with, with the update's epochs and chunks."""
    saved = model.meta["training"].get("options", {})
    names = {name for name, *_ in TrainOptions.table()}
    kept = {k: tuple(v) if k == "drop" else v for k, v in saved.items() if k in names}
    kept |= {"epochs": opts.epochs, "batch_rows": opts.batch_rows}
    return TrainOptions(**kept | ({} if holdout is None else {"holdout": holdout}))


def _first_pass(
    model: Model, data, opts: TrainOptions, memory: Monitor, guard: Guard | None
) -> tuple[Drift, dict | None]:
    """The drift of ``data`` and the old model's metrics on its holdout rows."""
    schema = model.schema
    counted = sum(c.categories is not None for c in schema.features)
    cap = level_cap(memory.room(fixed=reader_bytes(schema, None)), counted, 0.0)
    drift, metrics = Drift(schema, cap), StreamingMetrics(len(model.classes))
    start = 0
    paths = resolve_paths(data)
    memory.refuse_mapped(paths)
    frames = iter_batches(
        scan_with_schema(paths, lenient(schema), guard),
        paths,
        opts.batch_rows or model.plan_rows(memory),
    )
    memory.progress.plan(estimate_rows(paths))
    for frame in frames:
        memory.check()
        memory.progress.advance(frame.height)
        y = label_codes(frame, schema)
        drift.add(frame, y)
        keys = frame.select(split_key_exprs(opts)) if opts.split_by else frame
        held = held_out(keys, start, opts) & (y >= 0)
        start += frame.height
        if held.any():
            metrics.update(y[held], model.frame_scores(frame.filter(pl.Series(held))))
    if not drift.labels.sum():
        raise InputError(f"{data}: no labelled rows to learn from.")
    names = [str(c) for c in model.classes]
    return drift, metrics.result(class_names=names) if metrics.n_rows else None


def _new_levels(model: Model, drift: Drift) -> dict[str, list[str]]:
    """Levels of each categorical column that the model has not seen."""
    names = [c["name"] for c in model.encoder.categorical]
    found = {name: drift.new_levels(name) for name in names if name in drift.levels}
    return {name: levels for name, levels in found.items() if levels}


def _with_levels(schema: Schema, added: dict[str, list[str]], drift: Drift) -> Schema:
    """A copy of ``schema`` whose categorical columns list the ``added`` levels too
    (counted in the new data), so a later update does not call them new again."""
    grown = Schema.from_json(schema.to_json())
    for name, levels in added.items():
        col, counts = grown.column(name), drift.level_counts(name)
        col.categories = list(col.categories) + levels
        if col.category_counts is not None:
            col.category_counts = list(col.category_counts) + [counts[v] for v in levels]
        col.distinct = len(col.categories)
    return grown


def _grown(model: Model, added: dict[str, list[str]], drift: Drift) -> Model:
    """A copy of ``model`` ready to learn: with slots for the ``added`` levels."""
    estimator = resume(copy.deepcopy(model.estimator))
    if not added:
        return Model(model.schema, model.encoder, estimator, model.meta)
    encoder, columns = with_new_levels(model.encoder, added)
    estimator = widen(estimator, columns, encoder.n_features)
    return Model(_with_levels(model.schema, added, drift), encoder, estimator, model.meta)


def _plan(model: Model, data, opts: TrainOptions, memory: Monitor) -> Plan:
    """The second pass's plan, made from what the run holds before the first: the drift
    pass leaves memory with the allocator that a later baseline would count (the same
    limit then passed or was refused from one run to the next)."""
    schema, encoder, kind = model.schema, model.encoder, _kind(model)
    if kind == "xgboost":
        from leanfit.engines.local.boost import plan_booster

        return plan_booster(schema, opts, memory, current_rss(), data)
    if opts.batch_rows is not None:
        return Plan(batch_rows=opts.batch_rows, memory_limit=memory.budget)
    fixed = reader_bytes(schema, largest_row_group(resolve_paths(data)))
    fixed += model_bytes(encoder.n_features, len(schema.classes), kind)
    rows = memory.plan(fixed=fixed, row_bytes=chunk_row_bytes(schema, encoder, kind))
    return Plan(batch_rows=rows, memory_limit=memory.budget)


def _learn_more(model: Model, data, opts, memory, guard, plan: Plan) -> tuple[Model, dict]:
    """Continue a linear or incremental model through the training pipeline."""
    schema, encoder = model.schema, model.encoder
    trainer = Trainer(
        lenient(schema), opts, memory, plan, guard, model=model.estimator, encoder=encoder
    )
    names = [str(c) for c in schema.classes]
    with BlockCache() as train_cache, BlockCache() as holdout_cache:
        with memory.stage("train"):
            trainer.fit(data, train_cache, holdout_cache)
        with memory.stage("evaluate"):
            after = (
                evaluate_blocks(
                    trainer.model,
                    trainer.encoder.plain(holdout_cache.blocks()),
                    len(names),
                    names,
                )[0]
                if holdout_cache.rows
                else None
            )
        summary = linear_summary(
            opts,
            plan,
            encoder,
            rows=(trainer.train_rows, holdout_cache.rows),
            history=trainer.history,
            metrics=after,
            seconds=0.0,
        )
    summary = {"input": [str(p) for p in resolve_paths(data)], **summary}
    summary |= trainer.counts.summary(guard, f"'{schema.target}'")
    return Model(schema, encoder, trainer.model, model.meta), summary


def _boost_more(model, data, opts, update_opts, memory, guard, plan) -> tuple[Model, dict]:
    """More boosting rounds on the new rows, starting from the model's trees."""
    from leanfit.engines.local.boost import fit_booster

    saved = model.meta["training"].get("boost_options", {})
    names = {name for name, *_ in BoostOptions.table()}
    bopts = BoostOptions(
        **{k: v for k, v in saved.items() if k in names} | {"rounds": update_opts.rounds}
    )
    with memory.stage("train"):
        booster, summary = fit_booster(
            data,
            lenient(model.schema),
            opts,
            bopts,
            memory,
            plan=plan,
            init=model.estimator,
            guard=guard,
        )
    return Model(model.schema, model.encoder, booster, model.meta), summary


def lenient(schema: Schema) -> Schema:
    """A copy of ``schema`` that new data fits: categorical columns read as text (a level
    the model has not seen is a value, for the unknown slot or the trees' missing level,
    as when predicting) and numbers in their widest type (a value past the old range
    stays a number), where the old storage types would refuse them (boosting's typed
    scan; row checks of ``--bad-rows``)."""
    lenient = Schema.from_json(schema.to_json())
    for col in lenient.columns:
        if col.storage.startswith("dictionary"):
            col.storage = "string"
        elif col.kind in ("integer", "float"):
            col.storage = "int64" if col.storage.startswith(("int", "uint")) else "float64"
    return lenient
