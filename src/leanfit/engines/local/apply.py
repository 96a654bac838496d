"""Applying a bundle on this machine: streaming predictions and streaming evaluation.

Each chunk of the input goes through :class:`~leanfit.model.Model`'s per-frame
steps; predictions stream into a file written under a temporary name and renamed
when complete.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from leanfit.errors import InputError
from leanfit.io.outputs import atomic_path, checks_output, writer_for
from leanfit.memory import Monitor
from leanfit.metrics import StreamingMetrics
from leanfit.model import load


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
) -> dict:
    """Stream predictions for ``data`` into ``out`` (CSV or Parquet by suffix).

    Memory: chunks of ``rows`` rows, or as many as ``memory``'s limit allows.
    """
    model = load(model_path, memory)
    memory = memory or Monitor.unbounded()
    rows = rows or model.plan_rows(memory)
    out = Path(out)
    fmt = "parquet" if out.suffix in (".parquet", ".pq") else "csv"
    if proba and not model.predictor.has_proba:
        raise InputError(f"--proba: model {type(model.estimator).__name__} gives no probabilities.")
    written = 0
    with memory.stage("predict"), atomic_path(out) as tmp, contextlib.ExitStack() as stack:
        write = None
        for frame in model.batches(data, rows):
            memory.check()
            table = model.prediction_table(frame, proba, keep)
            if write is None:
                write = stack.enter_context(
                    writer_for(tmp, table.schema, fmt, gzip=out.suffix == ".gz")
                )
            write(table)
            written += table.num_rows
        if write is None:
            raise InputError(f"{data}: no rows to predict.")
    return {**model.describe(model_path, data), "output": str(out), "rows": written, "format": fmt}


def evaluate(model_path, data, rows: int | None = None, memory: Monitor | None = None) -> dict:
    """Metrics of the bundle on labelled ``data``, in one streaming pass."""
    model = load(model_path, memory)
    memory = memory or Monitor.unbounded()
    rows = rows or model.plan_rows(memory)
    metrics = StreamingMetrics(len(model.classes))
    with memory.stage("evaluate"):
        for frame in model.batches(data, rows):
            memory.check()
            model.add_metrics(metrics, frame, str(data))
    result = metrics.result(class_names=[str(c) for c in model.classes])
    return {**model.describe(model_path, data), "rows": result["n_rows"], "metrics": result}
