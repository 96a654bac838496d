"""Every input a data scientist has, through the command line and the Python API.

Each format or variant of one generated data set is checked against an independent
reference: pandas reading the plain CSV (rows, class counts), and the model and
metrics trained on the plain CSV (the same rows in the same order give the same
model). The command line runs in process (click's runner): the same code as a
subprocess, without its start-up time.
"""

from __future__ import annotations

import bz2
import json
import logging
import shutil

import fsspec
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from click.testing import CliRunner

import leanfit
from leanfit.cli import main
from leanfit.synth import write_data

ROWS = 3_000
SGD = leanfit.TrainOptions(model="sgd", epochs=1, seed=0)


def cli(*args) -> tuple[int, dict | str]:
    """Run the CLI in process: exit code and the --json summary (or the error text)."""
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if result.exit_code == 0 and "--json" in args:
        return 0, json.loads(result.stdout.strip().splitlines()[-1])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    write_data(d / "plain.csv", rows=ROWS, seed=5)
    return d


@pytest.fixture(scope="module")
def reference(folder):
    """pandas' reading of the plain CSV, and the model trained on it."""
    frame = pd.read_csv(folder / "plain.csv")
    summary = leanfit.train(folder / "plain.csv", "label", options=SGD).summary
    return frame, summary


@pytest.fixture(scope="module")
def variants(folder) -> dict[str, tuple[str, str | None]]:
    """The same data in every input format: name -> (path, separator to give)."""
    plain = folder / "plain.csv"
    frame = pl.read_csv(plain)
    frame.write_csv(folder / "d.tsv", separator="\t")
    frame.write_csv(folder / "semi.csv", separator=";")
    frame.write_csv(folder / "tabs.csv", separator="\t")
    raw = plain.read_bytes()
    (folder / "d.csv.bz2").write_bytes(bz2.compress(raw))
    with pa.output_stream(str(folder / "d.csv.zst"), compression="zstd") as out:
        out.write(raw)
    with pa.output_stream(str(folder / "d.csv.gz"), compression="gzip") as out:
        out.write(raw)
    frame.write_ipc(folder / "d.feather")
    frame.write_ipc(folder / "d.arrow")
    table = frame.to_arrow()
    with (
        pa.OSFile(str(folder / "stream.arrow"), "wb") as sink,
        pa.ipc.new_stream(sink, table.schema) as writer,
    ):
        writer.write_table(table, max_chunksize=1_000)
    frame.write_ndjson(folder / "d.jsonl")
    frame.write_parquet(folder / "d.parquet")
    return {
        "tsv": (folder / "d.tsv", None),
        "semicolon": (folder / "semi.csv", ";"),
        "tab-named-csv": (folder / "tabs.csv", "\t"),
        "zstd": (folder / "d.csv.zst", None),
        "bzip2": (folder / "d.csv.bz2", None),
        "gzip": (folder / "d.csv.gz", None),
        "feather": (folder / "d.feather", None),
        "arrow": (folder / "d.arrow", None),
        "arrow-stream": (folder / "stream.arrow", None),
        "ndjson": (folder / "d.jsonl", None),
        "parquet": (folder / "d.parquet", None),
    }


FORMATS = ["tsv", "semicolon", "tab-named-csv", "zstd", "bzip2", "gzip", "feather"]
FORMATS += ["arrow", "arrow-stream", "ndjson", "parquet"]


@pytest.mark.parametrize("name", FORMATS)
def test_each_format_through_the_cli_matches_pandas(name, variants, reference):
    path, separator = variants[name]
    given = ["--separator", separator] if separator else []
    code, summary = cli("inspect", path, "-t", "label", *given, "--json")
    assert code == 0, summary
    frame, _ = reference
    assert summary["rows"] == len(frame)
    assert summary["columns"] == frame.shape[1]
    counts = frame["label"].value_counts().sort_index().tolist()
    assert summary["class_counts"] == counts


