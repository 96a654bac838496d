"""Every leanfit error pickles (a Dask worker's error reaches the client as itself), and
foreign errors are translated in one place."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import polars as pl
import pytest

from leanfit import errors
from leanfit.io.translate import translated

SOURCE = Path(__file__).resolve().parents[1] / "src" / "leanfit"


def leanfit_errors() -> list[type]:
    return [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.LeanfitError)
    ]


@pytest.mark.parametrize("cls", leanfit_errors(), ids=lambda c: c.__name__)
def test_every_error_pickles(cls):
    error = cls("age", "abc", "i64") if cls is errors.ColumnTypeError else cls("what went wrong")
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is cls and str(back) == str(error)
    assert vars(back) == vars(error)


def test_a_polars_error_becomes_a_leanfit_error_naming_the_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3,4,5\n")
    line = r"bad.csv, line 3: expected 2 fields"
    with pytest.raises(errors.InputError, match=line), translated([bad]):
        pl.read_csv(bad)
    wrong = "a feature column has the wrong type"
    with pytest.raises(errors.SchemaMismatch, match=wrong), translated(where="a feature column"):
        pl.DataFrame({"x": ["a"]}).select(pl.col("x").cast(pl.Int64))


def test_polars_errors_are_caught_only_in_the_translation_point():
    catching = re.compile(r"except[^:\n]*PolarsError")
    found = [
        str(p.relative_to(SOURCE))
        for p in SOURCE.rglob("*.py")
        if catching.search(p.read_text()) and p.name != "translate.py"
    ]
    assert found in ([], ["io/scan.py"]), found  # scan.py: trying a date parse, not an error
