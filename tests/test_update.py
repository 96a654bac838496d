"""leanfit update and StreamingClassifier.partial_fit: a trained model learns from new data.

References: scikit-learn's metrics on the model's own predictions for the holdout rows
(picked from a pandas frame by the documented split rule), pandas' counts of levels
and of values outside the trained range, scikit-learn's LogisticRegression and
GaussianNB on the same encoded rows.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.naive_bayes import GaussianNB

from leanfit import StreamingClassifier
from leanfit.encode.batches import holdout_mask, label_codes
from leanfit.engines.local.train import train
from leanfit.engines.local.update import update, update_model
from leanfit.errors import ConfigError
from leanfit.model import load
from leanfit.options import BoostOptions, TrainOptions, UpdateOptions
from leanfit.schema.drift import Drift
from leanfit.summary import check
from leanfit.synth import DRIFTED_COLUMNS, NEW_PLANS, write_data

ROWS = 8_000


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("update")
    paths = {"old": d / "old.csv", "new": d / "new.csv", "same": d / "same.csv", "dir": d}
    write_data(paths["old"], rows=ROWS, seed=1)
    write_data(paths["new"], rows=ROWS, seed=2, drift=1.0)
    write_data(paths["same"], rows=ROWS, seed=3)
    return paths


def trained(files, kind: str, **options):
    bundle = files["dir"] / f"{kind}-{len(options)}.leanfit"
    if not bundle.exists():
        opts = TrainOptions(model=kind, **options)
        train(files["old"], "label", out=bundle, options=opts, boost=BoostOptions(rounds=10))
    return bundle


UPDATED: dict = {}


def updated(files, kind: str) -> tuple[dict, object]:
    """The summary and bundle of the model of ``kind`` updated on the drifted data (once)."""
    key = (files["dir"], kind)
    if key not in UPDATED:
        out = files["dir"] / f"{kind}.updated.leanfit"
        summary = update(
            trained(files, kind), files["new"], out=out, options=UpdateOptions(rounds=10)
        )
        UPDATED[key] = summary, out
    return UPDATED[key]


def holdout_frame(path, opts: TrainOptions) -> pd.DataFrame:
    """The rows the training split holds out: a hash of the row number and the seed."""
    frame = pd.read_csv(path)
    return frame[holdout_mask(np.arange(len(frame), dtype=np.uint64), opts.holdout, opts.seed)]


def reference_metrics(bundle, frame: pd.DataFrame) -> tuple[float, float]:
    p = load(bundle).predict_proba(pl.from_pandas(frame))
    return log_loss(frame["label"], p, labels=[0, 1]), roc_auc_score(frame["label"], p[:, 1])


SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "kind", ["sgd", "nb", pytest.param("logistic", marks=SLOW), pytest.param("xgboost", marks=SLOW)]
)
def test_update_improves_the_new_population(files, kind):
    old = trained(files, kind)
    summary, out = updated(files, kind)
    held = holdout_frame(files["new"], TrainOptions())
    before, after = reference_metrics(old, held), reference_metrics(out, held)
    assert summary["rows_holdout"] == len(held) == summary["metrics"]["n_rows"]
    assert summary["rows_train"] + summary["rows_holdout"] == ROWS == summary["rows"]
    assert summary["metrics_before"]["log_loss"] == pytest.approx(before[0], rel=1e-6)
    assert summary["metrics"]["log_loss"] == pytest.approx(after[0], rel=1e-6)
    assert after[0] < before[0] - 0.02, (kind, before, after)
    assert after[1] > before[1] + 0.03, (kind, before, after)
    assert set(summary["drift"]["shifted"]) == set(DRIFTED_COLUMNS)
    assert load(out).meta["training"]["drift"] == summary["drift"]


def drift_of(bundle, path) -> dict:
    """The drift summary of ``path`` against the bundle's schema, as update makes it."""
    model = load(bundle)
    drift = Drift(model.schema)
    for frame in model.batches(path):
        drift.add(frame, label_codes(frame, model.schema))
    return drift.result()


