from __future__ import annotations

import pandas as pd
import pytest

from leanfit.errors import ConfigError
from leanfit.synth import write_data


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    write_data(a, rows=150_000, seed=5)
    write_data(b, rows=150_000, seed=5)
    write_data(c, rows=150_000, seed=6)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_columns_and_label_shape(small_csv):
    df = pd.read_csv(small_csv)
    assert len(df) == 20_000
    assert df["customer_id"].is_unique
    floats = df.select_dtypes("float").columns
    assert len(floats) >= 12
    assert df[floats].isna().mean().max() > 0.01
    assert df["plan"].nunique() == 5
    assert 50 <= df["region"].nunique() <= 100
    assert df["product"].nunique() > 2_000
    assert 0.25 < df["label"].mean() < 0.35


def test_positive_rate_and_classes(tmp_path):
    path = tmp_path / "m.parquet"
    summary = write_data(path, rows=30_000, seed=1, classes=4)
    df = pd.read_parquet(path)
    assert summary["rows"] == len(df) == 30_000
    assert sorted(df["label"].unique()) == [0, 1, 2, 3]
    write_data(tmp_path / "p.csv", rows=30_000, seed=1, positive_rate=0.1)
    assert abs(pd.read_csv(tmp_path / "p.csv")["label"].mean() - 0.1) < 0.02


def test_gzip_output_reads_back(tmp_path):
    path = tmp_path / "g.csv.gz"
    write_data(path, rows=1_000, seed=2)
    assert len(pd.read_csv(path)) == 1_000


def test_bad_arguments_raise_config_error(tmp_path):
    with pytest.raises(ConfigError, match="positive-rate"):
        write_data(tmp_path / "x.csv", rows=10, positive_rate=1.5)
    assert not list(tmp_path.iterdir())
