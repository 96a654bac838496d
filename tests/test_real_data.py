"""Real data leanfit did not generate: the Palmer penguins (raw table, with text,
dates, IDs, comments and missing values), as shipped by the palmerpenguins package."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from palmerpenguins import load_penguins_raw
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, log_loss

from leanfit import evaluate, inspect, load, predict
from leanfit.encode.batches import holdout_mask
from leanfit.engines.local.train import train
from leanfit.options import TrainOptions

TARGET = "Species"


@pytest.fixture(scope="module")
def penguins_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("real") / "penguins_raw.csv"
    load_penguins_raw().sample(frac=1.0, random_state=0).to_csv(path, index=False)
    return path


def test_inspect_reads_the_real_table(penguins_csv):
    schema = inspect(penguins_csv, target=TARGET)
    df = pd.read_csv(penguins_csv)
    assert schema.rows == len(df) == 344
    assert schema.class_counts == df[TARGET].value_counts().sort_index().tolist()
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds["Date Egg"] == "datetime"
    assert kinds["Island"] == "categorical"
    assert schema.column("Sex").nulls == df["Sex"].isna().sum()


@pytest.mark.parametrize("model", ["sgd", "logistic"])
def test_train_evaluate_predict_agree_with_sklearn(penguins_csv, tmp_path, model):
    bundle = tmp_path / "p.leanfit"
    summary = train(penguins_csv, TARGET, out=bundle, options=TrainOptions(model=model, epochs=5))
    df = pd.read_csv(penguins_csv)
    held = df[holdout_mask(np.arange(len(df), dtype=np.uint64), 0.2, 0)]
    fitted = load(bundle)
    proba = fitted.predict_proba(held)
    labels = fitted.classes[proba.argmax(axis=1)]
    m = summary["metrics"]
    assert m["n_rows"] == len(held)
    assert m["accuracy"] == accuracy_score(held[TARGET], labels)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(held[TARGET], labels))
    assert m["f1_macro"] == pytest.approx(f1_score(held[TARGET], labels, average="macro"))
    assert m["log_loss"] == pytest.approx(
        log_loss(held[TARGET], proba, labels=fitted.classes), rel=1e-6
    )
    assert m["accuracy"] > 0.9  # the species are easy to tell apart from the measurements
    full = evaluate(bundle, penguins_csv)["metrics"]
    assert full["n_rows"] == len(df)
    out = tmp_path / "preds.csv"
    assert predict(bundle, penguins_csv, out, keep=("Individual ID",))["rows"] == len(df)
    assert len(pd.read_csv(out)) == len(df)
