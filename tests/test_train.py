"""train / evaluate / predict against scikit-learn and pandas references."""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import polars as pl
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, log_loss, roc_auc_score

import leanfit
from leanfit import evaluate, load, predict
from leanfit.encode.encoder import Encoder
from leanfit.engines.local.train import encoded_blocks, train
from leanfit.errors import BundleError, SchemaMismatch
from leanfit.options import TrainOptions
from leanfit.schema import inspect

SMALL_CHUNKS = 4_000


def _encoded_split(path, schema, opts):
    blocks = list(encoded_blocks(path, schema, Encoder.from_schema(schema), opts))
    stack = sp.vstack if sp.issparse(blocks[0][0]) else np.vstack
    Xtr = stack([X[t] for X, y, t in blocks])
    Xte = stack([X[~t] for X, y, t in blocks])
    ytr = np.concatenate([y[t] for X, y, t in blocks])
    yte = np.concatenate([y[~t] for X, y, t in blocks])
    return Xtr, ytr, Xte, yte


def test_sgd_one_epoch_close_to_in_memory_logistic(small_csv, tmp_path):
    schema = inspect(small_csv, target="label")
    opts = TrainOptions(batch_rows=SMALL_CHUNKS)
    summary = train(small_csv, schema=schema, out=tmp_path / "m.leanfit", options=opts)
    Xtr, ytr, Xte, yte = _encoded_split(small_csv, schema, opts)
    reference = LogisticRegression(max_iter=2_000).fit(Xtr, ytr)
    ref_acc = accuracy_score(yte, reference.predict(Xte))
    assert summary["rows_holdout"] == len(yte) and summary["rows_train"] == len(ytr)
    assert summary["metrics"]["accuracy"] > ref_acc - 0.015


def test_holdout_metrics_equal_sklearn_on_the_same_rows(small_csv, tmp_path):
    opts = TrainOptions(batch_rows=SMALL_CHUNKS, seed=7)
    summary = train(small_csv, "label", out=tmp_path / "m.leanfit", options=opts)
    model = load(tmp_path / "m.leanfit")
    df = pd.read_csv(small_csv)
    from leanfit.encode.batches import holdout_mask

    held = df[holdout_mask(np.arange(len(df), dtype=np.uint64), 0.2, 7)]
    proba = model.predict_proba(held)
    m = summary["metrics"]
    assert m["n_rows"] == len(held)
    assert m["accuracy"] == accuracy_score(held["label"], proba.argmax(1))
    assert m["confusion_matrix"] == confusion_matrix(held["label"], proba.argmax(1)).tolist()
    assert m["log_loss"] == pytest.approx(log_loss(held["label"], proba), rel=1e-6)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(held["label"], proba[:, 1]), abs=1e-3)


