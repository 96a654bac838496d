"""A text column of thousands of levels: every level its own slot, checked against
in-memory references on the same rows.

The files come from ``leanfit make-data --levels`` (``product``: about 2,000 levels,
heavy-tailed). Both sides train on the whole training file (``holdout=0``) and are
scored on a second file drawn with another seed, with scikit-learn's ROC AUC.
"""

from __future__ import annotations

import json
import zlib

import numpy as np
import pandas as pd
import polars as pl
import pytest
import xgboost as xgb
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import leanfit
from leanfit.encode.encoder import Encoder
from leanfit.encode.extend import with_new_levels
from leanfit.encode.trees import RANK_ABOVE, boost_features
from leanfit.options import TrainOptions
from leanfit.schema.columns import Column, Schema
from leanfit.schema.inspection import inspect
from leanfit.synth import write_data

LEVELS, ROUNDS = 2_000, 20


def made(folder, rows: int) -> tuple:
    train, test = folder / "train.csv", folder / "test.csv"
    write_data(train, rows=rows, seed=3, levels=LEVELS)
    write_data(test, rows=20_000, seed=4, levels=LEVELS)
    return train, test


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return made(tmp_path_factory.mktemp("high_cardinality"), 50_000)


@pytest.fixture(scope="module")
def more_files(tmp_path_factory):
    """Enough rows for boosted trees to be stable to 0.001 of AUC (at 100,000 rows
    the category order alone moves XGBoost's AUC by 0.001)."""
    return made(tmp_path_factory.mktemp("high_cardinality_more"), 200_000)


def pandas_frame(path) -> tuple[pd.DataFrame, np.ndarray]:
    """The file as pandas loads it: the date as days since 1970 (and, for the linear
    reference, its month and weekday, as leanfit's encoder has them), no id."""
    df = pd.read_csv(path).drop(columns=["customer_id"])
    day = pd.to_datetime(df.pop("signup_date"))
    df["days"] = (day - pd.Timestamp("1970-01-01")).dt.days.astype(float)
    df["month"], df["weekday"] = day.dt.month, day.dt.day_of_week
    df["is_member"] = df["is_member"].astype(float)
    return df, df.pop("label").to_numpy()


def text_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if pd.api.types.is_string_dtype(df[c])]


def test_the_column_has_thousands_of_levels_and_each_gets_a_slot(files):
    schema = inspect(files[0], target="label")
    product = schema.column("product")
    assert product.kind == "high_cardinality" and 1_500 < product.distinct <= LEVELS
    assert product.distinct == pd.read_csv(files[0])["product"].nunique()
    encoder = Encoder.from_options(schema, TrainOptions())
    names = encoder.feature_names
    assert sum(n.startswith("product=") for n in names) == product.distinct + 1  # + unknown
    assert not any("#hash" in n for n in names) and encoder.notes() == []
    mlp = Encoder.from_options(schema, TrainOptions(model="mlp"))  # hashed, as it says
    assert sum("product#hash" in n for n in mlp.feature_names) == 1_024
    assert mlp.notes()[0].startswith(f"product: its {product.distinct:,} levels share 1,024")


def test_exact_logistic_matches_sklearn_on_full_one_hot(files, tmp_path):
    train, test = files
    model = leanfit.train(train, "label", model="logistic", holdout=0.0, out=tmp_path / "m.leanfit")
    assert model.summary["notes"] == [] and model.summary["memory"]["within_limit"]
    X, y = pandas_frame(train)
    X_test, y_test = pandas_frame(test)
    text = text_columns(X)
    numbers = [c for c in X.columns if c not in text]
    columns = ColumnTransformer(
        [
            ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), numbers),
            ("text", OneHotEncoder(handle_unknown="ignore"), text),
        ]
    )
    full = columns.fit_transform(X)
    assert full.shape[1] > LEVELS * 0.75
    reference = LogisticRegression(max_iter=5_000).fit(full, y)
    expected = roc_auc_score(y_test, reference.predict_proba(columns.transform(X_test))[:, 1])
    got = roc_auc_score(y_test, model.predict_proba(test)[:, 1])
    assert abs(got - expected) <= 0.001, (got, expected)
    # unseen levels of the test file go to the unknown slot; evaluate streams the same
    streamed = leanfit.evaluate(tmp_path / "m.leanfit", test)["metrics"]["roc_auc"]
    assert abs(streamed - got) < 1e-3