def test_drift_names_the_shifted_columns_only(files):
    bundle = trained(files, "sgd")
    schema = load(bundle).schema
    same, new = drift_of(bundle, files["same"]), drift_of(bundle, files["new"])
    assert same["shifted"] == []
    assert set(new["shifted"]) == set(DRIFTED_COLUMNS)
    features = {c.name for c in schema.features}
    assert {c["column"] for c in new["columns"]} == features
    ranked = [c["shift"] for c in new["columns"]]
    assert ranked == sorted(ranked, reverse=True)
    by_name = {c["column"]: c for c in new["columns"]}
    assert by_name["monthly_fee"]["mean_shift"] == pytest.approx(1.0, abs=0.1)
    old_labels, new_labels = pd.read_csv(files["old"]).label, pd.read_csv(files["new"]).label
    assert new["labels"]["rows_new"] == new_labels.value_counts().sort_index().tolist()
    assert new["labels"]["share_old"][1] == pytest.approx(old_labels.mean(), abs=1e-6)


def test_new_levels_and_out_of_range_values_counted_exactly(files):
    bundle = trained(files, "sgd")
    schema, drift = load(bundle).schema, drift_of(bundle, files["new"])
    frame = pd.read_csv(files["new"])
    by_name = {c["column"]: c for c in drift["columns"]}
    for col in schema.features:
        entry = by_name[col.name]
        values = frame[col.name].dropna()
        if col.categories is not None:
            new = values.astype(str)[~values.astype(str).isin([str(c) for c in col.categories])]
            assert entry["new_levels"] == new.nunique(), col.name
            assert entry["new_level_rows"] == len(new), col.name
        elif col.kind in ("integer", "float"):
            assert entry["below_min"] == int((values < col.min).sum()), col.name
            assert entry["above_max"] == int((values > col.max).sum()), col.name
        assert entry["null_rate_new"] == pytest.approx(frame[col.name].isna().mean(), abs=1e-6)
    assert by_name["plan"]["new_levels"] == len(NEW_PLANS)
    assert sorted(by_name["plan"]["new_level_examples"]) == sorted(NEW_PLANS)


@SLOW
def test_logistic_warm_start_converges_to_the_logistic_of_the_new_rows(files):
    opts = TrainOptions(model="logistic", tol=1e-8)
    bundle = trained(files, "logistic", tol=1e-8)
    out = files["dir"] / "warm.leanfit"
    update(bundle, files["new"], out=out, options=UpdateOptions())
    model = load(bundle)
    frame = pl.read_csv(files["new"])
    train_rows = ~holdout_mask(np.arange(frame.height, dtype=np.uint64), opts.holdout, opts.seed)
    X = model.encoder.transform(frame.filter(pl.Series(train_rows))).astype(np.float64)
    y = frame.get_column("label").to_numpy()[train_rows]
    scratch = LogisticRegression(C=opts.C, tol=1e-10, max_iter=10_000).fit(X, y)
    warm = load(out).estimator
    assert np.abs(warm.coef_ - scratch.coef_).max() < 1e-4
    assert np.abs(warm.intercept_ - scratch.intercept_).max() < 1e-4
    assert warm.warm_start and not model.estimator.warm_start


def test_extend_categories_gives_new_levels_their_own_slots(files):
    bundle = trained(files, "sgd")
    out = files["dir"] / "extended.leanfit"
    summary = update(bundle, files["new"], out=out, options=UpdateOptions(extend_categories=True))
    old, new = load(bundle), load(out)
    added = [f"plan={level}" for level in NEW_PLANS]
    assert not set(added) & set(old.encoder.feature_names)
    names = new.encoder.feature_names
    assert set(added) <= set(names)
    assert summary["categories_added"]["plan"] == len(NEW_PLANS)
    coef = new.coefficients()
    learned = coef.filter(pl.col("feature").is_in(added)).get_column("coefficient")
    assert (learned.abs() > 0).all()  # they started at 0 and learned from the new rows
    assert names.index("plan=<unknown>") == max(names.index(a) for a in added) + 1
    plain, _ = updated(files, "sgd")
    assert plain["features"] == len(old.encoder.feature_names)
    assert plain["categories_added"] == {}
    with pytest.raises(ConfigError, match="cannot take new category slots"):
        update(trained(files, "nb"), files["new"], options=UpdateOptions(extend_categories=True))


def encoded_like_leanfit(X: np.ndarray, model) -> np.ndarray:
    """X as the encoder of ``model`` makes it: read as float32, standardised in float64,
    stored as float32 (leanfit.encode.encoder)."""
    mean = np.array([n["mean"] for n in model.encoder.numeric])
    std = np.array([n["std"] for n in model.encoder.numeric])
    return ((X.astype(np.float32).astype(np.float64) - mean) / std).astype(np.float32)


