from __future__ import annotations

import itertools
import weakref

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from leanfit.encode.onehot import OneHotBlock
from leanfit.models.logistic import ExactLogisticRegression

N, P, C = 5_000, 20, 0.5
EDGES = [0, 300, 1100, 1200, 2500, 3900, 4400, N]  # 7 uneven blocks
TIGHT = 1e-10  # scikit-learn-scale gradient tolerance for exact comparisons


def rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def make_data(n_classes, seed=0):
    X, y = make_classification(N, P, n_informative=10, n_classes=n_classes, random_state=seed)
    return StandardScaler().fit_transform(X).astype(np.float32), y


def block_source(X, y, sw=None, edges=EDGES, calls=None):
    """A generator function: each call starts a new pass, slicing blocks on the fly."""

    def blocks():
        if calls is not None:
            calls.append(1)
        for a, b in itertools.pairwise(edges):
            yield X[a:b], y[a:b], None if sw is None else sw[a:b]

    return blocks


def reference(X, y, sw=None):
    model = LogisticRegression(C=C, tol=1e-10, max_iter=10_000)
    return model.fit(X.astype(np.float64), y, sample_weight=sw)


def assert_matches(model, ref, X, tol=1e-4):
    X64 = X.astype(np.float64)
    assert model.coef_.shape == ref.coef_.shape
    assert rel(model.coef_, ref.coef_) < tol
    assert rel(model.intercept_, ref.intercept_) < tol
    assert np.max(np.abs(model.predict_proba(X) - ref.predict_proba(X64))) < tol
    np.testing.assert_array_equal(model.predict(X), ref.predict(X64))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_dense_blocks_match_sklearn(n_classes):
    X, y = make_data(n_classes)
    ref = reference(X, y)
    classes = np.arange(n_classes)
    model = ExactLogisticRegression(C=C, tol=TIGHT).fit_blocks(block_source(X, y), classes, P)
    assert model.coef_.shape == ((1, P) if n_classes == 2 else (n_classes, P))
    assert model.predict_proba(X).shape == (N, n_classes)
    assert_matches(model, ref, X)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_sparse_blocks_match_dense_and_sklearn(n_classes):
    rng = np.random.default_rng(1)
    dense, y = make_data(n_classes, seed=1)
    onehot = np.eye(6, dtype=np.float32)[rng.integers(0, 6, N)]
    X = np.hstack([onehot, dense[:, :10]])
    X_csr = sp.csr_matrix(X)
    classes = np.arange(n_classes)
    from_sparse = ExactLogisticRegression(C=C, tol=TIGHT).fit_blocks(
        block_source(X_csr, y), classes, 16
    )
    from_dense = ExactLogisticRegression(C=C, tol=TIGHT).fit_blocks(block_source(X, y), classes, 16)
    assert rel(from_sparse.coef_, from_dense.coef_) < 1e-8
    assert rel(from_sparse.intercept_, from_dense.intercept_) < 1e-8
    assert_matches(from_sparse, reference(X, y), X)
    np.testing.assert_allclose(from_sparse.predict_proba(X_csr), from_sparse.predict_proba(X))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_one_hot_blocks_match_csr(n_classes):
    rng = np.random.default_rng(5)
    dense, y = make_data(n_classes, seed=5)
    slots = np.column_stack([10 + rng.integers(0, 6, N), 16 + rng.integers(0, 40, N)])
    block = OneHotBlock(dense[:, :10], slots.astype(np.int32), 56)
    X = block.toarray()
    assert np.array_equal(X[np.arange(N), slots[:, 1]], np.ones(N))
    G = rng.normal(size=(N, 3))
    np.testing.assert_allclose(block.T @ G, X.T.astype(np.float64) @ G, rtol=1e-10)
    np.testing.assert_allclose(block @ G[:56], X @ G[:56], rtol=1e-5)
    classes = np.arange(n_classes)
    fit = ExactLogisticRegression(C=C, tol=TIGHT)
    from_one_hot = fit.fit_blocks(block_source(block, y), classes, 56).coef_.copy()
    from_csr = fit.fit_blocks(block_source(sp.csr_matrix(X), y), classes, 56).coef_
    assert rel(from_one_hot, from_csr) < 1e-8