@pytest.mark.parametrize("name", ["tsv", "semicolon", "bzip2", "feather", "arrow-stream", "ndjson"])
def test_each_format_trains_the_plain_csv_model(name, variants, reference):
    path, separator = variants[name]
    summary = leanfit.train(leanfit.Source(path, separator=separator), "label", options=SGD).summary
    _, plain = reference
    assert summary["rows_train"] == plain["rows_train"]
    assert summary["rows_holdout"] == plain["rows_holdout"]
    for metric in ("roc_auc", "log_loss", "accuracy"):
        assert summary["metrics"][metric] == pytest.approx(plain["metrics"][metric], rel=1e-6)


@pytest.mark.parametrize(("name", "what"), [("semicolon", "semicolon"), ("tab-named-csv", "tab")])
def test_a_csv_separated_otherwise_is_named_with_the_option(name, what, variants):
    code, output = cli("inspect", variants[name][0], "-t", "label")
    assert code == 1
    (line,) = output.strip().splitlines()
    assert line.startswith("Error: ") and f"looks {what}-separated" in line
    assert "--separator" in line and "line 1" in line


def test_bad_rows_of_a_tsv_are_found_with_its_separator(variants, tmp_path):
    lines = variants["tsv"][0].read_text().splitlines(keepends=True)
    fields = lines[10].split("\t")
    fields[1] = "oops"  # text in the number column 'balance'
    lines[10] = "\t".join(fields)
    lines[20] = "\t".join(lines[20].split("\t")[:5]) + "\n"  # a ragged row
    bad = tmp_path / "bad.tsv"
    bad.write_text("".join(lines))
    quarantine = tmp_path / "q.csv"
    code, summary = cli(
        "inspect", bad, "-t", "label", "--bad-rows", "quarantine", "--quarantine", quarantine,
        "--json",
    )  # fmt: skip
    assert code == 0, summary
    assert summary["rows_bad"] == 2 and summary["rows"] == len(lines) - 1
    written = pd.read_csv(quarantine, usecols=["line", "reason"])
    assert written["line"].tolist() == [11, 21]
    assert "'balance'" in written["reason"][0] and "expected 31 fields" in written["reason"][1]


def test_a_feather_file_named_csv_is_called_feather(variants, tmp_path):
    named = tmp_path / "really.csv"
    shutil.copy(variants["feather"][0], named)
    code, output = cli("inspect", named, "-t", "label")
    assert code == 1
    (line,) = output.strip().splitlines()
    assert "Arrow IPC (Feather)" in line and ".feather" in line and "iconv" not in line


def test_a_truncated_bzip2_file_is_one_line(variants, tmp_path):
    cut = tmp_path / "cut.csv.bz2"
    cut.write_bytes(variants["bzip2"][0].read_bytes()[:20_000])
    code, output = cli("inspect", cut, "-t", "label")
    assert code == 1
    (line,) = output.strip().splitlines()
    assert line.startswith(f"Error: {cut}: the compressed data ends early")


def test_globs_quoted_and_shell_expanded(folder, tmp_path):
    shutil.copy(folder / "plain.csv", tmp_path / "a.csv")
    shutil.copy(folder / "plain.csv", tmp_path / "b.csv")
    code, quoted = cli("inspect", tmp_path / "*.csv", "-t", "label", "--json")
    assert code == 0, quoted
    code, expanded = cli("inspect", tmp_path / "a.csv", tmp_path / "b.csv", "-t", "label", "--json")
    assert code == 0, expanded
    lines = (folder / "plain.csv").read_bytes().count(b"\n") - 1
    assert quoted["rows"] == expanded["rows"] == 2 * lines
    assert quoted["input"] == expanded["input"] == [str(tmp_path / n) for n in ("a.csv", "b.csv")]


def test_a_missing_input_is_one_line_and_exit_1(tmp_path):
    code, output = cli("inspect", tmp_path / "nope.csv", "-t", "label")
    assert code == 1
    (line,) = output.strip().splitlines()
    assert line.startswith("Error: ") and "nope.csv" in line and "no such file" in line


