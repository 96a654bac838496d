"""The Python API takes the command line's options as keywords and behaves as the CLI."""

from __future__ import annotations

import inspect as pyinspect
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import leanfit
from leanfit.estimator import StreamingClassifier
from leanfit.options import BoostOptions, RunOptions, TrainOptions
from leanfit.synth import write_data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("api") / "d.csv"
    write_data(path, rows=4_000, seed=5)
    return path


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "leanfit.cli", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_every_option_of_the_table_is_a_keyword_of_its_command():
    tables = {
        "train": (TrainOptions, BoostOptions, RunOptions),
        "inspect": (RunOptions,),
        "evaluate": (RunOptions,),
        "predict": (RunOptions,),
    }
    for name, groups in tables.items():
        params = pyinspect.signature(getattr(leanfit, name)).parameters
        doc = getattr(leanfit, name).__doc__
        for group in groups:
            for option, default, *_ in group.table():
                assert params[option].default == default, (name, option)
                assert f"{option} : " in doc, (name, option)
    for name in ("shrink", "export", "write_data"):
        params = pyinspect.signature(getattr(leanfit, name)).parameters
        assert {"memory_limit", "memory_trace", "tmp_dir", "force"} <= set(params), name


def test_an_unknown_keyword_names_the_close_option(data):
    with pytest.raises(
        TypeError, match="unknown keyword 'memory_limt'; did you mean 'memory_limit'"
    ):
        leanfit.train(data, "label", memory_limt="1GB")
    with pytest.raises(leanfit.ConfigError, match="not both"):
        leanfit.train(data, "label", model="nb", options=TrainOptions())
    with pytest.raises(leanfit.ConfigError, match="--model must be one of"):
        leanfit.train(data, "label", model="forest")


def test_too_small_memory_limit_raises_where_the_cli_exits_2(data, tmp_path):
    with pytest.raises(leanfit.MemoryBudgetExceeded, match="--memory-limit 60MB is below"):
        leanfit.train(data, "label", out=tmp_path / "m.leanfit", memory_limit="60MB")
    with pytest.raises(leanfit.MemoryBudgetExceeded):
        leanfit.inspect(data, target="label", memory_limit=60_000_000)
    done = cli(
        "train", data, "-t", "label", "--out", tmp_path / "m.leanfit", "--memory-limit", "60MB"
    )
    assert done.returncode == 2 and "--memory-limit 60MB is below" in done.stderr
    assert not (tmp_path / "m.leanfit").exists()


def test_model_keyword_trains_the_logistic_the_cli_trains(data, tmp_path):
    common = {"holdout": 0.1, "C": 0.5, "tol": 1e-8}
    model = leanfit.train(
        data, "label", out=tmp_path / "api.leanfit", model="logistic", memory_limit="2GB", **common
    )
    done = cli(
        *("train", data, "-t", "label", "--out", tmp_path / "cli.leanfit", "--model", "logistic"),
        *("--holdout", "0.1", "--C", "0.5", "--tol", "1e-8", "--memory-limit", "2GB"),
    )
    assert done.returncode == 0, done.stderr
    theirs = leanfit.load(tmp_path / "cli.leanfit").estimator
    assert type(model.estimator).__name__ == "ExactLogisticRegression"
    np.testing.assert_array_equal(model.estimator.coef_, theirs.coef_)
    assert model.summary["memory"]["limit_bytes"] == 2_000_000_000
    assert model.summary["options"]["model"] == "logistic"
    assert model.summary["metrics"] == leanfit.load(tmp_path / "cli.leanfit").summary["metrics"]


