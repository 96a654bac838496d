"""What :class:`~leanfit.estimator.StreamingClassifier` needs besides training: the
labels of in-memory data as class codes, the schema of data it staged to a file
(its own rules), and scikit-learn's constraints of the options it takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from leanfit.errors import ConfigError, InputError
from leanfit.options import INCREMENTAL, BoostOptions, Options, TrainOptions
from leanfit.schema import Schema, inspect

NUMERIC_READS = ("Float", "Int", "UInt", "Boolean")
TABLE = {row[0]: row for row in (*TrainOptions.table(), *BoostOptions.table())}
# every train and boost option but the seed (random_state), and the memory budget
ESTIMATOR_OPTIONS = tuple(name for name in TABLE if name != "seed")


def constraints(name: str) -> list[Any]:
    """scikit-learn's constraints of a train or boost option, from its declaration
    (leanfit.options)."""
    _, default, annotation, spec = TABLE[name]
    allowed: list[Any]
    if spec.pattern is not None:  # class_weight also as a dict, threshold as a number
        allowed = [str, dict if name == "class_weight" else Interval(Real, 0, 1, closed="both")]
    elif str(annotation) == "bool":
        allowed = ["boolean"]
    elif spec.multiple:
        allowed = [list, tuple]
    elif spec.choices is not None:
        allowed = [StrOptions(set(spec.choices))]
    elif spec.low is not None or spec.high is not None:
        number = Integral if str(annotation).startswith("int") else Real
        closed = {(False, False): "both", (True, False): "right", (False, True): "left"}
        bounds = (spec.low_open, spec.high_open if spec.high is not None else True)
        allowed = [Interval(number, spec.low, spec.high, closed=closed.get(bounds, "neither"))]
    else:
        allowed = [str]
    return allowed + ([None] if default is None and name != "batch_rows" else [])


def labels(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted classes and the class code of each label. At least 2 classes are needed."""
    check_classification_targets(y)
    classes, codes = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise InputError(
            "StreamingClassifier needs samples of at least 2 classes; "
            f"got {classes.size} class: {classes.tolist()}."
        )
    return classes, codes.astype(np.int32)


def label_codes(y: ArrayLike, classes: np.ndarray) -> np.ndarray:
    """The code of each label of ``y`` in ``classes`` (sorted); ValueError for others."""
    y = column_or_1d(y, warn=True)
    codes = np.searchsorted(classes, y).clip(0, len(classes) - 1)
    unknown = classes[codes] != y
    if unknown.any():
        raise ValueError(f"y holds labels not in classes: {np.unique(y[unknown])[:5].tolist()}.")
    return codes.astype(np.int32)


def class_counts(schema: Schema, n_classes: int) -> list[int]:
    """Rows per class code 0..n-1 of a staged batch (classes absent from it: 0)."""
    found = dict(zip(schema.classes, schema.class_counts))
    return [int(found.get(code, 0)) for code in range(n_classes)]


def staged_schema(data, target: str, memory=None, lossy=None) -> Schema:
    """``leanfit.inspect`` (float16 where ``lossy`` asks), then: floats are never ids, and
    an all-constant input keeps its numeric constant columns (they encode as zeros)."""
    schema = inspect(data, target=target, memory=memory, lossy=lossy)
    for col in schema.columns:
        if col.kind == "id" and col.read_as.startswith("Float"):
            col.kind, col.feature = "integer", True
    if not schema.features:
        for col in schema.columns:
            if col.kind == "constant" and col.read_as.startswith(NUMERIC_READS):
                col.kind = "boolean" if col.read_as == "Boolean" else "float"
                col.feature = True
    return schema


def incremental_only(model: str) -> bool:
    """True for a model kind that learns batch by batch; AttributeError for the others
    (``partial_fit`` is then not available)."""
    if model not in INCREMENTAL:
        raise AttributeError(
            f"partial_fit is not available for model={model!r}: it learns from all rows at "
            f"once. Incremental models: {', '.join(INCREMENTAL)}."
        )
    return True


def option_values(estimator: Any, group: type[Options]) -> dict[str, Any]:
    """The estimator's parameters of an option group, numpy scalars made plain."""
    values = {name: getattr(estimator, name, None) for name, *_ in group.table()}
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in values.items()}


def train_options(estimator: Any, classes: np.ndarray | None = None) -> TrainOptions:
    """The estimator's training options (a seed drawn from its ``random_state``); with
    ``classes`` (``y`` staged as class codes), a ``class_weight`` dict keyed by label
    is keyed by code."""
    seed = estimator.random_state
    if not isinstance(seed, Integral):
        seed = check_random_state(seed).randint(np.iinfo(np.int32).max)
    values = option_values(estimator, TrainOptions) | {
        "seed": int(seed),
        "drop": tuple(estimator.drop),
    }
    if classes is not None and isinstance(estimator.class_weight, Mapping):
        values["class_weight"] = weights_by_code(estimator.class_weight, classes)
    return TrainOptions(**values)


def weights_by_code(weights: Mapping, classes: np.ndarray) -> dict[int, float]:
    """``{label: weight}`` as ``{code: weight}``, the code of a label being its index in
    ``classes``; a label not among them is refused."""
    code_of = {label: code for code, label in enumerate(classes.tolist())}
    codes = {}
    for label, weight in weights.items():
        key = label.item() if isinstance(label, np.generic) else label
        if key not in code_of:
            raise ConfigError(
                f"class_weight: {label!r} is not a class of y "
                f"(its classes: {', '.join(map(str, code_of))})."
            )
        codes[code_of[key]] = weight
    return codes