def test_partial_fit_follows_scikit_learn():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3_000, 4))
    y = np.where(X[:, 0] + 0.5 * X[:, 1] + rng.normal(size=len(X)) > 0, "yes", "no")
    halves = (slice(0, 1_000), slice(1_000, None))
    clf = StreamingClassifier(model="nb")
    for part in halves:
        clf.partial_fit(X[part], y[part], classes=["no", "yes"])
    encoded = encoded_like_leanfit(X, clf.model_)
    reference = GaussianNB()
    for part in halves:
        reference.partial_fit(encoded[part], y[part], classes=["no", "yes"])
    concatenated = GaussianNB().fit(encoded, y)
    assert clf.classes_.tolist() == ["no", "yes"]
    # the same statistics; GaussianNB sums float32 blocks, and leanfit shuffles the rows
    # of a chunk first: sums in another order differ in the float32 rounding
    for other in (reference, concatenated):
        np.testing.assert_allclose(clf.predict_proba(X), other.predict_proba(encoded), atol=1e-5)
        assert (clf.predict(X) == other.predict(encoded)).all()
    with pytest.raises(ValueError, match="classes must be passed"):
        StreamingClassifier(model="sgd").partial_fit(X, y)
    with pytest.raises(ValueError, match="differs"):
        clf.partial_fit(X, y, classes=["no", "yes", "maybe"])
    assert not hasattr(StreamingClassifier(model="logistic"), "partial_fit")
    after_fit = StreamingClassifier(model="sgd").fit(X[:1_000], y[:1_000])
    steps = after_fit.model_.estimator.t_
    after_fit.partial_fit(X[1_000:], y[1_000:])  # continues: the step count goes on
    assert after_fit.model_.estimator.t_ == steps + 2_000


