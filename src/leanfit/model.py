"""A trained model: saved as a bundle, loaded as :class:`Model`, applied frame by frame.

:class:`Model` applies any model kind through the protocol of
:mod:`leanfit.models.predictor`; its per-frame steps (:meth:`Model.prediction_table`,
:meth:`Model.add_metrics`) are what both engines' predict and evaluate loops run.
Columns are matched by name, so reordered and extra columns are fine; unseen
categories go to the "unknown" slot; a missing feature column or one of the wrong
type is an error naming the column.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl

from leanfit import bundle
from leanfit.costs import chunk_row_bytes, chunk_rows_cap, model_bytes, reader_bytes
from leanfit.encode.batches import label_codes
from leanfit.encode.encoder import Encoder
from leanfit.errors import BundleError, ConfigError, LeanfitError, SchemaMismatch
from leanfit.io.diagnose import refusing_empty_lines
from leanfit.io.formats import Input
from leanfit.io.readers import largest_row_group
from leanfit.io.scan import iter_batches
from leanfit.io.source import resolve_paths
from leanfit.memory import Monitor, current_rss
from leanfit.metrics import StreamingMetrics
from leanfit.models.predictor import predictor_for
from leanfit.models.registry import model_state, restore_model
from leanfit.options import DEFAULT_BATCH_ROWS
from leanfit.schema.columns import Schema
from leanfit.schema.rules import scan_with_schema


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
        self.summary: dict = meta["training"]  # leanfit.train: the whole command summary
        self.threshold: float | None = meta["training"].get("threshold")  # --threshold
        self.classes = np.asarray(schema.classes)
        self.predictor = predictor_for(estimator, encoder)

    @classmethod
    def load(cls, path: str | os.PathLike, memory: Monitor | None = None) -> Model:
        """Read a bundle, every member checked (:mod:`leanfit.bundle`) within ``memory``'s
        limit, and its model checked against its encoder and classes."""
        budget = None if memory is None else bundle.Budget(memory.limit, current_rss())
        parts, arrays = bundle.load(path, budget)
        schema, encoder, estimator = _restore(path, parts, arrays)
        return cls(schema, encoder, estimator, parts["meta"])

    def describe(self, path, data) -> dict:
        """The summary keys of applying this bundle (read from ``path``) to ``data``."""
        resolved = data if isinstance(data, list | tuple) else resolve_paths(data)
        inputs = resolved.shown if isinstance(resolved, Input) else list(map(str, resolved))
        return {"input": inputs, "bundle": str(path), "model": self.meta["training"]["model"]}

    def coefficients(self) -> pl.DataFrame:
        """The linear model's coefficients by encoded feature (``Encoder.feature_names``),
        the intercept last as ``(intercept)``: one ``coefficient`` column for two classes,
        else one column per class. ConfigError for a model kind that is not linear."""
        coef, intercept = self._linear_terms()
        names = [*self.encoder.feature_names, "(intercept)"]
        values = np.vstack([coef.T, intercept[None, :]])
        labels = ["coefficient"] if values.shape[1] == 1 else [str(c) for c in self.classes]
        columns = {label: values[:, i] for i, label in enumerate(labels)}
        return pl.DataFrame({"feature": names, **columns})

    def feature_importances(self) -> pl.DataFrame:
        """Importance by input column, largest first: XGBoost's average split gain for boosted
        trees, the absolute coefficients summed by column for linear models."""
        booster = getattr(self.estimator, "booster", None)
        if booster is not None:
            from leanfit.encode.trees import xgb_names

            gains = booster.get_score(importance_type="gain")
            names = self.estimator.feature_names
            values = [float(gains.get(x, 0.0)) for x in xgb_names(self.estimator.features)]
        else:
            coef, _ = self._linear_terms(importances=True)
            per_feature = np.abs(coef).sum(axis=0)
            owners = np.asarray(feature_columns(self.encoder))
            names = self.encoder.input_columns
            values = [float(per_feature[owners == name].sum()) for name in names]
        table = pl.DataFrame({"column": names, "importance": values}, strict=False)
        return table.sort("importance", descending=True, maintain_order=True)

    def _linear_terms(self, importances: bool = False) -> tuple[np.ndarray, np.ndarray]:
        coef = getattr(self.estimator, "coef_", None)
        if coef is None:
            kind = self.meta["training"]["model"]
            raise ConfigError(
                f"model {kind!r} has no importances: linear models (sgd, hinge, "
                "passive-aggressive, perceptron, logistic) and xgboost have them."
                if importances
                else f"model {kind!r} has no coefficients: only linear models (sgd, hinge, "
                "passive-aggressive, perceptron, logistic) do (xgboost: feature_importances())."
            )
        return np.atleast_2d(coef), np.atleast_1d(self.estimator.intercept_)

    @property
    def metrics(self) -> dict | None:
        return self.meta["training"].get("metrics")

    def _frames(self, data, rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pl.DataFrame]:
        """Frames of ``data``: files read with the schema's types, or in-memory data as
        it is (a 2-D numpy array holds the training columns in order, without the target)."""
        from leanfit.io.frames import frame_batches

        names = [c.name for c in self.schema.columns if c.name != self.schema.target]
        frames = frame_batches(data, names, rows)
        return self.batches(data, rows) if frames is None else frames

    def plan_rows(self, memory: Monitor, data=None) -> int:
        """Rows per chunk that fit ``memory``'s limit for this model (reading ``data``)."""
        groups = None
        if data is not None:
            paths = resolve_paths(data)
            memory.refuse_mapped(paths)
            groups = largest_row_group(paths)
        fixed = reader_bytes(self.schema, groups)
        fixed += model_bytes(self.encoder.n_features, len(self.classes), "")
        row_bytes = chunk_row_bytes(self.schema, self.encoder)
        return memory.plan(fixed=fixed, row_bytes=row_bytes, max_rows=chunk_rows_cap(self.schema))

    def batches(self, data, rows: int = DEFAULT_BATCH_ROWS, guard=None):
        """Frames of about ``rows`` rows of ``data``, read with the schema's types (with
        an active ``guard``, bad rows left out and recorded)."""
        paths = resolve_paths(data)
        frames = iter_batches(scan_with_schema(paths, self.schema, guard), paths, rows)
        if paths.form.format != "csv" or (guard is not None and guard.active):
            return frames
        return refusing_empty_lines(frames, paths)

    def frame_scores(self, frame: pl.DataFrame) -> np.ndarray:
        """Class probabilities for one parsed frame (columns matched by name)."""
        return self.predictor.proba(self.predictor.encode(frame))

    def prediction_table(self, frame: pl.DataFrame, proba: bool, keep: tuple[str, ...]):
        """The Arrow table of predictions for one frame: the ``keep`` columns, the
        predicted class and, with ``proba``, one probability column per class."""
        import pyarrow as pa

        missing = [c for c in keep if c not in frame.columns]
        if missing:
            raise SchemaMismatch(f"--keep names columns not in the data: {missing}.")
        written = ["prediction", *(f"proba_{label}" for label in self.classes if proba)]
        clash = [c for c in keep if c in written]
        if clash:
            raise SchemaMismatch(
                f"--keep {', '.join(clash)}: the predictions have a column of that name; "
                "rename it in the data first."
            )
        p = self.frame_scores(frame)
        columns = {name: _arrow(frame.get_column(name)) for name in keep}
        columns["prediction"] = pa.array(self.classes[self.predicted(p)])
        if proba:
            for i, label in enumerate(self.classes):
                columns[f"proba_{label}"] = pa.array(p[:, i].astype(np.float32))
        return pa.table(columns)

    def add_metrics(
        self, metrics: StreamingMetrics, frame: pl.DataFrame, where: str, counts=None
    ) -> None:
        """Add the labelled rows of ``frame`` (from ``where``) to ``metrics``; ``counts``
        (a RowCounts) counts the rows and those without a label."""
        target = self.schema.target
        if target not in frame.columns:
            raise SchemaMismatch(f"{where}: the target column '{target}' is missing.")
        y = label_codes(frame, self.schema)
        if counts is not None:
            counts.add_labels(y)
        labelled = y >= 0
        frame = frame.filter(pl.Series(labelled)) if not labelled.all() else frame
        if frame.height:
            metrics.update(y[labelled], self.frame_scores(frame))

    def predict_proba(self, data) -> np.ndarray:
        """Class probabilities (columns in ``classes`` order) for every row."""
        scored = [self.frame_scores(f) for f in self._frames(data) if f.height]
        return np.concatenate(scored) if scored else np.empty((0, len(self.classes)))

    def predict(self, data) -> np.ndarray:
        return self.classes[self.predicted(self.predict_proba(data))]

    def predicted(self, p: np.ndarray) -> np.ndarray:
        """The class code of each row of probabilities: the argmax, or with two classes
        and a ``threshold``, class 1 where its probability reaches it."""
        if self.threshold is None:
            return p.argmax(axis=1)
        return (p[:, 1] >= self.threshold).astype(np.int64)

    def new_metrics(self) -> StreamingMetrics:
        """An empty StreamingMetrics that predicts as this model does."""
        return StreamingMetrics(len(self.classes), threshold=self.threshold)