@pytest.mark.parametrize("n_classes", [2, 3])
def test_sample_weights_match_sklearn(n_classes):
    X, y = make_data(n_classes, seed=2)
    rng = np.random.default_rng(2)
    sw = rng.uniform(0.0, 3.0, N) * (rng.random(N) > 0.1)  # some zero weights
    model = ExactLogisticRegression(C=C, tol=TIGHT)
    model.fit_blocks(block_source(X, y, sw), np.arange(n_classes), P)
    ref = reference(X, y, sw)
    assert_matches(model, ref, X)
    assert rel(model.coef_, reference(X, y).coef_) > 1e-3  # the weights mattered
    in_memory = ExactLogisticRegression(C=C, tol=TIGHT).fit(X, y, sample_weight=sw)
    assert_matches(in_memory, ref, X)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_result_does_not_depend_on_block_size(n_classes):
    X, y = make_data(n_classes, seed=3)
    cuts = np.random.default_rng(3).choice(np.arange(1, N), 12, replace=False)
    thirteen = [0, *np.sort(cuts), N]  # 13 blocks of uneven size
    classes = np.arange(n_classes)
    one = ExactLogisticRegression(C=C, tol=TIGHT).fit_blocks(
        block_source(X, y, edges=[0, N]), classes, P
    )
    many = ExactLogisticRegression(C=C, tol=TIGHT).fit_blocks(
        block_source(X, y, edges=thirteen), classes, P
    )
    assert rel(many.coef_, one.coef_) < 1e-8
    assert rel(many.intercept_, one.intercept_) < 1e-8


def test_in_memory_fit_equals_streaming_fit():
    X, y = make_data(3, seed=4)
    labels = np.array(["a", "b", "c"])[y]
    in_memory = ExactLogisticRegression(C=C, tol=TIGHT).fit(X, labels)
    streamed = ExactLogisticRegression(C=C, tol=TIGHT).fit_blocks(
        block_source(X, y), ["a", "b", "c"], P
    )
    np.testing.assert_array_equal(in_memory.classes_, streamed.classes_)
    assert rel(in_memory.coef_, streamed.coef_) < 1e-8
    assert set(in_memory.predict(X)) <= {"a", "b", "c"}


def test_each_evaluation_is_one_streamed_pass():
    X, y = make_data(2, seed=5)
    calls, evaluations, live, peak = [], [], [0], [0]

    def release():
        live[0] -= 1

    def blocks():  # yields fresh copies and tracks how many are alive at once
        calls.append(1)
        for a in range(0, N, 400):
            block = X[a : a + 400].copy()
            live[0] += 1
            weakref.finalize(block, release)
            peak[0] = max(peak[0], live[0])
            yield block, y[a : a + 400], None

    model = ExactLogisticRegression(C=C, tol=TIGHT).fit_blocks(
        blocks, [0, 1], P, progress=lambda i, loss: evaluations.append((i, loss))
    )
    assert len(calls) == len(evaluations) + 1 >= model.n_iter_ > 1  # + the weight-sum pass
    assert [i for i, _ in evaluations] == list(range(1, len(calls)))
    assert evaluations[-1][1] < evaluations[0][1] == pytest.approx(np.log(2))
    assert peak[0] <= 2  # the current block, and the previous one until it is replaced
    assert live[0] == 0  # nothing is kept after fitting


def test_lbfgs_steps_run_blas_on_one_thread():
    """Multi-threaded BLAS in the passes and the optimiser's small vector steps only
    spins: it took 1.2 CPU seconds from the Dask workers on the same cores in one fit
    (bench/dask.py)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    X, y = make_data(2, seed=6)
    seen = []

    def blocks():
        seen.extend(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
        yield X, y, None

    with threadpool_limits(2, user_api="blas"):
        ExactLogisticRegression(C=C).fit_blocks(blocks, [0, 1], P)
    assert seen and set(seen) == {1}


def test_tol_max_iter_and_bad_input():
    X, y = make_data(3, seed=6)
    loose = ExactLogisticRegression(C=C, tol=1e-2).fit(X, y)
    assert 1 <= loose.n_iter_ < ExactLogisticRegression(C=C, tol=TIGHT).fit(X, y).n_iter_
    with pytest.warns(Warning, match="did not converge"):
        ExactLogisticRegression(C=C, max_iter=2).fit(X, y)
    with pytest.raises(ValueError, match="class codes"):
        ExactLogisticRegression().fit_blocks(block_source(X, y), [0, 1], P)
    with pytest.raises(ValueError, match="no samples"):
        ExactLogisticRegression().fit_blocks(lambda: iter(()), [0, 1], P)


def expected_failed_checks(estimator):
    """Checks that cannot apply to this estimator, with the reason: none so far."""
    return {}


@parametrize_with_checks([ExactLogisticRegression()], expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)
