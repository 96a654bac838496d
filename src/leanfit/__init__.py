"""leanfit: train, evaluate and apply classifiers on tabular data larger than memory.

The public API mirrors the command line: every command is a function
(:mod:`leanfit.api`) taking the command's options as keywords. Heavy libraries (pandas, pyarrow,
scikit-learn) load on first use, so ``inspect`` pays only for Polars and NumPy.
"""

from __future__ import annotations

import importlib

from leanfit import _env  # noqa: F401  (first: sets Polars' CSV read chunk)
from leanfit.api import evaluate, export, inspect, predict, shrink, train, write_data
from leanfit.engines.local.update import update
from leanfit.errors import (
    BundleError,
    ConfigError,
    InputError,
    LeanfitError,
    MemoryBudgetExceeded,
    SchemaMismatch,
)
from leanfit.io.formats import Source
from leanfit.model import Model, load
from leanfit.options import BoostOptions, TrainOptions, UpdateOptions
from leanfit.schema import Column, Schema

# Functions named like their module are imported above (a submodule import would
# otherwise shadow them); the generator, which needs pyarrow, loads on first use.
_LAZY = {
    "generate_batches": "leanfit.synth",
    "StreamingClassifier": "leanfit.estimator",
}

__all__ = [
    "BoostOptions",
    "BundleError",
    "Column",
    "ConfigError",
    "InputError",
    "LeanfitError",
    "MemoryBudgetExceeded",
    "Model",
    "Schema",
    "SchemaMismatch",
    "Source",
    "StreamingClassifier",
    "TrainOptions",
    "UpdateOptions",
    "evaluate",
    "export",
    "generate_batches",
    "inspect",
    "load",
    "predict",
    "shrink",
    "train",
    "update",
    "write_data",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'leanfit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
