"""Tests that can fail (issue 11, item 9): each one kills a mutant that survived the
suite before, named in its docstring. Each was checked by applying the mutant by
hand to a scratch copy of the code and running the test (it failed), then reverting.
The object-dtype mutant (bundle arrays read with ``allow_pickle=True``) is killed by
``tests/test_bundle.py::test_an_object_array_is_refused_without_unpickling_it``.
"""

from __future__ import annotations

import json
import mmap
import subprocess
import sys
from dataclasses import fields

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score

import leanfit
from leanfit.encode.batches import holdout_mask
from leanfit.encode.cache import BlockCache
from leanfit.encode.encoder import Encoder
from leanfit.engines.local.train import SHRINK_AT, encoded_blocks
from leanfit.memory import MIN_ROWS, Monitor, parse_limit
from leanfit.metrics import StreamingMetrics
from leanfit.options import MODELS, BoostOptions, TrainOptions
from leanfit.schema import Schema

MB = 10**6
MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "sys.stderr.write(done.stderr)\n"
    "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"
)


def peak_of(*args) -> tuple[int, int, str]:
    """Exit code, peak RSS (bytes, as the OS counts it) and stderr of a leanfit command."""
    command = [sys.executable, "-m", "leanfit.cli", *map(str, args)]
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, check=True
    )
    code, peak = done.stdout.split()
    return int(code), int(peak), done.stderr


# --------------------------------------------------------------------------- models.scores


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    """Train and test files of 3 classes, the schema, and in-memory scikit-learn's
    LogisticRegression on the same encoded features: its test accuracy and AUC."""
    folder = tmp_path_factory.mktemp("kinds")
    train, test = folder / "train.csv", folder / "test.csv"
    leanfit.write_data(train, rows=8_000, seed=21, classes=3)
    leanfit.write_data(test, rows=4_000, seed=22, classes=3)
    schema = leanfit.inspect(train, target="label")
    encoder = Encoder.from_options(schema, TrainOptions())
    frames = {name: pl.read_csv(path) for name, path in (("train", train), ("test", test))}
    X = {name: encoder.transform(frame) for name, frame in frames.items()}
    y = {name: frame["label"].to_numpy() for name, frame in frames.items()}
    reference = LogisticRegression(max_iter=2_000).fit(X["train"], y["train"])
    p = reference.predict_proba(X["test"])
    return {
        "folder": folder,
        "train": train,
        "test": test,
        "schema": schema,
        "majority": np.bincount(y["test"]).max() / len(y["test"]),
        "accuracy": accuracy_score(y["test"], p.argmax(axis=1)),
        "auc": roc_auc_score(y["test"], p, multi_class="ovr"),
    }


@pytest.mark.parametrize("kind", MODELS)
def test_every_model_kind_beats_the_majority_class_and_nears_scikit_learn(three_classes, kind):
    """Kills ``models.registry.scores`` returning a constant (uniform probabilities):
    every kind must beat the majority class clearly on new data, and the exact kinds
    match in-memory scikit-learn on the same encoded features."""
    ref = three_classes
    bundle = ref["folder"] / f"{kind}.leanfit"
    boost = {"boost": BoostOptions(rounds=15)} if kind == "xgboost" else {}
    leanfit.train(
        ref["train"], schema=ref["schema"], out=bundle, options=TrainOptions(model=kind), **boost
    )
    metrics = leanfit.evaluate(bundle, ref["test"])["metrics"]
    assert metrics["accuracy"] > ref["majority"] + 0.05, (metrics["accuracy"], ref["majority"])
    assert metrics["roc_auc"] > 0.65
    assert metrics["accuracy"] > ref["accuracy"] - 0.12
    if kind in ("logistic", "sgd"):
        assert metrics["accuracy"] == pytest.approx(ref["accuracy"], abs=0.02)
        assert metrics["roc_auc"] == pytest.approx(ref["auc"], abs=0.02)


# --------------------------------------------------------------------------- BlockCache


