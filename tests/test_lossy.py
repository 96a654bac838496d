"""--lossy-floats float16: measured against numpy, written and read back by pyarrow and
pandas, and the model's holdout metrics with and without the rounding."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

import leanfit
from leanfit import ConfigError
from leanfit.encode.batches import holdout_mask
from leanfit.encode.trees import feature_matrix
from leanfit.engines.local.lossy import exact_encoder
from leanfit.export import export
from leanfit.models.registry import scores
from leanfit.options import LossyOptions
from leanfit.schema.lossy import apply_lossy
from leanfit.schema.statistics import build_schema, make_plan, piece_stats

ROWS = 4_000


def as_float16(x: np.ndarray) -> np.ndarray:
    """numpy's round trip as leanfit stores a float column (via float32)."""
    with np.errstate(over="ignore"):
        return x.astype(np.float32).astype(np.float16).astype(np.float64)


def numpy_errors(x: np.ndarray) -> tuple[float, float, int]:
    """Largest absolute and relative error of the round trip, values beyond 65504."""
    x = x[~np.isnan(x)]
    inside = np.abs(x) <= 65504
    error = np.abs(x - as_float16(x))
    nonzero = inside & (x != 0)
    return error[inside].max(), (error[nonzero] / np.abs(x[nonzero])).max(), int((~inside).sum())


@pytest.fixture(scope="module")
def columns() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    quarter = np.round(rng.uniform(-100, 100, ROWS) * 4) / 4  # float16 holds these exactly
    score = np.round(rng.normal(0, 1, ROWS), 4)
    score[::97] = np.nan
    big = rng.normal(0, 1_000, ROWS)
    big[5] = 70_000.0  # one value beyond float16's range
    return {
        "quarter": quarter,
        "score": score,  # within 1e-3 (float16 keeps 11 bits: 4.9e-4), not within 1e-4
        "price": np.round(rng.uniform(1_000, 2_000, ROWS), 3),
        "big": big,
        "tiny": rng.uniform(1e-7, 1e-5, ROWS),  # float16 subnormals: precision lost
        "label": (score > 0.3).astype(np.int64) ^ (rng.random(ROWS) < 0.1),
    }


@pytest.fixture(scope="module")
def csv(tmp_path_factory, columns):
    path = tmp_path_factory.mktemp("lossy") / "floats.csv"
    pl.DataFrame(columns).write_csv(path)
    return path


def test_the_reported_error_is_numpys_and_decides_the_storage(csv, columns):
    schema = leanfit.inspect(csv, "label", lossy_floats="float16")
    assert schema.lossy_tolerance == 1e-3
    for name in ("quarter", "score", "price", "big", "tiny"):
        col = schema.column(name)
        abs_error, rel_error, beyond = numpy_errors(columns[name])
        assert col.float16_max_abs_error == abs_error, name
        assert col.float16_max_rel_error == rel_error, name
        assert col.float16_beyond_range == beyond, name
    storage = {c.name: c.storage for c in schema.columns}
    assert storage["quarter"] == storage["score"] == storage["price"] == "float16"
    assert schema.column("quarter").float16_max_abs_error == 0.0
    assert storage["big"] == "float64" and "beyond its range" in schema.column("big").note
    assert storage["tiny"] == "float64" and "above 0.001" in schema.column("tiny").note
    assert storage["label"] == "uint8"

    strict = leanfit.inspect(csv, "label", lossy_floats="float16", lossy_tolerance=1e-4)
    kept = {c.name: c.storage for c in strict.columns}
    assert kept["quarter"] == "float16"
    assert kept["score"] == "float32" and kept["price"] == "float64"  # their exact storage
    # the choice made again from the recorded errors is the one a new pass makes
    redone = apply_lossy(schema, LossyOptions("float16", 1e-4))
    assert {c.name: c.storage for c in redone.columns} == kept
    assert schema.column("score").storage == "float16"  # the given schema is left alone


def test_without_the_option_nothing_changes(csv):
    plain = leanfit.inspect(csv, "label")
    assert plain.lossy_tolerance is None
    assert all(c.storage != "float16" and c.float16_max_rel_error is None for c in plain.columns)
    with pytest.raises(ConfigError, match="made without it"):
        apply_lossy(plain, LossyOptions("float16"))
    assert apply_lossy(plain, LossyOptions()) is plain
    for run in (leanfit.inspect, leanfit.train):  # a tolerance alone is not float16
        with pytest.raises(ConfigError, match="--lossy-tolerance applies to --lossy-floats"):
            run(csv, "label", lossy_tolerance=1e-4)


