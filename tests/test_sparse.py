"""Wide, mostly-zero data: found by inspect, encoded as CSR, trained in bounded memory.

References: pandas for the statistics, scikit-learn on the same rows as a scipy CSR
matrix in memory for the models, the OS's peak RSS (and a bare Polars parse of the
same files) for memory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from leanfit import api
from leanfit.costs import chunk_row_bytes, chunk_rows_cap, model_bytes, parser_bytes
from leanfit.encode.batches import holdout_mask
from leanfit.encode.encoder import Encoder
from leanfit.errors import MemoryBudgetExceeded
from leanfit.io import interrupts
from leanfit.memory import MIN_ROWS, Monitor, current_rss, plan_rows
from leanfit.schema import Column, Schema
from leanfit.sparsedata import DENSE, column_names, write_sparse_data

ROWS, COLUMNS, DENSITY = 2_000, 2_000, 0.01
MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "sys.stderr.write(done.stderr)\n"
    "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"
)
BARE_PARSE = (
    "import os, sys\n"
    "os.environ['POLARS_CSV_CHUNK_SIZE'] = str(4 << 20)\n"
    "import polars as pl\n"
    "for _ in pl.scan_csv(sys.argv[1]).collect_batches(chunk_size=1_000): pass\n"
)


@pytest.fixture(scope="module")
def wide_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("wide") / "wide.csv"
    write_sparse_data(path, rows=ROWS, columns=COLUMNS, density=DENSITY, seed=5)
    return path


@pytest.fixture(scope="module")
def wide_schema(wide_csv):
    return api.inspect(wide_csv, target="label")


def peak_of(*command) -> tuple[int, int, str]:
    """Exit code, peak RSS in bytes (as the OS counts it) and stderr of a command."""
    cmd = [sys.executable, "-c", MEASURE, *map(str, command)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    code, peak = done.stdout.split()
    return int(code), int(peak), done.stderr


def least_peak(*command, runs: int = 3) -> int:
    """The lowest peak of ``runs`` runs of a command that succeeds: a peak's noise (the
    allocator, the page cache, the sampler's timing) only ever adds."""
    peaks = []
    for _ in range(runs):
        code, peak, err = peak_of(*command)
        assert code == 0, err
        peaks.append(peak)
    return min(peaks)


def test_inspect_counts_zeros_and_marks_sparse_columns(wide_csv, wide_schema):
    frame = pd.read_csv(wide_csv)
    counts = frame[column_names(COLUMNS)]
    for name in ("n00000", "n00917", "n01999"):
        col, values = wide_schema.column(name), counts[name]
        assert col.zeros == int((values == 0).sum())
        assert col.sparse and col.kind == "integer" and col.storage == "uint8"
        assert col.mean == pytest.approx(values.mean(), rel=1e-9)
        assert col.std == pytest.approx(values.std(ddof=0), rel=1e-6)
        assert (col.min, col.max) == (values.min(), values.max())
    for name in DENSE:  # dense floats stay dense, their decimals found
        col = wide_schema.column(name)
        assert not col.sparse and col.kind == "float" and col.storage == "float32"
        assert col.zeros == int((frame[name] == 0).sum())
    sparse = [c for c in wide_schema.columns if c.sparse]
    constant = [c for c in wide_schema.columns if c.kind == "constant"]
    assert len(sparse) + len(constant) == COLUMNS
    assert [c.name for c in constant] == [n for n in counts if (counts[n] == 0).all()]


def test_schema_json_without_the_new_fields_still_loads(wide_schema, tmp_path):
    raw = json.loads(wide_schema.to_json())
    for column in raw["columns"]:
        column.pop("zeros"), column.pop("sparse")
    old = Schema.from_json(json.dumps(raw))
    assert not any(c.sparse for c in old.columns)
    assert Encoder.from_schema(old).sparse_numeric == []


def reference_matrix(path, schema: Schema):
    """The encoded rows, made by scikit-learn and scipy from pandas: dense floats
    standardised, counts scaled (not centred), as CSR."""
    frame = pd.read_csv(path)
    names = [c.name for c in schema.columns if c.sparse]
    dense = StandardScaler().fit_transform(frame[list(DENSE)].to_numpy(np.float64))
    counts = sp.csr_matrix(frame[names].to_numpy(np.float64))
    counts = StandardScaler(with_mean=False).fit_transform(counts)
    return sp.hstack([sp.csr_matrix(dense), counts], format="csr"), frame["label"].to_numpy()


def test_exact_logistic_on_csr_matches_scikit_learn(wide_csv, wide_schema):
    model = api.train(
        wide_csv, "label", schema=wide_schema, model="logistic", holdout=0.0, tol=1e-8
    )
    assert model.summary["sparse"]
    X, y = reference_matrix(wide_csv, wide_schema)
    ref = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(X, y)
    ours = model.predict_proba(wide_csv)[:, 1]
    assert np.max(np.abs(ours - ref.predict_proba(X)[:, 1])) < 2e-3


def test_sgd_on_csr_is_as_good_as_scikit_learn(wide_csv, wide_schema):
    model = api.train(wide_csv, "label", schema=wide_schema, model="sgd", epochs=5)
    X, y = reference_matrix(wide_csv, wide_schema)
    held = holdout_mask(np.arange(ROWS, dtype=np.uint64), 0.2, 0)
    ref = LogisticRegression(max_iter=10_000).fit(X[~held], y[~held])
    ref_auc = roc_auc_score(y[held], ref.predict_proba(X[held])[:, 1])
    ours = roc_auc_score(y[held], model.predict_proba(wide_csv)[held, 1])
    assert model.summary["metrics"]["roc_auc"] == pytest.approx(ours, abs=2e-3)
    assert ours > ref_auc - 0.03, (ours, ref_auc)


