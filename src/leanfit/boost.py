"""Gradient-boosted trees (XGBoost ``hist``) fed batch by batch from the typed scan.

:class:`BatchIter` streams the data cast to the schema's storage types and hands
XGBoost one float32 block per batch: numbers (nulls as NaN), booleans as 0/1,
dates as days since 1970 and text categoricals as their index in the schema's
category list, declared categorical (``"c"``) so trees split on sets of levels.
A missing value becomes ``MISSING`` (below every number) or, for a category, one
more level: XGBoost's quantized index of a matrix without gaps takes 1 byte per
cell instead of 4 (its CSR form for a matrix with any NaN), and trees build faster.
XGBoost quantizes the stream into a ``QuantileDMatrix``, or into an
``ExtMemQuantileDMatrix`` paged to a temporary folder when the estimate of
:func:`estimate_matrix_bytes` exceeds half of ``memory_limit``. Training and
prediction share :func:`feature_matrix`, so a value has the same code in both.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl
import xgboost as xgb

from leanfit.cache import BlockCache
from leanfit.errors import ConfigError, InputError, SchemaMismatch
from leanfit.metrics import StreamingMetrics
from leanfit.schema import Schema, storage_expr
from leanfit.sources import iter_batches, resolve_paths, scan
from leanfit.train import TrainOptions, _balanced_weights, holdout_mask, label_codes

Progress = Callable[[dict], None]
Batch = tuple[np.ndarray, np.ndarray, np.ndarray | None]
SPLIT_KEY = "__split_key__"
TOP_FEATURES = 20
KINDS = {"integer": "number", "float": "number", "boolean": "bool", "datetime": "date"}
MISSING = -1e30  # a missing number; finite (XGBoost refuses inf), below any real value


@dataclass(frozen=True)
class BoostOptions:
    """XGBoost settings; with ``memory_limit`` (bytes) the matrix may go to disk."""

    rounds: int = 100
    max_depth: int = 6
    learning_rate: float = 0.3
    max_bin: int = 256
    early_stopping_rounds: int | None = None
    memory_limit: int | None = None
    nthread: int | None = None
    page_rows: int | None = None  # rows per batch (and page) when the matrix goes to disk

    def check(self) -> None:
        """Raise :class:`ConfigError` for a value XGBoost cannot use."""
        lows = {"rounds": 1, "max_depth": 0, "max_bin": 2, "early_stopping_rounds": 1}
        for name, low in (lows | {"memory_limit": 1, "nthread": 1, "page_rows": 1}).items():
            value = getattr(self, name)
            if value is not None and value < low:
                flag = name.replace("_", "-")
                raise ConfigError(f"--{flag} must be at least {low}. Got {value}.")
        if not self.learning_rate > 0:
            raise ConfigError(f"--learning-rate must be positive. Got {self.learning_rate}.")


@dataclass(frozen=True)
class Feature:
    """One model input; ``kind`` is number, bool, date, category or rank (the code of a
    high-cardinality category, ranked by frequency, used as a number)."""

    name: str
    kind: str
    categories: tuple[str, ...] | None = None


def boost_features(schema: Schema, drop: tuple[str, ...] = ()) -> tuple[list[Feature], list[str]]:
    """The schema's features as model inputs, and a note per text column left out."""
    unknown = sorted(set(drop) - set(schema.names()))
    if unknown:
        raise ConfigError(f"--drop names columns not in the data: {unknown}.")
    features, notes = [], []
    for col in schema.features:
        if col.name in drop:
            continue
        if col.kind in KINDS:
            features.append(Feature(col.name, KINDS[col.kind]))
        elif col.categories is not None and col.storage.startswith("dictionary"):
            # many levels: the frequency rank as a number (splits on one threshold are
            # far cheaper than searching partitions of tens of thousands of levels)
            kind = "rank" if col.kind == "high_cardinality" else "category"
            features.append(Feature(col.name, kind, tuple(col.categories)))
        else:
            notes.append(f"{col.name}: {col.kind} text without a category list; dropped")
    return features, notes


