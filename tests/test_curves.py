"""StreamingMetrics' curves and calibration against scikit-learn and pandas; the run
record's memory trace and stage times against the samples they come from."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import auc, average_precision_score, roc_auc_score

from leanfit.metrics import CALIBRATION_BINS, CURVE_POINTS, HISTOGRAM_BINS, StreamingMetrics
from leanfit.progress import Progress
from leanfit.runrecord import MAX_CURVE_POINTS, LearningCurve, memory_trace, stage_seconds


def _binary(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * y - 0.7)))
    return y, np.column_stack([1 - s, s])


def _fed(y, p, chunk=7_000, w=None) -> StreamingMetrics:
    m = StreamingMetrics(p.shape[1])
    for i in range(0, len(y), chunk):
        m.update(y[i : i + chunk], p[i : i + chunk], None if w is None else w[i : i + chunk])
    return m


def _ece(y_is_class: np.ndarray, score: np.ndarray, w: np.ndarray | None = None) -> float:
    """Expected calibration error with pandas: |mean outcome - mean score| per bin,
    weighted by the bin's share of rows."""
    frame = pd.DataFrame({"hit": y_is_class.astype(float), "p": score})
    frame["w"] = 1.0 if w is None else w
    frame["bin"] = np.minimum(np.floor(score * CALIBRATION_BINS), CALIBRATION_BINS - 1)
    frame["hit_w"], frame["p_w"] = frame.hit * frame.w, frame.p * frame.w
    sums = frame.groupby("bin")[["w", "hit_w", "p_w"]].sum()
    return float((sums.hit_w - sums.p_w).abs().sum() / frame.w.sum())


def test_binary_curves_match_sklearn():
    y, p = _binary(60_000, 1)
    m = _fed(y, p)
    assert "curves" not in m.result()  # evaluate's metrics stay small
    r = m.result(["no", "yes"], curves=True)
    (c,) = r["curves"]["classes"]
    assert c["class"] == "yes"
    assert abs(r["roc_auc"] - roc_auc_score(y, p[:, 1])) <= r["auc_error_bound"]
    assert len(c["roc"]["fpr"]) <= CURVE_POINTS
    assert abs(auc(c["roc"]["fpr"], c["roc"]["tpr"]) - roc_auc_score(y, p[:, 1])) < 2e-3
    recall, precision = c["precision_recall"]["recall"], c["precision_recall"]["precision"]
    assert recall[0] == 0 and recall[-1] == 1 and len(recall) <= CURVE_POINTS
    assert abs(precision[-1] - y.mean()) < 1e-6  # the lowest threshold: every row
    assert abs(r["average_precision"] - average_precision_score(y, p[:, 1])) < 1e-3
    # the reliability curve: scikit-learn's calibration_curve with uniform bins
    observed, predicted = calibration_curve(y, p[:, 1], n_bins=CALIBRATION_BINS)
    cal = c["calibration"]
    np.testing.assert_allclose([v for v in cal["observed"] if v is not None], observed, rtol=1e-6)
    np.testing.assert_allclose(
        [v for v in cal["mean_predicted"] if v is not None], predicted, rtol=1e-6
    )
    assert r["expected_calibration_error"] == pytest.approx(_ece(y == 1, p[:, 1]), abs=1e-12)
    # score histograms: np.histogram of the rows of each class, edges j/64 exactly
    edges = np.asarray(c["scores"]["edges"])
    np.testing.assert_array_equal(edges, np.arange(HISTOGRAM_BINS + 1) / HISTOGRAM_BINS)
    for key, rows in (("positive", y == 1), ("negative", y == 0)):
        expected, _ = np.histogram(p[rows, 1], bins=edges)
        assert c["scores"][key] == expected.tolist()


def test_multiclass_weighted_calibration_and_merge():
    rng = np.random.default_rng(5)
    n, k = 30_000, 3
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.2 * np.eye(k)[y]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    w = rng.uniform(0.2, 3.0, n)
    whole = _fed(y, p, w=w)
    halves = _fed(y[:12_345], p[:12_345], w=w[:12_345]).merge(
        _fed(y[12_345:], p[12_345:], w=w[12_345:])
    )
    expected = np.mean([_ece(y == c, p[:, c], w) for c in range(k)])  # classwise
    r = whole.result(curves=True)
    assert r["expected_calibration_error"] == pytest.approx(expected, abs=1e-12)
    merged = halves.result(curves=True)
    assert merged["expected_calibration_error"] == pytest.approx(expected, abs=1e-12)
    assert [c["class"] for c in r["curves"]["classes"]] == [0, 1, 2]
    for a, b in zip(r["curves"]["classes"], merged["curves"]["classes"]):
        np.testing.assert_allclose(a["calibration"]["rows"], b["calibration"]["rows"])
        np.testing.assert_allclose(a["roc"]["tpr"], b["roc"]["tpr"], rtol=1e-6)
    for c, one in enumerate(r["curves"]["classes"]):
        ovr_auc = roc_auc_score(y == c, p[:, c], sample_weight=w)
        assert abs(auc(one["roc"]["fpr"], one["roc"]["tpr"]) - ovr_auc) < 2e-3


def test_memory_trace_keeps_the_peak_and_is_bounded():
    rng = np.random.default_rng(2)
    t = np.cumsum(rng.uniform(0.01, 0.1, 50_000))
    rss = rng.integers(100, 200, len(t)) * 2**20
    rss[31_337] = 900 * 2**20
    stages = ["inspect"] * 10_000 + ["train"] * 35_000 + ["evaluate"] * 5_000
    samples = list(zip(t.tolist(), rss.tolist(), stages))
    trace = memory_trace(samples)
    assert len(trace["seconds"]) <= 2_000 and max(trace["rss_bytes"]) == 900 * 2**20
    assert [b[0] for b in trace["stages"]] == ["inspect", "train", "evaluate"]
    assert trace["stages"][1][1] == pytest.approx(t[10_000], abs=1e-3)
    seconds = stage_seconds(samples)
    assert sum(seconds.values()) == pytest.approx(t[-1] - t[0], abs=0.01)
    assert seconds["inspect"] == pytest.approx(t[10_000] - t[0], abs=1e-3)


def test_learning_curve_records_steps_and_stays_bounded():
    progress = Progress()
    curve = LearningCurve.of(progress)
    assert LearningCurve.of(progress) is curve  # one curve listens to a run's progress
    progress.note({"stage": "train", "epoch": 1})
    for i in range(1, 2_501):
        progress.note({"stage": "lbfgs", "iteration": i, "loss": 1.0 / i})
    d = curve.as_dict()
    assert d["step"] == "L-BFGS pass" and len(d["x"]) <= MAX_CURVE_POINTS
    assert d["x"][-1] == 2_500 and d["y"][-1] == pytest.approx(1 / 2_500)
    assert LearningCurve().as_dict() is None
