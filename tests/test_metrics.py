"""StreamingMetrics against scikit-learn's in-memory metrics on the same predictions."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm

from leanfit.errors import InputError
from leanfit.metrics import StreamingMetrics

COUNT_KEYS = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "f1_macro")


def _random(rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Uninformative Dirichlet probabilities and uniform labels."""
    return rng.integers(0, k, n), rng.dirichlet(np.ones(k), n)


def _logistic(rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Softmax of linear scores, labels drawn from those (calibrated) probabilities."""
    logits = rng.normal(size=(n, 4)) @ rng.normal(scale=1.5, size=(4, k))
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    y = (rng.random((n, 1)) > np.cumsum(proba, axis=1)).sum(axis=1)
    return np.minimum(y, k - 1), proba


def _feed(m: StreamingMetrics, y, p, w=None, *, seed: int = 0) -> StreamingMetrics:
    """Feed the rows in chunks of random sizes 0..700."""
    rng, start = np.random.default_rng(seed), 0
    while start < len(y):
        stop = start + int(rng.integers(0, 700))
        m.update(y[start:stop], p[start:stop], None if w is None else w[start:stop])
        start = stop
    return m


def _reference(y, p, w=None) -> dict[str, Any]:
    """The same metrics computed by scikit-learn in memory."""
    k = p.shape[1]
    labels = list(range(k))
    pred = p.argmax(axis=1)
    kw = {"labels": labels, "sample_weight": w, "zero_division": 0}
    binary = k == 2
    avg = {"average": "binary", "pos_label": 1} if binary else {"average": "macro"}
    score = p[:, 1] if binary else p
    auc_kw = {} if binary else {"multi_class": "ovr", "average": "macro"}
    prf = skm.precision_recall_fscore_support(y, pred, **kw)
    return {
        "accuracy": skm.accuracy_score(y, pred, sample_weight=w),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred, sample_weight=w),
        "precision": skm.precision_score(y, pred, **kw, **avg),
        "recall": skm.recall_score(y, pred, **kw, **avg),
        "f1": skm.f1_score(y, pred, **kw, **avg),
        "f1_macro": skm.f1_score(y, pred, **kw, average="macro"),
        "per_class": [list(map(float, col)) for col in prf],
        "confusion_matrix": skm.confusion_matrix(y, pred, labels=labels, sample_weight=w),
        "log_loss": skm.log_loss(y, p, labels=labels, sample_weight=w),
        "brier_score": skm.brier_score_loss(y, score, sample_weight=w, labels=labels)
        if not binary
        else skm.brier_score_loss(y, score, sample_weight=w),
        "roc_auc": skm.roc_auc_score(y, score, sample_weight=w, **auc_kw),
        "average_precision": skm.average_precision_score(
            y, score, sample_weight=w, average="macro"
        ),
    }


def _assert_matches(got: dict[str, Any], ref: dict[str, Any], *, rel: float = 0.0) -> None:
    """Count metrics equal (to ``rel``), log loss / Brier to 1e-9, AUCs within the bound."""
    exact = {"rtol": rel, "atol": 0}
    for key in COUNT_KEYS:
        np.testing.assert_allclose(got[key], ref[key], **exact, err_msg=key)
    fields = ("precision", "recall", "f1", "support")
    per_class = [[c[f] for c in got["per_class"]] for f in fields]
    np.testing.assert_allclose(per_class, ref["per_class"], **exact)
    np.testing.assert_allclose(got["confusion_matrix"], ref["confusion_matrix"], **exact)
    for key in ("log_loss", "brier_score"):
        assert got[key] == pytest.approx(ref[key], rel=1e-9), key
    assert abs(got["roc_auc"] - ref["roc_auc"]) <= got["auc_error_bound"] + 1e-12
    assert got["auc_error_bound"] < 1e-3
    assert got["average_precision"] == pytest.approx(ref["average_precision"], abs=1e-3)


def _assert_same(a: Any, b: Any) -> None:
    """Equal structures: ints and strings exactly, floats to 1e-12 relative."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-15)
    else:
        assert type(a) is type(b) and a == b


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("make", [_random, _logistic])
def test_matches_sklearn_in_chunks(k: int, make) -> None:
    rng = np.random.default_rng(k)
    y, p = make(rng, 20_000, k)
    got = _feed(StreamingMetrics(k), y, p).result()
    _assert_matches(got, _reference(y, p))
    assert got["n_rows"] == 20_000
    assert got["confusion_matrix"] == skm.confusion_matrix(y, p.argmax(axis=1)).tolist()


@pytest.mark.parametrize("k", [2, 3])
def test_sample_weight(k: int) -> None:
    rng = np.random.default_rng(10 + k)
    y, p = _logistic(rng, 10_000, k)
    w = rng.gamma(2.0, size=len(y))
    got = _feed(StreamingMetrics(k), y, p, w).result()
    _assert_matches(got, _reference(y, p, w), rel=1e-12)
    assert isinstance(got["per_class"][0]["support"], float)
    assert got["n_rows"] == len(y)


@pytest.mark.parametrize("weighted", [False, True])
def test_chunking_and_merge_do_not_change_results(weighted: bool) -> None:
    rng = np.random.default_rng(5)
    y, p = _logistic(rng, 8_000, 3)
    w = rng.random(len(y)) if weighted else None
    one = StreamingMetrics(3)
    one.update(y, p, w)
    expected = one.result(["a", "b", "c"])
    for seed in (1, 2):
        _assert_same(
            _feed(StreamingMetrics(3), y, p, w, seed=seed).result(["a", "b", "c"]), expected
        )
    half = len(y) // 3
    left = _feed(StreamingMetrics(3), y[:half], p[:half], None if w is None else w[:half])
    right = _feed(StreamingMetrics(3), y[half:], p[half:], None if w is None else w[half:])
    assert left.merge(right) is left
    _assert_same(left.result(["a", "b", "c"]), expected)


def test_scores_with_one_value_per_bin_give_exact_aucs() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 5_000)
    q = np.clip(np.round(rng.normal(0.35 + 0.3 * y, 0.2), 2), 0, 1)  # many exact ties
    p = np.column_stack([1 - q, q])
    got = _feed(StreamingMetrics(2), y, p).result()
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, q), rel=1e-12)
    assert got["average_precision"] == pytest.approx(skm.average_precision_score(y, q), rel=1e-12)


