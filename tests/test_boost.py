"""Tests of leanfit.boost: the batch iterator, category codes, and accuracy vs plain XGBoost."""

from __future__ import annotations

import copy
import io
import json
import tempfile

import numpy as np
import pandas as pd
import polars as pl
import pytest
import xgboost as xgb
from sklearn.metrics import roc_auc_score

from leanfit.costs import estimate_matrix_bytes
from leanfit.encode.batches import holdout_mask
from leanfit.encode.cache import BlockCache
from leanfit.encode.trees import boost_features, feature_matrix
from leanfit.engines.local.boost import BatchIter, fit_booster
from leanfit.errors import ConfigError, SchemaMismatch
from leanfit.memory import Monitor
from leanfit.models.booster import BoostedModel
from leanfit.options import BoostOptions, Plan, TrainOptions
from leanfit.progress import Progress
from leanfit.schema import inspect
from leanfit.synth import write_data

# One thread: the test machine is shared, and OpenMP slows down badly when oversubscribed.
FAST = BoostOptions(rounds=20, nthread=1, early_stopping_rounds=0)  # all 20 rounds
AUC_ROUNDS = 50


def drain(it: BatchIter) -> tuple[np.ndarray, np.ndarray, int]:
    """Run one pass as XGBoost does; return the rows, labels and number of batches."""
    blocks: list[tuple[np.ndarray, np.ndarray]] = []

    def input_data(*, data, label, weight, feature_types, feature_names):
        assert data.dtype == np.float32 and data.flags.c_contiguous and data.ndim == 2
        assert feature_types == it.types and len(feature_names) == data.shape[1]
        blocks.append((data.copy(), label.copy()))

    while it.next(input_data):
        pass
    return (
        np.concatenate([b[0] for b in blocks]),
        np.concatenate([b[1] for b in blocks]),
        len(blocks),
    )


@pytest.fixture(scope="module")
def tagged(tmp_path_factory, small_csv):
    """small_csv plus ``rowtag`` = row number + 0.5 (a float feature) and 1/97 labels missing."""
    df = pl.read_csv(small_csv)
    row = pl.int_range(df.height)
    df = df.with_columns(
        rowtag=row + 0.5, label=pl.when(row % 97 == 5).then(None).otherwise(pl.col("label"))
    )
    path = tmp_path_factory.mktemp("boost") / "tagged.csv"
    df.write_csv(path)
    return path, inspect(path, target="label"), df


@pytest.fixture(scope="module")
def small_model(small_csv):
    schema = inspect(small_csv, target="label")
    events: list[dict] = []
    memory = Monitor(Monitor.unbounded().limit, progress=Progress(events.append))
    model, summary = fit_booster(small_csv, schema, TrainOptions(), FAST, memory)
    return model, summary, schema, events


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """60,000 rows, and the leanfit model trained in memory (QuantileDMatrix)."""
    path = tmp_path_factory.mktemp("boost") / "big.csv"
    write_data(path, rows=60_000, seed=11)
    schema = inspect(path, target="label")
    opts = BoostOptions(rounds=AUC_ROUNDS, nthread=1)
    model, summary = fit_booster(path, schema, TrainOptions(), opts)
    return path, schema, model, summary


def test_iterator_hands_every_row_once_in_file_order(tagged):
    path, schema, df = tagged
    opts = TrainOptions(holdout=0.25, seed=1, batch_rows=3_000)
    train, hold = BatchIter(path, schema, opts, "train"), BatchIter(path, schema, opts, "holdout")
    col = [f.name for f in train.features].index("rowtag")
    Xt, yt, batches = drain(train)
    Xh, yh, _ = drain(hold)
    assert batches > 3
    labelled = np.flatnonzero(df["label"].is_not_null().to_numpy())
    held = holdout_mask(np.arange(df.height, dtype=np.uint64), 0.25, 1)[labelled]
    np.testing.assert_array_equal(Xt[:, col] - 0.5, labelled[~held])
    np.testing.assert_array_equal(Xh[:, col] - 0.5, labelled[held])
    labels = df["label"].to_numpy()
    np.testing.assert_array_equal(yt, labels[labelled[~held]])
    np.testing.assert_array_equal(yh, labels[labelled[held]])
    assert (train.rows, hold.rows) == (len(yt), len(yh))
    first = []
    train.next(lambda **kw: first.append(kw))  # stop mid-pass, then restart
    train.reset()
    again, y_again, _ = drain(train)
    np.testing.assert_array_equal(again, Xt)
    np.testing.assert_array_equal(y_again, yt)
    with BlockCache() as blocks:  # the first pass fills the cache, later ones read it
        cached = BatchIter(path, schema, opts, "train", blocks=blocks)
        passes = [drain(cached) for _ in range(3)]
        assert blocks.count == batches
        for X, y, _ in passes:
            np.testing.assert_array_equal(X, Xt)
            np.testing.assert_array_equal(y, yt)