def _feature_expr(feature: Feature, dtype: pl.DataType, dense: bool) -> pl.Expr:
    """``feature`` as float32; where missing (or an unseen category) NaN, or with
    ``dense`` ``MISSING`` (a category: one more level)."""
    c = pl.col(feature.name)
    if feature.kind in ("category", "rank"):
        enum = _enum(feature.categories or ())
        if dtype != enum:
            c = c.cast(pl.String).cast(enum, strict=False)
        c = c.to_physical()
    elif feature.kind == "date":
        c = c.str.to_datetime(strict=False) if dtype == pl.String else c
        c = c.dt.epoch("s").cast(pl.Float64) / 86_400.0
    elif dtype == pl.String:
        c = c.str.strip_chars()
    c = c.cast(pl.Float32, strict=False)
    if not dense:
        return c.fill_null(float("nan"))
    fill = float(len(feature.categories or ())) if feature.kind == "category" else MISSING
    return c.fill_nan(fill).fill_null(fill)


@functools.lru_cache(maxsize=64)
def _enum(categories: tuple[str, ...]) -> pl.Enum:
    """The Enum of a category list, built once (building it costs more than using it)."""
    return pl.Enum(list(categories))


def _accepts(kind: str, dtype: pl.DataType) -> bool:
    """Whether a column of ``dtype`` can feed a feature of ``kind`` (text is parsed)."""
    if kind in ("category", "rank") or dtype in (pl.String, pl.Null):
        return True
    if kind == "date":
        return dtype.is_temporal()
    return dtype.is_numeric() or dtype == pl.Boolean


def feature_matrix(
    frame: pl.DataFrame, features: list[Feature], *, dense: bool = True
) -> np.ndarray:
    """The C-contiguous float32 block ``(rows, len(features))``; columns matched by name.

    Missing values (and unseen categories) become ``MISSING``, or for a category
    its number of levels; with ``dense=False`` (models saved before) NaN.
    Raises :class:`SchemaMismatch` naming a feature column that is missing or of a
    type that cannot feed it (text is parsed).

    >>> f = [Feature("x", "number"), Feature("c", "category", ("a", "b"))]
    >>> frame = pl.DataFrame({"c": ["b", "zz"], "x": [1, None]})
    >>> feature_matrix(frame, f).tolist()
    [[1.0, 1.0], [-1.0000000150474662e+30, 2.0]]
    >>> feature_matrix(frame, f, dense=False).tolist()
    [[1.0, 1.0], [nan, nan]]
    """
    missing = [f.name for f in features if f.name not in frame.columns]
    if missing:
        raise SchemaMismatch(f"feature columns {missing} are missing from the data.")
    types = frame.schema
    for f in features:
        if not _accepts(f.kind, types[f.name]):
            raise SchemaMismatch(
                f"column '{f.name}' holds {types[f.name]}; the model needs {f.kind}."
            )
    exprs = [_feature_expr(f, types[f.name], dense) for f in features]
    return np.ascontiguousarray(frame.select(exprs).to_numpy(order="c"), dtype=np.float32)


def _xgb_names(features: list[Feature]) -> list[str]:
    """Names XGBoost accepts (no ``[``, ``]``, ``<``); ``f0, f1, ...`` on a clash."""
    names = [re.sub(r"[\[\]<]", "_", f.name) for f in features]
    return names if len(set(names)) == len(names) else [f"f{i}" for i in range(len(names))]


