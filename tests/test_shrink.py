"""shrink: values round-trip exactly through the chosen storage types."""

from __future__ import annotations

import string

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leanfit import shrink
from leanfit.schema import inspect


def _restore(series: pd.Series, decimals: int | None) -> pd.Series:
    """Undo float32 storage: round back to the decimals the schema recorded."""
    if decimals is None or series.dtype != np.float32:
        return series
    return np.round(series.astype(np.float64) * 10.0**decimals) / 10.0**decimals


def _assert_round_trip(tmp_path, frame: pd.DataFrame, suffix: str) -> None:
    src = tmp_path / f"in{suffix}"
    if suffix == ".csv":
        frame.to_csv(src, index=False)
        reference = pd.read_csv(src, keep_default_na=False, na_values=[""])
    else:
        frame.to_parquet(src, index=False)
        reference = pd.read_parquet(src)
    schema = inspect(src)
    shrink(src, tmp_path / "out.parquet", schema, force=True)
    back = pq.read_table(tmp_path / "out.parquet").to_pandas()
    assert len(back) == len(reference)
    for col in schema.columns:
        got, want = _restore(back[col.name], col.decimals), reference[col.name]
        if col.storage.startswith("dictionary") or col.storage == "string":
            got, want = got.astype(object), want.astype(object)
            assert [None if pd.isna(v) else v for v in got] == [
                None if pd.isna(v) else str(v) for v in want
            ], col.name
        else:
            np.testing.assert_array_equal(
                got.astype("float64").to_numpy(), want.astype("float64").to_numpy(), col.name
            )


floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
texts = st.text(alphabet=string.ascii_letters + 'é中🙂 ,"', min_size=1, max_size=8)


@st.composite
def frames(draw):
    n = draw(st.integers(min_value=1, max_value=40))
    cols = {
        "i": draw(
            st.lists(
                ints | st.sampled_from([0, 127, -128, 255, 256, 65535, -(2**31)]),
                min_size=n,
                max_size=n,
            )
        ),
        "f": draw(
            st.lists(
                floats | st.sampled_from([1e300, 1e-300, 0.1, -0.0, 5e-324]), min_size=n, max_size=n
            )
        ),
        "d": draw(
            st.lists(st.integers(-99_999, 99_999).map(lambda k: k / 100), min_size=n, max_size=n)
        ),
        "s": draw(st.lists(texts | st.just(""), min_size=n, max_size=n)),
    }
    frame = pd.DataFrame(cols)
    frame["d"] = frame["d"].mask(np.arange(n) % 3 == 1)
    return frame


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frame=frames())
def test_parquet_round_trip_is_exact(tmp_path, frame):
    frame["s"] = frame["s"].replace("", None)
    _assert_round_trip(tmp_path, frame, ".parquet")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frame=frames())
def test_csv_round_trip_is_exact(tmp_path, frame):
    _assert_round_trip(tmp_path, frame, ".csv")


def test_generated_file_shrinks_and_round_trips(small_csv, tmp_path):
    schema = inspect(small_csv, target="label")
    report = shrink(small_csv, tmp_path / "s.parquet", schema)
    assert report["output_bytes"] < report["input_bytes"] / 2
    assert report["memory_bytes_chosen"] < 0.35 * report["memory_bytes_pandas_default"]
    back = pq.read_table(tmp_path / "s.parquet").to_pandas()
    want = pd.read_csv(small_csv)
    for col in schema.columns:
        if col.kind in ("float", "integer", "id", "target"):
            got = _restore(back[col.name], col.decimals).astype("float64")
            np.testing.assert_array_equal(got.to_numpy(), want[col.name].to_numpy(), col.name)
    assert (back["plan"].astype(str) == want["plan"]).all()


def test_the_shrunk_file_trains_like_the_csv(small_csv, tmp_path):
    """shrink's Parquet holds dictionary columns: inspect and train read them as text,
    so the schema and the model are those of the CSV."""
    from leanfit import TrainOptions, load, predict
    from leanfit.engines.local.train import train

    schema = inspect(small_csv, target="label")
    shrink(small_csv, tmp_path / "s.parquet", schema)
    again = inspect(tmp_path / "s.parquet", target="label")
    for a, b in zip(schema.columns, again.columns, strict=True):
        assert (a.name, a.kind, a.categories) == (b.name, b.kind, b.categories), a.name
    opts = TrainOptions(batch_rows=4_000)
    from_csv = train(small_csv, schema=schema, out=tmp_path / "c.leanfit", options=opts)
    from_parquet = train(
        tmp_path / "s.parquet", schema=schema, out=tmp_path / "p.leanfit", options=opts
    )
    assert from_parquet["metrics"] == from_csv["metrics"]
    predict(tmp_path / "p.leanfit", tmp_path / "s.parquet", tmp_path / "out.csv")
    assert len(pd.read_csv(tmp_path / "out.csv")) == schema.rows
    assert load(tmp_path / "c.leanfit").predict(tmp_path / "s.parquet").shape == (schema.rows,)


def test_zoned_and_nanosecond_timestamps_and_decimals_round_trip(tmp_path):
    """pandas reads back what it wrote: the time zone, the nanoseconds, the decimals."""
    import decimal

    import pyarrow as pa

    rng = np.random.default_rng(4)
    start = pd.Timestamp("2020-01-01 00:00:00.000000001")
    table = pa.table(
        {
            "paris": pa.array(pd.date_range("2020-01-01", periods=40, freq="h", tz="Europe/Paris")),
            "ns": pa.array(pd.Series(start + pd.to_timedelta(np.arange(40), unit="ns"))),
            "price": pa.array(
                [decimal.Decimal(f"{v:.2f}") for v in rng.uniform(0, 1e6, 40)], pa.decimal128(10, 2)
            ),
            "y": pa.array(rng.integers(0, 2, 40)),
        }
    )
    pq.write_table(table, tmp_path / "in.parquet")
    shrink(tmp_path / "in.parquet", tmp_path / "out.parquet")
    before, after = (
        pd.read_parquet(tmp_path / "in.parquet"),
        pd.read_parquet(tmp_path / "out.parquet"),
    )
    assert after["paris"].equals(before["paris"]) and str(after["paris"].dt.tz) == "Europe/Paris"
    assert after["ns"].equals(before["ns"]) and after["ns"].nunique() == 40
    assert (after["price"].round(2) == before["price"].astype(float)).all()
    inspect(tmp_path / "in.parquet", target="y").to_json(tmp_path / "schema.json")


def test_durations_times_and_wide_decimals_are_refused_by_name(tmp_path):
    import decimal

    import pyarrow as pa
    import pytest

    from leanfit.errors import InputError

    columns = {
        "wait": pa.array(pd.to_timedelta(np.arange(10), unit="s")),
        "at": pa.array([pd.Timestamp("2020-01-01 10:00").time()] * 10),
        "big": pa.array([decimal.Decimal("12345678901234567.891")] * 10, pa.decimal128(38, 3)),
    }
    for name, values in columns.items():
        path = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table({name: values, "y": pa.array(np.arange(10) % 2)}), path)
        with pytest.raises(InputError, match=rf"column '{name}' holds .* cannot keep exactly"):
            shrink(path, tmp_path / f"{name}.out.parquet")
        assert not (tmp_path / f"{name}.out.parquet").exists()
