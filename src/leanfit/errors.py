"""The one exception tree of leanfit.

::

    LeanfitError
    ├── InputError (ValueError)            bad or unreadable input data
    │   ├── ColumnTypeError                a value does not fit its column's parser type
    │   └── SchemaMismatch                 data does not match the schema it is used with
    ├── ConfigError (ValueError)           a bad option or parameter value
    ├── BundleError (ValueError)           a model bundle that is corrupt or unsafe
    ├── MemoryBudgetExceeded (MemoryError) a memory limit that cannot be honoured
    └── Interrupted                        SIGINT or SIGTERM, met at a safe point

Every message says who complains, what is wrong, where (file, line, column) and,
when known, what to do about it. Every error pickles (a Dask worker's error reaches
the client as itself). Errors of other libraries (Polars, pyarrow, the OS) become
these in one place: :mod:`leanfit.io.translate`.
"""

from __future__ import annotations


class LeanfitError(Exception):
    """Root of every error leanfit raises on purpose."""

    exit_code = 1

    def __reduce__(self):
        # explicit, so that the built-in bases (MemoryError's own __new__) never decide
        return type(self), self.args, self.__dict__ or None


class InputError(LeanfitError, ValueError):
    """The input data is missing, empty, malformed or inconsistent."""


class ColumnTypeError(InputError):
    """A value late in a file does not fit the type inferred from the first rows."""

    def __init__(self, column: str, value: str, dtype: str):
        super().__init__(f"column '{column}': value {value!r} does not parse as {dtype}.")
        self.column, self.value, self.dtype = column, value, dtype

    def __reduce__(self):
        return type(self), (self.column, self.value, self.dtype)


class SchemaMismatch(InputError):
    """The data does not match the schema or model it is used with."""


class ConfigError(LeanfitError, ValueError):
    """An option or parameter has a value leanfit cannot use."""


class BundleError(LeanfitError, ValueError):
    """A model bundle is corrupt, of an unknown version, or unsafe to load."""


class MemoryBudgetExceeded(LeanfitError, MemoryError):
    """The memory limit is too small for the run, or was exceeded."""

    exit_code = 2


class Interrupted(LeanfitError):
    """The run received SIGINT or SIGTERM; exit code 128 + the signal's number."""

    exit_code = 130

    @classmethod
    def by_signal(cls, signum: int, name: str) -> Interrupted:
        error = cls(f"interrupted ({name}); nothing was written.")
        error.exit_code = 128 + signum
        return error
