"""Models trained on pieces of the data, combined into one.

* :func:`merge_naive_bayes`: counts add (Bernoulli: identical to one model fitted on
  every row), moments merge Chan-style (Gaussian: the same up to float rounding);
* :func:`average_models`: the row-weighted average of SGD-family models, with the
  sample counter ``t_`` advanced as if the pieces had run one after the other.
"""

from __future__ import annotations

import copy

import numpy as np


def merge_naive_bayes(models: list):
    """One naive Bayes model from per-partition ones: counts add, moments merge."""
    fitted = [m for m in models if m is not None]
    model = copy.deepcopy(fitted[0])
    if hasattr(model, "feature_count_"):  # BernoulliNB: sums of counts
        model.class_count_ = np.sum([m.class_count_ for m in fitted], axis=0)
        model.feature_count_ = np.sum([m.feature_count_ for m in fitted], axis=0)
        model._update_feature_log_prob(model._check_alpha())
        model._update_class_log_prior()
        return model
    n = np.array([m.class_count_ for m in fitted], dtype=np.float64)  # (parts, classes)
    mu = np.array([m.theta_ for m in fitted], dtype=np.float64)  # (parts, classes, features)
    var = np.array([m.var_ - m.epsilon_ for m in fitted], dtype=np.float64)
    total = n.sum(axis=0)
    safe = np.where(total > 0, total, 1.0)
    mean = (n[..., None] * mu).sum(axis=0) / safe[:, None]
    m2 = (n[..., None] * (var + (mu - mean) ** 2)).sum(axis=0)
    var_all = m2 / safe[:, None]
    overall = (total[:, None] * mean).sum(axis=0) / total.sum()
    spread = (total[:, None] * (var_all + (mean - overall) ** 2)).sum(axis=0) / total.sum()
    model.epsilon_ = model.var_smoothing * float(spread.max())
    dtype = fitted[0].theta_.dtype
    model.theta_ = mean.astype(dtype)
    model.var_ = (var_all + model.epsilon_).astype(dtype)
    model.class_count_ = total.astype(fitted[0].class_count_.dtype)
    model.class_prior_ = (total / total.sum()).astype(fitted[0].class_prior_.dtype)
    return model


def average_models(results: list, start):
    """Row-weighted average of the partitions' models; ``t_`` as after a sequential pass."""
    fitted = [(m, n) for m, n in results if n]
    base = copy.deepcopy(fitted[0][0])
    total = float(sum(n for _, n in fitted))
    for key, value in vars(base).items():
        if (
            isinstance(value, np.ndarray)
            and value.dtype.kind == "f"
            and key != "_expanded_class_weight"
        ):
            mean = sum(n * np.asarray(vars(m)[key], dtype=np.float64) for m, n in fitted) / total
            setattr(base, key, mean.astype(value.dtype))
    t0 = float(getattr(start, "t_", 1.0))
    base.t_ = t0 + sum(float(m.t_) - t0 for m, _ in fitted)
    return base
