"""Applying a bundle on this machine: streaming predictions and streaming evaluation.

Each chunk of the input goes through :class:`~leanfit.model.Model`'s per-frame
steps; predictions stream into a file written under a temporary name and renamed
when complete.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from leanfit.encode.batches import RowCounts
from leanfit.errors import InputError
from leanfit.io.formats import output_format
from leanfit.io.guard import Guard
from leanfit.io.outputs import atomic_path, checks_output, writer_for
from leanfit.io.sizes import estimate_rows
from leanfit.io.source import resolve_paths
from leanfit.io.translate import located_values
from leanfit.memory import Monitor
from leanfit.metrics import threshold_rule
from leanfit.model import Model, load


@checks_output("out", inputs=("model_path", "data"))
def predict(
    model_path,
    data,
    out,
    *,
    proba: bool = False,
    keep: tuple[str, ...] = (),
    rows: int | None = None,
    memory: Monitor | None = None,
    guard: Guard | None = None,
    threshold: float | None = None,
) -> dict:
    """Stream predictions for ``data`` into ``out``: CSV (``.csv``, ``.csv.gz``), Parquet,
    Arrow IPC (``.arrow``, ``.feather``) or JSON lines (``.jsonl``), by its name.

    With an active ``guard`` bad rows get no prediction and are counted (``rows_bad``).
    ``threshold`` replaces the bundle's ``--threshold``. Memory: chunks of ``rows``
    rows, or as many as ``memory``'s limit allows.
    """
    fmt = output_format(out)
    model = with_threshold(load(model_path, memory), threshold)
    data = resolve_paths(data)
    model.schema.check_data(data, "predict")
    memory = memory or Monitor.unbounded()
    rows = rows or model.plan_rows(memory, data)
    out = Path(out)
    if proba and not model.predictor.has_proba:
        raise InputError(f"--proba: model {type(model.estimator).__name__} gives no probabilities.")
    written = 0
    with memory.stage("predict"), atomic_path(out) as tmp, contextlib.ExitStack() as stack:
        memory.progress.plan(estimate_rows(resolve_paths(data)))
        write = None
        for frame in model.batches(data, rows, guard):
            memory.check()
            memory.progress.advance(frame.height)
            with located_values(data):
                table = model.prediction_table(frame, proba, keep)
            if write is None:
                write = stack.enter_context(writer_for(tmp, table.schema, fmt))
            write(table)
            written += table.num_rows
        if write is None:
            raise InputError(f"{data}: no rows to predict.")
    bad = guard.count if guard is not None else 0
    accounting = {"rows": written + bad, "rows_predicted": written, "rows_bad": bad}
    warnings = {"warnings": [guard.warning()]} if bad else {}
    return {**model.describe(model_path, data), "output": str(out), "format": fmt} | (
        accounting | warnings
    )


def evaluate(
    model_path,
    data,
    rows: int | None = None,
    memory: Monitor | None = None,
    guard: Guard | None = None,
    curves: bool = False,
    threshold: float | None = None,
) -> dict:
    """Metrics of the bundle on labelled ``data``, in one streaming pass; rows without a
    label (and, with an active ``guard``, bad rows) are counted, not scored. With
    ``curves``, the metrics hold the points of the curves (StreamingMetrics.curves);
    ``threshold`` replaces the bundle's ``--threshold``."""
    model = with_threshold(load(model_path, memory), threshold)
    data = resolve_paths(data)
    model.schema.check_data(data, "evaluate")
    memory = memory or Monitor.unbounded()
    rows = rows or model.plan_rows(memory, data)
    metrics, counts = model.new_metrics(), RowCounts()
    with memory.stage("evaluate"):
        memory.progress.plan(estimate_rows(resolve_paths(data)))
        for frame in model.batches(data, rows, guard):
            memory.check()
            memory.progress.advance(frame.height)
            with located_values(data):
                model.add_metrics(metrics, frame, str(data), counts)
    if not metrics.n_rows:
        raise InputError(f"{data}: no labelled rows to evaluate.")
    result = metrics.result(class_names=[str(c) for c in model.classes], curves=curves)
    accounting = counts.summary(guard, f"'{model.schema.target}'")
    return {**model.describe(model_path, data), **accounting, "metrics": result}


def with_threshold(model: Model, threshold: float | None) -> Model:
    """``model`` predicting class 1 from ``threshold`` on (two classes), if given."""
    if threshold is not None:
        threshold_rule(str(threshold), len(model.classes))
        model.threshold = float(threshold)
    return model
