"""Imported by a Dask worker as it starts (``dask worker --preload
leanfit.engines.dask.preload``; the LocalCluster leanfit starts does it itself):
the modules leanfit's tasks run, imported once per worker, before any task, rather
than by the first task of each kind (scikit-learn alone takes a CPU second, paid by
every worker at once and counted in the first step that needs it)."""

from __future__ import annotations

import importlib

MODULES = (
    "leanfit.engines.dask.inspect",
    "leanfit.engines.dask.train",
    "leanfit.engines.dask.apply",
    "leanfit.models.logistic",
    "leanfit.model",
    "sklearn.linear_model",
    "sklearn.naive_bayes",
    "pyarrow.parquet",
)


def dask_setup(worker=None) -> None:
    """Import :data:`MODULES` (Dask calls this when the worker starts)."""
    for name in MODULES:
        importlib.import_module(name)