def test_split_by_column_keeps_each_value_on_one_side(tagged):
    path, schema, _ = tagged
    opts = TrainOptions(holdout=0.4, split_by="region")
    train, hold = BatchIter(path, schema, opts, "train"), BatchIter(path, schema, opts, "holdout")
    col = [f.name for f in train.features].index("region")
    Xt, _, _ = drain(train)
    Xh, _, _ = drain(hold)
    assert len(Xt) and len(Xh)
    assert not set(Xt[:, col].tolist()) & set(Xh[:, col].tolist())


def test_codes_are_schema_indexes_and_raw_frames_agree(tagged):
    path, schema, _ = tagged
    it = BatchIter(path, schema, TrainOptions(holdout=0.0, batch_rows=5_000))
    X, _, _ = drain(it)
    raw = pd.read_csv(path)
    raw = raw[raw["label"].notna()]
    names = [f.name for f in it.features]
    for name in ("plan", "region", "product"):
        levels = schema.column(name).categories
        codes = pd.Categorical(raw[name], categories=levels).codes
        expected = np.where(codes < 0, len(levels), codes).astype(np.float32)
        np.testing.assert_array_equal(X[:, names.index(name)], expected)
    assert not np.isnan(X).any()  # no gaps: XGBoost's compact 1-byte index
    parsed = pl.read_csv(path, try_parse_dates=True).filter(pl.col("label").is_not_null())
    np.testing.assert_array_equal(feature_matrix(parsed, it.features), X)


def test_scores_match_columns_by_name_and_treat_unseen_as_missing(small_model, small_csv):
    model, _, schema, _ = small_model
    frame = pl.read_csv(small_csv, n_rows=300, try_parse_dates=True)
    base = model.scores(frame)
    assert base.shape == (300, 2)
    np.testing.assert_allclose(base.sum(axis=1), 1.0)
    every3 = pl.int_range(300) % 3 == 0
    odd = frame.with_columns(
        plan=pl.when(every3).then(pl.lit("never-seen")).otherwise("plan"), extra=pl.lit(1)
    )
    odd = odd.select(reversed(odd.columns))
    as_missing = frame.with_columns(plan=pl.when(every3).then(None).otherwise("plan"))
    np.testing.assert_array_equal(model.scores(odd), model.scores(as_missing))
    assert not np.array_equal(model.scores(odd), base)
    plan = feature_matrix(odd, model.features)[:, model.feature_names.index("plan")]
    levels = schema.column("plan").categories
    missing = len(levels)  # missing and unseen levels: one more level, so no gaps
    expected = [missing if i % 3 == 0 else levels.index(v) for i, v in enumerate(frame["plan"])]
    np.testing.assert_array_equal(plan, np.array(expected, dtype=np.float32))
    with pytest.raises(SchemaMismatch, match="region"):
        model.scores(frame.drop("region"))
    with pytest.raises(SchemaMismatch, match="balance"):
        model.scores(frame.with_columns(balance=pl.col("signup_date")))


