"""The inspect pass against pandas, computed independently in memory."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pandas as pd
import pytest

from leanfit.errors import InputError
from leanfit.schema import Schema, inspect


def test_statistics_match_pandas(small_csv):
    schema = inspect(small_csv, target="label")
    df = pd.read_csv(small_csv)
    assert schema.rows == len(df)
    for col in schema.columns:
        series = df[col.name]
        assert col.nulls == series.isna().sum(), col.name
        if col.kind in ("float", "integer") and col.name != "label":
            assert col.min == pytest.approx(series.min())
            assert col.max == pytest.approx(series.max())
            assert col.mean == pytest.approx(series.mean(), rel=1e-9)
            assert col.std == pytest.approx(series.std(ddof=0), rel=1e-9)
    region = schema.column("region")
    counts = df["region"].value_counts()
    assert region.distinct == len(counts) and region.distinct_exact
    assert dict(zip(region.categories, region.category_counts)) == counts.to_dict()
    assert schema.classes == [0, 1]
    assert schema.class_counts == df["label"].value_counts().sort_index().tolist()


def test_kinds_and_storage(small_csv):
    schema = inspect(small_csv, target="label")
    kind = {c.name: c.kind for c in schema.columns}
    storage = {c.name: c.storage for c in schema.columns}
    assert kind["customer_id"] == "id" and not schema.column("customer_id").feature
    assert kind["plan"] == "categorical" and storage["plan"] == "dictionary<uint8>"
    assert kind["is_member"] == "boolean" and kind["signup_date"] == "datetime"
    assert storage["age"] == "uint8" and storage["zip_offset"] == "int16"
    assert storage["visits_30d"] == "uint8" and schema.column("visits_30d").nulls > 0
    assert storage["score_a"] == "float32" and storage["sensor"] == "float64"
    assert kind["label"] == "target" and not schema.column("label").feature


def test_storage_holds_every_value(small_csv):
    """Every chosen integer type holds the column's range; float32 gives values back."""
    schema = inspect(small_csv)
    df = pd.read_csv(small_csv)
    for col in schema.columns:
        values = df[col.name].dropna()
        if col.storage in ("uint8", "int8", "uint16", "int16", "uint32", "int32"):
            info = np.iinfo(col.storage)
            assert info.min <= values.min() and values.max() <= info.max
        if col.storage == "float32":
            as32 = values.to_numpy().astype(np.float32).astype(np.float64)
            back = np.round(as32 * 10.0**col.decimals)
            assert np.array_equal(back / 10.0**col.decimals, values.to_numpy()), col.name


def test_schema_json_round_trip(small_csv, tmp_path):
    schema = inspect(small_csv, target="label")
    schema.to_json(tmp_path / "s.json")
    again = Schema.from_json(tmp_path / "s.json")
    assert again == Schema.from_json(schema.to_json())
    assert again.names() == schema.names() and again.class_counts == schema.class_counts


def test_multiclass_counts(multi_csv):
    schema = inspect(multi_csv, target="label")
    assert schema.classes == [0, 1, 2]
    assert sum(schema.class_counts) == 20_000


