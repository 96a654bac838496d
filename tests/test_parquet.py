"""Parquet at least as lean as CSV: training from leanfit shrink's output holds no more
memory than from the CSV (the OS's peak RSS of each run), and pandas reads the shrunk
file in about a third of the CSV's default footprint (pandas' own count)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest
from test_memory import FAST_LIMIT, peak_of

from leanfit import inspect, shrink
from leanfit.costs import group_rows, reader_bytes
from leanfit.io.partitions import count_rows, plan_parts, read_part
from leanfit.io.readers import largest_row_group
from leanfit.io.scan import scan
from leanfit.io.source import resolve_paths
from leanfit.synth import write_data


@pytest.fixture(scope="module")
def shrunk(tmp_path_factory):
    """200,000 generated rows as CSV, its schema, and leanfit shrink's Parquet of it."""
    folder = tmp_path_factory.mktemp("parquet")
    csv, out = folder / "d.csv", folder / "d.parquet"
    write_data(csv, rows=200_000, seed=3)
    schema = inspect(csv, target="label")
    shrink(csv, out, schema)
    return csv, schema, out


def test_training_from_the_shrunk_file_is_as_lean_as_from_the_csv(shrunk, tmp_path):
    csv, _, parquet = shrunk
    peaks = {}
    for data in (csv, parquet):
        out = tmp_path / f"{data.suffix[1:]}.leanfit"
        args = ["train", data, "--target", "label", "--out", out, "--memory-limit", FAST_LIMIT]
        code, peaks[data.suffix], err = peak_of(*args, "--quiet")
        assert code == 0, err
    assert peaks[".parquet"] <= 1.10 * peaks[".csv"], peaks


def test_pandas_reads_the_shrunk_demo_file_at_a_third_of_the_csv(shrunk):
    csv, _, parquet = shrunk
    assert _footprint_ratio(csv, parquet) <= 0.35


def test_pandas_keeps_the_chosen_types(tmp_path):
    """Text as categoricals (a high-cardinality column too), dates as dates, nullable
    small integers and booleans at their width; the values are pandas' own of the CSV."""
    csv = tmp_path / "t.csv"
    _mixed_frame(40_000).to_csv(csv, index=False)
    out = tmp_path / "t.parquet"
    shrink(csv, out)
    back, want = pd.read_parquet(out), pd.read_csv(csv)
    assert _footprint_ratio(csv, out) <= 0.35
    for name in ("k5", "k50", "k5000"):
        assert back[name].dtype == "category", name
        assert back[name].astype(str).tolist() == want[name].tolist()
    assert back["day"].dtype == pd.ArrowDtype(__import__("pyarrow").date32())
    assert back["day"].astype(str).tolist() == want["day"].tolist()
    assert str(back["visits"].dtype) == "uint8[pyarrow]"
    assert back["visits"].isna().sum() == want["visits"].isna().sum() > 0
    np.testing.assert_array_equal(
        back["visits"].astype("float64").to_numpy(), want["visits"].to_numpy()
    )
    assert back["flag"].dtype == "bool" and (back["flag"] == want["flag"]).all()


def test_row_groups_are_sized_for_the_reader_and_hold_their_own_levels(shrunk):
    _, schema, parquet = shrunk
    meta = pq.ParquetFile(parquet).metadata
    rows = group_rows(schema)
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert max(sizes) == rows < schema.rows and sum(sizes) == schema.rows
    assert largest_row_group(resolve_paths(parquet)) == rows
    first = pq.ParquetFile(parquet).read_row_group(0, columns=["product"]).column(0).chunk(0)
    assert len(first.dictionary) == len(set(first.to_pylist())) < schema.column("product").distinct


def test_a_foreign_file_is_planned_by_its_largest_row_group(shrunk, tmp_path):
    _, schema, parquet = shrunk
    foreign = tmp_path / "f.parquet"
    pq.write_table(pq.read_table(parquet), foreign, row_group_size=150_000)
    assert largest_row_group(resolve_paths(foreign)) == 150_000
    assert reader_bytes(schema, 150_000) > reader_bytes(schema, group_rows(schema))


def test_naming_a_parquet_input_does_not_import_pyarrow(shrunk):
    code = (
        "import sys; from leanfit.io.source import resolve_paths, column_names\n"
        f"column_names(resolve_paths({str(shrunk[2])!r}))\n"
        "assert 'pyarrow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _footprint_ratio(csv, parquet) -> float:
    default = pd.read_csv(csv).memory_usage(deep=True).sum()
    return pd.read_parquet(parquet).memory_usage(deep=True).sum() / default


def _mixed_frame(n: int) -> pd.DataFrame:
    """Like the issue's file: floats (some missing) of a few decimals, small integers
    (one with gaps), text of 5, 50 and 5,000 levels, a date and a boolean."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {f"x{i}": np.round(rng.normal(50, 10, n), 2) for i in range(12)}
        | {f"n{i}": rng.integers(0, 200, n) for i in range(4)}
    )
    frame["x0"] = frame["x0"].mask(rng.random(n) < 0.05)
    frame["visits"] = pd.Series(rng.integers(0, 15, n)).mask(rng.random(n) < 0.1)
    for levels in (5, 50, 5000):
        frame[f"k{levels}"] = [f"level_{k}" for k in rng.integers(0, levels, n)]
    frame["day"] = (
        pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 3000, n), "D")
    ).strftime("%Y-%m-%d")
    frame["flag"] = rng.random(n) < 0.3
    return frame


def test_dask_partitions_of_a_shrunk_file_read_its_rows_as_the_local_engine(shrunk):
    _, schema, parquet = shrunk
    paths = resolve_paths(parquet)
    parts = plan_parts(paths, block=4 << 20)
    assert len(parts) > 2 and all(p.end is not None for p in parts)
    frames = [read_part(p, None) for p in parts]
    assert [f.height for f in frames] == [count_rows(p, None) for p in parts]
    whole = scan(paths).collect()
    assert pl.concat(frames).equals(whole) and whole.height == schema.rows
    assert whole.schema["product"] == pl.String  # dictionaries read as their text


def test_inspecting_the_shrunk_file_chooses_the_csvs_types(shrunk):
    _, schema, parquet = shrunk
    again = inspect(parquet, target="label")
    assert {c.name: c.storage for c in again.columns} == {c.name: c.storage for c in schema.columns}
