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
from leanfit.schema import Column, Schema, inspect
from leanfit.shrink import shrink
from leanfit.synth import generate_batches, write_data

__all__ = [
    "BundleError",
    "Column",
    "ConfigError",
    "InputError",
    "LeanfitError",
    "MemoryBudgetExceeded",
    "Schema",
    "SchemaMismatch",
    "generate_batches",
    "inspect",
    "shrink",
    "write_data",
]