class BatchIter(xgb.DataIter):
    """The ``which`` side ("train" or "holdout") of the split, batch by batch.

    Row numbers count from 0 over the whole scan, as in ``train.encoded_blocks``
    (or a hash of ``opts.split_by``); rows without a label are skipped. After a
    pass, ``rows`` holds the number of rows it handed over (None before). With
    ``blocks``, the first pass stores its blocks and later passes read them back;
    a ``sibling`` (the other side, with its own ``blocks``) is filled by the same
    parse, so the file is parsed once for both sides.
    """

    def __init__(
        self,
        data,
        schema: Schema,
        opts: TrainOptions,
        which: str = "train",
        *,
        features: list[Feature] | None = None,
        cache_prefix: str | None = None,
        blocks: BlockCache | None = None,
        sibling: BatchIter | None = None,
    ) -> None:
        if which not in ("train", "holdout"):
            raise ConfigError(f"BatchIter: which must be 'train' or 'holdout'. Got {which!r}.")
        super().__init__(cache_prefix=cache_prefix, release_data=True)
        self.schema, self.opts, self.which = schema, opts, which
        self.features = features or boost_features(schema, opts.drop)[0]
        self.weights = _balanced_weights(schema) if opts.class_weight else None
        self.types = ["c" if f.kind == "category" else "q" for f in self.features]
        self.names = _xgb_names(self.features)
        self.paths, self.lf = self._scan(data)
        self.rows: int | None = None
        self._seen, self._pass = 0, None
        self.blocks, self._cached = blocks, None
        if sibling is not None and (sibling.blocks is None or sibling.which == which):
            raise ConfigError("BatchIter: a sibling must be the other side, with blocks.")
        self.sibling = sibling

    def _scan(self, data) -> tuple[list[Path], pl.LazyFrame]:
        paths = resolve_paths(data)
        lf = scan(paths, self.schema.read_overrides())
        split = [self.opts.split_by] if self.opts.split_by else []
        needed = [f.name for f in self.features] + [self.schema.target, *split]
        missing = [n for n in needed if n not in lf.collect_schema().names()]
        if missing:
            raise SchemaMismatch(f"{paths[0]}: columns {missing} of the schema are missing.")
        exprs = [storage_expr(self.schema.column(f.name)) for f in self.features]
        exprs += [pl.col(self.schema.target)]
        exprs += [pl.col(s).hash(seed=self.opts.seed).alias(SPLIT_KEY) for s in split]
        return paths, lf.select(exprs)

    def batches(self) -> Iterator[Batch]:
        """One pass: ``(X, y, w)`` per batch with rows on this side.

        With ``blocks``, the first complete pass parses and stores the blocks, and
        later passes read them back instead of parsing again.
        """
        if self._cached is not None:
            yield from self.blocks.blocks(self._cached)
            return
        first = self.blocks.count if self.blocks else 0
        other = self.sibling if self.sibling is not None and self.sibling._cached is None else None
        other_first = other.blocks.count if other else 0
        for side, (X, y, w) in self._parse(both=other is not None):
            if side != self.which:
                other.blocks.append(X, y, w)
                continue
            if self.blocks is not None:
                self.blocks.append(X, y, w)
            yield X, y, w
        if self.blocks is not None:
            self._cached = np.arange(first, self.blocks.count)
        if other is not None:
            other._cached = np.arange(other_first, other.blocks.count)

    def _parse(self, both: bool = False) -> Iterator[tuple[str, Batch]]:
        """``(side, batch)`` for this side, and with ``both`` for the other side too."""
        opts, start = self.opts, 0
        if self.which == "holdout" and not opts.holdout and not both:
            return
        for frame in iter_batches(self.lf, self.paths, opts.batch_rows):
            keys = np.arange(start, start + frame.height, dtype=np.uint64)
            if opts.split_by:
                keys = frame.get_column(SPLIT_KEY).to_numpy()
            start += frame.height
            y = label_codes(frame, self.schema)
            held = np.zeros(len(y), dtype=bool)
            if opts.holdout:
                held = holdout_mask(keys, opts.holdout, opts.seed)
            X = feature_matrix(frame, self.features)
            del frame  # only the float32 block lives on
            for side, rows in (("train", ~held & (y >= 0)), ("holdout", held & (y >= 0))):
                if (side == self.which or both) and rows.any():
                    part = (X, y) if rows.all() else (X[rows], y[rows])
                    w = None if self.weights is None else self.weights[part[1]]
                    yield side, (part[0], part[1].astype(np.float32), w)

    def reset(self) -> None:
        """Restart the scan at the first row."""
        self._pass, self._seen = None, 0

    def next(self, input_data: Callable) -> bool:
        """Hand XGBoost the next batch; False at the end of a pass."""
        self._pass = self._pass or self.batches()
        item = next(self._pass, None)
        if item is None:
            self.rows = self._seen
            self.reset()
            return False
        X, y, w = item
        self._seen += len(y)
        input_data(data=X, label=y, weight=w, feature_types=self.types, feature_names=self.names)
        return True


# Measured here (XGBoost 3.2, hist, 2 threads, 4M and 8M rows of 29 features), in
# bytes per row beyond the quantized cells: a QuantileDMatrix holds each cell twice
# (row-wise index and column matrix) plus 8 (row pointers) and about 12 (labels,
# cuts, buffers); training adds about 36 per training row (gradients, prediction
# cache, row partitions). External memory keeps only the per-row state in memory
# (about 44 per training row, 16 per holdout row) and a few pages of the index.
QDM_ROW_BYTES, TRAIN_STATE_BYTES = 20, 36
EXTMEM_TRAIN_BYTES, EXTMEM_HOLDOUT_BYTES, EXTMEM_PAGES = 44, 16, 8