def test_xgboost_native_categories_match_xgboost_in_memory(more_files):
    train, test = more_files
    model = leanfit.train(
        train, "label", model="xgboost", holdout=0.0, rounds=ROUNDS, memory_limit="1GB"
    )
    kinds = {f["name"]: f["kind"] for f in model.estimator.state()[0]["features"]}
    assert kinds["product"] == "category"
    X, y = pandas_frame(train)
    X_test, y_test = pandas_frame(test)
    X, X_test = X.drop(columns=["month", "weekday"]), X_test.drop(columns=["month", "weekday"])
    for c in text_columns(X):
        X[c] = X[c].astype("category")
        seen = X_test[c].where(X_test[c].isin(X[c].cat.categories))  # unseen: missing
        X_test[c] = pd.Categorical(seen, categories=X[c].cat.categories)
    reference = xgb.XGBClassifier(
        n_estimators=ROUNDS, max_depth=6, learning_rate=0.3, max_bin=256, enable_categorical=True
    ).fit(X, y)
    expected = roc_auc_score(y_test, reference.predict_proba(X_test)[:, 1])
    got = roc_auc_score(y_test, model.predict_proba(test)[:, 1])
    assert abs(got - expected) <= 0.001, (got, expected)


def test_a_tight_budget_hashes_the_rarer_levels_and_says_so(files):
    schema = inspect(files[0], target="label")
    product = schema.column("product")
    wide = Encoder.from_options(schema, TrainOptions())
    narrow = Encoder.from_options(schema, TrainOptions(hash_width=64), max_slots=600)
    assert narrow.n_features <= 600 < wide.n_features
    (note,) = narrow.notes()
    own = int(note.split("the ")[1].split(" most")[0].replace(",", ""))
    assert note.startswith("product:") and 0 < own < product.distinct
    names = narrow.feature_names
    assert names[-1] == "product=<unknown>" and sum("#hash" in n for n in names) == 64
    # the most frequent levels keep their own slots, by their names
    assert f"product={product.categories[0]}" in names
    assert f"product={product.categories[own]}" not in names
    # rows: a frequent level in its own column, a rare one in its CRC32 hashed slot,
    # an unseen one in the unknown slot; the same after a JSON round trip (bundles)
    rare = product.categories[-1]
    frame = pl.read_csv(files[0], n_rows=3, try_parse_dates=True)
    frame = frame.with_columns(product=pl.Series([product.categories[0], rare, "p_unseen"]))
    start = names.index("product=" + product.categories[0])
    expected = [start, start + own + zlib.crc32(rare.encode()) % 64, len(names) - 1]
    for encoder in (narrow, Encoder.from_dict(json.loads(json.dumps(narrow.to_dict())))):
        block = encoder.transform(frame)
        assert [row.indices[-1] for row in block] == expected
    # a new level of an extended encoder goes to a hashed slot, the width unchanged
    grown, columns = with_new_levels(narrow, {"product": ["p_new"]})
    assert grown.n_features == narrow.n_features and len(columns) == narrow.n_features
    slot = grown.categorical[-1]["slots"][-1]
    assert own <= slot < own + 64


def test_xgboost_takes_the_rank_past_rank_above_levels_and_says_so():
    levels = [f"v{i}" for i in range(RANK_ABOVE + 1)]
    columns = [
        Column("many", "high_cardinality", "dictionary<uint16>", "String", 9, 0, categories=levels),
        Column("few", "high_cardinality", "dictionary<uint16>", "String", 9, 0,
               categories=levels[:RANK_ABOVE]),
    ]  # fmt: skip
    features, notes = boost_features(Schema(sources=[], rows=9, columns=columns))
    assert [(f.name, f.kind) for f in features] == [("many", "rank"), ("few", "category")]
    assert notes == [f"many: {RANK_ABOVE + 1:,} levels (more than {RANK_ABOVE:,}) enter as "
                     "their frequency rank, a number"]  # fmt: skip
