"""The model protocol: what every model kind offers the stages that apply it.

A :class:`Predictor` turns a parsed frame into its model's input (``encode``) and
that input into class probabilities (``proba``, one column per class). Linear and
incremental scikit-learn models are wrapped with their encoder in
:class:`LinearPredictor`; :class:`~leanfit.models.booster.BoostedModel` implements
the protocol itself. ``Model``, ``StreamingClassifier`` and both engines apply a
model only through it, never by asking which kind it is.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import polars as pl

from leanfit.encode.encoder import Encoder
from leanfit.models.registry import has_proba, scores


class Predictor(Protocol):
    has_proba: bool

    def encode(self, frame: pl.DataFrame) -> Any: ...

    def proba(self, X: Any) -> np.ndarray: ...


class LinearPredictor:
    """A scikit-learn estimator (or the exact logistic) and the encoder of its input."""

    def __init__(self, encoder: Encoder, estimator: Any):
        self.encoder, self.estimator = encoder, estimator
        self.has_proba = has_proba(estimator)

    def encode(self, frame: pl.DataFrame) -> Any:
        return self.encoder.transform(frame)

    def proba(self, X: Any) -> np.ndarray:
        return scores(self.estimator, X)


def predictor_for(estimator: Any, encoder: Encoder | None) -> Predictor:
    """The protocol of a fitted estimator: itself when it implements it (boosted
    trees), else the estimator with its encoder."""
    if hasattr(estimator, "encode") and hasattr(estimator, "proba"):
        return estimator
    return LinearPredictor(encoder, estimator)
