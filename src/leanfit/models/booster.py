"""The boosted-trees model kind: an XGBoost booster and the features that feed it.

:class:`BoostedModel` follows the model protocol of :mod:`leanfit.models.predictor`:
``encode`` turns a frame into the float32 matrix of
:func:`~leanfit.encode.trees.feature_matrix`, ``proba`` gives class probabilities.
Both engines train with :func:`booster_params` and describe the result with
:func:`booster_summary`, so their parameters and summaries are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import numpy as np
import polars as pl
import xgboost as xgb

from leanfit.encode.trees import Feature, feature_matrix, xgb_names
from leanfit.options import BoostOptions
from leanfit.schema.columns import Schema

Progress = Callable[[dict], None]
TOP_FEATURES = 20


def proba_of(p: np.ndarray) -> np.ndarray:
    """XGBoost's float32 output as float64 rows summing to 1 (binary: two columns)."""
    p = np.asarray(p, dtype=np.float64)
    return np.column_stack([1.0 - p, p]) if p.ndim == 1 else p / p.sum(axis=1, keepdims=True)


class BoostedModel:
    """A trained booster and the feature list that turns frames into its input."""

    def __init__(
        self, booster: xgb.Booster, features: list[Feature], n_classes: int, dense: bool = True
    ):
        self.booster, self.features, self.n_classes = booster, features, n_classes
        self.dense = dense  # missing values as MISSING (False: NaN, as bundles saved before)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def scores(self, frame: pl.DataFrame) -> np.ndarray:
        """Class probabilities of shape ``(rows, n_classes)`` for a parsed frame.

        Parameters
        ----------
        frame : polars.DataFrame
            Raw or typed rows; columns are matched by name, extra ones ignored, and
            unseen categories count as missing.

        Raises
        ------
        SchemaMismatch
            If a feature column is missing.
        """
        return self.proba(self.encode(frame))

    has_proba = True

    def encode(self, frame: pl.DataFrame) -> np.ndarray:
        """The float32 feature matrix of a parsed frame (see ``feature_matrix``)."""
        return feature_matrix(frame, self.features, dense=self.dense)

    def proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities of shape ``(rows, n_classes)`` for a feature matrix."""
        if not len(X):
            return np.empty((0, self.n_classes))
        return proba_of(self.booster.inplace_predict(X))

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """JSON settings and arrays (``booster``: the model as UBJSON bytes); no pickle."""
        features = [
            asdict(f, dict_factory=_unless_false)
            | {"categories": None if f.categories is None else list(f.categories)}
            for f in self.features
        ]
        settings = {"class": "BoostedModel", "n_classes": self.n_classes, "features": features}
        settings["missing"] = "sentinel" if self.dense else "nan"
        raw = bytes(self.booster.save_raw("ubj"))
        return settings, {"booster": np.frombuffer(raw, dtype=np.uint8).copy()}

    @classmethod
    def from_state(cls, settings: dict, arrays: dict[str, np.ndarray]) -> BoostedModel:
        """Rebuild a model saved by :meth:`state`."""
        booster = xgb.Booster()
        booster.load_model(bytearray(np.asarray(arrays["booster"], dtype=np.uint8).tobytes()))
        features = [
            Feature(
                f["name"],
                f["kind"],
                None if f["categories"] is None else tuple(f["categories"]),
                f.get("float16", False),
            )
            for f in settings["features"]
        ]
        dense = settings.get("missing", "nan") == "sentinel"
        return cls(booster, features, int(settings["n_classes"]), dense)


def _unless_false(items: list[tuple]) -> dict:
    """A feature's fields, ``float16`` only when set (--lossy-floats)."""
    return {k: v for k, v in items if k != "float16" or v}


class RoundReport(xgb.callback.TrainingCallback):
    """Sends ``{"stage": "boost", "round": i, "holdout_logloss": ...}`` per round
    (``done``: rounds of the booster training continues, counted too)."""

    def __init__(self, progress: Progress, done: int = 0):
        super().__init__()
        self.progress, self.done = progress, done

    def after_iteration(self, model, epoch: int, evals_log: dict) -> bool:
        event = {"stage": "boost", "round": self.done + epoch + 1}
        for data, metrics in evals_log.items():
            event |= {f"{data}_{name}": values[-1] for name, values in metrics.items()}
        self.progress(event)
        return False


def booster_params(n_classes: int, seed: int, bopts: BoostOptions) -> dict:
    binary = n_classes == 2
    params = {
        "tree_method": "hist",
        "max_depth": bopts.max_depth,
        "learning_rate": bopts.learning_rate,
        "max_bin": bopts.max_bin,
        "seed": seed,
        "objective": "binary:logistic" if binary else "multi:softprob",
        "eval_metric": "logloss" if binary else "mlogloss",
    }
    params |= {} if binary else {"num_class": n_classes}
    return params | ({"nthread": bopts.nthread} if bopts.nthread else {})


def importance(model: BoostedModel) -> dict[str, float]:
    """Average split gain by column name, the ``TOP_FEATURES`` largest first."""
    to_name = dict(zip(xgb_names(model.features), model.feature_names))
    gains = model.booster.get_score(importance_type="gain")
    ranked = sorted(gains.items(), key=lambda kv: -kv[1])[:TOP_FEATURES]
    return {to_name.get(k, k): round(float(v), 6) for k, v in ranked}


def best_rounds(booster: xgb.Booster, bopts: BoostOptions) -> xgb.Booster:
    """The booster trimmed to its best round when early stopping is on."""
    if bopts.early_stopping_rounds:
        return booster[: booster.best_iteration + 1]
    return booster


def booster_summary(
    model: BoostedModel,
    schema: Schema,
    opts: dict,
    bopts: BoostOptions,
    *,
    rows: tuple[int, int],
    rounds_trained: int,
    notes: list[str],
    metrics: dict | None,
) -> dict:
    """The training summary of a booster, the same on every engine."""
    return {
        "model": "xgboost",
        "options": opts,
        "boost_options": bopts.as_dict(),
        "rows_train": rows[0],
        "rows_holdout": rows[1],
        "features": len(model.features),
        "dropped": [c.name for c in schema.columns if c.name not in model.feature_names],
        "notes": notes,
        "rounds_trained": rounds_trained,
        "best_iteration": model.booster.num_boosted_rounds() - 1,
        "feature_importance": importance(model),
        "metrics": metrics,
    }