def test_train_without_out_returns_the_model_and_writes_nothing(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = leanfit.train(data, "label", epochs=2, tmp_dir=tmp_path / "scratch")
    assert isinstance(model, leanfit.Model) and model.summary["output"] is None
    assert model.summary["epochs_run"] == 2 and model.summary["rows_train"] > 0
    assert model.predict(data).shape == (4_000,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scratch"]
    assert not any((tmp_path / "scratch").iterdir())


def test_outputs_are_replaced_only_with_force(data, tmp_path):
    out, trace = tmp_path / "m.leanfit", tmp_path / "trace.csv"
    leanfit.train(data, "label", out=out, memory_trace=trace)
    assert trace.read_text().startswith("seconds,rss_bytes,stage")
    before = out.read_bytes()
    with pytest.raises(leanfit.ConfigError, match=f"--out {out} exists; give --force"):
        leanfit.train(data, "label", out=out, seed=1)
    assert out.read_bytes() == before
    again = leanfit.train(data, "label", out=out, seed=1, force=True, memory_trace=trace)
    assert sorted(again.summary["replaced"]) == sorted([str(out), str(trace)])
    assert out.read_bytes() != before
    done = cli("predict", out, data, "--out", out)
    assert done.returncode == 1 and done.stderr.count("\n") == 1


def test_predict_evaluate_and_bad_rows_keywords(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("x,label\n" + "".join(f"{i % 7},{i % 2}\n" for i in range(600)) + "1,2,3\n")
    with pytest.raises(leanfit.InputError):
        leanfit.inspect(bad, target="label")
    schema = leanfit.inspect(bad, target="label", bad_rows="skip")
    assert schema.rows == 600
    leanfit.train(bad, "label", out=tmp_path / "m.leanfit", bad_rows="quarantine")
    assert (tmp_path / "m.leanfit.quarantine.csv").exists()
    summary = leanfit.predict(
        tmp_path / "m.leanfit", bad, tmp_path / "p.csv", bad_rows="skip", keep="x"
    )
    assert summary["rows_predicted"] == 600 and summary["rows_bad"] == 1
    assert pd.read_csv(tmp_path / "p.csv").columns.tolist() == ["x", "prediction"]
    assert summary["memory"]["peak_rss_bytes"] > 0
    metrics = leanfit.evaluate(tmp_path / "m.leanfit", bad, bad_rows="skip")["metrics"]
    assert metrics["n_rows"] == 600
    with pytest.raises(leanfit.ConfigError, match="--bad-rows must be one of"):
        leanfit.evaluate(tmp_path / "m.leanfit", bad, bad_rows="ignore")


def test_streaming_classifier_takes_memory_limit_and_every_train_option():
    params = pyinspect.signature(StreamingClassifier).parameters
    constraints = StreamingClassifier._parameter_constraints
    for group in (TrainOptions, BoostOptions):
        for name, default, *_ in group.table():
            if name in ("seed", "holdout", "batch_rows"):  # random_state; scikit-learn defaults
                continue
            assert params[name].default == default, name
            assert name in constraints, name
    assert "memory_limit" in params
    X = np.random.default_rng(0).normal(size=(300, 3))
    y = (X[:, 0] > 0).astype(int)
    with pytest.raises(leanfit.MemoryBudgetExceeded):
        StreamingClassifier(memory_limit="60MB").fit(X, y)
    clf = StreamingClassifier(memory_limit="2GB", penalty="l1", alpha=0.05).fit(X, y)
    assert (
        clf.model_.estimator.penalty == "l1" and clf.training_summary_["options"]["alpha"] == 0.05
    )


def test_shrink_export_and_write_data_run_in_the_shell(data, tmp_path):
    pytest.importorskip("onnx")
    leanfit.write_data(tmp_path / "w.csv", rows=500, memory_limit="2GB")
    with pytest.raises(leanfit.ConfigError, match="exists; give --force"):
        leanfit.write_data(tmp_path / "w.csv", rows=500)
    shrunk = leanfit.shrink(
        tmp_path / "w.csv", tmp_path / "w.parquet", memory_trace=tmp_path / "t.csv"
    )
    assert shrunk["rows_written"] == 500 and (tmp_path / "t.csv").exists()
    leanfit.train(data, "label", out=tmp_path / "m.leanfit", drop=("signup_date",))
    exported = leanfit.export(tmp_path / "m.leanfit", tmp_path / "m.onnx", memory_limit="2GB")
    assert exported["format"] == "onnx" and (tmp_path / "m.onnx").stat().st_size > 0


def test_write_data_takes_every_option_of_make_data(tmp_path):
    """The API's write_data is the make-data command: wide, mostly-zero data and a
    shifted population too, as the command line writes them."""
    wide = leanfit.write_data(tmp_path / "w.csv", rows=300, sparse_columns=40, density=0.1)
    frame = pd.read_csv(tmp_path / "w.csv")
    counts = frame[[c for c in frame.columns if c.startswith("n")]]
    assert wide["rows"] == 300 and counts.shape == (300, 40)
    assert 0.05 < (counts != 0).to_numpy().mean() < 0.15
    leanfit.write_data(tmp_path / "a.csv", rows=2_000, seed=3)
    leanfit.write_data(tmp_path / "b.csv", rows=2_000, seed=3, drift=1.0)
    before, after = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    assert after["monthly_fee"].mean() > before["monthly_fee"].mean()


def test_separator_is_a_keyword_of_every_command_that_reads_data(tmp_path):
    """The error for a semicolon file says ``separator=';'``: it must work."""
    path = tmp_path / "semi.csv"
    path.write_text("x;label\n" + "".join(f"{i % 7};{i % 2}\n" for i in range(200)))
    with pytest.raises(leanfit.InputError, match=r"separator=';'"):
        leanfit.inspect(path, target="label")
    assert leanfit.inspect(path, target="label", separator=";").rows == 200
    leanfit.train(path, "label", out=tmp_path / "m.leanfit", separator=";")
    out = tmp_path / "p.csv"
    assert leanfit.predict(tmp_path / "m.leanfit", path, out, separator=";")["rows"] == 200
    assert leanfit.evaluate(tmp_path / "m.leanfit", [path], separator=";")["rows"] == 200
    summary = leanfit.shrink(path, tmp_path / "s.parquet", separator=";")
    assert pd.read_parquet(tmp_path / "s.parquet").shape == (200, 2) and summary


def test_train_takes_report_checkpoint_and_resume_as_the_cli_does(data, tmp_path):
    model = leanfit.train(
        data, "label", out=tmp_path / "m.leanfit", report=tmp_path / "r.html",
        checkpoint=tmp_path / "ck", checkpoint_every=0.01,
    )  # fmt: skip
    assert (
        model.summary["report"] == str(tmp_path / "r.html")
        and "<svg" in (tmp_path / "r.html").read_text()
    )
    assert model.summary["checkpoint"]["folder"] == str(tmp_path / "ck")
    with pytest.raises(leanfit.ConfigError, match="--resume: there is no checkpoint"):
        leanfit.train(
            data, "label", out=tmp_path / "n.leanfit", resume=True, checkpoint=tmp_path / "ck"
        )
