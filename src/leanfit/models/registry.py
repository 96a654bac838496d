"""The model registry: incremental scikit-learn models, the exact logistic, boosted trees.

Models are saved as their constructor parameters (JSON) and learned arrays
(``.npy`` members of the bundle), and rebuilt from a fixed list of classes: loading
runs no code.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator

import numpy as np

from leanfit.errors import BundleError, ConfigError
from leanfit.options import MODELS, TrainOptions

_CLASSES = {
    "SGDClassifier": "sklearn.linear_model",
    "Perceptron": "sklearn.linear_model",
    "BernoulliNB": "sklearn.naive_bayes",
    "GaussianNB": "sklearn.naive_bayes",
    "MLPClassifier": "sklearn.neural_network",
    "ExactLogisticRegression": "leanfit.models.logistic",
    "BoostedModel": "leanfit.models.booster",
}


def _model_class(name: str) -> type:
    """The estimator class for a saved class name, from the fixed list only."""
    if name not in _CLASSES:
        raise BundleError(f"unknown model class {name!r} in the bundle.")
    with _without_dataframe_libraries():
        module = importlib.import_module(_CLASSES[name])
    return getattr(module, name)


@contextlib.contextmanager
def _without_dataframe_libraries() -> Iterator[None]:
    """Import model libraries without pandas and pyarrow, unless already loaded.

    scikit-learn and XGBoost import both when installed, only to accept their types,
    which leanfit never hands them: ~60 MB of every process's RSS (of a 400 MB
    budget). Both stay importable afterwards, and load normally when used.
    """
    absent = [name for name in ("pandas", "pyarrow") if name not in sys.modules]
    for name in absent:
        sys.modules[name] = None  # makes ``import name`` raise ImportError
    try:
        yield
    finally:
        for name in absent:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def make_model(
    name: str, *, seed: int = 0, sparse: bool = False, C: float = 1.0, tol: float = 1e-4
):
    """A fresh, unfitted estimator for the ``--model`` name (imports only its class)."""
    common = {"random_state": seed}
    settings = {
        "sgd": (
            "SGDClassifier",
            {
                "loss": "log_loss",
                "alpha": 1e-5,
                "learning_rate": "adaptive",
                "eta0": 0.01,
                "average": True,
                **common,
            },
        ),
        "hinge": ("SGDClassifier", {"loss": "hinge", "alpha": 1e-5, "average": True, **common}),
        "passive-aggressive": (
            "SGDClassifier",
            {"loss": "hinge", "penalty": None, "learning_rate": "pa1", "eta0": 0.1, **common},
        ),
        "perceptron": ("Perceptron", common),
        "nb": ("BernoulliNB", {"binarize": 0.0}) if sparse else ("GaussianNB", {}),
        "mlp": ("MLPClassifier", {"hidden_layer_sizes": (64,), **common}),
        "logistic": ("ExactLogisticRegression", {"C": C, "tol": tol, "max_iter": 2_000}),
    }
    if name not in settings:
        raise ConfigError(f"--model must be one of {', '.join(MODELS)}. Got {name!r}.")
    class_name, params = settings[name]
    return _model_class(class_name)(**params)


def model_for(opts: TrainOptions, *, sparse: bool = False):
    """A fresh estimator for ``opts.model`` with the options that apply to it."""
    return make_model(opts.model, seed=opts.seed, sparse=sparse, C=opts.C, tol=opts.tol)


def import_library(name: str) -> None:
    """Import what ``--model name`` runs on, so that a memory baseline counts it."""
    if name == "xgboost":
        _model_class("BoostedModel")
    else:
        make_model(name)


def has_proba(model) -> bool:
    """Whether a scikit-learn estimator gives probabilities (else: margins)."""
    return hasattr(model, "predict_proba")


def scores(model, X) -> np.ndarray:
    """Class probabilities, or a softmax of decision values for margin models."""
    if has_proba(model):
        return model.predict_proba(X)
    decision = model.decision_function(X)
    if decision.ndim == 1:
        decision = np.column_stack([-decision, decision])
    decision = decision - decision.max(axis=1, keepdims=True)
    expd = np.exp(decision)
    return expd / expd.sum(axis=1, keepdims=True)


def model_state(model) -> tuple[dict, dict[str, np.ndarray]]:
    """Split a fitted model into JSON settings and named arrays."""
    if hasattr(model, "state"):  # models that know their own no-pickle state
        return model.state()
    params = {k: v for k, v in model.get_params().items() if _jsonable(v)}
    settings = {"class": type(model).__name__, "params": params, "scalars": {}, "lists": {}}
    arrays: dict[str, np.ndarray] = {}
    for key, value in vars(model).items():
        if not key.endswith("_") or key.startswith("_"):
            continue
        if isinstance(value, np.ndarray) and value.dtype != object:
            arrays[key] = value
        elif isinstance(value, list) and value and all(isinstance(v, np.ndarray) for v in value):
            settings["lists"][key] = len(value)
            arrays.update({f"{key}[{i}]": v for i, v in enumerate(value)})
        elif _jsonable(value):
            settings["scalars"][key] = value.item() if isinstance(value, np.generic) else value
    return settings, arrays


def restore_model(settings: dict, arrays: dict[str, np.ndarray]):
    """Rebuild a model saved by :func:`model_state`, from the fixed class list."""
    cls = _model_class(settings.get("class"))
    if hasattr(cls, "from_state"):
        return cls.from_state(settings, arrays)
    model = cls(**settings["params"])
    for key, value in settings["scalars"].items():
        setattr(model, key, value)
    for key, count in settings["lists"].items():
        setattr(model, key, [arrays.pop(f"{key}[{i}]") for i in range(count)])
    for key, value in arrays.items():
        setattr(model, key, value)
    return model


def _jsonable(value) -> bool:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (list, tuple)):
        return all(_jsonable(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))