def estimate_matrix_bytes(
    schema: Schema,
    features: list[Feature],
    max_bin: int,
    *,
    holdout: float = 0.2,
    external: bool = False,
    batch_rows: int = 131_072,
) -> int:
    """Bytes XGBoost holds while it trains, beyond the interpreter and libraries.

    A cell takes 1, 2 or 4 bytes as the largest bin count of one feature (a bin per
    category level, plus one for missing) fits 8, 16 or 32 bits; the matrix has no
    gaps (missing values are ``MISSING``), so XGBoost uses its compact index.
    """
    per_feature = [
        len(f.categories or ()) + 1 if f.kind == "category" else max_bin for f in features
    ]
    most = max(per_feature, default=1)
    cell = 1 if most <= 2**8 else 2 if most <= 2**16 else 4
    train = int(schema.rows * (1 - holdout))
    held = schema.rows - train
    matrix = 2 * cell * len(features) + 8
    if external:
        pages = EXTMEM_PAGES * batch_rows * matrix
        return train * EXTMEM_TRAIN_BYTES + held * EXTMEM_HOLDOUT_BYTES + pages + 2**24
    in_memory = (train + held) * (matrix + QDM_ROW_BYTES) + train * TRAIN_STATE_BYTES
    return in_memory + 2**24


def _proba(p: np.ndarray) -> np.ndarray:
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
        X = feature_matrix(frame, self.features, dense=self.dense)
        if not len(X):
            return np.empty((0, self.n_classes))
        return _proba(self.booster.inplace_predict(X))

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """JSON settings and arrays (``booster``: the model as UBJSON bytes); no pickle."""
        features = [
            asdict(f) | {"categories": None if f.categories is None else list(f.categories)}
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
                f["name"], f["kind"], None if f["categories"] is None else tuple(f["categories"])
            )
            for f in settings["features"]
        ]
        dense = settings.get("missing", "nan") == "sentinel"
        return cls(booster, features, int(settings["n_classes"]), dense)


class _Report(xgb.callback.TrainingCallback):
    """Sends ``{"stage": "boost", "round": i, "holdout_logloss": ...}`` per round."""

    def __init__(self, progress: Progress):
        super().__init__()
        self.progress = progress

    def after_iteration(self, model, epoch: int, evals_log: dict) -> bool:
        event = {"stage": "boost", "round": epoch + 1}
        for data, metrics in evals_log.items():
            event |= {f"{data}_{name}": values[-1] for name, values in metrics.items()}
        self.progress(event)
        return False


def _params(n_classes: int, seed: int, bopts: BoostOptions) -> dict:
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


def _boost(
    iters: list[BatchIter], n_classes: int, seed: int, bopts: BoostOptions, external: bool, progress
) -> xgb.Booster:
    """Quantize train (then holdout, with the train bins) and boost; matrices die on return."""
    kind = xgb.ExtMemQuantileDMatrix if external else xgb.QuantileDMatrix
    common = {"max_bin": bopts.max_bin, "enable_categorical": True, "nthread": bopts.nthread}
    train = _quantize(kind, iters[0], **common)
    if train is None:
        raise InputError("no training rows: every labelled row fell in the holdout.")
    evals = [(m, "holdout") for it in iters[1:] if (m := _quantize(kind, it, ref=train, **common))]
    _release_free_heap()  # what the parse freed, before XGBoost allocates its per-row state
    if bopts.early_stopping_rounds and not evals:
        raise InputError("no holdout rows to watch for early stopping; raise --holdout.")
    return xgb.train(
        _params(n_classes, seed, bopts),
        train,
        num_boost_round=bopts.rounds,
        evals=evals,
        early_stopping_rounds=bopts.early_stopping_rounds,
        verbose_eval=False,
        callbacks=[_Report(progress)] if progress else None,
    )


def _release_free_heap() -> None:
    """Return the C heap's free pages to the OS (glibc ``malloc_trim``; elsewhere a no-op)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _quantize(kind: type, it: BatchIter, **kwargs) -> xgb.DMatrix | None:
    """The quantized matrix of ``it``'s rows, or None when that side has none."""
    try:
        return kind(it, **kwargs)
    except xgb.core.XGBoostError:
        if it.rows == 0:
            return None
        raise


def holdout_metrics(model: BoostedModel, holdout: BatchIter, class_names: list[str]) -> dict:
    """:class:`StreamingMetrics` of ``model`` on the holdout rows, batch by batch."""
    metrics = StreamingMetrics(model.n_classes)
    for X, y, _ in holdout.batches():
        metrics.update(y.astype(np.int64), _proba(model.booster.inplace_predict(X)))
    return metrics.result(class_names=class_names)