def test_block_cache_keeps_its_blocks_on_disk_and_maps_them_back(tmp_path):
    """Kills ``BlockCache`` keeping every block in RAM: its folder holds ``nbytes`` of
    ``.npy`` files, at least the blocks' bytes, and every array read back is a memory
    map of its file, equal to what was appended."""
    rng = np.random.default_rng(0)
    dense = [rng.normal(size=(5_000, 40)).astype(np.float32) for _ in range(3)]
    sparse = sp.random(4_000, 300, density=0.05, format="csr", dtype=np.float32, random_state=1)
    labels = [rng.integers(0, 2, X.shape[0]).astype(np.int32) for X in [*dense, sparse]]
    with BlockCache(tmp_path) as cache:
        for X, y in zip([*dense, sparse], labels):
            cache.append(X, y, None)
        on_disk = sum(p.stat().st_size for p in cache.folder.rglob("*.npy"))
        assert on_disk == cache.nbytes
        assert on_disk >= sum(X.nbytes for X in dense) + sparse.data.nbytes + sparse.indices.nbytes
        for (X, y, w), X0, y0 in zip(cache.blocks(), [*dense, sparse], labels):
            data = X.data if sp.issparse(X) else X
            assert mapped(data) and mapped(y) and w is None
            np.testing.assert_array_equal(X.toarray() if sp.issparse(X) else X, _dense(X0))
            np.testing.assert_array_equal(y, y0)


def mapped(array) -> bool:
    """Whether ``array`` is, or views, a memory map of a file."""
    while array is not None:
        if isinstance(array, np.memmap | mmap.mmap):
            return True
        array = getattr(array, "base", None)
    return False


def _dense(X):
    return X.toarray() if sp.issparse(X) else X


def test_training_memory_does_not_grow_with_the_data(tmp_path):
    """Kills ``BlockCache`` keeping every block in RAM (and any stage that holds the
    data): two epochs of sgd cache every row (77 MB at 300k rows, 307 MB at 1.2M); the
    OS's peak of the 4x larger run must stay within 90 MB of the smaller one and under
    the limit (the mutant goes over it). Measured: the train stage peaks at 230, 244 and
    251 MiB at 100k, 400k and 800k rows: growth that levels off once Polars' pipeline is
    full, later on a loaded machine (+55-62 MB from 100k to 400k seen there)."""
    leanfit.write_data(tmp_path / "sample.csv", rows=20_000, seed=5)
    schema = tmp_path / "schema.json"
    leanfit.inspect(tmp_path / "sample.csv", target="label").to_json(schema)
    peaks = {}
    for rows in (300_000, 1_200_000):
        data = tmp_path / f"d{rows}.csv"
        leanfit.write_data(data, rows=rows, seed=5)
        code, peaks[rows], err = peak_of(
            *("train", data, "--schema", schema, "--out", tmp_path / "m.leanfit", "--force"),
            *("--epochs", "2", "--batch-rows", "16384", "--memory-limit", "460MB"),
        )
        assert code == 0, err
        data.unlink()
    assert peaks[1_200_000] < parse_limit("460MB")
    assert peaks[1_200_000] - peaks[300_000] < 90 * MB, {k: v / MB for k, v in peaks.items()}


# --------------------------------------------------------------------------- Monitor.check


def test_a_run_that_outgrows_its_limit_stops_with_exit_2(tmp_path):
    """Kills ``Monitor.check`` never raising: rows of 10 KB where the model's schema
    planned for a few bytes make one chunk of predict ~800 MB; under 640MB the run must
    stop with exit 2, the over-limit message, and no output. (The limit leaves room for
    a start-up resident set well above the usual ~80 MB, seen at ~360 MB on a loaded
    machine, so the refusal before reading cannot stand in for the stop mid-run.)"""
    small = tmp_path / "small.csv"
    leanfit.write_data(small, rows=5_000, seed=3)
    bundle = tmp_path / "m.leanfit"
    leanfit.train(small, "label", out=bundle)
    fat = pl.read_csv(small, n_rows=1_000).with_columns(pl.lit("x" * 10_000).alias("plan"))
    data = tmp_path / "fat.csv"
    body = fat.write_csv(include_header=False)
    with open(data, "w") as f:
        f.write(",".join(fat.columns) + "\n")
        f.writelines(body for _ in range(80))
    out = tmp_path / "p.csv"
    code, _, err = peak_of("predict", bundle, data, "--out", out, "--memory-limit", "640MB")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "over --memory-limit 640MB, during predict" in lines[0], err
    assert not out.exists()


