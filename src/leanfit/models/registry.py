"""The model registry: incremental scikit-learn models, the exact logistic, boosted trees.

Models are saved as their constructor parameters (JSON) and learned arrays
(``.npy`` members of the bundle), and rebuilt from a fixed list of classes: loading
runs no code.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import sys
from collections.abc import Iterator

import numpy as np
from scipy import sparse

from leanfit.errors import BundleError, ConfigError
from leanfit.options import MODELS, SGD_FAMILY, TrainOptions

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
    """A fresh estimator for ``opts.model`` with the options that apply to it; an option
    given for a model it does not apply to is a ConfigError."""
    model = make_model(opts.model, seed=opts.seed, sparse=sparse, C=opts.C, tol=opts.tol)
    given = {name: getattr(opts, name) for name in SGD_OPTIONS if getattr(opts, name) is not None}
    for name in given:
        users = SGD_FAMILY[:3] if name == "loss" else SGD_FAMILY
        if opts.model not in users:
            raise ConfigError(
                f"--{name.replace('_', '-')} applies to --model {', '.join(users)}, "
                f"not {opts.model}."
            )
    return model.set_params(**given) if given else model


SGD_OPTIONS = ("alpha", "penalty", "l1_ratio", "loss")  # scikit-learn's parameter names


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
    """Class probabilities, or a softmax of decision values for margin models.

    scikit-learn computes in the dtype of its input: in float32 a value near float32's
    limit (the encoder's bound) overflows to inf and the scores to NaN. Such a block
    is scored again in float64 (not every block: its copy costs memory the plan holds
    for the rows)."""
    result = _scores(model, X)
    if not np.isfinite(result).all() and (isinstance(X, np.ndarray) or sparse.issparse(X)):
        result = _scores(model, X.astype(np.float64))
    return result


def _scores(model, X) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # rescored above
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


def restore_model(
    settings: dict,
    arrays: dict[str, np.ndarray],
    *,
    n_features: int | None = None,
    n_classes: int | None = None,
):
    """Rebuild a model saved by :func:`model_state`, from the fixed class list.

    With ``n_classes`` (the schema's) and ``n_features`` (the encoder's), the learned
    shapes are checked against them and the model is tried on one row: a
    BundleError naming the member otherwise.
    """
    cls = _model_class(settings.get("class"))
    if hasattr(cls, "from_state"):
        strange = sorted(set(arrays) - set(STATE_ARRAYS.get(cls.__name__, arrays)))
        model = cls.from_state(settings, arrays)
    else:
        model = cls(**settings["params"])
        for key, value in settings["scalars"].items():
            setattr(model, key, value)
        for key, count in settings["lists"].items():
            setattr(model, key, [arrays.pop(f"{key}[{i}]") for i in range(count)])
        strange = sorted(k for k in arrays if not LEARNED_NAME.fullmatch(k))
        for key, value in arrays.items():
            setattr(model, key, value)
    if strange:
        raise BundleError(f"arrays/{strange[0]}.npy: is not an array {cls.__name__} saves.")
    if n_classes is not None:
        _check_restored(model, n_features or 0, n_classes)
    return model


LEARNED_NAME = re.compile(r"[a-z][a-z0-9_]*_")  # scikit-learn's fitted attributes
STATE_ARRAYS = {"BoostedModel": ("booster",)}


# The axes of learned arrays: "classes", "margins" (1 for two classes, else one per
# class: linear models' rows) and "features" (the encoder's width).
LEARNED_AXES = {
    "coef_": ("margins", "features"),
    "intercept_": ("margins",),
    "classes_": ("classes",),
    "theta_": ("classes", "features"),
    "var_": ("classes", "features"),
    "class_count_": ("classes",),
    "class_prior_": ("classes",),
    "feature_count_": ("classes", "features"),
    "feature_log_prob_": ("classes", "features"),
    "class_log_prior_": ("classes",),
}
REQUIRED = {
    "SGDClassifier": ("coef_", "intercept_"),
    "Perceptron": ("coef_", "intercept_"),
    "ExactLogisticRegression": ("coef_", "intercept_"),
    "GaussianNB": ("theta_", "var_", "class_prior_"),
    "BernoulliNB": ("feature_log_prob_", "class_log_prior_"),
    "MLPClassifier": ("coefs_", "intercepts_"),
}


def _check_restored(model, n_features: int, n_classes: int) -> None:
    if hasattr(model, "booster"):
        _check_booster(model, n_classes)
        probe = np.zeros((1, len(model.features)), dtype=np.float32)
        apply = model.proba
    else:
        _check_linear(model, n_features, n_classes)
        probe, apply = np.zeros((1, n_features)), lambda X: scores(model, X)
    try:
        p = apply(probe)
    except Exception as exc:  # whatever an edited setting breaks in the model's library
        raise BundleError(
            f"model.json: the restored {type(model).__name__} fails on one row "
            f"({type(exc).__name__}: {exc}); the bundle was edited."
        ) from None
    if p.shape != (1, n_classes) or not np.isfinite(p).all():
        raise BundleError(
            f"model.json: the restored model gives {p.tolist()} for one row, not "
            f"{n_classes} finite probabilities; the bundle was edited."
        )


def _check_linear(model, n_features: int, n_classes: int) -> None:
    sizes = {"classes": n_classes, "margins": 1 if n_classes == 2 else n_classes}
    sizes["features"] = n_features
    for name in (*REQUIRED.get(type(model).__name__, ()), "classes_"):
        if getattr(model, name, None) is None:
            raise BundleError(f"arrays/{name}.npy: is missing; the model cannot predict.")
    learned = [
        (n, getattr(model, n), axes) for n, axes in LEARNED_AXES.items() if hasattr(model, n)
    ]
    if hasattr(model, "coefs_"):
        learned += _layer_axes(model)
    for name, value, axes in learned:
        want = tuple(sizes.get(a, a) for a in axes)
        shape = getattr(value, "shape", None)
        if shape != want:
            raise BundleError(
                f"arrays/{name}.npy: shape {shape} where the encoder's {n_features} features "
                f"and {n_classes} classes need {want}; the bundle was edited."
            )
    seen = getattr(model, "n_features_in_", n_features)
    if seen != n_features:
        raise BundleError(f"model.json: n_features_in_ {seen} is not the encoder's {n_features}.")


def _layer_axes(model) -> list[tuple[str, object, tuple]]:
    """``(name, array, wanted axes)`` of an MLP's layers: each one feeds the next."""
    coefs, intercepts = list(model.coefs_), list(model.intercepts_)
    if not coefs or len(coefs) != len(intercepts):
        raise BundleError("model.json: the MLP's coefs_ and intercepts_ do not pair up.")
    widths = [getattr(c, "shape", (0, 0))[1] for c in coefs[:-1]]
    inputs, outputs = ["features", *widths], [*widths, "margins"]
    learned = []
    for i, (coef, intercept) in enumerate(zip(coefs, intercepts)):
        learned.append((f"coefs_[{i}]", coef, (inputs[i], outputs[i])))
        learned.append((f"intercepts_[{i}]", intercept, (outputs[i],)))
    return learned


def _check_booster(model, n_classes: int) -> None:
    import json

    booster = model.booster
    if booster.num_features() != len(model.features):
        raise BundleError(
            f"arrays/booster.npy: the booster reads {booster.num_features()} features, "
            f"model.json lists {len(model.features)}; the bundle was edited."
        )
    learner = json.loads(booster.save_config())["learner"]["learner_model_param"]
    outputs = int(learner["num_class"]) or 2  # 0: one margin, two classes
    if not outputs == model.n_classes == n_classes:
        raise BundleError(
            f"arrays/booster.npy: the booster has {outputs} classes, model.json "
            f"{model.n_classes}, the schema {n_classes}; the bundle was edited."
        )
    for values in _booster_values(booster, learner):
        if not np.isfinite(values).all():
            raise BundleError(
                "arrays/booster.npy: the trees hold NaN or infinite values; a trained "
                "model's parameters are finite, so this one is broken: train it again."
            )


def _booster_values(booster, learner: dict) -> Iterator[np.ndarray]:
    """The base score and every tree's split conditions and leaf weights, a slice of
    rounds at a time (a whole large model as JSON would take far more memory)."""
    import json

    yield np.asarray(learner["base_score"].strip("[]").split(","), dtype=np.float64)
    rounds = booster.num_boosted_rounds()
    for start in range(0, rounds, 64):
        raw = json.loads(bytes(booster[start : min(start + 64, rounds)].save_raw("json")))
        for tree in raw["learner"]["gradient_booster"]["model"]["trees"]:
            yield np.asarray(tree["base_weights"] + tree["split_conditions"], dtype=np.float64)


def _jsonable(value) -> bool:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (list, tuple)):
        return all(_jsonable(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))