def fit_booster(
    data,
    schema: Schema,
    train_options: TrainOptions,
    boost_options: BoostOptions,
    progress: Progress | None = None,
) -> tuple[BoostedModel, dict]:
    """Train boosted trees on ``data`` in streaming passes.

    Parameters
    ----------
    data : path, directory, glob or list of them
        CSV or Parquet input, read with ``schema``'s types.
    schema : Schema
        The inspect result, with a target.
    train_options : TrainOptions
        Uses ``holdout``, ``seed``, ``split_by``, ``drop``, ``class_weight``, ``batch_rows``.
    boost_options : BoostOptions
        XGBoost settings and the memory limit that may choose external memory.
    progress : callable, optional
        Called with a dict after each boosting round.

    Returns
    -------
    model : BoostedModel
        Trimmed to the best round when early stopping is on.
    summary : dict
        Rows, matrix kind, rounds, the top gains (``feature_importance``) and the
        holdout ``metrics`` (None without a holdout).
    """
    opts, bopts = train_options, boost_options
    opts.check()
    bopts.check()
    if schema.target is None:
        raise ConfigError("the schema has no target: run `leanfit inspect --target` to make one.")
    if bopts.early_stopping_rounds and not opts.holdout:
        raise ConfigError("--early-stopping-rounds needs a holdout (--holdout > 0).")
    started = time.perf_counter()
    features, notes = boost_features(schema, opts.drop)
    if not features:
        raise ConfigError("no feature columns left to train on.")
    estimate = estimate_matrix_bytes(schema, features, bopts.max_bin, holdout=opts.holdout)
    external = bopts.memory_limit is not None and estimate > bopts.memory_limit / 2
    if external and bopts.page_rows:  # fewer, larger pages: less state per page, faster
        opts = replace(opts, batch_rows=bopts.page_rows)
    if external:
        estimate = estimate_matrix_bytes(
            schema,
            features,
            bopts.max_bin,
            holdout=opts.holdout,
            external=True,
            batch_rows=opts.batch_rows or 131_072,
        )
    with tempfile.TemporaryDirectory(prefix="leanfit-xgb-", ignore_cleanup_errors=True) as tmp:
        iters = _iters(data, schema, opts, features, tmp, external)
        booster = _boost(iters, len(schema.classes), opts.seed, bopts, external, progress)
        trained = booster.num_boosted_rounds()
        if bopts.early_stopping_rounds:
            booster = booster[: booster.best_iteration + 1]
        model = BoostedModel(booster, features, len(schema.classes))
        names = [str(c) for c in schema.classes]
        held = iters[1].rows if opts.holdout else 0
        metrics = holdout_metrics(model, iters[1], names) if held else None
    return model, {
        "model": "xgboost",
        "options": asdict(opts),
        "boost_options": asdict(bopts),
        "rows_train": iters[0].rows,
        "rows_holdout": held,
        "features": len(features),
        "dropped": [c.name for c in schema.columns if c.name not in model.feature_names],
        "notes": notes,
        "matrix": "ExtMemQuantileDMatrix" if external else "QuantileDMatrix",
        "matrix_estimate_bytes": estimate,
        "cache_bytes": sum(it.blocks.nbytes for it in iters if it.blocks),
        "rounds_trained": trained,
        "best_iteration": booster.num_boosted_rounds() - 1,
        "feature_importance": _importance(model),
        "metrics": metrics,
        "train_seconds": round(time.perf_counter() - started, 3),
    }


def _iters(data, schema, opts, features, tmp: str, external: bool) -> list[BatchIter]:
    """The train iterator (and the holdout one, filled by the same parse), caching their
    blocks in ``tmp``; with ``external``, XGBoost's pages go there too."""
    sides = ["holdout", "train"] if opts.holdout else ["train"]
    iters: list[BatchIter] = []
    for side in sides:
        it = BatchIter(
            data,
            schema,
            opts,
            side,
            features=features,
            cache_prefix=f"{tmp}/{side}" if external else None,
            blocks=BlockCache(tmp),
            sibling=iters[0] if iters else None,
        )
        iters.append(it)
    return iters[::-1]


def _importance(model: BoostedModel) -> dict[str, float]:
    """Average split gain by column name, the ``TOP_FEATURES`` largest first."""
    to_name = dict(zip(_xgb_names(model.features), model.feature_names))
    gains = model.booster.get_score(importance_type="gain")
    ranked = sorted(gains.items(), key=lambda kv: -kv[1])[:TOP_FEATURES]
    return {to_name.get(k, k): round(float(v), 6) for k, v in ranked}
