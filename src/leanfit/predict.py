"""Applying a trained bundle: streaming predictions and streaming evaluation.

Columns are matched by name, so reordered and extra columns are fine; unseen
categories go to the "unknown" slot; a missing feature column or one of the
wrong type is an error naming the column.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl

from leanfit import bundle
from leanfit.encode import Encoder
from leanfit.errors import InputError, SchemaMismatch
from leanfit.memory import PARSER_BYTES, Monitor
from leanfit.metrics import StreamingMetrics
from leanfit.models import has_proba, model_state, restore_model, scores
from leanfit.outputs import atomic_path, writer_for
from leanfit.schema import Schema
from leanfit.sources import DEFAULT_BATCH_ROWS, iter_batches, resolve_paths, scan


def _versions() -> dict:
    import importlib.metadata as md

    names = ("leanfit", "numpy", "scipy", "scikit-learn", "polars", "pyarrow", "xgboost-cpu")
    found = {}
    for name in names:
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return found


def fingerprint(schema: Schema) -> str:
    """A digest of the training data: file names and sizes, rows, class counts."""
    digest = hashlib.sha256()
    for source in schema.sources:
        path = Path(source)
        digest.update(f"{path.name}:{path.stat().st_size if path.exists() else -1};".encode())
    digest.update(f"{schema.rows}:{schema.class_counts}".encode())
    return digest.hexdigest()[:16]


def save_bundle(out, schema: Schema, encoder: Encoder | None, model, summary: dict) -> None:
    encoder = encoder or Encoder()  # boosted trees read typed columns, not encoded ones
    settings, arrays = model_state(model)
    meta = {
        "bundle_version": bundle.BUNDLE_VERSION,
        "versions": _versions(),
        "training": summary,
        "fingerprint": fingerprint(schema),
    }
    parts = {
        "meta": meta,
        "schema": asdict(schema),
        "encoder": encoder.to_dict(),
        "model": settings,
    }
    bundle.save(out, parts, arrays)


class Model:
    """A loaded bundle: ``predict`` and ``predict_proba`` on frames, tables or files."""

    def __init__(self, schema: Schema, encoder: Encoder, estimator, meta: dict):
        self.schema, self.encoder, self.estimator, self.meta = schema, encoder, estimator, meta
        self.classes = np.asarray(schema.classes)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Model:
        parts, arrays = bundle.load(path)
        schema = Schema.from_json(_as_json(parts["schema"]))
        encoder = Encoder.from_dict(parts["encoder"])
        return cls(schema, encoder, restore_model(parts["model"], arrays), parts["meta"])

    @property
    def metrics(self) -> dict | None:
        return self.meta["training"].get("metrics")

    def _frames(self, data) -> list[pl.DataFrame] | object:
        if isinstance(data, pl.DataFrame):
            return [data]
        if type(data).__module__.startswith("pandas"):
            return [pl.from_pandas(data)]
        if type(data).__module__.startswith("pyarrow"):
            return [pl.from_arrow(data)]
        return self.batches(data)

    def plan_rows(self, memory: Monitor) -> int:
        """Rows per chunk that fit ``memory``'s limit for this model."""
        from leanfit.train import chunk_row_bytes, model_bytes

        fixed = PARSER_BYTES + model_bytes(self.encoder, len(self.classes), "")
        return memory.plan(fixed=fixed, row_bytes=chunk_row_bytes(self.schema, self.encoder))

    def batches(self, data, rows: int = DEFAULT_BATCH_ROWS):
        paths = resolve_paths(data)
        return iter_batches(scan(paths, self.schema.read_overrides()), paths, rows)

    def frame_scores(self, frame: pl.DataFrame) -> np.ndarray:
        """Class probabilities for one parsed frame (columns matched by name)."""
        if hasattr(self.estimator, "scores"):  # boosted trees read the typed columns
            return self.estimator.scores(frame)
        return scores(self.estimator, self.encoder.transform(frame))

    def predict_proba(self, data) -> np.ndarray:
        """Class probabilities (columns in ``classes`` order) for every row."""
        return np.concatenate([self.frame_scores(f) for f in self._frames(data)])

    def predict(self, data) -> np.ndarray:
        return self.classes[self.predict_proba(data).argmax(axis=1)]


def load(path: str | os.PathLike) -> Model:
    """Load a ``.leanfit`` bundle; it holds no pickle and runs no code."""
    return Model.load(path)


def _as_json(raw: dict) -> str:
    import json

    return json.dumps(raw)


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
    model = load(model_path)
    memory = memory or Monitor.unbounded()
    rows = rows or model.plan_rows(memory)
    out = Path(out)
    fmt = "parquet" if out.suffix in (".parquet", ".pq") else "csv"
    if proba and not has_proba(model.estimator):
        raise InputError(f"--proba: model {type(model.estimator).__name__} gives no probabilities.")
    written = 0
    with memory.stage("predict"), atomic_path(out) as tmp, contextlib.ExitStack() as stack:
        write = None
        for frame in model.batches(data, rows):
            memory.check()
            missing = [c for c in keep if c not in frame.columns]
            if missing:
                raise SchemaMismatch(f"--keep names columns not in the data: {missing}.")
            table = _prediction_table(model, frame, proba, keep)
            if write is None:
                write = stack.enter_context(
                    writer_for(tmp, table.schema, fmt, gzip=out.suffix == ".gz")
                )
            write(table)
            written += table.num_rows
        if write is None:
            raise InputError(f"{data}: no rows to predict.")
    return {"output": str(out), "rows": written, "format": fmt}


def _prediction_table(model: Model, frame: pl.DataFrame, proba: bool, keep):
    import pyarrow as pa

    p = model.frame_scores(frame)
    columns = {name: frame.get_column(name).to_arrow() for name in keep}
    columns["prediction"] = pa.array(model.classes[p.argmax(axis=1)])
    if proba:
        for i, label in enumerate(model.classes):
            columns[f"proba_{label}"] = pa.array(p[:, i].astype(np.float32))
    return pa.table(columns)


def evaluate(model_path, data, rows: int | None = None, memory: Monitor | None = None) -> dict:
    """Metrics of the bundle on labelled ``data``, in one streaming pass."""
    model = load(model_path)
    memory = memory or Monitor.unbounded()
    rows = rows or model.plan_rows(memory)
    metrics = StreamingMetrics(len(model.classes))
    with memory.stage("evaluate"):
        _evaluate_frames(model, data, rows, memory, metrics)
    result = metrics.result(class_names=[str(c) for c in model.classes])
    return {"model": str(model_path), "data": str(data), "metrics": result}


def _evaluate_frames(model: Model, data, rows: int, memory: Monitor, metrics) -> None:
    from leanfit.train import label_codes

    target = model.schema.target
    for frame in model.batches(data, rows):
        memory.check()
        if target not in frame.columns:
            raise SchemaMismatch(f"{data}: the target column '{target}' is missing.")
        y = label_codes(frame, model.schema)
        labelled = y >= 0
        frame = frame.filter(pl.Series(labelled)) if not labelled.all() else frame
        if frame.height:
            metrics.update(y[labelled], model.frame_scores(frame))