def test_hive_partitions_are_columns_features_and_split_keys(folder, tmp_path):
    frame = pl.read_csv(folder / "plain.csv").with_row_index("i")
    frame = frame.with_columns(
        year=pl.when(pl.col("i") < ROWS // 2).then(2024).otherwise(2025),
        month=(pl.col("i") % 12 + 1),
    ).sort("year", pl.col("month").cast(pl.String), "i")  # the folders' order: month=10 < 2
    for (year, month), part in frame.group_by("year", "month", maintain_order=True):
        where = tmp_path / "hive" / f"year={year}" / f"month={month}"
        where.mkdir(parents=True)
        part.drop("i", "year", "month").write_parquet(where / "part.parquet")
    flat = tmp_path / "flat.csv"  # the reference: the same rows, partition keys as columns
    frame.drop("i").select(pl.exclude("year", "month"), "year", "month").write_csv(flat)

    code, summary = cli("inspect", tmp_path / "hive", "-t", "label", "--json")
    assert code == 0, summary
    assert summary["rows"] == ROWS and summary["columns"] == frame.width - 1
    bundle = tmp_path / "hive.leanfit"
    code, trained = cli(
        "train", tmp_path / "hive", "-t", "label", "--split-by", "month", "--epochs", "1",
        "--out", bundle, "--json",
    )  # fmt: skip
    assert code == 0, trained
    opts = leanfit.TrainOptions(model="sgd", epochs=1, split_by="month")
    expected = leanfit.train(flat, "label", options=opts).summary
    assert trained["rows_holdout"] == expected["rows_holdout"] > 0
    assert trained["metrics"]["roc_auc"] == pytest.approx(expected["metrics"]["roc_auc"])
    model = leanfit.load(bundle)
    assert {"year", "month"} <= set(model.encoder.input_columns)


@pytest.fixture
def memory_files(folder):
    """The plain CSV and a Parquet copy in fsspec's in-memory filesystem."""
    fs = fsspec.filesystem("memory")
    fs.pipe("/leanfit-test/d.csv", (folder / "plain.csv").read_bytes())
    with fs.open("/leanfit-test/p/d.parquet", "wb") as f:
        pl.read_csv(folder / "plain.csv").write_parquet(f)
    yield "memory://leanfit-test"
    fs.rm("/leanfit-test", recursive=True)


def test_memory_urls_on_the_local_engine(memory_files, reference):
    frame, plain = reference
    for url in (f"{memory_files}/d.csv", f"{memory_files}/p", f"{memory_files}/*.csv"):
        assert leanfit.inspect(url, target="label").rows == len(frame)
    summary = leanfit.train(f"{memory_files}/d.csv", "label", options=SGD).summary
    (url,) = summary["input"]  # as fsspec spells it: memory:///leanfit-test/d.csv
    assert url.startswith("memory://") and url.endswith("/leanfit-test/d.csv")
    assert summary["metrics"]["roc_auc"] == pytest.approx(plain["metrics"]["roc_auc"], rel=1e-6)


def in_memory(frame: pl.DataFrame) -> dict:
    """The data as each in-memory or lazy input kind (fresh: a reader reads once)."""
    table = frame.to_arrow()
    return {
        "polars": frame,
        "lazy": frame.lazy(),
        "pandas": frame.to_pandas(),
        "table": table,
        "dataset": ds.dataset(table),
        "reader": pa.RecordBatchReader.from_batches(table.schema, table.to_batches(700)),
        "iterable": (frame.slice(i, 700) for i in range(0, frame.height, 700)),
    }


KINDS = ["polars", "lazy", "pandas", "table", "dataset", "reader", "iterable"]


@pytest.fixture(scope="module")
def typed_frame(variants) -> pl.DataFrame:
    return pl.read_parquet(variants["parquet"][0])


@pytest.fixture(scope="module")
def parquet_model(variants, tmp_path_factory):
    """The model trained on the Parquet file: the reference of the in-memory inputs."""
    out = tmp_path_factory.mktemp("model") / "p.leanfit"
    summary = leanfit.train(variants["parquet"][0], "label", options=SGD, out=out).summary
    return leanfit.load(out), summary


@pytest.mark.parametrize("kind", KINDS)
def test_in_memory_inputs_train_like_the_file(kind, typed_frame, parquet_model):
    data = in_memory(typed_frame)[kind]
    summary = leanfit.train(data, "label", options=SGD).summary
    _, expected = parquet_model
    assert summary["rows_train"] + summary["rows_holdout"] == typed_frame.height
    assert summary["metrics"]["roc_auc"] == pytest.approx(expected["metrics"]["roc_auc"])
    assert summary["input"][0].startswith("<")


@pytest.mark.parametrize("kind", [*KINDS, "numpy"])
def test_predict_proba_of_every_input_kind(kind, typed_frame, parquet_model, variants):
    model, _ = parquet_model
    expected = model.predict_proba(variants["parquet"][0])
    if kind == "numpy":  # the training columns in order, without the target
        data = typed_frame.drop("label").to_numpy()
        assert data.dtype == object  # text, dates and numbers side by side
    else:
        data = in_memory(typed_frame)[kind]
    np.testing.assert_allclose(model.predict_proba(data), expected, rtol=1e-6)


def test_evaluate_and_predict_take_frames(typed_frame, variants, tmp_path):
    bundle = tmp_path / "m.leanfit"
    leanfit.train(typed_frame.lazy(), "label", options=SGD, out=bundle)
    evaluated = leanfit.evaluate(bundle, typed_frame.to_pandas())
    assert evaluated["input"] == ["<pandas DataFrame>"]
    assert evaluated["metrics"] == leanfit.evaluate(bundle, variants["parquet"][0])["metrics"]
    out = tmp_path / "p.parquet"
    predicted = leanfit.predict(bundle, ds.dataset(typed_frame.to_arrow()), out, proba=True)
    assert predicted["rows_predicted"] == typed_frame.height
    expected = leanfit.load(bundle).predict_proba(variants["parquet"][0])[:, 1]
    np.testing.assert_allclose(pd.read_parquet(out)["proba_1"], expected, rtol=1e-6)


def test_typed_bad_rows_are_the_rows_holding_inf(typed_frame, tmp_path):
    rows = pl.int_range(pl.len())
    frame = typed_frame.with_columns(
        balance=pl.when(rows.is_in([5, 900])).then(float("inf")).otherwise(pl.col("balance"))
    )
    frame.write_parquet(tmp_path / "inf.parquet")
    code, output = cli("inspect", tmp_path / "inf.parquet", "-t", "label")
    assert code == 1 and "inf.parquet, row 6, column 'balance'" in output
    quarantine = tmp_path / "q.csv"
    code, summary = cli(
        "train", tmp_path / "inf.parquet", "-t", "label", "--epochs", "1", "--bad-rows",
        "quarantine", "--quarantine", quarantine, "--out", tmp_path / "m.leanfit", "--json",
    )  # fmt: skip
    assert code == 0, summary
    assert summary["rows_bad"] == 2 and summary["rows"] == typed_frame.height
    kept = frame.filter(~rows.is_in([5, 900]))
    expected = leanfit.train(kept, "label", options=SGD).summary
    assert summary["metrics"]["roc_auc"] == pytest.approx(expected["metrics"]["roc_auc"])
    written = pd.read_csv(quarantine)
    assert written["line"].tolist() == [6, 901]
    assert json.loads(written["row"][0])["customer_id"] == frame["customer_id"][5]


READERS = {
    "p.csv": pd.read_csv,
    "p.csv.gz": pd.read_csv,
    "p.parquet": pd.read_parquet,
    "p.arrow": pd.read_feather,
    "p.feather": lambda p: pl.read_ipc(p).to_pandas(),
    "p.jsonl": lambda p: pd.read_json(p, lines=True),
}


def test_predictions_are_written_in_the_format_their_name_says(folder, tmp_path):
    bundle = tmp_path / "m.leanfit"
    leanfit.train(folder / "plain.csv", "label", options=SGD, out=bundle)
    expected = leanfit.load(bundle).predict_proba(folder / "plain.csv")[:, 1]
    for name, read in READERS.items():
        out = tmp_path / name
        code, summary = cli(
            "predict", bundle, folder / "plain.csv", "--out", out, "--proba",
            "--keep", "customer_id", "--json",
        )  # fmt: skip
        assert code == 0, summary
        back = read(out)
        assert list(back.columns) == ["customer_id", "prediction", "proba_0", "proba_1"], name
        np.testing.assert_allclose(back["proba_1"], expected, rtol=1e-6, err_msg=name)
    assert pl.read_ipc(tmp_path / "p.arrow").height == len(expected)
    code, output = cli("predict", bundle, folder / "plain.csv", "--out", tmp_path / "p.txt")
    assert code == 1
    (line,) = output.strip().splitlines()
    assert "p.txt" in line and ".jsonl" in line and ".parquet" in line
    assert not (tmp_path / "p.txt").exists()


# distributed's shutdown can leave a socket for the garbage collector (as in test_dask.py)
@pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
@pytest.mark.filterwarnings("ignore:unclosed event loop:ResourceWarning")
def test_memory_urls_on_the_dask_engine(memory_files, folder, reference):
    """A threads-only LocalCluster (its workers share this process's memory filesystem):
    the URL trains the model the same file trains on the Dask engine."""
    distributed = pytest.importorskip("distributed")
    from leanfit.engines.dask import train as dask_train

    _, plain = reference
    with (
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=False,
            dashboard_address=":0",  # any free port: 8787 may be another run's
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        url = dask_train(f"{memory_files}/d.csv", "label", options=SGD, client=client)
        local = dask_train(folder / "plain.csv", "label", options=SGD, client=client)
    assert url["rows_train"] == local["rows_train"] == plain["rows_train"]
    assert url["input"][0].endswith("/leanfit-test/d.csv")
    assert url["metrics"] == local["metrics"]


def test_nan_as_python_and_r_spell_it_is_a_missing_number(tmp_path):
    """Python's csv module writes float('nan') as ``nan``; Polars infers such a column
    as text. It is a float column with those values missing, as pandas reads it, on
    both engines, and every later stage reads it so."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=400).round(4)
    y = (x + rng.normal(scale=0.5, size=400) > 0).astype(int)
    spelled = np.where(np.arange(400) % 5 == 0, np.where(np.arange(400) % 2 == 0, "nan", "NaN"), x)
    path = tmp_path / "spelled.csv"
    pd.DataFrame({"y": y, "x": spelled, "z": rng.choice(list("abc"), 400)}).to_csv(
        path, index=False
    )
    reference = pd.read_csv(path)
    assert reference["x"].dtype == np.float64
    for engine in (None, "dask"):
        schema = leanfit.inspect(path, target="y", engine=engine)
        x_column = schema.column("x")
        assert (x_column.kind, x_column.nulls) == ("float", reference["x"].isna().sum())
    model = leanfit.train(path, target="y", model="logistic", out=tmp_path / "m.leanfit")
    assert model.summary["metrics"]["roc_auc"] > 0.8  # x, the one informative column, is learned
    out = tmp_path / "p.csv"
    assert leanfit.predict(tmp_path / "m.leanfit", path, out)["rows"] == len(reference)


def test_a_pandas_column_of_mixed_types_is_named(tmp_path):
    frame = pd.DataFrame({"b": np.arange(6.0), "a": [1, "x", 2, 3, "y", 4], "y": [0, 1] * 3})
    with pytest.raises(leanfit.InputError, match=r"column 'a' holds values of more than one"):
        leanfit.inspect(frame, target="y")
    with pytest.raises(leanfit.InputError, match=r"column 'a' holds values of more than one"):
        leanfit.StreamingClassifier().fit(frame.drop(columns="y"), frame["y"])


def test_the_index_pandas_wrote_into_parquet_is_not_data(tmp_path):
    """Filtered rows keep their index; pandas writes it as __index_level_0__ and reads it
    back as the index: not a column, not a feature."""
    rng = np.random.default_rng(8)
    frame = pd.DataFrame({"x": rng.normal(size=300), "label": rng.integers(0, 2, 300)})
    frame[frame.x > -1].to_parquet(tmp_path / "filtered.parquet")
    schema = leanfit.inspect(tmp_path / "filtered.parquet", target="label")
    assert [c.name for c in schema.columns] == list(pd.read_parquet(tmp_path / "filtered.parquet"))