def test_pieces_merge_to_the_whole(csv):
    """Dask's partitions: the float16 errors of pieces merge to those of one pass."""
    frame = pl.read_csv(csv)
    plan = make_plan(frame.head(1_000), [], "label", str(csv), float16_tolerance=1e-3)
    whole = build_schema([str(csv)], [piece_stats(frame.lazy(), plan, mergeable=True)], plan)
    pieces = [piece_stats(p.lazy(), plan, mergeable=True) for p in frame.iter_slices(1_500)]
    merged = build_schema([str(csv)], pieces, plan)
    for a, b in zip(whole.columns, merged.columns):
        assert (a.storage, a.float16_max_abs_error, a.float16_max_rel_error) == (
            b.storage,
            b.float16_max_abs_error,
            b.float16_max_rel_error,
        )
        assert a.float16_beyond_range == b.float16_beyond_range


def test_shrink_writes_halffloat_that_pandas_and_pyarrow_read_back(csv, columns, tmp_path):
    out = tmp_path / "lossy.parquet"
    summary = leanfit.shrink(csv, out, lossy_floats="float16")
    exact = leanfit.shrink(csv, tmp_path / "exact.parquet")
    assert summary["lossy"]["float16"] == ["quarter", "score", "price"]
    assert summary["lossy"]["columns"]["big"]["beyond_range"] == 1
    types = {f.name: str(f.type) for f in pq.read_schema(out)}
    assert types["quarter"] == types["score"] == types["price"] == "halffloat"
    assert types["big"] == types["tiny"] == "double"
    back = pd.read_parquet(out)
    assert back["score"].dtype == np.float16
    for name in ("quarter", "score", "price"):
        want = as_float16(columns[name])
        np.testing.assert_array_equal(back[name].to_numpy(np.float64), want, name)
    np.testing.assert_array_equal(back["big"].to_numpy(), columns["big"])
    assert summary["memory_bytes_chosen"] < exact["memory_bytes_chosen"]
    # 2 bytes a value instead of 4 (quarter, score: float32) or 8 (price), in Arrow too
    saved = pq.read_table(tmp_path / "exact.parquet").nbytes - pq.read_table(out).nbytes
    assert saved >= ROWS * (2 + 2 + 6)


def test_cli_reports_the_choice_and_refuses_an_unmeasured_schema(csv, tmp_path):
    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "leanfit.cli", *map(str, args)], capture_output=True, text=True
        )

    done = cli("inspect", csv, "--target", "label", "--lossy-floats", "float16", "--json")
    assert done.returncode == 0, done.stderr
    lossy = json.loads(done.stdout)["lossy"]
    assert lossy["float16"] == ["quarter", "score", "price"] and lossy["tolerance"] == 1e-3
    cli("inspect", csv, "--target", "label", "--out", tmp_path / "s.json")
    done = cli(
        "shrink", csv, tmp_path / "o.parquet", "--schema", tmp_path / "s.json",
        "--lossy-floats", "float16",
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("Error: --lossy-floats float16: this schema was made without")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.parquet").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lossy-train")
    data = folder / "train.csv"
    leanfit.write_data(data, rows=20_000, seed=3)
    options = {"model": "logistic", "drop": ("signup_date",)}
    lossy = leanfit.train(
        data, "label", out=folder / "f16.leanfit", lossy_floats="float16", **options
    )
    exact = leanfit.train(data, "label", out=folder / "f32.leanfit", **options)
    return data, folder, lossy, exact


def test_train_reports_holdout_metrics_next_to_the_unrounded_ones(trained):
    data, _, model, exact = trained
    summary = model.summary
    lossy = summary["lossy"]
    assert "balance" in lossy["float16"] and "ratio_small" not in lossy["float16"]
    assert lossy["columns"]["ratio_small"]["max_rel_error"] > 1e-3  # float16 subnormals
    assert "lossy" not in exact.summary and "metrics_unrounded" not in exact.summary
    # the metrics measured again outside leanfit: scikit-learn's AUC on the holdout rows
    frame = pl.read_csv(data, try_parse_dates=True)
    held = frame.filter(pl.Series(holdout_mask(np.arange(frame.height), 0.2, 0)))
    y = held["label"].to_numpy()
    rounded = scores(model.estimator, model.encoder.transform(held))[:, 1]
    unrounded = scores(model.estimator, exact_encoder(model.encoder).transform(held))[:, 1]
    assert not np.array_equal(rounded, unrounded)  # the inputs did differ
    for metrics, p in ((summary["metrics"], rounded), (summary["metrics_unrounded"], unrounded)):
        assert metrics["n_rows"] == len(y)
        assert abs(metrics["roc_auc"] - roc_auc_score(y, p)) <= metrics["auc_error_bound"] + 1e-9
    # float16 within 1e-3 costs this model almost nothing, against a float32 training
    assert abs(summary["metrics"]["roc_auc"] - exact.summary["metrics"]["roc_auc"]) < 0.005


