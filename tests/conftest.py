from __future__ import annotations

import pytest

from leanfit.synth import write_data


@pytest.fixture(scope="session")
def small_csv(tmp_path_factory):
    """20,000 generated rows as CSV (binary label)."""
    path = tmp_path_factory.mktemp("data") / "small.csv"
    write_data(path, rows=20_000, seed=3)
    return path


@pytest.fixture(scope="session")
def multi_csv(tmp_path_factory):
    """20,000 generated rows as CSV with 3 classes."""
    path = tmp_path_factory.mktemp("data") / "multi.csv"
    write_data(path, rows=20_000, seed=4, classes=3)
    return path
