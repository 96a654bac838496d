"""Options users expect, checked against scikit-learn and XGBoost: --alpha, --penalty,
--loss, per-class --class-weight, --threshold (fixed and tuned on the holdout), XGBoost's
early stopping by default, and --force."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import precision_recall_curve

import leanfit
from leanfit.encode.batches import holdout_mask
from leanfit.encode.encoder import Encoder
from leanfit.engines.local.train import encoded_blocks
from leanfit.metrics import DEFAULT_BINS
from leanfit.options import TrainOptions
from leanfit.synth import write_data

ROWS = 6_000


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("opts") / "d.csv"
    write_data(path, rows=ROWS, seed=9)
    return path


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "leanfit.cli", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )


def train_cli(data, out, *args):
    done = cli("train", data, "-t", "label", "--out", out, *args)
    assert done.returncode == 0, done.stderr
    return leanfit.load(out)


def encoded_train_rows(data, opts: TrainOptions):
    """The train rows of one chunk in the order leanfit's trainer feeds them, and their
    row numbers in the file."""
    schema = leanfit.inspect(data, target="label")
    encoder = Encoder.from_options(schema, opts)
    [(X, y, train)] = list(encoded_blocks(data, schema, encoder, opts, one_hot=True))
    rows = np.random.default_rng(opts.seed).permutation(np.flatnonzero(train))
    return encoder.expand(X[rows]), y[rows], rows


@pytest.mark.slow
def test_alpha_penalty_and_loss_reach_scikit_learn(data, tmp_path):
    flags = ("--penalty", "elasticnet", "--alpha", "0.003", "--l1-ratio", "0.6")
    ours = train_cli(data, tmp_path / "m.leanfit", *flags, "--batch-rows", str(ROWS))
    X, y, _ = encoded_train_rows(data, TrainOptions(batch_rows=ROWS))
    reference = SGDClassifier(
        loss="log_loss",
        penalty="elasticnet",
        alpha=0.003,
        l1_ratio=0.6,
        learning_rate="adaptive",
        eta0=0.01,
        average=True,
        random_state=0,
    ).partial_fit(X, y, classes=[0, 1])
    np.testing.assert_allclose(ours.estimator.coef_, reference.coef_, rtol=1e-6, atol=1e-9)
    l1 = train_cli(data, tmp_path / "l1.leanfit", "--penalty", "l1", "--alpha", "0.02")
    l2 = train_cli(data, tmp_path / "l2.leanfit", "--alpha", "0.02")
    assert (l1.estimator.penalty, l1.estimator.alpha, l2.estimator.penalty) == ("l1", 0.02, "l2")
    assert np.abs(l1.estimator.coef_ - l2.estimator.coef_).max() > 1e-3
    hinge = train_cli(data, tmp_path / "h.leanfit", "--loss", "modified_huber")
    assert hinge.estimator.loss == "modified_huber" and hinge.predictor.has_proba
    done = cli(
        "train", data, "-t", "label", "--out", tmp_path / "x", "--model", "nb", "--alpha", "1"
    )
    assert done.returncode == 1
    assert (
        done.stderr
        == "Error: --alpha applies to --model sgd, hinge, passive-aggressive, perceptron, not nb.\n"
    )


@pytest.mark.slow
def test_class_weight_per_class_weighs_as_scikit_learn(data, tmp_path):
    flags = ("--model", "logistic", "--holdout", "0", "--tol", "1e-10", "--batch-rows", str(ROWS))
    ours = train_cli(data, tmp_path / "w.leanfit", *flags, "--class-weight", "0=1,1=5")
    plain = train_cli(data, tmp_path / "p.leanfit", *flags)
    X, y, rows = encoded_train_rows(data, TrainOptions(holdout=0, batch_rows=ROWS))
    reference = LogisticRegression(class_weight={0: 1, 1: 5}, tol=1e-10, max_iter=10_000)
    reference.fit(X.astype(np.float64), y)
    frame = pd.read_csv(data)
    assert (ours.predict(frame)[rows] == reference.predict(X)).mean() > 0.995
    assert ours.predict(frame).sum() > plain.predict(frame).sum() * 1.3  # more positives
    done = cli("train", data, "-t", "label", "--out", tmp_path / "z", "--class-weight", "0=1,7=2")
    assert (
        done.returncode == 1 and "'7' is not a class of 'label' (its classes: 0, 1)" in done.stderr
    )


@pytest.mark.parametrize(
    "rule", ["f1", pytest.param("recall@0.8", marks=pytest.mark.slow), "precision@0.6"]
)
def test_threshold_tuned_on_the_holdout_as_scikit_learn_finds_it(data, tmp_path, rule):
    model = train_cli(data, tmp_path / "t.leanfit", "--model", "logistic", "--threshold", rule)
    cut = model.summary["threshold"]
    frame = pd.read_csv(data)
    held = frame[holdout_mask(np.arange(len(frame), dtype=np.uint64), 0.2, 0)]
    p = model.predict_proba(held)[:, 1]
    precision, recall, cuts = precision_recall_curve(held["label"], p)
    precision, recall = precision[:-1], recall[:-1]
    if rule == "f1":
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-300)
        best = cuts[np.argmax(f1)]
        assert model.summary["metrics"]["f1"] == pytest.approx(f1.max(), abs=1e-12)
    elif rule.startswith("recall"):
        best = cuts[recall >= 0.8].max()
    else:
        best = cuts[precision >= 0.6].min()
    assert cut <= best < cut + 1 / DEFAULT_BINS  # the bin edge just below scikit-learn's cut
    assert ((p >= cut) == (p >= best)).all()
    predicted = model.predict(held)
    np.testing.assert_array_equal(predicted, (p >= cut).astype(int))
    confusion = model.summary["metrics"]["confusion_matrix"]
    assert confusion[1][1] == int(((p >= best) & (held["label"] == 1)).sum())


@pytest.mark.slow
def test_predict_threshold_overrides_the_bundle(data, tmp_path):
    model = train_cli(data, tmp_path / "m.leanfit", "--threshold", "0.7")
    assert model.threshold == 0.7 and model.summary["threshold"] == 0.7
    done = cli("predict", tmp_path / "m.leanfit", data, "--out", tmp_path / "p.csv", "--proba")
    assert done.returncode == 0, done.stderr
    out = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_array_equal(out["prediction"], (out["proba_1"] >= 0.7).astype(int))
    cli("predict", tmp_path / "m.leanfit", data, "--out", tmp_path / "p.csv", "--proba",
        "--threshold", "0.3", "--force")  # fmt: skip
    out = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_array_equal(out["prediction"], (out["proba_1"] >= 0.3).astype(int))
    evaluated = leanfit.evaluate(tmp_path / "m.leanfit", data, threshold=0.3)["metrics"]
    truth = pd.read_csv(data)["label"]
    assert evaluated["confusion_matrix"][1][1] == int(
        ((out["prediction"] == 1) & (truth == 1)).sum()
    )


def test_threshold_needs_two_classes_and_a_holdout_to_tune(tmp_path):
    multi = tmp_path / "m.csv"
    write_data(multi, rows=2_000, seed=1, classes=3)
    done = cli("train", multi, "-t", "label", "--out", tmp_path / "a", "--threshold", "0.4")
    assert done.returncode == 1 and "needs a target of two classes; this one has 3" in done.stderr
    done = cli("train", multi, "-t", "label", "--out", tmp_path / "b", "--threshold", "best")
    assert done.returncode == 1 and "--threshold must be a probability, f1" in done.stderr
    done = cli("train", multi, "-t", "label", "--out", tmp_path / "c", "--threshold", "f1",
               "--holdout", "0")  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == "Error: --threshold f1 is tuned on the holdout; give --holdout above 0.\n"


def test_xgboost_stops_early_by_default_with_a_holdout(data, tmp_path):
    deep = ("--model", "xgboost", "--rounds", "40", "--max-depth", "8", "--learning-rate", "0.6")
    stopped = train_cli(data, tmp_path / "s.leanfit", *deep).summary
    assert stopped["boost_options"]["early_stopping_rounds"] == 10
    assert stopped["rounds_trained"] < 40
    assert stopped["best_iteration"] == stopped["rounds_trained"] - 11
    full = train_cli(data, tmp_path / "f.leanfit", *deep, "--holdout", "0").summary
    assert full["rounds_trained"] == 40 and full["boost_options"]["early_stopping_rounds"] == 0
    assert "[default: 10 with a holdout, else off]" in " ".join(
        cli("train", "--help").stdout.split()
    )


def test_force(data, tmp_path):
    out = tmp_path / "model.leanfit"
    train_cli(data, out)
    done = cli("train", data, "-t", "label", "--out", out)
    assert done.returncode == 1
    assert (
        done.stderr
        == f"Error: --out {out} exists; give --force (Python: force=True) to replace it.\n"
    )
    done = cli("train", data, "-t", "label", "--out", out, "--force")
    assert done.returncode == 0 and f"replaced {out} (--force)" in done.stdout
    done = cli("make-data", data, "--rows", "10")
    assert done.returncode == 1 and "exists; give --force" in done.stderr
    assert len(pd.read_csv(data)) == ROWS