def test_finer_bins_tighten_the_bound() -> None:
    y, p = _logistic(np.random.default_rng(8), 5_000, 2)
    coarse = StreamingMetrics(2, bins=64)
    fine = StreamingMetrics(2, bins=2**16)
    coarse.update(y, p)
    fine.update(y, p)
    exact = skm.roc_auc_score(y, p[:, 1])
    for r in (coarse.result(), fine.result()):
        assert abs(r["roc_auc"] - exact) <= r["auc_error_bound"]
    assert fine.result()["auc_error_bound"] < coarse.result()["auc_error_bound"] / 100


def test_class_absent_from_y_true() -> None:
    rng = np.random.default_rng(9)
    y, p = _random(rng, 3_000, 3)
    y = np.where(y == 2, 0, y)  # class 2 still gets predicted, never true
    got = _feed(StreamingMetrics(3), y, p).result()
    cls2 = got["per_class"][2]
    assert (cls2["precision"], cls2["recall"], cls2["f1"], cls2["support"]) == (0.0, 0.0, 0.0, 0)
    assert got["confusion_matrix"][2] == [0, 0, 0]
    pred = p.argmax(axis=1)
    assert got["balanced_accuracy"] == skm.recall_score(y, pred, labels=[0, 1], average="macro")
    assert got["f1_macro"] == skm.f1_score(
        y, pred, labels=[0, 1, 2], average="macro", zero_division=0
    )
    per_class_auc = [skm.roc_auc_score(y == c, p[:, c]) for c in (0, 1)]
    assert abs(got["roc_auc"] - np.mean(per_class_auc)) <= got["auc_error_bound"] + 1e-12
    per_class_ap = [skm.average_precision_score(y == c, p[:, c]) for c in (0, 1)]
    assert got["average_precision"] == pytest.approx(np.mean(per_class_ap), abs=1e-3)