def load(path: str | os.PathLike, memory: Monitor | None = None) -> Model:
    """Load a ``.leanfit`` bundle; it holds no pickle and runs no code. With ``memory``,
    a bundle whose arrays would not fit its limit is refused before it is read."""
    return Model.load(path, memory)


def feature_columns(encoder: Encoder) -> list[str]:
    """The input column of each encoded feature, in ``encoder.feature_names`` order."""
    owners = [n["name"] for n in encoder.numeric]
    owners += [d["name"] for d in encoder.dates for _ in range(3)]
    owners += [n["name"] for n in encoder.numeric if n["indicator"]]
    owners += [c["name"] for c in encoder.categorical for _ in range(c["width"])]
    return owners + [s["name"] for s in encoder.sparse_numeric]


def _restore(path, parts: dict, arrays: dict) -> tuple[Schema, Encoder, object]:
    """Schema, encoder and model of a bundle's parts; BundleError naming the member
    that does not hold what it should."""
    member = "schema.json"
    try:
        schema = Schema.from_json(_as_json(parts["schema"]))
        if len(schema.classes) < 2:
            raise BundleError(f"has {len(schema.classes)} classes; a classifier has 2 or more.")
        member = "encoder.json"
        encoder = Encoder.from_dict(parts["encoder"])
        n_features = encoder.n_features
        member = "model.json"
        estimator = restore_model(
            parts["model"], arrays, n_features=n_features, n_classes=len(schema.classes)
        )
    except BundleError as exc:
        text = str(exc)
        named = text.startswith(("arrays/", "model.json:"))
        raise BundleError(f"{path}: {text if named else f'{member}: {text}'}") from None
    except (LeanfitError, TypeError, KeyError, ValueError, AttributeError, IndexError) as exc:
        raise BundleError(
            f"{path}: {member}: does not describe a leanfit model ({type(exc).__name__}: "
            f"{exc}); the bundle was edited: save it again with `leanfit train`."
        ) from None
    return schema, encoder, estimator


def _as_json(raw: dict) -> str:
    import json

    return json.dumps(raw)


def _arrow(column: pl.Series):
    """A kept column as Arrow, which has no 128-bit integers: those as their text."""
    return (column.cast(pl.String) if column.dtype == pl.Int128 else column).to_arrow()
