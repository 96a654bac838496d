"""A scikit-learn classifier over leanfit's streaming pipeline: files, frames or arrays.

:class:`StreamingClassifier` fits the way ``leanfit train`` does. Whatever it is
given becomes a file first: in-memory data is written to a temporary Parquet file,
one batch or frame at a time. ``inspect`` and ``train`` then run on that file, and
the bundle they save is loaded back as ``model_``. The temporary files are removed
before ``fit`` returns. ``fit`` accepts:

* an array-like with ``y``: its columns are named ``x0 .. x{n-1}``;
* a pandas or polars DataFrame with ``y``: columns keep their names and types, so
  text columns are one-hot encoded or hashed as ``leanfit train`` does;
* a CSV/Parquet file, directory or glob, with ``target=`` naming the label column;
* a DataFrame, or an iterable of DataFrames or Arrow tables, that holds the label
  column named by ``target=``. The iterable is read once, one frame at a time, and is
  never concatenated in memory.

Two rules differ from ``leanfit inspect``. Float columns are never treated as ids.
When every column is constant, the constant numeric columns are kept: they encode
as zeros, so the model learns the class priors. Missing values (``NaN`` or null)
are replaced by the column mean, as in ``leanfit train``.

Memory: the Parquet writer holds one ``batch_rows`` slice (arrays) or one frame
(iterables) at a time. Training holds what ``leanfit train`` holds.

>>> import numpy as np
>>> X = np.array([[0.0, 1.0], [1.0, 0.0], [0.1, 0.9], [0.9, 0.2]] * 10)
>>> y = np.array(["a", "b", "a", "b"] * 10)
>>> clf = StreamingClassifier(model="logistic").fit(X, y)
>>> clf.predict([[0.0, 1.0], [1.0, 0.0]]).tolist(), clf.n_features_in_
(['a', 'b'], 2)
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterable, Iterator
from numbers import Integral
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import (
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from leanfit.engines.local.train import train
from leanfit.engines.local.update import update_model
from leanfit.errors import ConfigError, InputError
from leanfit.io.frames import array_table, renamed, to_arrow, write_frames
from leanfit.model import load
from leanfit.models.predictor import predictor_for
from leanfit.models.registry import make_model
from leanfit.options import (
    DEFAULT_BATCH_ROWS,
    MODELS,
    BoostOptions,
    TrainOptions,
    UpdateOptions,
)
from leanfit.run import running
from leanfit.staging import (
    ESTIMATOR_OPTIONS,
    class_counts,
    constraints,
    incremental_only,
    label_codes,
    labels,
    staged_schema,
    train_options,
)

TARGET = "__target__"
DataPath = str | os.PathLike
Frame = pd.DataFrame | pl.DataFrame | pa.Table | pa.RecordBatch
FitInput = ArrayLike | DataPath | Frame | Iterable[Frame]
PredictInput = ArrayLike | DataPath | pd.DataFrame | pl.DataFrame


class StreamingClassifier(ClassifierMixin, BaseEstimator):
    """A scikit-learn classifier that trains with ``leanfit train``, in bounded memory.

    Parameters
    ----------
    model : {"sgd", "hinge", "passive-aggressive", "perceptron", "nb", "mlp", \
"logistic"}, default="sgd"
        The ``--model`` of ``leanfit train``. Only ``sgd``, ``nb``, ``mlp`` and
        ``logistic`` give ``predict_proba``. Only the linear models give
        ``decision_function``.
    epochs : int, default=1
        Passes over the data for incremental models. Later passes read a disk cache of
        encoded blocks.
    holdout : float, default=0.0
        Share of rows held out to measure the model and stop early. The metrics go to
        ``training_summary_``. The default trains on every row, as scikit-learn does.
    class_weight : {"balanced"}, dict or None, default=None
        ``"balanced"`` weights classes inversely to their frequency; a dict gives each
        label its weight (``{label: weight}``, as in scikit-learn).
    C : float, default=1.0
        Inverse regularisation strength of ``model="logistic"``.
    batch_rows : int, default=131072
        Rows per streamed batch, in training and prediction. RAM grows linearly
        with it, at about the encoded width of a row times 4 bytes.
    patience : int, default=2
        Epochs without a holdout improvement before stopping.
    hash_width : int, default=1024
        Hashed slots for the levels past the model's memory budget (mlp: all of them).
    missing_indicators : bool, default=False
        Add a 0/1 column for each numeric column that has missing values.
    drop : tuple of str, default=()
        Columns not to use as features.
    split_by : str or None, default=None
        Column whose value hashes rows into the holdout, instead of the row number.
    random_state : int, RandomState instance or None, default=0
        Seed of the holdout split, the shuffles and the model (an int, or one drawn from it).
    tol, alpha, penalty, l1_ratio, loss, threshold, rounds, max_depth, learning_rate, max_bin, early_stopping_rounds, nthread, lossy_floats, lossy_tolerance : optional
        As ``leanfit train``'s options of the same names (``help(leanfit.train)``):
        the logistic's tolerance, the sgd family's scikit-learn parameters, the binary
        ``threshold`` (a probability, or "f1", "recall@0.8" ... tuned on the holdout),
        XGBoost's options, float16 storage of float columns within a tolerance.
    memory_limit : str or int, optional
        The budget of ``fit`` as ``--memory-limit`` ("500MB", "30%", bytes): past it
        ``fit`` raises MemoryBudgetExceeded. None: a quarter of the memory available.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, sorted.
    n_features_in_ : int
        Number of input columns, not counting the label column.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Input column names. Set when fit got column names: a DataFrame with string
        names, a file, or frames.
    model_ : leanfit.Model
        The trained leanfit model: schema, encoder and scikit-learn estimator.
    training_summary_ : dict
        The summary ``leanfit train`` returns, plus the inspect warnings.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **{name: constraints(name) for name in ESTIMATOR_OPTIONS},
        "random_state": ["random_state"],
        "memory_limit": [str, Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(
        self,
        *,
        model: str = "sgd",
        epochs: int = 1,
        holdout: float = 0.0,
        class_weight: str | None = None,
        C: float = 1.0,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        patience: int = 2,
        hash_width: int = 1024,
        missing_indicators: bool = False,
        drop: tuple[str, ...] | list[str] = (),
        split_by: str | None = None,
        random_state: int | np.random.RandomState | None = 0,
        tol: float = 1e-4,
        alpha: float | None = None,
        penalty: str | None = None,
        l1_ratio: float | None = None,
        loss: str | None = None,
        threshold: str | float | None = None,
        rounds: int = 100,
        max_depth: int = 6,
        learning_rate: float = 0.3,
        max_bin: int = 256,
        early_stopping_rounds: int | None = None,
        nthread: int | None = None,
        lossy_floats: str | None = None,
        lossy_tolerance: float = 1e-3,
        memory_limit: str | int | None = None,
    ) -> None:
        params = dict(locals())
        del params["self"]
        vars(self).update(params)  # scikit-learn's rule: every parameter stored as given

    def __sklearn_tags__(self) -> Any:
        """Declare that NaN is accepted: it counts as a missing value."""
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    # ------------------------------------------------------------------ fit

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: FitInput, y: ArrayLike | None = None, *, target: str | None = None) -> Self:
        """Train on ``X`` and ``y``, or on data that holds the label column ``target``.

        Parameters
        ----------
        X : array-like, DataFrame, path or iterable of DataFrames
            The training data. See the module docstring for each kind.
        y : array-like of shape (n_samples,), optional
            Labels, for array-likes and DataFrames without the label column.
        target : str, optional
            The label column of a path, DataFrame or frames. Give it instead of ``y``.

        Returns
        -------
        self : StreamingClassifier
            The fitted estimator.
        """
        self.__dict__.pop("feature_names_in_", None)
        with (
            tempfile.TemporaryDirectory(prefix="leanfit-fit-") as tmp,
            running({}, memory_limit=self.memory_limit) as shell,
        ):
            folder = Path(tmp)
            data, label, classes = self._stage(X, y, target, folder)
            schema = staged_schema(data, label, shell.memory, self._options().lossy)
            if classes is None:
                names = [c.name for c in schema.columns if c.name != label]
                self.n_features_in_ = len(names)
                self.feature_names_in_ = np.asarray(names, dtype=object)
            summary = train(
                data,
                schema=schema,
                out=folder / "model.leanfit",
                options=self._options(classes),
                boost=BoostOptions(
                    **{name: getattr(self, name) for name, *_ in BoostOptions.table()}
                ),
                memory=shell.memory,
            )
            self.model_ = load(folder / "model.leanfit", shell.memory)
        summary.pop("model_path", None)
        self.training_summary_ = {**summary, "schema_warnings": list(schema.warnings)}
        self.classes_ = np.asarray(self.model_.classes) if classes is None else classes
        return self

    def _stage(
        self, X: FitInput, y: ArrayLike | None, target: str | None, folder: Path
    ) -> tuple[DataPath, str, np.ndarray | None]:
        """The file to train on, its label column, and the classes when ``y`` was given."""
        is_path = isinstance(X, (str, os.PathLike))
        if target is None:
            if is_path:
                raise ConfigError("StreamingClassifier.fit: give target=, the label column.")
            return self._stage_xy(X, y, folder / "data.parquet")
        if y is not None:
            raise ConfigError("StreamingClassifier.fit: give y or target=, not both.")
        if is_path:
            return X, target, None
        if isinstance(X, np.ndarray) or not isinstance(X, Iterable):
            raise InputError(
                "StreamingClassifier.fit: with target=, X must be a path, a DataFrame or an "
                f"iterable of DataFrames. Got {type(X).__name__}; for arrays give y instead."
            )
        frames = [X] if isinstance(X, (pd.DataFrame, pl.DataFrame, pa.Table, pa.RecordBatch)) else X
        write_frames(frames, folder / "data.parquet", target)
        return folder / "data.parquet", target, None

    def _stage_xy(
        self, X: Any, y: Any, path: Path, classes: np.ndarray | None = None
    ) -> tuple[Path, str, np.ndarray]:
        """Write ``X`` (named columns) and the class codes of ``y`` to ``path`` (codes in
        ``classes`` when given: ``partial_fit``, whose later calls keep the columns)."""
        reset = classes is None or not hasattr(self, "model_")
        if isinstance(X, (pd.DataFrame, pl.DataFrame)):
            validate_data(self, X, reset=reset, skip_check_array=True)
            table = renamed(to_arrow(X), self._columns())
            if TARGET in table.column_names:
                raise InputError(f"StreamingClassifier.fit: rename the column '{TARGET}'.")
            y = column_or_1d(y, warn=True)
            check_consistent_length(X, y)
        else:
            X, y = validate_data(
                self, X, y, dtype="numeric", ensure_all_finite="allow-nan", reset=reset
            )
            table = None
        classes, codes = labels(y) if classes is None else (classes, label_codes(y, classes))
        rows = int(self.batch_rows)

        def batches() -> Iterator[pa.Table]:
            for start in range(0, len(codes), rows):
                part = (
                    array_table(X[start : start + rows], self._columns())
                    if table is None
                    else table.slice(start, rows)
                )
                yield part.append_column(TARGET, pa.array(codes[start : start + rows]))

        write_frames(batches(), path, TARGET)
        return path, TARGET, classes

    def _check_incremental(self) -> bool:
        return incremental_only(self._model_name())

    @available_if(_check_incremental)
    def partial_fit(self, X: ArrayLike, y: ArrayLike, classes: ArrayLike | None = None) -> Self:
        """Learn from one more batch, as scikit-learn's ``partial_fit``: ``classes`` (every
        class) on the first call; later calls, and calls after ``fit``, continue the
        model (``leanfit update`` on the batch: the encoder of the first batch or of
        ``fit``, every row learned from).

        Parameters
        ----------
        X : array-like or DataFrame
            The batch, with the columns of the first call (or of ``fit``).
        y : array-like of shape (n_samples,)
            Labels, each one of ``classes``.
        classes : array-like, optional
            Every class; required on the first call, else equal to ``classes_``.

        Returns
        -------
        self : StreamingClassifier
            The estimator, having learned from the batch.
        """
        first = not hasattr(self, "model_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        wanted = np.unique(classes) if classes is not None else self.classes_
        if not first and not np.array_equal(wanted, self.classes_):
            raise ValueError(f"classes={wanted.tolist()} differs from {self.classes_.tolist()}.")
        with tempfile.TemporaryDirectory(prefix="leanfit-partial-") as tmp:
            data, label, _ = self._stage_xy(X, y, Path(tmp) / "data.parquet", wanted)
            if first:
                schema = staged_schema(data, label, lossy=self._options().lossy)
                schema.class_counts = class_counts(schema, len(wanted))
                schema.classes = list(range(len(wanted)))
                options = dataclasses.replace(self._options(wanted), holdout=0.0, epochs=1)
                summary = train(data, schema=schema, out=Path(tmp) / "m.leanfit", options=options)
                self.model_, self.classes_ = load(Path(tmp) / "m.leanfit"), wanted
            else:
                opts = UpdateOptions(batch_rows=int(self.batch_rows))
                self.model_, summary = update_model(self.model_, data, opts, holdout=0.0)
        self.training_summary_ = summary
        return self

    def _options(self, classes: np.ndarray | None = None) -> TrainOptions:
        return train_options(self, classes)

    # ------------------------------------------------------------------ predict

    def _columns(self) -> list[str]:
        """The column names the model reads, in input order."""
        if hasattr(self, "feature_names_in_"):
            return list(self.feature_names_in_)
        return [f"x{i}" for i in range(self.n_features_in_)]

    def _frames(self, X: PredictInput) -> Iterable[pl.DataFrame]:
        """``X`` as polars frames with the fit-time column names (paths: streamed)."""
        check_is_fitted(self)
        if isinstance(X, (str, os.PathLike)):
            return self.model_.batches(X, int(self.batch_rows))
        if isinstance(X, (pd.DataFrame, pl.DataFrame)):
            validate_data(self, X, reset=False, skip_check_array=True)
            return [pl.from_arrow(renamed(to_arrow(X), self._columns()))]
        X = validate_data(self, X, reset=False, dtype="numeric", ensure_all_finite="allow-nan")
        return [pl.from_arrow(array_table(X, self._columns()))]

    def _encoded(self, X: PredictInput) -> Iterator[Any]:
        """Encoded blocks of ``X``, one per frame (checks ``X`` before the first)."""
        frames = self._frames(X)
        return (self._encode(frame) for frame in frames)

    def _encode(self, frame: pl.DataFrame) -> Any:
        if frame.height == 1:
            # Polars keeps one-row columns as scalars, whose float32 arithmetic rounds
            # differently (1 ulp). Encode two plain copies so a row's result does not
            # depend on the frame it comes in.
            table = frame.to_arrow()
            twice = pl.from_arrow(pa.concat_tables([table, table]).combine_chunks())
            return self.model_.predictor.encode(twice)[:1]
        return self.model_.predictor.encode(frame)

    def _scores(self, X: PredictInput) -> NDArray[np.float64]:
        blocks = self._encoded(X)  # checks that the estimator is fitted
        return np.concatenate([self.model_.predictor.proba(block) for block in blocks])

    def _fitted_estimator(self) -> Any:
        """The fitted model, or an unfitted one made from ``model`` (None: boosted trees)."""
        if hasattr(self, "model_"):
            return self.model_.estimator
        if self.model not in MODELS:
            raise AttributeError(f"model={self.model!r} is not one of {', '.join(MODELS)}.")
        return None if self.model == "xgboost" else make_model(self.model)

    def _model_name(self) -> str:
        return self.training_summary_["model"] if hasattr(self, "model_") else self.model

    def _check_proba(self) -> bool:
        estimator = self._fitted_estimator()
        if estimator is not None and not predictor_for(estimator, None).has_proba:
            raise AttributeError(
                f"predict_proba is not available for model={self._model_name()!r}: it gives "
                "no probabilities. Use decision_function, or model='sgd' or 'logistic'."
            )
        return True

    def _check_decision(self) -> bool:
        if not hasattr(self._fitted_estimator(), "decision_function"):
            raise AttributeError(
                f"decision_function is not available for model={self._model_name()!r}: it "
                "is not a linear model. Use predict_proba."
            )
        return True

    def _learned(self, name: str) -> Any:
        value = getattr(getattr(self, "model_", None) and self.model_.estimator, name, None)
        if value is None:
            raise AttributeError(
                f"{name} is not available for model={self._model_name()!r} (fitted?)."
            )
        return value

    @property
    def coef_(self) -> NDArray[np.float64]:
        """Linear models: coefficients by encoded feature (``get_feature_names_out``)."""
        return self._learned("coef_")

    @property
    def intercept_(self) -> NDArray[np.float64]:
        """Linear models: the intercept (one per class for three or more classes)."""
        return self._learned("intercept_")

    @property
    def feature_importances_(self) -> NDArray[np.float64]:
        """Boosted trees: XGBoost's average split gain by input column, summing to 1."""
        self._learned("booster")
        gains = dict(self.model_.feature_importances().iter_rows())
        values = np.asarray([gains.get(name, 0.0) for name in self._columns()])
        return values / values.sum() if values.sum() else values

    def get_feature_names_out(self, input_features: Any = None) -> NDArray[np.object_]:
        """The model's input features after encoding (boosted trees: the columns)."""
        check_is_fitted(self)
        booster_names = getattr(self.model_.estimator, "feature_names", None)
        return np.asarray(booster_names or self.model_.encoder.feature_names, dtype=object)

    @available_if(_check_proba)
    def predict_proba(self, X: PredictInput) -> NDArray[np.float64]:
        """Class probabilities, one column per class in ``classes_`` order.

        Parameters
        ----------
        X : array-like, DataFrame or path
            Rows to score. Arrays and DataFrames must have the fit-time columns, in
            order, and no label column. Files are streamed, and their columns are
            matched by name: extra columns, such as the label, are ignored.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities.
        """
        return self._scores(X)

    @available_if(_check_decision)
    def decision_function(self, X: PredictInput) -> NDArray[np.float64]:
        """Raw scores of the linear model (for ``classes_[1]`` if binary).

        Parameters
        ----------
        X : array-like, DataFrame or path
            Rows to score, as for ``predict_proba``.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            One score per row if binary, else one per class.
        """
        blocks = list(self._encoded(X))
        return np.concatenate([self.model_.estimator.decision_function(b) for b in blocks])

    def predict(self, X: PredictInput) -> np.ndarray:
        """The most likely class of each row.

        Parameters
        ----------
        X : array-like, DataFrame or path
            Rows to classify, as for ``predict_proba``.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        scores = self._scores(X)  # checks that the estimator is fitted
        return self.classes_[self.model_.predicted(scores)]
