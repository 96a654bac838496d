"""The Dask engine against the local engine, on a real two-process LocalCluster.

Every test shares one cluster (the LocalCluster leanfit starts: 2 worker
processes, 1 thread each) and splits the
20,000-row files into byte ranges of 1 MB (4 to 6 partitions), so merging and row
offsets are exercised. Comparisons are with the local engine on the same data.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from leanfit import TrainOptions, evaluate, load, predict
from leanfit.engines import dask as dask_engine
from leanfit.engines.local.train import train
from leanfit.io.partitions import count_rows, parse_types, plan_parts, read_part
from leanfit.io.source import resolve_paths
from leanfit.options import BoostOptions
from leanfit.schema import inspect
from leanfit.synth import write_data

distributed = pytest.importorskip("distributed")

BLOCK = 1_000_000  # bytes per partition: the 5.6 MB test files make 4 to 6 partitions

pytestmark = [
    # distributed's shutdown can leave a socket for the garbage collector
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
    pytest.mark.filterwarnings("ignore:unclosed event loop:ResourceWarning"),
]


@pytest.fixture(scope="module")
def client():
    from leanfit.engines.dask.cluster import local_cluster

    with local_cluster(2, "1.5GB", polars_threads=1) as c:
        yield c


@pytest.fixture(scope="module")
def schemas(small_csv, client):
    return inspect(small_csv, target="label"), dask_engine.inspect(
        small_csv, target="label", client=client, block=BLOCK
    )


def _same_schema(local, remote) -> None:
    a, b = asdict(local), asdict(remote)
    assert {k: v for k, v in a.items() if k != "columns"} == {
        k: v for k, v in b.items() if k != "columns"
    }
    for ca, cb in zip(a["columns"], b["columns"], strict=True):
        for key, va in ca.items():
            vb = cb[key]
            if key == "distinct" and va is not None and not ca["distinct_exact"]:
                assert abs(vb - va) <= max(2, 0.05 * va), ca["name"]  # two HyperLogLogs
            elif isinstance(va, float):
                assert vb == pytest.approx(va, rel=1e-9, abs=1e-300), (ca["name"], key)
            else:
                assert va == vb, (ca["name"], key)


def test_schema_equals_local(schemas):
    local, remote = schemas
    _same_schema(local, remote)
    assert remote.column("customer_id").kind == "id"
    assert remote.column("region").categories == local.column("region").categories


def test_schema_equals_local_for_folders_parquet_and_widened_columns(small_csv, client, tmp_path):
    frame = pl.read_csv(small_csv)
    folder = tmp_path / "parts"
    folder.mkdir()
    frame.slice(0, 7_000).write_csv(folder / "a.csv")
    frame.slice(7_000).write_csv(folder / "b.csv")
    frame.write_parquet(tmp_path / "d.parquet", row_group_size=4_000)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 100, 30_000).astype(str)
    x[25_000] = "3.5"
    y = rng.integers(0, 100, 30_000).astype(str)
    y[26_000] = "abc"
    wide = tmp_path / "wide.csv"
    pl.DataFrame({"x": x, "y": y, "label": rng.choice(["a", "b"], 30_000)}).write_csv(wide)
    for data, block in ((folder, BLOCK), (tmp_path / "d.parquet", BLOCK), (wide, 60_000)):
        remote = dask_engine.inspect(data, target="label", client=client, block=block)
        _same_schema(inspect(data, target="label"), remote)
    assert "line 25002" in remote.column("x").note and remote.column("y").kind == "categorical"


def _train_both(path, schema, client, tmp_path, opts, boost=None):
    local = train(path, schema=schema, options=opts, boost=boost, out=tmp_path / "local.leanfit")
    remote = dask_engine.train(
        path,
        schema=schema,
        options=opts,
        boost=boost,
        client=client,
        block=BLOCK,
        out=tmp_path / "dask.leanfit",
    )
    assert remote["partitions"] >= 4
    assert (remote["rows_train"], remote["rows_holdout"]) == (
        local["rows_train"],
        local["rows_holdout"],
    )
    return local, remote, load(tmp_path / "local.leanfit"), load(tmp_path / "dask.leanfit")


def test_naive_bayes_identical(small_csv, schemas, client, tmp_path):
    local, remote, a, b = _train_both(
        small_csv, schemas[0], client, tmp_path, TrainOptions(model="nb")
    )
    assert type(a.estimator).__name__ == "BernoulliNB"
    np.testing.assert_array_equal(a.estimator.class_count_, b.estimator.class_count_)
    np.testing.assert_array_equal(a.estimator.feature_log_prob_, b.estimator.feature_log_prob_)
    assert local["metrics"]["confusion_matrix"] == remote["metrics"]["confusion_matrix"]
    assert remote["metrics"]["log_loss"] == pytest.approx(local["metrics"]["log_loss"], rel=1e-12)


def test_gaussian_naive_bayes_same_up_to_float32(small_csv, schemas, client, tmp_path):
    opts = TrainOptions(model="nb", drop=("product", "region"))
    local, remote, a, b = _train_both(small_csv, schemas[0], client, tmp_path, opts)
    assert type(a.estimator).__name__ == "GaussianNB"
    np.testing.assert_array_equal(a.estimator.class_count_, b.estimator.class_count_)
    # the local model sums float32 blocks in float32 (as scikit-learn does), dask in float64
    np.testing.assert_allclose(a.estimator.theta_, b.estimator.theta_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.estimator.var_, b.estimator.var_, rtol=1e-4, atol=1e-5)
    assert remote["metrics"]["accuracy"] == pytest.approx(local["metrics"]["accuracy"], abs=1e-3)


def test_logistic_coefficients_within_1e6(small_csv, schemas, client, tmp_path):
    _, remote, a, b = _train_both(
        small_csv, schemas[0], client, tmp_path, TrainOptions(model="logistic")
    )
    assert a.estimator.coef_.shape == b.estimator.coef_.shape == (1, a.encoder.n_features)
    np.testing.assert_allclose(a.estimator.coef_, b.estimator.coef_, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a.estimator.intercept_, b.estimator.intercept_, rtol=0, atol=1e-6)
    assert remote["cluster"]["workers"] == 2


def test_xgboost_one_partition_is_the_local_booster(small_csv, schemas, client, tmp_path):
    boost = BoostOptions(rounds=20)
    opts = TrainOptions(model="xgboost")
    local = train(small_csv, schema=schemas[0], options=opts, boost=boost)
    remote = dask_engine.train(
        small_csv, schema=schemas[0], options=opts, boost=boost, client=client, block=10**9
    )
    assert remote["partitions"] == 1
    assert remote["metrics"] == local["metrics"]  # same parameters, codes and cuts


def test_xgboost_holdout_auc_within_0005(client, tmp_path):
    """Several partitions: XGBoost merges the workers' quantile sketches and sums
    gradients in another order, so trees differ a little (on 20,000 rows the AUC of
    plain ``xgboost.dask`` on in-memory arrays moves by up to 0.015 from a
    single-process fit: holdout noise); 60,000 rows keep that noise under 0.005."""
    path = tmp_path / "mid.csv"
    write_data(path, rows=60_000, seed=3)
    schema = inspect(path, target="label")
    boost = BoostOptions(rounds=50, learning_rate=0.1)
    local, remote, _, b = _train_both(
        path, schema, client, tmp_path, TrainOptions(model="xgboost"), boost
    )
    assert abs(remote["metrics"]["roc_auc"] - local["metrics"]["roc_auc"]) < 0.005
    assert remote["metrics"]["n_rows"] == local["metrics"]["n_rows"]
    assert b.meta["training"]["boost_options"]["rounds"] == 50


def test_sgd_model_averaging_close_to_local(small_csv, schemas, client, tmp_path):
    local, remote, _, _ = _train_both(
        small_csv, schemas[0], client, tmp_path, TrainOptions(model="sgd", epochs=2)
    )
    assert remote["metrics"]["accuracy"] > local["metrics"]["accuracy"] - 0.015
    assert len(remote["history"]) == 1


def test_evaluate_and_predict_match_local_and_bundles_interchange(
    small_csv, schemas, client, tmp_path
):
    opts = TrainOptions(model="logistic")
    local_bundle, dask_bundle = tmp_path / "local.leanfit", tmp_path / "dask.leanfit"
    train(small_csv, schema=schemas[0], options=opts, out=local_bundle)
    dask_engine.train(
        small_csv, schema=schemas[1], options=opts, client=client, block=BLOCK, out=dask_bundle
    )
    # evaluate: counts identical, sums equal up to rounding
    here = evaluate(local_bundle, small_csv)["metrics"]
    there = dask_engine.evaluate(local_bundle, small_csv, client=client, block=BLOCK)["metrics"]
    assert there["confusion_matrix"] == here["confusion_matrix"]
    assert there["n_rows"] == here["n_rows"] == 20_000
    assert there["log_loss"] == pytest.approx(here["log_loss"], rel=1e-9)
    # predict: a dataset of one file per partition, rows in input order
    out = tmp_path / "preds"
    summary = dask_engine.predict(
        dask_bundle, small_csv, out, proba=True, keep=("customer_id",), client=client, block=BLOCK
    )
    files = sorted(out.glob("part-*.parquet"))
    assert summary["rows"] == 20_000 and len(files) == summary["partitions"] >= 4
    remote = pl.read_parquet(files)
    assert remote.height == 20_000
    assert remote["customer_id"].to_list() == pl.read_csv(small_csv)["customer_id"].to_list()
    assert not list(tmp_path.glob(".preds.partial-*"))
    # the dask bundle predicts locally, the local bundle on dask: the same numbers
    predict(dask_bundle, small_csv, tmp_path / "p.parquet", proba=True)
    here = pl.read_parquet(tmp_path / "p.parquet")
    np.testing.assert_allclose(here["proba_1"].to_numpy(), remote["proba_1"].to_numpy(), atol=1e-6)
    dask_engine.predict(local_bundle, small_csv, out, proba=True, client=client, block=BLOCK)
    from_local = pl.read_parquet(sorted(out.glob("part-*.parquet")))
    assert (from_local["prediction"] == remote["prediction"]).mean() > 0.999


def test_cli_against_a_running_scheduler(small_csv, client, tmp_path):
    address = client.scheduler.address
    model, preds = tmp_path / "m.leanfit", tmp_path / "preds"

    def leanfit(*args):
        done = subprocess.run(
            [sys.executable, "-m", "leanfit.cli", *map(str, args), "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    common = ("--engine", "dask", "--scheduler", address)
    trained = leanfit(
        "train", small_csv, "--target", "label", "--model", "nb", "--out", model, *common
    )
    assert trained["engine"] == "dask" and trained["cluster"]["workers"] == 2
    predicted = leanfit("predict", model, small_csv, "--out", preds, *common)
    assert predicted["rows"] == 20_000 and preds.is_dir()
    refused = subprocess.run(
        [sys.executable, "-m", "leanfit.cli", "evaluate", model, small_csv, "--scheduler", address],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 1 and "--scheduler needs --engine dask" in refused.stderr


def test_dask_summaries_speak_the_local_vocabulary(small_csv, schemas, client, tmp_path):
    from leanfit.summary import check

    model = tmp_path / "m.leanfit"
    for kind in ("sgd", "xgboost"):
        opts = TrainOptions(model=kind, epochs=2)
        kw = {"client": client, "block": BLOCK}
        trained = dask_engine.train(
            small_csv,
            schema=schemas[1],
            options=opts,
            out=model,
            boost=BoostOptions(rounds=3),
            **kw,
        )
        evaluated = dask_engine.evaluate(model, small_csv, **kw)
        predicted = dask_engine.predict(model, small_csv, tmp_path / f"p-{kind}", **kw)
        for summary in (trained, evaluated, predicted):
            check(summary)
            assert summary["input"] == [str(small_csv)] and summary["model"] == kind
        local = train(small_csv, schema=schemas[0], options=opts, boost=BoostOptions(rounds=3))
        assert set(local) - {"cache_bytes", "matrix_estimate_bytes"} <= set(trained)
        assert evaluated["bundle"] == str(model) == trained["output"]


def test_bad_rows_are_the_local_engines(tmp_path, client):
    """--bad-rows on Dask: the same bad lines (the same quarantine file) and the same
    model as the local engine, with the file cut into byte-range partitions."""
    from leanfit.io.guard import Guard

    data = tmp_path / "d.csv"
    write_data(data, rows=12_000, seed=21)
    header, *rows = data.read_bytes().rstrip(b"\n").split(b"\n")
    for i in (10, 3_333, 7_000, 11_990):
        rows[i] += b",extra"
    rows[5_000] = b"abc," + rows[5_000].split(b",", 1)[1]
    data.write_bytes(header + b"\n" + b"\n".join(rows) + b"\n")
    guards = {e: Guard("quarantine", tmp_path / f"{e}.q.csv") for e in ("local", "dask")}
    opts = TrainOptions(model="nb")
    local = train(data, "label", options=opts, guard=guards["local"])
    remote = dask_engine.train(
        data, "label", options=opts, client=client, block=400_000, guard=guards["dask"]
    )
    files = [guards[e].write() for e in ("local", "dask")]
    texts = [Path(f).read_bytes() for f in files]
    assert texts[0] == texts[1] and texts[0].count(b"\n") == 6
    assert remote["partitions"] >= 4 and remote["rows_bad"] == local["rows_bad"] == 5
    for key in ("rows", "rows_train", "rows_holdout", "rows_unlabelled"):
        assert remote[key] == local[key], key
    assert remote["metrics"]["confusion_matrix"] == local["metrics"]["confusion_matrix"]


def test_partitions_are_a_multiple_of_the_workers_and_hold_every_row(small_csv, tmp_path):
    frame = pl.read_csv(small_csv)
    folder = tmp_path / "parts"
    folder.mkdir()
    frame.slice(0, 3_000).write_csv(folder / "a.csv")
    frame.slice(3_000, 12_000).write_csv(folder / "b.csv")
    frame.slice(15_000).write_csv(folder / "c.csv")
    paths = resolve_paths(folder)
    types = parse_types(paths, None)
    for workers in (2, 3, 4):
        parts = plan_parts(paths, 1_500_000, multiple=workers)
        assert len(parts) % workers == 0 and len(parts) >= 4, workers
        assert [p.index for p in parts] == list(range(len(parts)))
        rows = pl.concat([read_part(p, types) for p in parts])
        assert rows.equals(frame), workers
        assert sum(count_rows(p, None) for p in parts) == frame.height


def test_blocks_stay_on_the_worker_that_encoded_them(small_csv, schemas, client):
    """Partitions sized by leanfit are dealt evenly to the workers, and every later
    task on a partition's blocks (logistic's L-BFGS passes, sgd's epochs and holdout
    losses between them, the holdout metrics) runs where they are: no encoded block
    leaves its worker, for another worker or the client."""
    from dask.utils import key_split

    def outgoing(dask_worker):
        return [key for sent in dask_worker.transfer_outgoing_log for key in sent["keys"]]

    before = {w: len(keys) for w, keys in client.run(outgoing).items()}
    with distributed.get_task_stream(client=client) as stream:
        for model in ("logistic", "sgd"):
            opts = TrainOptions(model=model, epochs=3)
            trained = dask_engine.train(small_csv, schema=schemas[1], options=opts, client=client)
            assert trained["partitions"] == 4  # 5.6 MB over 2 workers, 2 partitions each
    sent = [k for w, keys in client.run(outgoing).items() for k in keys[before[w] :]]
    assert {key_split(k) for k in sent} >= {"terms_part", "side_rows"}  # results left
    assert "encoded_partition" not in {key_split(k) for k in sent}
    encoded = [t["worker"] for t in stream.data if key_split(t["key"]) == "encoded_partition"]
    assert sorted(encoded.count(w) for w in set(encoded)) == [4, 4]


def test_two_local_clusters_at_once_do_not_clash(tmp_path):
    """A LocalCluster's scheduler serves HTTP even without its dashboard: on 8787 it
    clashed with any other cluster on the machine (a UserWarning, an error here)."""
    import contextlib
    import socket

    from leanfit.engines.dask.cluster import local_cluster

    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(OSError):  # already taken by another process: the same
            taken.bind(("127.0.0.1", 8787))
            taken.listen()
        with local_cluster(1, "1GB") as client:
            port = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.http_server.port)
    assert port != 8787


def test_the_python_api_trains_on_dask_and_refuses_frames_clearly(small_csv, tmp_path):
    """leanfit.train(path, engine="dask") handed the engine a resolved input it could not
    read (a TypeError); a frame cannot reach the workers and is refused in one line."""
    import polars as pl

    import leanfit

    model = leanfit.train(small_csv, "label", engine="dask", out=tmp_path / "m.leanfit")
    assert model.summary["engine"] == "dask" and model.summary["rows"] == len(
        pl.read_csv(small_csv)
    )
    with pytest.raises(leanfit.ConfigError, match="--engine dask reads files every worker"):
        leanfit.train(pl.read_csv(small_csv), "label", engine="dask")


def test_the_first_bad_row_is_named_whichever_partition_fails_first(small_csv, client, tmp_path):
    """Two bad values in two partitions: the error names the earlier line every time
    (it named whichever partition's task failed first)."""
    lines = Path(small_csv).read_text().splitlines(keepends=True)
    header = [name.strip('"') for name in lines[0].rstrip("\n").split(",")]
    column = header.index("monthly_fee")

    def spoiled(line: str, value: str) -> str:
        fields = line.rstrip("\n").split(",")
        fields[column] = value
        return ",".join(fields) + "\n"

    first, later = 5, len(lines) - 5
    lines[first], lines[later] = spoiled(lines[first], "yyy"), spoiled(lines[later], "zzz")
    data = tmp_path / "two.csv"
    data.write_text("".join(lines))
    bundle = tmp_path / "m.leanfit"
    train(small_csv, "label", out=bundle, options=TrainOptions(model="nb"))
    for _ in range(3):
        with pytest.raises(Exception, match="value 'yyy'"):  # the first bad row's, not 'zzz'
            dask_engine.evaluate(bundle, data, client=client, block=BLOCK)