def test_the_shrunk_float16_file_trains_as_the_csv_with_the_option(trained, tmp_path):
    """float16 columns read from halffloat Parquet are float16 without asking (exact), and
    give the model the values the CSV gave it under --lossy-floats."""
    data, _, model, _ = trained
    leanfit.shrink(data, tmp_path / "d.parquet", lossy_floats="float16")
    schema = leanfit.inspect(tmp_path / "d.parquet", "label")
    assert schema.column("score_a").read_as == "Float16"
    assert schema.column("score_a").storage == "float16" and schema.lossy_tolerance is None
    again = leanfit.train(
        tmp_path / "d.parquet", "label", model="logistic", drop=("signup_date",)
    ).summary["metrics"]
    assert again["roc_auc"] == model.summary["metrics"]["roc_auc"]
    assert again["log_loss"] == pytest.approx(model.summary["metrics"]["log_loss"], rel=1e-7)


@pytest.fixture(scope="module")
def boosted(trained):
    data, folder, *_ = trained
    options = {"model": "xgboost", "rounds": 10, "drop": ("signup_date",)}
    return leanfit.train(data, "label", out=folder / "x.leanfit", lossy_floats="float16", **options)


def test_xgboost_reports_its_unrounded_holdout_metrics_too(trained, boosted):
    data, model = trained[0], boosted
    frame = pl.read_csv(data, try_parse_dates=True)
    held = frame.filter(pl.Series(holdout_mask(np.arange(frame.height), 0.2, 0)))
    y = held["label"].to_numpy()
    trees = model.estimator
    assert [f.name for f in trees.features if f.float16] == model.summary["lossy"]["float16"]
    unrounded_features = [dataclasses.replace(f, float16=False) for f in trees.features]
    rounded = model.predict_proba(held)[:, 1]  # the features rounded as in training
    unrounded = trees.proba(feature_matrix(held, unrounded_features, dense=trees.dense))[:, 1]
    assert not np.array_equal(rounded, unrounded)
    summary = model.summary
    for metrics, p in ((summary["metrics"], rounded), (summary["metrics_unrounded"], unrounded)):
        assert metrics["n_rows"] == len(y)
        assert abs(metrics["roc_auc"] - roc_auc_score(y, p)) <= metrics["auc_error_bound"] + 1e-9


@pytest.mark.parametrize("kind", ["logistic", "xgboost"])
def test_onnx_rounds_float16_columns_as_the_model_does(trained, boosted, kind, tmp_path):
    data, folder, *_ = trained
    bundle = folder / ("x.leanfit" if kind == "xgboost" else "f16.leanfit")
    export(bundle, tmp_path / "m.onnx")
    frame = pl.read_csv(data, try_parse_dates=True).head(2_000).drop("signup_date")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    feeds = {}
    for spec in session.get_inputs():
        col = frame.get_column(spec.name)
        if spec.type == "tensor(string)":
            values = np.asarray(col.cast(pl.String).fill_null("").to_list(), dtype=object)
        else:
            values = col.cast(pl.Float32).fill_null(float("nan")).to_numpy()
        feeds[spec.name] = values.reshape(-1, 1)
    got = session.run(["probabilities"], feeds)[0]
    np.testing.assert_allclose(got, leanfit.load(bundle).predict_proba(frame), rtol=0, atol=1e-5)


def test_estimator_takes_the_options():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=2_000), "b": rng.normal(size=2_000) * 1e5})
    y = (X["a"] > 0).astype(int)
    clf = leanfit.StreamingClassifier(lossy_floats="float16", holdout=0.2).fit(X, y)
    assert clf.get_params()["lossy_tolerance"] == 1e-3
    assert clf.training_summary_["lossy"]["float16"] == ["a"]
    assert clf.score(X, y) > 0.95


@pytest.mark.slow
# distributed's shutdown can leave a socket for the garbage collector (as tests/test_dask.py)
@pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
@pytest.mark.filterwarnings("ignore:unclosed event loop:ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning")
def test_dask_measures_the_same_errors_and_trains_on_them(csv, tmp_path):
    """Partitions of 40 kB on a real LocalCluster: the merged errors are the local pass's."""
    import logging

    distributed = pytest.importorskip("distributed")
    from leanfit.engines import dask as dask_engine

    local = leanfit.inspect(csv, "label", lossy_floats="float16")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, dashboard_address=":0", silence_logs=logging.ERROR
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        lossy = LossyOptions("float16")
        remote = dask_engine.inspect(csv, "label", client=client, block=40_000, lossy=lossy)
        summary = dask_engine.train(
            csv, "label", client=client, block=40_000, out=tmp_path / "d.leanfit",
            options=leanfit.TrainOptions(lossy_floats="float16"),
        )  # fmt: skip
    for a, b in zip(local.columns, remote.columns):
        assert (a.storage, a.float16_max_abs_error, a.float16_max_rel_error) == (
            b.storage,
            b.float16_max_abs_error,
            b.float16_max_rel_error,
        )
        assert a.float16_beyond_range == b.float16_beyond_range
    assert summary["lossy"]["float16"] == ["quarter", "score", "price"]
    assert leanfit.load(tmp_path / "d.leanfit").schema.column("score").storage == "float16"