def test_logistic_matches_sklearn_coefficients(small_csv, tmp_path):
    schema = inspect(small_csv, target="label")
    opts = TrainOptions(model="logistic", holdout=0.0, batch_rows=SMALL_CHUNKS, C=0.5, tol=1e-10)
    train(small_csv, schema=schema, out=tmp_path / "l.leanfit", options=opts)
    ours = load(tmp_path / "l.leanfit").estimator
    Xtr, ytr, _, _ = _encoded_split(small_csv, schema, opts)
    ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000).fit(Xtr.astype(np.float64), ytr)
    scale = np.abs(ref.coef_).max()
    assert np.abs(ours.coef_ - ref.coef_).max() / scale < 1e-4
    assert ours.intercept_ == pytest.approx(ref.intercept_, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize(
    "model",
    ["sgd", "hinge", "passive-aggressive", "perceptron", "nb", "mlp", "logistic", "xgboost"],
)
def test_every_model_multiclass_round_trip(multi_csv, tmp_path, model):
    opts = TrainOptions(
        model=model,
        epochs=2,
        batch_rows=SMALL_CHUNKS,
        class_weight="balanced" if model in ("sgd", "nb", "xgboost") else None,
    )
    summary = train(multi_csv, "label", out=tmp_path / "m.leanfit", options=opts)
    assert summary["metrics"]["accuracy"] > 0.40  # three classes: chance is about 1/3
    out = tmp_path / "p.parquet"
    report = predict(tmp_path / "m.leanfit", multi_csv, out, keep=("customer_id",))
    preds = pd.read_parquet(out)
    assert report["rows"] == len(preds) == 20_000
    again = load(tmp_path / "m.leanfit").predict(pd.read_csv(multi_csv).iloc[:500])
    assert (again == preds["prediction"].to_numpy()[:500]).all()


def test_evaluate_equals_sklearn(small_csv, tmp_path):
    train(
        small_csv,
        "label",
        out=tmp_path / "m.leanfit",
        options=TrainOptions(batch_rows=SMALL_CHUNKS),
    )
    result = evaluate(tmp_path / "m.leanfit", small_csv)["metrics"]
    df = pd.read_csv(small_csv)
    proba = leanfit.load(tmp_path / "m.leanfit").predict_proba(small_csv)
    assert result["accuracy"] == accuracy_score(df["label"], proba.argmax(1))
    assert result["roc_auc"] == pytest.approx(roc_auc_score(df["label"], proba[:, 1]), abs=1e-3)


def test_predict_matches_columns_by_name(small_csv, tmp_path):
    train(
        small_csv,
        "label",
        out=tmp_path / "m.leanfit",
        options=TrainOptions(batch_rows=SMALL_CHUNKS),
    )
    model = load(tmp_path / "m.leanfit")
    df = pd.read_csv(small_csv).iloc[:300]
    base = model.predict_proba(df)
    shuffled = df[df.columns[::-1]].assign(extra=1)
    np.testing.assert_allclose(model.predict_proba(shuffled), base, rtol=1e-6)
    unseen = df.assign(plan="never-seen-before")
    assert model.predict_proba(unseen).shape == base.shape
    with pytest.raises(SchemaMismatch, match="balance"):
        model.predict_proba(df.drop(columns=["balance"]))
    with pytest.raises(SchemaMismatch, match="balance"):
        model.predict_proba(df.assign(balance="lots"))


def test_failed_predict_leaves_no_file(small_csv, tmp_path):
    train(
        small_csv,
        "label",
        out=tmp_path / "m.leanfit",
        options=TrainOptions(batch_rows=SMALL_CHUNKS),
    )
    df = pd.read_csv(small_csv)
    df = df.drop(columns=["balance"])
    df.to_csv(tmp_path / "broken.csv", index=False)
    with pytest.raises(SchemaMismatch):
        predict(tmp_path / "m.leanfit", tmp_path / "broken.csv", tmp_path / "p.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.csv", "m.leanfit"]


def test_bundle_with_pickle_is_refused(small_csv, tmp_path):
    path = tmp_path / "m.leanfit"
    train(small_csv, "label", out=path, options=TrainOptions(batch_rows=SMALL_CHUNKS))
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("model.pkl", b"\x80\x04K\x01.")
    with pytest.raises(BundleError, match=r"model\.pkl"):
        load(path)


def test_same_seed_same_split_and_model(small_csv, tmp_path):
    opts = TrainOptions(batch_rows=SMALL_CHUNKS, seed=3, epochs=3)
    a = train(small_csv, "label", out=tmp_path / "a.leanfit", options=opts)
    b = train(small_csv, "label", out=tmp_path / "b.leanfit", options=opts)
    assert a["rows_holdout"] == b["rows_holdout"] and a["metrics"] == b["metrics"]
    assert len(a["history"]) >= 1


def test_killed_predict_leaves_no_output(small_csv, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    train(small_csv, "label", out=tmp_path / "m.leanfit", options=TrainOptions(batch_rows=1_024))
    out = tmp_path / "p.csv"
    script = "import sys; from leanfit.engines.local.apply import predict; predict(*sys.argv[1:], rows=1024)"
    cmd = [sys.executable, "-c", script, str(tmp_path / "m.leanfit"), str(small_csv), str(out)]
    proc = subprocess.Popen(cmd)
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob(".p.csv.partial-*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # the final name never holds a partial file
    predict(tmp_path / "m.leanfit", small_csv, out)  # the next run cleans up after it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.leanfit", "p.csv"]


def test_killed_train_leaves_no_output_and_its_cache_is_cleaned(small_csv, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out = tmp_path / "m.leanfit"
    script = (
        "import sys, leanfit; leanfit.train(sys.argv[1], 'label', out=sys.argv[2], "
        "options=leanfit.TrainOptions(model='logistic', batch_rows=256, tol=1e-12))"
    )
    cmd = [sys.executable, "-c", script, str(small_csv), str(out)]
    env = {**os.environ, "TMPDIR": str(scratch)}
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.monotonic() + 60
    while not list(scratch.glob("leanfit-cache-*/*.y.npy")) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    assert list(scratch.glob("leanfit-cache-*"))  # a killed run cannot clean up...
    subprocess.run(cmd, env=env, check=True)  # ...the next run does
    assert out.exists()
    assert list(scratch.iterdir()) == []


STREAMING_NODES = {"multi-scan[csv]", "select", "with-columns", "sink_batches", "map"}


def test_training_query_streams_every_step(small_csv, tmp_path):
    """Polars quietly gathers whole columns for some expressions (``replace_strict``,
    ``value_counts``...); its verbose log names such a step a columnar function."""
    import os
    import re
    import subprocess
    import sys

    schema_path = tmp_path / "schema.json"
    inspect(small_csv, target="label").to_json(schema_path)
    script = f"""
from leanfit.schema import Schema
from leanfit.io.scan import iter_batches, scan
from leanfit.io.source import resolve_paths
from leanfit.encode.batches import encoded_columns
from leanfit.engines.local.train import Trainer
from leanfit.options import TrainOptions
schema = Schema.from_json({str(schema_path)!r})
opts = TrainOptions(split_by="customer_id")
encoder = Trainer(schema, opts).encoder
paths = resolve_paths({str(small_csv)!r})
lf = scan(paths, schema.read_overrides())
query = lf.select(encoded_columns(lf.collect_schema(), schema, encoder, opts))
assert sum(b.height for b in iter_batches(query, paths, 4_000)) == 20_000
"""
    env = {**os.environ, "POLARS_VERBOSE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    nodes = set(re.findall(r"polars-stream: running (\S+) in subgraph", done.stderr))
    assert "multi-scan[csv]" in nodes
    assert nodes <= STREAMING_NODES, nodes - STREAMING_NODES


def test_logistic_passes_do_not_grow_the_heap(tmp_path):
    """Each L-BFGS pass makes float64 copies of its cached blocks; the heap must reuse
    them from pass to pass. (Fresh threads for every pass once grew it by ~40 MB a
    pass on these 131k-row blocks: 469 MB to 904 MB in 13 passes.)"""
    import warnings

    from leanfit.encode.cache import BlockCache
    from leanfit.engines.local.train import Trainer
    from leanfit.memory import Monitor, current_rss
    from leanfit.progress import Progress

    data = tmp_path / "d.csv"
    leanfit.write_data(data, rows=600_000, seed=1)
    opts = TrainOptions(model="logistic", batch_rows=131_072, tol=1e-14)
    rss = []
    trainer = Trainer(
        inspect(data, target="label"),
        opts,
        memory=Monitor(
            Monitor.unbounded().limit,
            progress=Progress(
                lambda e: rss.append(current_rss()) if e["stage"] == "lbfgs" else None
            ),
        ),
    )
    trainer.model.max_iter = 10
    with warnings.catch_warnings(), BlockCache() as cache, BlockCache() as held:
        warnings.simplefilter("ignore")  # 10 iterations do not converge at this tol
        trainer.fit(data, cache, held)
    assert len(rss) >= 10
    assert max(rss[2:]) - rss[1] < 60e6, [r // 2**20 for r in rss]


@pytest.mark.parametrize("dtype", ["Float64", "Float32", "String"])
@pytest.mark.parametrize(("mean", "std"), [(1.0, 2.0), (0.0, 1e-3), (-5.0, 1e6)])
def test_standardised_features_match_numpy_at_the_edges_of_float32(dtype, mean, std):
    """Numbers are held to float32's range, rounded to float32, standardised in float64,
    stored as float32; NaN and missing become 0 (the mean). numpy is the reference."""
    import polars as pl

    values = [1e308, -1e308, float("inf"), float("-inf"), float("nan"), None, 3.5, 1e-45]
    values += [3.4e38, 3.41e38, 0.1, -0.0, 123456.789]
    frame = pl.DataFrame({"x": values}, schema={"x": pl.Float64})
    frame = frame.with_columns(pl.col("x").cast(getattr(pl, dtype)))
    encoder = Encoder(numeric=[{"name": "x", "mean": mean, "std": std, "indicator": False}])
    got = encoder.transform(frame)[:, 0]

    top = np.finfo(np.float32).max
    x = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if dtype == "Float32":
            x = x.astype(np.float32).astype(np.float64)
        z = (np.clip(x, -top, top).astype(np.float32).astype(np.float64) - mean) / std
        want = np.nan_to_num(np.clip(z, -top, top), nan=0.0).astype(np.float32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("model", ["hinge", "perceptron", "nb"])
def test_values_near_the_float_limit_give_the_models_own_choice(tmp_path, model):
    """A value near float32's limit (or past it: the encoder bounds it there) once
    overflowed scikit-learn's float32 arithmetic: NaN probabilities, the first class."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(600, 3))
    label = np.array(["a", "b", "c"])[np.argmax(x, axis=1)]
    frame = pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "label": label})
    frame.to_csv(tmp_path / "train.csv", index=False)
    fitted = leanfit.train(tmp_path / "train.csv", target="label", model=model, out=tmp_path / "m")
    extreme = pd.DataFrame({"x0": [3.4e38, 1e300, -3e38], "x1": [1.0, 2e38, 0.5], "x2": 0.0})
    proba = fitted.predict_proba(extreme)
    assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1.0)
    X = fitted.encoder.transform(pl.from_pandas(extreme)).astype(np.float64)
    estimator = fitted.estimator
    if model == "nb":  # the reference: scikit-learn's own joint likelihood in float64
        reference = estimator.predict_proba(X).argmax(axis=1)
    else:
        reference = (X @ estimator.coef_.T + estimator.intercept_).argmax(axis=1)
    assert proba.argmax(axis=1).tolist() == reference.tolist()


def test_the_plan_names_the_budget_of_every_model(small_csv, tmp_path):
    for model in ("sgd", "logistic"):
        fitted = leanfit.train(small_csv, target="label", model=model, memory_limit="20GB")
        assert fitted.summary["plan"]["memory_limit"] == 20 * 10**9  # the test process's RSS


def test_naive_bayes_has_no_importances_and_empty_data_has_no_scores(small_csv):
    from leanfit.errors import ConfigError

    fitted = leanfit.train(small_csv, target="label", model="nb")
    with pytest.raises(ConfigError, match="'nb' has no importances: linear models"):
        fitted.feature_importances()
    empty = pd.read_csv(small_csv).drop(columns="label").head(0)
    assert fitted.predict_proba(empty).shape == (0, len(fitted.classes))


def test_lbfgs_progress_counts_every_pass_without_a_percent(small_csv, tmp_path):
    """The number of L-BFGS passes is not known ahead: the stage has no total (no
    percent, no ETA) and its rows add up over the passes, never restarting at 0."""
    from leanfit.memory import Monitor

    monitor = Monitor(2**40)
    with monitor:
        summary = train(
            small_csv, "label", out=tmp_path / "m.leanfit",
            options=TrainOptions(model="logistic"), memory=monitor,
        )  # fmt: skip
    (stage,) = [s for s in monitor.progress.stages if s.name == "L-BFGS"]
    assert stage.total is None and stage.done >= 3 * summary["rows_train"]
