"""leanfit: train, evaluate and apply classifiers on tabular data larger than memory.

The public API mirrors the command line. Names load their module on first use, so
``import leanfit`` (and every command) pays only for the libraries it needs.
"""

from __future__ import annotations

import importlib

from leanfit.errors import (
    BundleError,
    ConfigError,
    InputError,
    LeanfitError,
    MemoryBudgetExceeded,
    SchemaMismatch,
)

_LAZY = {
    "Column": "leanfit.schema",
    "Schema": "leanfit.schema",
    "inspect": "leanfit.schema",
    "shrink": "leanfit.shrink",
    "generate_batches": "leanfit.synth",
    "write_data": "leanfit.synth",
    "TrainOptions": "leanfit.train",
    "train": "leanfit.train",
    "Model": "leanfit.predict",
    "evaluate": "leanfit.predict",
    "load": "leanfit.predict",
    "predict": "leanfit.predict",
}

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


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'leanfit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
