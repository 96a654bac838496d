"""leanfit: train, evaluate and apply classifiers on tabular data larger than memory.

The public API mirrors the command line; heavy libraries load on first use.
"""

from __future__ import annotations

from leanfit.errors import (
    BundleError,
    ConfigError,
    InputError,
    LeanfitError,
    MemoryBudgetExceeded,
    SchemaMismatch,
)
from leanfit.predict import Model, evaluate, load, predict
from leanfit.schema import Column, Schema, inspect
from leanfit.shrink import shrink
from leanfit.synth import generate_batches, write_data
from leanfit.train import TrainOptions, train

__all__ = [
    "BundleError",
    "Column",
    "ConfigError",
    "InputError",
    "LeanfitError",
    "MemoryBudgetExceeded",
    "Model",
    "Schema",
    "SchemaMismatch",
    "TrainOptions",
    "evaluate",
    "generate_batches",
    "inspect",
    "load",
    "predict",
    "shrink",
    "train",
    "write_data",
]