def test_single_class_binary_has_no_auc() -> None:
    m = StreamingMetrics(2)
    m.update(np.zeros(4, dtype=int), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [1.0, 0.0]]))
    got = m.result()
    assert got["roc_auc"] is None and got["auc_error_bound"] is None
    assert got["average_precision"] is None
    assert (got["precision"], got["recall"], got["f1"]) == (0.0, 0.0, 0.0)
    assert got["accuracy"] == 0.75 and got["balanced_accuracy"] == 0.75


def test_result_is_plain_json() -> None:
    y, p = _random(np.random.default_rng(3), 500, 3)
    m = StreamingMetrics(3)
    m.update(y.astype(np.int32), p.astype(np.float32) / p.astype(np.float32).sum(1, keepdims=True))
    got = m.result(["x", "y", "z"])

    def walk(v: Any) -> None:
        assert type(v) in (dict, list, str, int, float, type(None)), type(v)
        for child in v.values() if isinstance(v, dict) else v if isinstance(v, list) else []:
            walk(child)

    walk(got)
    assert json.loads(json.dumps(got)) == got
    assert [c["class"] for c in got["per_class"]] == ["x", "y", "z"]


def test_zero_rows_raise() -> None:
    m = StreamingMetrics(3)
    with pytest.raises(InputError, match="no rows"):
        m.result()
    m.update(np.zeros(0, dtype=int), np.zeros((0, 3)))
    with pytest.raises(InputError, match="no rows"):
        m.result()
    m.update(np.array([1]), np.array([[0.2, 0.5, 0.3]]), np.array([0.0]))
    with pytest.raises(InputError, match="positive weight"):
        m.result()


@pytest.mark.parametrize(
    ("y", "p", "w", "match"),
    [
        ([0, 1], [[0.5, 0.5, 0.0]] * 2, None, r"\(2, 2\), got \(2, 3\)"),
        ([0, 1, 1], [[0.5, 0.5]] * 2, None, r"\(3, 2\), got \(2, 2\)"),
        ([[0, 1]], [[0.5, 0.5]] * 2, None, r"shape \(n_rows,\)"),
        ([0, 1], [[0.5, 0.5]] * 2, [1.0], r"sample_weight must have shape \(2,\)"),
        ([0, 1], [[0.5, 0.5]] * 2, [1.0, -1.0], ">= 0"),
        ([0, 2], [[0.5, 0.5]] * 2, None, r"0\.\.1"),
        ([0.0, 1.0], [[0.5, 0.5]] * 2, None, "integer"),
        ([0, 1], [[1.5, -0.5]] * 2, None, r"\[0, 1\]"),
        ([0, 1], [[np.nan, 0.5]] * 2, None, "NaN"),
        ([0, 1], [[0.3, 0.3]] * 2, None, "sum to 1"),
    ],
)
def test_bad_input_raises(y, p, w, match: str) -> None:
    m = StreamingMetrics(2)
    with pytest.raises(InputError, match=match):
        m.update(np.array(y), np.array(p), None if w is None else np.array(w))
    assert m.n_rows == 0


def test_merge_and_names_mismatch_raise() -> None:
    with pytest.raises(InputError, match="differ"):
        StreamingMetrics(2).merge(StreamingMetrics(2, bins=64))
    m = StreamingMetrics(2)
    m.update(np.array([0, 1]), np.array([[0.6, 0.4], [0.1, 0.9]]))
    with pytest.raises(InputError, match="2 entries"):
        m.result(["only-one"])
    with pytest.raises(ValueError, match="n_classes"):
        StreamingMetrics(1)