def test_check_raises_past_the_limit_and_not_below_it():
    """Kills ``Monitor.check`` never raising, in-process: a limit below the resident
    set (as /proc counts it) stops the run; one above does not."""
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * 4096
    Monitor(limit=rss * 4).check()
    with pytest.raises(leanfit.MemoryBudgetExceeded, match="over --memory-limit"):
        Monitor(limit=rss // 2).check()


def test_chunks_halve_when_memory_nears_the_limit(tmp_path):
    """Kills chunks never shrinking (``memory.pressure > SHRINK_AT`` ignored in
    ``encoded_blocks``): with the latest sample past SHRINK_AT of the limit, every chunk
    is cut in half, down to MIN_ROWS; without pressure they stay whole."""
    data = tmp_path / "d.csv"
    leanfit.write_data(data, rows=12_000, seed=8)
    schema = leanfit.inspect(data, target="label")
    opts = TrainOptions()
    encoder = Encoder.from_options(schema, opts)

    def sizes(pressure: float) -> list[int]:
        monitor = Monitor(limit=2**40)
        monitor.samples.append((0.0, int(pressure * monitor.limit), "test"))
        blocks = encoded_blocks(data, schema, encoder, opts, monitor, rows=4_096)
        return [len(y) for _, y, _ in blocks]

    calm, pressed = sizes(0.1), sizes(min(1.0, SHRINK_AT + 0.05))
    assert sum(calm) == sum(pressed) == schema.rows - schema.column("label").nulls
    assert calm[:2] == [4_096, 4_096]
    # the first chunk is halved once, the next ones again, down to MIN_ROWS
    assert pressed[:2] == [2_048, 2_048] and set(pressed[2:-1]) == {MIN_ROWS}


# --------------------------------------------------------------------------- the split


def test_the_holdout_split_depends_on_the_seed():
    """Kills ``holdout_mask`` ignoring the seed: two seeds give splits of the expected
    size (within 4 standard deviations) that overlap as independent draws do
    (n * p**2), and the same seed the same split."""
    n, p = 200_000, 0.2
    keys = np.arange(n, dtype=np.uint64)
    a, b, again = holdout_mask(keys, p, 1), holdout_mask(keys, p, 2), holdout_mask(keys, p, 1)
    np.testing.assert_array_equal(a, again)
    sd = np.sqrt(n * p * (1 - p))
    for mask in (a, b):
        assert abs(mask.sum() - n * p) < 4 * sd
    overlap_sd = np.sqrt(n * p**2 * (1 - p**2))
    assert abs((a & b).sum() - n * p**2) < 4 * overlap_sd


# --------------------------------------------------------------------------- schema.json


def test_schema_json_round_trip_gives_back_the_original(tmp_path):
    """Kills ``Schema.from_json`` dropping ``std`` or ``categories`` (or any field):
    ``from_json(to_json(s))`` is compared with the inspected schema itself, column by
    column and field by field."""
    data = tmp_path / "d.csv"
    leanfit.write_data(data, rows=5_000, seed=9)
    schema = leanfit.inspect(data, target="label")
    assert any(c.std for c in schema.columns) and any(c.categories for c in schema.columns)
    back = Schema.from_json(schema.to_json())
    original = json.loads(json.dumps([c.__dict__ for c in schema.columns], default=str))
    for column, expected in zip(back.columns, original):
        for field in fields(column):
            got = getattr(column, field.name)
            assert json.loads(json.dumps(got, default=str)) == expected[field.name], (
                column.name,
                field.name,
            )
    for field in fields(schema):
        if field.name != "columns":
            assert getattr(back, field.name) == getattr(schema, field.name), field.name
    assert [c.name for c in back.columns] == [c.name for c in schema.columns]


# --------------------------------------------------------------------------- AUC bound


def test_the_auc_error_bound_is_exactly_the_error_where_it_is_tight():
    """Kills the AUC error bound halved (or otherwise off): scores sit in three bins,
    positives above negatives inside each bin. scikit-learn's exact AUC orders every
    tied pair correctly, the histogram counts it one half (pairs in different bins
    count the same in both), so the exact AUC minus the histogram AUC is half the share
    of positive-negative pairs sharing a bin, counted here pair by pair: the bound must
    equal it."""
    rng = np.random.default_rng(4)
    bins, n = 8, 3_000
    y = rng.integers(0, 2, n)
    which = rng.choice([1, 4, 6], size=n)
    score = (which + np.where(y == 1, 0.75, 0.25)) / bins
    metrics = StreamingMetrics(2, bins=bins)
    metrics.update(y, np.column_stack([1 - score, score]))
    result = metrics.result()
    pos, neg = which[y == 1], which[y == 0]
    tied_share = (pos[:, None] == neg[None, :]).mean()
    exact = roc_auc_score(y, score)
    assert result["auc_error_bound"] == pytest.approx(0.5 * tied_share, rel=1e-12)
    assert exact - result["roc_auc"] == pytest.approx(result["auc_error_bound"], rel=1e-9)