def test_peak_does_not_grow_with_columns_beyond_the_parser(tmp_path):
    """The same non-zeros per row over 1,000 and 4,000 columns: training (inspect
    included) grows no more than a bare Polars parse of the same files does."""
    peaks, bare = {}, {}
    for columns in (1_000, 4_000):
        data = tmp_path / f"w{columns}.csv"
        write_sparse_data(data, rows=2_000, columns=columns, density=40 / columns, seed=1)
        out = tmp_path / f"m{columns}.leanfit"
        train = ["-m", "leanfit.cli", "train", data, "--target", "label", "--out", out]
        peaks[columns] = least_peak(sys.executable, *train, "--memory-limit", "1GB", "--force")
        bare[columns] = least_peak(sys.executable, "-c", BARE_PARSE, data)
    grown, parser_grown = peaks[4_000] - peaks[1_000], bare[4_000] - bare[1_000]
    # beyond the parser's: leanfit's own state per column (schema, statistics, encoder
    # entries; measured 15-20 KB a column, the least of three runs varying by 20 MB),
    # never per row (one dense float64 copy of a chunk would add 64 MB)
    assert grown < parser_grown + 3_000 * 25e3, (peaks, bare)


def wide_header_schema(columns: int, rows: int) -> Schema:
    """A schema like inspect's of ``rows`` rows of ``columns`` mostly-zero counts."""
    cols = [
        Column(f"n{i}", "integer", "uint8", "Int64", rows, 0, mean=0.1, std=0.3, zeros=rows - 1)
        for i in range(columns)
    ]
    for col in cols:
        col.sparse = True
    label = Column("label", "target", "uint8", "Int64", rows, 0, feature=False)
    return Schema([], rows, [*cols, label], target="label", classes=[0, 1], class_counts=[10, 10])


def test_a_short_file_of_50_000_columns_is_planned_to_fit_1gb():
    """It was refused as needing 4,358 MB: chunks of 1,024 rows of 50,000 dense columns."""
    schema = wide_header_schema(50_000, rows=20)
    encoder = Encoder.from_schema(schema)
    assert len(encoder.sparse_numeric) == 50_000 and encoder.sparse
    fixed = parser_bytes(len(schema.columns)) + model_bytes(encoder.n_features, 2, "sgd")
    cap = chunk_rows_cap(schema, schema.rows)
    assert cap == 20 < MIN_ROWS
    row_bytes = chunk_row_bytes(schema, encoder, "sgd")
    rows = plan_rows(
        limit=10**9, baseline=200_000_000, fixed=fixed, row_bytes=row_bytes, max_rows=cap
    )
    assert rows == 20


def test_make_data_writes_wide_sparse_data(tmp_path):
    out = tmp_path / "w.csv"
    options = ["--rows", "300", "--sparse-columns", "500", "--density", "0.02", "--json"]
    command = [sys.executable, "-m", "leanfit.cli", "make-data", out, *options]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(out)
    assert frame.shape == (300, 503) and json.loads(done.stdout)["rows"] == 300
    share = (frame[column_names(500)] != 0).to_numpy().mean()
    assert 0.015 < share < 0.025
    assert set(frame["label"]) == {0, 1}


@pytest.mark.slow
def test_a_20_row_file_of_50_000_columns_trains_under_1gb(tmp_path):
    data = tmp_path / "h.csv"
    write_sparse_data(data, rows=20, columns=50_000, density=0.05, seed=2)
    out = tmp_path / "m.leanfit"
    command = ["-m", "leanfit.cli", "train", data, "--target", "label", "--out", out]
    code, peak, err = peak_of(sys.executable, *command, "--memory-limit", "1GB")
    assert code == 0, err
    assert peak < 10**9


@pytest.mark.slow
@pytest.mark.parametrize("model", ["sgd", "logistic"])
def test_20k_rows_of_10_000_columns_train_under_1gb(tmp_path_factory, model):
    folder = tmp_path_factory.getbasetemp() / "wide10k"
    data = folder / "w10k.csv"
    if not data.exists():
        folder.mkdir(exist_ok=True)
        write_sparse_data(data, rows=20_000, columns=10_000, density=0.01, seed=3)
    out = tmp_path_factory.mktemp(model) / "m.leanfit"
    command = ["-m", "leanfit.cli", "train", data, "--target", "label", "--out", out]
    code, peak, err = peak_of(sys.executable, *command, "--model", model, "--memory-limit", "1GB")
    assert code == 0, err
    assert peak < 10**9


def test_a_peak_past_the_limit_inside_one_long_call_stops_the_run():
    """The sampler sees a peak the next safe point would miss (memory freed by then):
    the run stops with the over-limit error instead of ending with within_limit false."""
    memory = Monitor(limit=current_rss() + 100_000_000, interval=0.01)
    with memory, memory.stage("inspect"):
        block = np.ones(200_000_000 // 8)  # one long call's transient peak
        time.sleep(0.3)
        del block
        time.sleep(0.1)
        assert current_rss() < memory.limit
        with pytest.raises(MemoryBudgetExceeded, match="during inspect"):
            memory.check()
    interrupts.check()  # a new run starts clean
