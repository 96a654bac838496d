"""Introspection (coefficients, importances) and the ONNX export, against onnxruntime."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnxruntime as ort
import polars as pl
import pytest
from scipy.special import expit, softmax

import leanfit
from leanfit import BoostOptions, ConfigError, StreamingClassifier, TrainOptions
from leanfit.export import export

NO_DATE = ("signup_date",)  # ONNX cannot parse dates: exported models leave it out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    for classes in (2, 3):
        leanfit.write_data(folder / f"train{classes}.csv", rows=5_000, seed=1, classes=classes)
        leanfit.write_data(folder / f"test{classes}.csv", rows=800, seed=2, classes=classes)
    return folder


def _bundle(folder, kind: str, classes: int, drop=NO_DATE):
    out = folder / f"{kind}{classes}{'-dates' if not drop else ''}.leanfit"
    if not out.exists():
        leanfit.train(
            folder / f"train{classes}.csv",
            "label",
            out=out,
            options=TrainOptions(model=kind, drop=drop),
            boost=BoostOptions(rounds=20),
        )
    return out


def _feeds(session: ort.InferenceSession, frame: pl.DataFrame) -> dict:
    """The graph's inputs from a frame: numbers as float32 (NaN missing), text as
    strings ("" missing)."""
    feeds = {}
    for spec in session.get_inputs():
        col = frame.get_column(spec.name)
        if spec.type == "tensor(string)":
            values = np.asarray(col.cast(pl.String).fill_null("").to_list(), dtype=object)
        else:
            values = col.cast(pl.Float32).fill_null(float("nan")).to_numpy()
        feeds[spec.name] = values.astype(values.dtype, copy=False).reshape(-1, 1)
    return feeds


def _onnx_proba(path, frame: pl.DataFrame) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], _feeds(session, frame))[0]


def _held_out(model, data, classes: int) -> pl.DataFrame:
    return pl.concat(list(model.batches(data / f"test{classes}.csv")))


@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("kind", ["sgd", "logistic", "xgboost"])
def test_onnx_probabilities_equal_leanfit_on_unseen_rows(data, kind, classes):
    bundle = _bundle(data, kind, classes)
    out = data / f"{kind}{classes}.onnx"
    summary = export(bundle, out)
    assert summary == {"bundle": str(bundle), "model": kind, "output": str(out), "format": "onnx"}
    model = leanfit.load(bundle)
    frame = _held_out(model, data, classes)
    want = model.predict_proba(frame)
    got = _onnx_proba(out, frame)
    assert got.shape == (800, classes)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # the graph's probabilities move with the rows: not a constant that happens to fit
    assert np.ptp(got[:, -1]) > 0.1


@pytest.mark.parametrize("kind", ["sgd", "xgboost"])
def test_onnx_missing_values_and_unseen_categories(data, kind):
    model = leanfit.load(_bundle(data, kind, 2))
    frame = _held_out(model, data, 2).head(300)
    every_third = pl.int_range(pl.len()) % 3 == 0
    frame = frame.with_columns(
        pl.when(every_third).then(None).otherwise(pl.col("balance")).alias("balance"),
        pl.when(every_third).then(float("nan")).otherwise(pl.col("score_a")).alias("score_a"),
        pl.when(every_third).then(pl.lit("never-seen")).otherwise(pl.col("plan")).alias("plan"),
        pl.when(~every_third).then(None).otherwise(pl.col("region")).alias("region"),
    )
    out = data / f"{kind}-holes.onnx"
    export(_bundle(data, kind, 2), out)
    np.testing.assert_allclose(_onnx_proba(out, frame), model.predict_proba(frame), atol=1e-5)


def test_onnx_inputs_are_the_raw_columns(data):
    bundle = _bundle(data, "sgd", 2)
    out = data / "inputs.onnx"
    export(bundle, out)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    types = {i.name: i.type for i in session.get_inputs()}
    header = pl.read_csv(data / "train2.csv", n_rows=1).columns
    assert set(types) == set(header) - {"customer_id", "label", "signup_date"}
    assert types["plan"] == types["product"] == "tensor(string)"
    assert types["balance"] == types["is_member"] == "tensor(float)"


def test_export_refuses_dates_and_models_without_onnx_form(data):
    dated = _bundle(data, "sgd", 2, drop=())
    with pytest.raises(ConfigError, match="signup_date"):
        export(dated, data / "dated.onnx")
    nb = data / "nb.leanfit"
    leanfit.train(data / "train2.csv", "label", out=nb, options=TrainOptions(model="nb"))
    with pytest.raises(ConfigError, match="'nb' has no ONNX export"):
        export(nb, data / "nb.onnx")
    with pytest.raises(ConfigError, match="--format"):
        export(_bundle(data, "sgd", 2), data / "x.pmml", fmt="pmml")
    assert not list(data.glob("*dated.onnx*")) and not list(data.glob("nb.onnx*"))


def test_cli_export_writes_the_graph_and_errors_in_one_line(data):
    bundle = _bundle(data, "logistic", 2)
    out = data / "cli.onnx"
    cli = [sys.executable, "-m", "leanfit.cli", "export"]
    done = subprocess.run([*cli, str(bundle), "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    model = leanfit.load(bundle)
    frame = _held_out(model, data, 2)
    np.testing.assert_allclose(_onnx_proba(out, frame), model.predict_proba(frame), atol=1e-5)
    dated = _bundle(data, "sgd", 2, drop=())
    bad = subprocess.run(
        [*cli, str(dated), "--out", str(data / "d.onnx")], capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("Error: ") and "signup_date" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (data / "d.onnx").exists()


@pytest.mark.parametrize("classes", [2, 3])
def test_coefficients_rebuild_the_probabilities(data, classes):
    model = leanfit.load(_bundle(data, "logistic", classes))
    table = model.coefficients()
    assert table.get_column("feature").to_list() == [*model.encoder.feature_names, "(intercept)"]
    weights = table.drop("feature").to_numpy()
    assert table.columns[1:] == (["coefficient"] if classes == 2 else ["0", "1", "2"])
    frame = _held_out(model, data, classes)
    X = model.encoder.transform(frame)
    margin = X @ weights[:-1] + weights[-1]
    p = np.column_stack([1 - expit(margin), expit(margin)]) if classes == 2 else softmax(margin, 1)
    np.testing.assert_allclose(p, model.predict_proba(frame), atol=1e-9)


def test_linear_importances_sum_coefficients_by_column(data):
    model = leanfit.load(_bundle(data, "sgd", 2))
    coef = model.coefficients().filter(pl.col("feature") != "(intercept)")
    column = pl.col("feature").str.extract(r"^([^=#:]+)")
    want = coef.group_by(column.alias("column")).agg(pl.col("coefficient").abs().sum())
    got = model.feature_importances()
    assert got.get_column("importance").is_sorted(descending=True)
    joined = got.join(want, on="column", how="full", coalesce=True)
    assert joined.height == got.height == len(model.encoder.input_columns)
    np.testing.assert_allclose(joined["importance"], joined["coefficient"], rtol=1e-6)


def test_xgboost_importances_match_the_training_summary(data):
    model = leanfit.load(_bundle(data, "xgboost", 3))
    got = dict(model.feature_importances().iter_rows())
    summary = model.meta["training"]["feature_importance"]  # XGBoost's gain at training
    assert set(got) == {f.name for f in model.estimator.features}
    for name, gain in summary.items():
        assert got[name] == pytest.approx(gain, rel=1e-5)
    with pytest.raises(ConfigError, match="'xgboost' has no coefficients"):
        model.coefficients()


def test_estimator_coef_intercept_importances_and_names():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3_000, 3)) * [1.0, 10.0, 0.1]
    y = (X[:, 0] + 0.1 * X[:, 1] > 0).astype(int)
    linear = StreamingClassifier(model="logistic").fit(X, y)
    assert linear.coef_.shape == (1, 3) and linear.intercept_.shape == (1,)
    assert linear.get_feature_names_out().tolist() == ["x0", "x1", "x2"]
    encoded = linear.model_.encoder.transform(pl.DataFrame(X, schema=["x0", "x1", "x2"]))
    margin = encoded @ linear.coef_.ravel() + linear.intercept_[0]
    np.testing.assert_allclose(margin, linear.decision_function(X), rtol=1e-9, atol=1e-9)
    assert not hasattr(linear, "feature_importances_")
    trees = StreamingClassifier(model="xgboost").fit(X, y)
    assert not hasattr(trees, "coef_") and not hasattr(trees, "intercept_")
    importances = trees.feature_importances_
    assert importances.sum() == pytest.approx(1.0) and importances.argmin() == 2
    assert not hasattr(StreamingClassifier(), "coef_")