def cli(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "leanfit.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_cli_update_json_default_output_and_refusal(files):
    bundle = trained(files, "sgd")
    done = cli("update", bundle, files["new"], "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    check(summary)
    assert summary["command"] == "update" and summary["bundle"] == str(bundle)
    assert summary["output"] == str(bundle.with_name(f"{bundle.stem}.updated.leanfit"))
    assert load(summary["output"]).meta["training"]["metrics_before"] == summary["metrics_before"]
    refused = cli("update", bundle, files["new"], "--out", bundle)
    assert refused.returncode == 1 and refused.stderr.startswith("Error: --out")
    assert "Traceback" not in refused.stderr


@SLOW
def test_cli_update_shows_drift_and_metrics(files):
    bundle = trained(files, "sgd")
    shown = cli("update", bundle, files["new"], "--out", files["dir"] / "shown.leanfit")
    assert shown.returncode == 0, shown.stderr
    assert "shifted columns" in shown.stdout and "monthly_fee" in shown.stdout
    assert "old model" in shown.stdout and "updated model" in shown.stdout


@SLOW
@pytest.mark.parametrize("kind", ["hinge", "passive-aggressive", "perceptron", "mlp"])
def test_every_incremental_kind_continues(files, kind):
    bundle = trained(files, kind)
    out = files["dir"] / f"{kind}.updated.leanfit"
    summary = update(bundle, files["new"], out=out, options=UpdateOptions())
    held = holdout_frame(files["new"], TrainOptions())
    before, after = reference_metrics(bundle, held), reference_metrics(out, held)
    assert summary["metrics"]["log_loss"] == pytest.approx(after[0], rel=1e-6)
    assert after[1] > before[1], (kind, before, after)


def test_drift_warnings_name_what_the_model_has_not_seen(files):
    summary, _ = updated(files, "nb")
    shifted, outside, unseen = summary["warnings"]
    assert all(name in shifted for name in DRIFTED_COLUMNS)
    by_name = {c["column"]: c for c in summary["drift"]["columns"]}
    total = sum(c.get("below_min", 0) + c.get("above_max", 0) for c in by_name.values())
    assert outside.startswith(f"{total:,} values outside the trained range")
    rows = sum(c.get("new_level_rows", 0) for c in by_name.values())
    assert unseen.startswith(f"{rows:,} values in levels") and "plan" in unseen


@SLOW
def test_bad_rows_are_left_out_and_counted(files):
    lines = files["new"].read_text().splitlines(keepends=True)
    header = lines[0].split(",")
    column = header.index('"latency_ms"')
    bad = (10, 500, 4_000)
    for number in bad:
        fields = lines[number].split(",")
        fields[column] = "oops"
        lines[number] = ",".join(fields)
    broken = files["dir"] / "broken.csv"
    broken.write_text("".join(lines))
    bundle = trained(files, "sgd")
    refused = cli("update", bundle, broken, "--out", files["dir"] / "refused.leanfit")
    assert refused.returncode == 1 and "'latency_ms'" in refused.stderr, refused.stderr
    assert refused.stderr.startswith("Error: ") and "Traceback" not in refused.stderr
    done = cli(
        "update",
        bundle,
        broken,
        "--bad-rows",
        "skip",
        "--json",
        "--out",
        files["dir"] / "skipped.leanfit",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["rows_bad"] == len(bad)
    assert summary["rows"] == len(lines) - 1
    assert summary["rows_train"] + summary["rows_holdout"] + len(bad) == summary["rows"]
    assert summary["drift"]["rows"] == len(lines) - 1 - len(bad)


def test_drift_counts_new_levels_in_bounded_memory():
    """New data where every row brings a new level (an id where a category was): the
    drift holds at most its cap of levels, counts the rows of unknown levels exactly
    (pandas is the reference) and still names the most frequent new level first."""
    from leanfit.schema.columns import Column, Schema

    old = Column("c", "categorical", "dictionary<uint8>", "String", 4, 0)
    old.categories, old.category_counts = ["a", "b"], [2, 2]
    drift = Drift(Schema(sources=[], rows=4, columns=[old]), cap=500)
    rng = np.random.default_rng(0)
    values = np.array([f"id{i}" for i in range(30_000)] + ["hot"] * 3_000 + ["a"] * 7_000)
    rng.shuffle(values)
    frame = pd.DataFrame({"c": values})
    for start in range(0, len(frame), 4_000):
        drift.add(pl.from_pandas(frame.iloc[start : start + 4_000]))

    assert len(drift.levels["c"]) <= 500
    (column,) = drift.result()["columns"]
    assert column["new_level_rows"] == int((~frame["c"].isin(["a", "b"])).sum())
    assert column["new_level_examples"][0] == "hot"
    assert drift.new_levels("c")[0] == "hot"
    assert drift.level_counts("c")["a"] == pytest.approx(7_000, abs=40_000 / 251)


@pytest.mark.parametrize("kind", ["sgd", "xgboost"])
def test_a_limit_too_small_is_refused_before_the_data_is_read(files, kind):
    """As train does: the second pass is planned before the first, so the verdict is
    the same every run and comes before any row is read."""
    from leanfit.errors import MemoryBudgetExceeded
    from leanfit.memory import Monitor, current_rss

    model = load(trained(files, kind))
    monitor = Monitor(current_rss() + 20_000_000)
    with monitor, pytest.raises(MemoryBudgetExceeded, match="is below the"):
        update_model(model, files["new"], UpdateOptions(rounds=2), memory=monitor)
    assert "drift" not in monitor.stage_peaks


def test_update_progress_counts_the_new_rounds(files):
    """XGBoost numbers the rounds of a continued booster from 0: the progress hears of
    rounds 1, 2, 3 of 3 more rounds, not the old rounds plus these."""
    from leanfit.memory import Monitor
    from leanfit.progress import Progress

    events: list = []
    monitor = Monitor(2**40, progress=Progress(events.append))
    with monitor:
        update_model(
            load(trained(files, "xgboost")), files["new"], UpdateOptions(rounds=3), memory=monitor
        )
    assert [e["round"] for e in events if e.get("stage") == "boost"] == [1, 2, 3]


@pytest.mark.parametrize("kind", ["xgboost", "logistic"])
def test_an_updated_bundle_records_its_run_for_the_report(files, kind):
    _, out = updated(files, kind)
    record = load(out).meta["training"]["run_record"]
    assert record["memory_trace"] and record["stage_seconds"]
    if kind == "xgboost":  # its new rounds, each with the holdout's loss
        assert len(record["learning_curve"]["y"]) == 10, record["learning_curve"]


def test_an_update_that_made_the_model_worse_says_so():
    from leanfit.engines.local.update import worse_than_before

    (said,) = worse_than_before({"log_loss": 0.5}, {"log_loss": 0.7})
    assert "worse than the old one" in said and "0.7 against 0.5" in said
    assert worse_than_before({"log_loss": 0.5}, {"log_loss": 0.4}) == []
    assert worse_than_before(None, {"log_loss": 0.4}) == []