def test_same_schema_from_gzip_parquet_and_directory(small_csv, tmp_path):
    plain = inspect(small_csv, target="label")
    gz = tmp_path / "d.csv.gz"
    with open(small_csv, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert inspect(gz, target="label").class_counts == plain.class_counts
    parts = tmp_path / "parts"
    parts.mkdir()
    df = pd.read_csv(small_csv)
    df.iloc[:7_000].to_csv(parts / "a.csv", index=False)
    df.iloc[7_000:].to_csv(parts / "b.csv", index=False)
    split = inspect(parts, target="label")
    assert split.rows == plain.rows and split.class_counts == plain.class_counts
    assert split.column("age").mean == pytest.approx(plain.column("age").mean, rel=1e-12)


def test_sorted_labels_warn(tmp_path):
    df = pd.DataFrame({"x": np.arange(40_000), "y": np.repeat([0, 1], 20_000)})
    df.to_csv(tmp_path / "s.csv", index=False)
    assert any("sorted or grouped" in w for w in inspect(tmp_path / "s.csv", target="y").warnings)
    df.sample(frac=1.0, random_state=0).to_csv(tmp_path / "r.csv", index=False)
    assert not inspect(tmp_path / "r.csv", target="y").warnings


def _late_value_file(tmp_path, value: str):
    lines = ["a,b,c"] + [f"{i},{i % 50},x{i % 3}" for i in range(30_000)]
    lines.insert(20_001, f"7,{value},x1")
    path = tmp_path / "late.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_late_float_widens_with_line(tmp_path):
    col = inspect(_late_value_file(tmp_path, "3.5")).column("b")
    assert col.kind == "float" and col.storage == "float64"
    assert "line 20002" in col.note
    assert col.max == 49 and col.min == 0


def test_late_text_widens_to_string_with_line(tmp_path):
    col = inspect(_late_value_file(tmp_path, "abc")).column("b")
    assert col.storage.startswith("dictionary") and "abc" in col.categories
    assert "line 20002" in col.note


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "line 1: the file is empty"),
        (b"a,b\n", "line 2: the file has a header but no data rows"),
        (b"a,b\n1,2\n3,4,5\n6,7\n", "line 3: expected 2 fields, found 3"),
        (b"a,b,c\n1,2,3\n4,5,\n6,7\n8,9,1\n", "line 4: expected 3 fields, found 2"),
        (b"a,b\n1,x\n2,\xff\xfe\n", "line 3: invalid UTF-8"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        inspect(path)
    assert "bad.csv" in str(info.value)


def test_missing_target_and_missing_file(small_csv, tmp_path):
    with pytest.raises(InputError, match="target column 'nope' not found"):
        inspect(small_csv, target="nope")
    with pytest.raises(InputError, match="no such file"):
        inspect(tmp_path / "absent.csv")


def test_a_text_column_of_many_levels_is_counted_and_an_id_is_not(tmp_path):
    """8,000 levels over 60,000 rows: 57% of the first 10,000 rows are distinct. Its
    levels are counted (each gets a coefficient); a column of distinct values is not."""
    rng = np.random.default_rng(2)
    city = rng.integers(0, 8_000, size=60_000)
    frame = pd.DataFrame(
        {
            "city": [f"c{k}" for k in city],
            "user": [f"u{i}" for i in rng.permutation(60_000)],
            "label": rng.integers(0, 2, size=60_000),
        }
    )
    frame.to_csv(tmp_path / "levels.csv", index=False)
    schema = inspect(tmp_path / "levels.csv", target="label")
    counted = schema.column("city")
    assert sorted(counted.categories) == sorted(frame["city"].unique())
    assert counted.distinct == frame["city"].nunique() and counted.distinct_exact
    assert not schema.column("user").categories


def test_thousands_of_dense_number_columns_are_summed_in_numpy_and_match_pandas(tmp_path):
    """Past 2,000 number columns every one is summed by WideStats (a Polars query of
    60,000 columns' statistics held 1.8 GB), dense ones too."""
    rng = np.random.default_rng(9)
    frame = pd.DataFrame(
        rng.integers(0, 5, size=(60, 2_500)), columns=[f"c{i}" for i in range(2_500)]
    )
    frame["c7"] = rng.normal(size=60).round(3)
    frame["label"] = rng.integers(0, 2, 60)
    frame.to_csv(tmp_path / "dense.csv", index=False)
    from leanfit.io.scan import read_sample
    from leanfit.io.source import resolve_paths
    from leanfit.schema.statistics import make_plan

    sample = read_sample(resolve_paths(tmp_path / "dense.csv"))
    plan = make_plan(sample, [], "label", "dense.csv")
    assert len(plan.wide) == 2_500  # every number column, dense or not
    schema = inspect(tmp_path / "dense.csv", target="label")
    for name in ("c0", "c7", "c2499"):
        column, truth = schema.column(name), frame[name]
        assert (column.min, column.max) == (truth.min(), truth.max())
        assert column.mean == pytest.approx(truth.mean())
        assert column.std == pytest.approx(truth.std(ddof=0), rel=1e-9)
        assert column.zeros == (truth == 0).sum() and not column.sparse
