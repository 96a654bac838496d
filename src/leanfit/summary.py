"""One vocabulary for what every command reports: the ``--json`` summaries.

:data:`VOCABULARY` names every top-level key a command's summary may hold, with its
JSON type and meaning; the same thing has the same key in every command (``input``
is always the data read, ``output`` always what was written, ``model`` always the
model kind, ``bundle`` always a model file read). docs/json.md documents the same
table, and a test checks both every command's output and that page against it.
The library functions return these dicts; the command line adds ``command``,
``seconds``, ``memory`` and ``peak_rss_bytes``.

>>> check({"command": "inspect", "rows": 3, "input": ["a.csv"], "output": None})
>>> check({"rows": "3"})
Traceback (most recent call last):
...
ValueError: summary key 'rows' should be int, got str
"""

from __future__ import annotations

from typing import Any

from leanfit.options import INCREMENTAL

NUMBER = (int, float)
VOCABULARY: dict[str, tuple[tuple[type, ...], str]] = {
    "command": (
        (str,),
        "the command: make-data, inspect, shrink, train, update, evaluate, predict, report or export",
    ),
    "input": ((list,), "the data files read, in order"),
    "output": ((str, type(None)), "the file or folder written (null: nothing written)"),
    "bundle": ((str,), "the model bundle read (update, evaluate, predict, report)"),
    "model": ((str,), "the model kind (sgd, logistic, xgboost, ...)"),
    "engine": ((str,), "local or dask"),
    "format": ((str,), "the output's format: csv, csv.gz, parquet, ipc, ndjson or onnx"),
    "rows": (
        (int,),
        "rows read (inspect, evaluate), written (make-data, shrink, predict) or in the input (train)",
    ),
    "rows_train": ((int,), "labelled rows the model learned from"),
    "rows_holdout": ((int,), "labelled rows held out for the metrics"),
    "rows_unlabelled": ((int,), "rows read without a target value (not used)"),
    "rows_bad": ((int,), "bad rows left out (--bad-rows skip or quarantine)"),
    "rows_predicted": ((int,), "rows given a prediction"),
    "rows_written": ((int,), "rows written to the output"),
    "quarantine": ((str,), "the file the bad rows were written to"),
    "bytes": ((int,), "size of the output in bytes (make-data)"),
    "columns": ((int,), "columns in the data"),
    "features": ((int,), "model input columns (after encoding for linear models)"),
    "target": ((str, type(None)), "the label column"),
    "classes": ((list,), "the target's classes, in code order"),
    "class_counts": ((list,), "rows per class, in the order of classes"),
    "kinds": ((dict,), "column name to kind (integer, float, categorical, ...)"),
    "storage": ((dict,), "column name to its chosen storage type"),
    "warnings": ((list,), "what the user should know (one sentence each)"),
    "bytes_per_row_pandas_default": (NUMBER, "bytes per row as pandas loads the CSV by default"),
    "bytes_per_row_chosen": (NUMBER, "bytes per row with leanfit's chosen types"),
    "input_bytes": ((int, type(None)), "bytes of the input files on disk (null: in-memory data)"),
    "output_bytes": ((int,), "bytes of the output on disk"),
    "memory_bytes_pandas_default": ((int,), "the data's bytes in memory as pandas loads it"),
    "memory_bytes_chosen": ((int,), "the data's bytes in memory with the chosen types"),
    "options": ((dict,), "every training option as the run used it (planned values filled in)"),
    "boost_options": ((dict,), "the XGBoost options"),
    "plan": ((dict,), "what the run planned from its memory budget (rows per chunk, pages)"),
    "sparse": ((bool,), "whether encoded blocks are sparse (CSR)"),
    "dropped": ((list,), "columns not used as features"),
    "notes": (
        (list,),
        "how columns entered the model, where it is not the default (text levels sharing "
        "hashed slots, a frequency rank)",
    ),
    "epochs_run": ((int, type(None)), "epochs run (incremental models; null otherwise)"),
    "history": (
        (list,),
        "holdout log loss after each epoch but the last, as early stopping saw it before the next one (the last epoch's is `metrics.log_loss`): `epochs_run` is its length + 1",
    ),
    "matrix": ((str,), "the XGBoost matrix kind (QuantileDMatrix, ExtMemQuantileDMatrix, ...)"),
    "matrix_estimate_bytes": ((int,), "the planned bytes of the XGBoost matrix"),
    "rounds_trained": ((int,), "boosting rounds run"),
    "best_iteration": ((int,), "the last round kept (early stopping)"),
    "feature_importance": ((dict,), "average split gain by column, largest first"),
    "cache_bytes": ((int,), "bytes of the on-disk block caches"),
    "lossy": (
        (dict,),
        "--lossy-floats: the tolerance, the float16 columns, each float column's measured "
        "error and storage (docs/json.md)",
    ),
    "metrics_unrounded": (
        (dict,),
        "--lossy-floats: the model's holdout metrics with its float16 columns read unrounded (float32)",
    ),
    "checkpoint": ((dict,), "train's checkpoint: folder, resumed, saves, save_seconds"),
    "train_seconds": (NUMBER, "seconds spent training (inspect excluded)"),
    "metrics": ((dict, type(None)), "streaming metrics (null without holdout rows)"),
    "report": ((str,), "the HTML report written (train --report)"),
    "figures": ((list,), "the titles of the report's figures, in page order"),
    "metrics_before": (
        (dict, type(None)),
        "update: the old model's metrics on the new data's holdout rows, before learning",
    ),
    "drift": ((dict,), "update: how the new data differs from the model's schema (docs/json.md)"),
    "categories_added": ((dict,), "update: new levels given their own slot, by column"),
    "partitions": ((int,), "input partitions (dask)"),
    "files": ((int,), "files written (dask predict)"),
    "cluster": ((dict,), "the Dask cluster: scheduler, workers, their memory and peaks"),
    "seconds": (NUMBER, "wall seconds of the whole command"),
    "threshold": (
        NUMBER,
        "binary: the cut of the second class's probability (--threshold): fixed, or tuned on "
        "the holdout",
    ),
    "replaced": ((list,), "existing outputs this run replaced (--force)"),
    "peak_rss_bytes": ((int,), "peak resident memory of the process, as the OS counts it"),
    "memory": ((dict,), "the memory report: limit, baseline, peak, peak by stage, within_limit"),
}


def check(summary: dict[str, Any]) -> None:
    """Raise ValueError for a key outside :data:`VOCABULARY` or of the wrong type."""
    for key, value in summary.items():
        if key not in VOCABULARY:
            raise ValueError(f"summary key {key!r} is not in the vocabulary (leanfit/summary.py)")
        types, _ = VOCABULARY[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ValueError(f"summary key {key!r} should be {names}, got {type(value).__name__}")


def linear_summary(
    opts: Any,
    plan: Any,
    encoder: Any,
    *,
    rows: tuple[int, int],
    history: list[dict],
    metrics: dict | None,
    seconds: float,
) -> dict[str, Any]:
    """The training summary of a linear or incremental model, on either engine."""
    incremental = opts.model in INCREMENTAL
    return {
        "model": opts.model,
        "options": opts.as_dict() | {"batch_rows": plan.rows(opts)},
        "plan": plan.as_dict(),
        "rows_train": rows[0],
        "rows_holdout": rows[1],
        "features": encoder.n_features,
        "sparse": encoder.sparse,
        "dropped": encoder.dropped,
        "notes": encoder.notes(),
        "epochs_run": len(history) + 1 if incremental else None,
        "history": history,
        "train_seconds": round(seconds, 3),
        "metrics": metrics,
    }