def test_summary_and_progress(small_model):
    model, summary, _, events = small_model
    assert summary["matrix"] == "QuantileDMatrix"
    assert summary["rows_train"] + summary["rows_holdout"] == 20_000
    assert summary["metrics"]["n_rows"] == summary["rows_holdout"]
    assert summary["metrics"]["roc_auc"] > 0.75
    assert summary["best_iteration"] == 19 and summary["features"] == 29
    gains = list(summary["feature_importance"].values())
    assert len(gains) == 20 and gains == sorted(gains, reverse=True)
    assert set(summary["feature_importance"]) <= set(model.feature_names)
    assert [e["round"] for e in events] == list(range(1, 21)) and "holdout_logloss" in events[-1]
    json.dumps(summary)


def test_state_round_trip_predicts_identically(small_model, small_csv):
    model, _, _, _ = small_model
    settings, arrays = model.state()
    assert arrays["booster"].dtype == np.uint8
    buffer = io.BytesIO()
    np.save(buffer, arrays["booster"], allow_pickle=False)
    buffer.seek(0)
    loaded = {"booster": np.load(buffer, allow_pickle=False)}
    again = BoostedModel.from_state(json.loads(json.dumps(settings)), loaded)
    frame = pl.read_csv(small_csv, n_rows=2_000, try_parse_dates=True)
    np.testing.assert_array_equal(again.scores(frame), model.scores(frame))
    assert again.features == model.features
    assert again.dense and settings["missing"] == "sentinel"
    older = {k: v for k, v in settings.items() if k != "missing"}  # saved with NaN gaps
    assert not BoostedModel.from_state(older, loaded).dense


def test_one_parse_fills_both_sides(tagged, monkeypatch):
    """The train pass stores the holdout's blocks too; the holdout never parses."""
    import leanfit.engines.local.boost as boost

    path, schema, _ = tagged
    opts = TrainOptions(holdout=0.25, seed=1, batch_rows=3_000)
    Xh_alone, yh_alone, _ = drain(BatchIter(path, schema, opts, "holdout"))
    parses = []
    real = boost.iter_batches
    monkeypatch.setattr(boost, "iter_batches", lambda *a: parses.append(1) or real(*a))
    with BlockCache() as hb, BlockCache() as tb:
        hold = BatchIter(path, schema, opts, "holdout", blocks=hb)
        train = BatchIter(path, schema, opts, "train", blocks=tb, sibling=hold)
        for _ in range(2):
            drain(train)
            Xh, yh, _ = drain(hold)
            np.testing.assert_array_equal(Xh, Xh_alone)
            np.testing.assert_array_equal(yh, yh_alone)
    assert len(parses) == 1
    with pytest.raises(ConfigError, match="sibling"):
        BatchIter(path, schema, opts, "train", sibling=BatchIter(path, schema, opts, "holdout"))


def test_estimate_chooses_external_memory_for_8m_rows_at_1gb(small_model):
    schema = copy.deepcopy(small_model[2])
    every, _ = boost_features(schema)
    features = [f for f in every if f.name != "product"]  # none of more than 255 levels
    schema.rows = 8_000_000
    in_memory = estimate_matrix_bytes(schema, features, 256)
    external = estimate_matrix_bytes(schema, features, 256, external=True)
    # measured at 8M rows, 29 features: 1 byte per cell twice, ~36 B/row of training state
    assert 800e6 < in_memory < 1.1e9 and in_memory > 1e9 / 2
    assert 300e6 < external < 500e6
    # a native category of thousands of levels takes 2 bytes a cell, in every column
    assert estimate_matrix_bytes(schema, every, 256) > 1.4 * in_memory
    schema.rows = 1_000_000
    assert estimate_matrix_bytes(schema, features, 256) < 1e9 / 2


def _pandas_features(df: pd.DataFrame, model: BoostedModel) -> np.ndarray:
    """The model's inputs built independently with pandas."""
    columns = []
    for f in model.features:
        values = df[f.name]
        if f.kind in ("category", "rank"):  # rank: the same code, used as a number
            codes = pd.Categorical(values, categories=list(f.categories)).codes
            columns.append(np.where(codes < 0, np.nan, codes))
        elif f.kind == "date":
            columns.append((pd.to_datetime(values) - pd.Timestamp(0)).dt.days.to_numpy())
        else:
            columns.append(values.to_numpy(dtype=np.float64, na_value=np.nan))
    return np.column_stack(columns).astype(np.float32)


