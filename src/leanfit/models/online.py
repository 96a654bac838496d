"""Continuing a saved model: what its library needs to learn again, and room for new
category slots.

A bundle keeps the learned arrays of a model, not the private working state of its
library (JSON and ``.npy`` only, no pickle). :func:`resume` rebuilds that state from
the saved arrays so that ``partial_fit`` (or a warm-started ``fit``) continues the
model: an averaged SGD continues from its averaged coefficients (the iterate and the
average start equal; the step count ``t_`` is kept), an MLP gets its label binarizer
and a fresh optimizer. :func:`widen` inserts zero coefficients for new encoded
features of a linear model.
"""

from __future__ import annotations

import numpy as np

from leanfit.errors import ConfigError

LINEAR = ("SGDClassifier", "Perceptron", "ExactLogisticRegression")


def resume(model):
    """``model`` (restored from a bundle) ready to learn more rows; returns it."""
    name = type(model).__name__
    if name in ("SGDClassifier", "Perceptron") and model.average:
        if getattr(model, "_standard_coef", None) is None:
            model._standard_coef = np.array(model.coef_, order="C")
            model._standard_intercept = np.array(model.intercept_)
            model._average_coef = np.array(model.coef_, order="C")
            model._average_intercept = np.array(model.intercept_)
    elif name == "MLPClassifier" and not hasattr(model, "_label_binarizer"):
        from sklearn.preprocessing import LabelBinarizer

        model._label_binarizer = LabelBinarizer().fit(model.classes_)
        model._no_improvement_count = 0
    elif name == "ExactLogisticRegression":
        model.warm_start = True
    return model


def can_widen(model) -> bool:
    """Whether new encoded features can be added to ``model`` (linear kinds only)."""
    return type(model).__name__ in LINEAR


def widen(model, old_columns: np.ndarray, width: int):
    """``model`` with ``width`` features, its coefficient of old feature ``j`` at column
    ``old_columns[j]`` and zeros elsewhere (new slots start neutral); returns it."""
    if not can_widen(model):
        raise ConfigError(
            f"{type(model).__name__} cannot take new category slots: only linear models "
            "(sgd, hinge, passive-aggressive, perceptron, logistic) can."
        )
    for name in ("coef_", "_standard_coef", "_average_coef"):
        old = getattr(model, name, None)
        if old is not None:
            wide = np.zeros((old.shape[0], width), dtype=old.dtype)
            wide[:, old_columns] = old
            setattr(model, name, wide)
    model.n_features_in_ = width
    return model
