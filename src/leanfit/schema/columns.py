"""The Schema the inspect pass writes, and its JSON: ``schema.json``.

schema.json keys (version 1):

``version``, ``sources`` (files read), ``rows``, ``target`` (or null),
``classes`` and ``class_counts`` (target levels in sorted order), ``warnings``,
and ``columns``: one object per column with ``name``, ``kind`` (integer, float,
boolean, categorical, high_cardinality, datetime, constant, id, target),
``feature`` (false for id, constant and target), ``read_as`` (the type the parser
reads), ``storage`` (the chosen type: int8..int64, uint8..uint64, float32,
float64, bool, date32, timestamp[us], dictionary<uint8|uint16|uint32>, string),
``count`` (non-null values), ``nulls``, ``min``, ``max``, ``mean``, ``std``
(population), ``distinct`` and ``distinct_exact`` (exact for categoricals,
a HyperLogLog estimate otherwise), ``categories`` and ``category_counts`` (by
descending frequency; every level when at most ``CATEGORY_CAP``), ``decimals``
(float32: every value is k / 10**decimals with |k| < 10**6, so
``round(x32 * 10**d) / 10**d`` gives back the parsed float64 exactly),
``mean_bytes`` (strings), ``note`` (e.g. where a column was widened).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import polars as pl

from leanfit.errors import InputError
from leanfit.io.outputs import atomic_path

SCHEMA_VERSION = 1


@dataclass
class Column:
    """What the inspect pass learned about one column."""

    name: str
    kind: str
    storage: str
    read_as: str
    count: int
    nulls: int
    feature: bool = True
    min: float | int | str | None = None
    max: float | int | str | None = None
    mean: float | None = None
    std: float | None = None
    distinct: int | None = None
    distinct_exact: bool = False
    categories: list | None = None
    category_counts: list[int] | None = None
    decimals: int | None = None
    mean_bytes: float | None = None
    note: str | None = None


@dataclass
class Schema:
    """The single source of truth for every stage after inspect."""

    sources: list[str]
    rows: int
    columns: list[Column]
    target: str | None = None
    classes: list = field(default_factory=list)
    class_counts: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    version: int = SCHEMA_VERSION

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise InputError(f"column '{name}' is not in the schema; columns: {self.names()}.")

    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def features(self) -> list[Column]:
        return [c for c in self.columns if c.feature]

    def read_overrides(self) -> dict[str, pl.DataType]:
        """Parser types for the columns the inspect pass had to widen."""
        return {c.name: pl.String for c in self.columns if c.read_as == "String"}

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(asdict(self), indent=1, default=_json_default)
        if path is not None:
            with atomic_path(path) as tmp:
                tmp.write_text(text)
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Schema:
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            path = Path(text_or_path)
            if not path.exists():
                raise InputError(f"{path}: no such schema file. Run `leanfit inspect` to make one.")
            text = path.read_text()
        raw = json.loads(text)
        if raw.get("version") != SCHEMA_VERSION:
            raise InputError(f"schema version {raw.get('version')} is not {SCHEMA_VERSION}.")
        names = {f.name for f in fields(Column)}
        raw["columns"] = [
            Column(**{k: v for k, v in c.items() if k in names}) for c in raw["columns"]
        ]
        return cls(**raw)


def _json_default(value):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in schema.json")