def test_auc_matches_xgboost_in_memory(big):
    path, _, model, summary = big
    df = pd.read_csv(path)
    X, y = _pandas_features(df, model), df["label"].to_numpy()
    held = holdout_mask(np.arange(len(df), dtype=np.uint64), 0.2, 0)
    types = ["c" if f.kind == "category" else "q" for f in model.features]

    def matrix(rows):
        return xgb.DMatrix(X[rows], y[rows], feature_types=types, enable_categorical=True)

    params = {"tree_method": "hist", "objective": "binary:logistic", "max_depth": 6}
    params |= {"learning_rate": 0.3, "max_bin": 256, "nthread": 1, "seed": 0}
    booster = xgb.train(params, matrix(~held), num_boost_round=AUC_ROUNDS)
    reference = roc_auc_score(y[held], booster.predict(matrix(held)))
    assert summary["rows_holdout"] == held.sum()
    # 48,000 training rows: XGBoost's trees from the same matrix built batch by batch
    # (DataIter) and in memory differ by 0.0051 of AUC here (0.0052 with product as a
    # rank number before); at 200,000 rows they agree to 0.001 (test_high_cardinality.py)
    assert abs(summary["metrics"]["roc_auc"] - reference) < 0.012, (summary["metrics"], reference)


def test_external_memory_matches_in_memory(big, tmp_path, monkeypatch):
    path, schema, _, in_memory = big
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    opts = BoostOptions(rounds=AUC_ROUNDS, nthread=1)
    plan = Plan(memory_limit=1_000_000, page_rows=20_000)
    _, summary = fit_booster(path, schema, TrainOptions(), opts, plan=plan)
    assert summary["matrix"] == "ExtMemQuantileDMatrix"
    assert summary["options"]["batch_rows"] == 20_000  # pages of page_rows rows
    assert summary["rows_train"] == in_memory["rows_train"]
    assert abs(summary["metrics"]["roc_auc"] - in_memory["metrics"]["roc_auc"]) < 0.005
    assert list(tmp_path.iterdir()) == []  # the page cache folder is removed


def test_multiclass_with_early_stopping(multi_csv):
    schema = inspect(multi_csv, target="label")
    opts = BoostOptions(rounds=40, nthread=1, early_stopping_rounds=3)
    model, summary = fit_booster(multi_csv, schema, TrainOptions(), opts)
    assert model.n_classes == 3 and summary["metrics"]["roc_auc"] > 0.6
    assert summary["best_iteration"] + 1 == model.booster.num_boosted_rounds()
    assert model.booster.num_boosted_rounds() <= summary["rounds_trained"] <= 40
    p = model.scores(pl.read_csv(multi_csv, n_rows=100, try_parse_dates=True))
    assert p.shape == (100, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)


def test_balanced_class_weights_raise_minority_recall(small_model, small_csv):
    _, plain, schema, _ = small_model
    _, weighted = fit_booster(small_csv, schema, TrainOptions(class_weight="balanced"), FAST)
    recall = [s["metrics"]["per_class"][1]["recall"] for s in (plain, weighted)]
    assert recall[1] > recall[0] + 0.1, recall
    assert weighted["metrics"]["balanced_accuracy"] > plain["metrics"]["balanced_accuracy"]


def test_features_options_and_errors(small_model):
    schema = copy.deepcopy(small_model[2])
    features, notes = boost_features(schema, drop=("plan",))
    assert "plan" not in [f.name for f in features] and not notes
    schema.column("product").storage, schema.column("product").categories = "string", None
    features, notes = boost_features(schema)
    assert "product" not in [f.name for f in features] and "product" in notes[0]
    with pytest.raises(ConfigError, match="nope"):
        boost_features(schema, drop=("nope",))
    with pytest.raises(ConfigError, match="rounds"):
        BoostOptions(rounds=0).check()
    with pytest.raises(ConfigError, match="holdout"):
        fit_booster(
            "x.csv", schema, TrainOptions(holdout=0.0), BoostOptions(early_stopping_rounds=2)
        )
