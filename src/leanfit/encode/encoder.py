"""Streaming preprocessing fitted from the schema's statistics, with no extra pass.

* numbers: mean imputation and standardisation from the schema's mean and std,
  optionally a missing-indicator column; a column stored as float16
  (``--lossy-floats``) is read as float16 holds it, wherever it comes from;
* booleans: 0/1, missing to the mean;
* dates: days since 1970 (standardised), month and weekday;
* categoricals: one-hot over the schema's categories plus one "unknown" slot;
* high-cardinality text too, while the model's coefficients fit its budget
  (``max_slots``); beyond it the most frequent levels keep their own slots and the
  rarer ones share ``hash_width`` hashed slots (a stable CRC32 of the category text,
  fixed at fit time), said in :meth:`Encoder.notes`;
* id, constant and dropped columns: left out (and listed in ``dropped``).

Blocks are float32: dense, or CSR when the one-hot and hashed part is wide
(each categorical contributes one nonzero per row, however wide it is).

>>> from leanfit.schema import Column, Schema
>>> cols = [Column("x", "float", "float32", "Float64", 3, 0, mean=2.0, std=1.0),
...         Column("c", "categorical", "dictionary<uint8>", "String", 3, 0,
...                categories=["a", "b"])]
>>> enc = Encoder.from_schema(Schema(sources=[], rows=3, columns=cols))
>>> enc.feature_names
['x', 'c=a', 'c=b', 'c=<unknown>']
>>> import polars as pl
>>> enc.transform(pl.DataFrame({"x": [1.0, None, 3.0], "c": ["b", "a", "zz"]})).tolist()
[[-1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 1.0]]
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp

from leanfit.encode.onehot import OneHotBlock
from leanfit.encode.sparse import sparse_block, sparse_exprs, sparse_specs
from leanfit.errors import ConfigError, SchemaMismatch
from leanfit.io.translate import translated
from leanfit.schema.columns import Schema
from leanfit.schema.lossy import rounded as float16
from leanfit.schema.rules import CATEGORY_CAP

NUMERIC_KINDS = ("integer", "float")
F32_MAX = float(np.finfo(np.float32).max)
DENSE_MAX_WIDTH_RATIO = 4
DENSE_PART, CODES_PART = "__leanfit_dense", "__leanfit_codes"


@dataclass
class Encoder:
    """Parameters of the streaming encoder; JSON-serialisable, no code."""

    numeric: list[dict] = field(default_factory=list)  # name, mean, std, indicator
    categorical: list[dict] = field(default_factory=list)  # name, levels, slots, width,
    # and where rarer levels share hashed slots: hashed, own (the levels with their own)
    dates: list[dict] = field(default_factory=list)  # name, mean, std
    dropped: list[str] = field(default_factory=list)
    sparse: bool = False
    sparse_numeric: list[dict] = field(default_factory=list)  # name, scale: encode.sparse

    @classmethod
    def from_options(cls, schema: Schema, opts, max_slots: int | None = None) -> Encoder:
        """The encoder of ``schema`` with the encoding options of ``opts`` (TrainOptions),
        at most ``max_slots`` columns wide where levels would be hashed to fit it.

        The mlp hashes every high-cardinality column: each of its steps updates all
        weights (at 4,786 levels, own slots took 1.7x its CPU for no better AUC)."""
        if opts.model == "mlp":
            max_slots = 0
        return cls.from_schema(
            schema,
            drop=opts.drop,
            hash_width=opts.hash_width,
            missing_indicators=opts.missing_indicators,
            max_slots=max_slots,
        )

    @classmethod
    def from_schema(
        cls,
        schema: Schema,
        *,
        drop: tuple[str, ...] = (),
        hash_width: int = 1024,
        missing_indicators: bool = False,
        max_slots: int | None = None,
    ) -> Encoder:
        if hash_width < 1:
            raise ConfigError(f"hash_width must be at least 1. Got {hash_width}.")
        enc = cls()
        unknown = sorted(set(drop) - set(schema.names()))
        if unknown:
            raise ConfigError(f"--drop names columns not in the data: {unknown}.")
        enc.sparse_numeric = sparse_specs(schema, drop)
        as_csr = {s["name"] for s in enc.sparse_numeric}
        used = [c for c in schema.columns if c.feature and c.name not in drop]
        own = _own_slots(used, max_slots, hash_width)
        for col in schema.columns:
            if not col.feature or col.name in drop:
                enc.dropped.append(col.name)
            elif col.name in as_csr:
                continue
            elif col.kind in NUMERIC_KINDS or col.kind == "boolean":
                std = col.std if col.std and np.isfinite(col.std) else 1.0
                indicator = bool(missing_indicators and col.nulls)
                enc.numeric.append(
                    {
                        "name": col.name,
                        "mean": float(col.mean or 0.0),
                        "std": std,
                        "indicator": indicator,
                    }
                    | ({"float16": True} if col.storage == "float16" else {})
                )
            elif col.kind == "datetime":
                enc.dates.append(_date_stats(col))
            elif col.categories is not None:
                enc.categorical.append(_categorical(col.name, col.categories, own, hash_width))
            else:
                enc.categorical.append(
                    {"name": col.name, "levels": [], "slots": [], "width": hash_width + 1}
                )
        wide = enc.n_sparse_width > DENSE_MAX_WIDTH_RATIO * max(enc.n_dense, 1)
        enc.sparse = wide or bool(enc.sparse_numeric)
        return enc

    # ------------------------------------------------------------------ shape

    @property
    def n_dense(self) -> int:
        return sum(1 + n["indicator"] for n in self.numeric) + 3 * len(self.dates)

    @property
    def n_sparse_width(self) -> int:
        return sum(c["width"] for c in self.categorical)

    @property
    def n_features(self) -> int:
        return self.n_dense + self.n_sparse_width + len(self.sparse_numeric)

    @property
    def feature_names(self) -> list[str]:
        names = [n["name"] for n in self.numeric]
        for d in self.dates:
            names += [f"{d['name']}:days", f"{d['name']}:month", f"{d['name']}:weekday"]
        names += [f"{n['name']}=<missing>" for n in self.numeric if n["indicator"]]
        for c in self.categorical:
            own = own_levels(c)
            names += [f"{c['name']}={level}" for level in c["levels"][:own]]
            names += [f"{c['name']}#hash{i}" for i in range(c["width"] - 1 - own)]
            names.append(f"{c['name']}=<unknown>")
        return names + [s["name"] for s in self.sparse_numeric]

    def notes(self) -> list[str]:
        """A sentence for each text column whose levels do not all have their own slot."""
        notes = []
        for c in self.categorical:
            own, levels = own_levels(c), len(c["levels"])
            if not levels:
                notes.append(
                    f"{c['name']}: its levels were not counted (nearly every value of the "
                    f"first rows was distinct, as in an id, or it has more than "
                    f"{CATEGORY_CAP:,}): every value goes to its unknown slot"
                )
            elif own == 0:
                notes.append(
                    f"{c['name']}: its {levels:,} levels share {c['width'] - 1:,} hashed slots "
                    "(mlp: each of its steps updates 64 weights of every slot; other models "
                    "hash only what the memory budget cannot hold)"
                )
            elif own < levels:
                notes.append(
                    f"{c['name']}: the {own:,} most frequent of {levels:,} levels have their own "
                    f"slots, the {levels - own:,} rarer ones share {c['width'] - 1 - own:,} "
                    "hashed slots (the model's coefficients would not fit the memory budget; "
                    "raise --memory-limit for more)"
                )
        return notes

    @property
    def input_columns(self) -> list[str]:
        parts = self.numeric + self.dates + self.categorical + self.sparse_numeric
        return [x["name"] for x in parts]

    # ------------------------------------------------------------------ transform

    def transform(
        self, frame: pl.DataFrame, *, one_hot: bool = False
    ) -> np.ndarray | sp.csr_matrix | OneHotBlock:
        """Encode one frame into a float32 block (dense or CSR), or with ``one_hot`` into
        a :class:`OneHotBlock` when there are categoricals."""
        missing = [name for name in self.input_columns if name not in frame.columns]
        if missing:
            raise SchemaMismatch(f"feature columns {missing} are missing from the data.")
        with translated(where="a feature column"):
            parts = frame.select(self.exprs(frame.schema))
        return self.from_parts(parts, one_hot=one_hot)

    def exprs(self, schema: pl.Schema) -> list[pl.Expr]:
        """The encoded parts of a frame with this schema, as Polars expressions (so a
        streaming query can compute them while it reads): the dense features, float32,
        standardised, missing as 0 (the mean), then the missing-indicator flags, then
        each categorical's level code (its number of levels when unknown).

        Built once per input schema: building them costs more than running them."""
        cache = self.__dict__.setdefault("_exprs", {})
        key = tuple(schema.items())
        if key not in cache:
            values, centre, scale = [], [], []
            for n in self.numeric:
                value = _numeric_expr(schema, n["name"])
                values.append(float16(value) if n.get("float16") else value)
                centre.append(n["mean"])
                scale.append(n["std"])
            for d in self.dates:
                c = _date_expr(schema, d["name"])
                values += [c.cast(pl.Int32), c.dt.month(), c.dt.weekday()]
                centre += [d["mean"], 6.5, 4.0]
                scale += [d["std"], 3.45, 2.0]
            # as float32 (held to its range: 1e308 stays finite), standardised in
            # float64, stored as float32: a value gives the same feature from a CSV
            # (float64) and from shrink's Parquet (float32)
            values = [_as_float32(v) for v in values]
            dense = [
                _within_float32((v - m) / s, nan=0.0).cast(pl.Float32).fill_null(0.0)
                for v, m, s in zip(values, centre, scale, strict=True)
            ]
            flags = [
                (v.is_null() | v.is_nan()).cast(pl.Float32)
                for v, n in zip(values, self.numeric)
                if n["indicator"]
            ]
            codes = [
                pl.col(c["name"])
                .cast(pl.String)
                .cast(self._lookup(c)[0], strict=False)
                .to_physical()
                .fill_null(len(c["levels"]))
                .cast(pl.UInt32)
                for c in self.categorical
            ]
            # as fixed-size arrays: each arrives as one C-ordered (rows, k) numpy block
            parts = [(DENSE_PART, dense + flags), (CODES_PART, codes)]
            cache[key] = [pl.concat_arr(e).alias(name) for name, e in parts if e]
            cache[key] += sparse_exprs(self.sparse_numeric, schema)
        return cache[key]

    def from_parts(
        self, parts: pl.DataFrame, *, one_hot: bool = False
    ) -> np.ndarray | sp.csr_matrix | OneHotBlock:
        """The block of a frame holding the columns of :meth:`exprs` (others ignored);
        CSR, whatever ``one_hot`` asks, with sparse number columns (encode.sparse)."""
        if not self.sparse_numeric:
            return self._block(parts, one_hot=one_hot)
        blocks = [sp.csr_matrix(self._block(parts)), sparse_block(parts, self.sparse_numeric)]
        return sp.hstack(blocks, format="csr", dtype=np.float32)

    def _block(
        self, parts: pl.DataFrame, *, one_hot: bool = False
    ) -> np.ndarray | sp.csr_matrix | OneHotBlock:
        n = parts.height
        if self.n_dense:
            dense = parts.get_column(DENSE_PART).to_numpy()
        else:
            dense = np.zeros((n, 0), dtype=np.float32)
        if not self.categorical:
            return sp.csr_matrix(dense) if self.sparse else dense
        slot_of_code, code_offsets = self._slot_table()
        codes = parts.get_column(CODES_PART).to_numpy()
        slots = slot_of_code[codes + code_offsets]
        block = OneHotBlock(dense, slots, self.n_features)
        return block if one_hot else self.expand(block)

    def _slot_table(self) -> tuple[np.ndarray, np.ndarray]:
        """Every categorical's slot by level code (unknown last), laid end to end as
        column indices of the encoded block, and where each categorical's codes start."""
        if "_slots" not in self.__dict__:
            tables, starts, offset, start = [], [], self.n_dense, 0
            for c in self.categorical:
                table = self._lookup(c)[1] + offset
                tables.append(table)
                starts.append(start)
                offset, start = offset + c["width"], start + len(table)
            self._slots = (np.concatenate(tables).astype(np.int32), np.asarray(starts, np.uint32))
        return self._slots

    def expand(
        self, block: OneHotBlock | np.ndarray | sp.csr_matrix, rows: np.ndarray | None = None
    ) -> np.ndarray | sp.csr_matrix:
        """The plain block (CSR or dense, as ``transform`` gives) of a one-hot block, or
        of its ``rows`` in their order (a selection and a shuffle in one copy)."""
        if not isinstance(block, OneHotBlock):
            return block if rows is None else block[rows]
        return block.tocsr(rows) if self.sparse else block.toarray(rows)

    def plain(self, blocks: Iterator[tuple]) -> Iterator[tuple]:
        """``(X, y, w)`` blocks with each ``X`` expanded (:meth:`expand`)."""
        for X, *rest in blocks:
            yield self.expand(X), *rest

    def _lookup(self, c: dict) -> tuple[pl.Enum, np.ndarray]:
        """The column's levels as an Enum, and slot by level code (unknown last);
        built once per column and reused for every chunk."""
        cache = self.__dict__.setdefault("_lookups", {})
        if c["name"] not in cache:
            slots = np.append(np.asarray(c["slots"], dtype=np.int32), c["width"] - 1)
            cache[c["name"]] = (pl.Enum(pl.Series(c["levels"], dtype=pl.String)), slots)
        return cache[c["name"]]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> Encoder:
        return cls(**raw)


def _numeric_expr(schema: pl.Schema, name: str) -> pl.Expr:
    dtype = schema[name]
    c = pl.col(name)
    if dtype == pl.String:
        c = c.str.strip_chars().cast(pl.Float64)
    elif not (dtype.is_numeric() or dtype == pl.Boolean):
        raise SchemaMismatch(f"column '{name}' holds {dtype} values where numbers were expected.")
    return c.cast(pl.Float64)


def _within_float32(v: pl.Expr, nan: float | None = None) -> pl.Expr:
    """``v`` clipped to float32's range, NaN as ``nan`` if given (one ``when``: Polars'
    ``clip`` and ``fill_nan`` after it cost twice as much)."""
    if nan is None:  # NaN stays: Polars orders it above every number, and its sign is NaN
        return pl.when(v.abs() > F32_MAX).then(v.sign() * F32_MAX).otherwise(v)
    return (
        pl.when(v.is_nan()).then(nan).when(v.abs() > F32_MAX).then(v.sign() * F32_MAX).otherwise(v)
    )


def _as_float32(v: pl.Expr) -> pl.Expr:
    """``v`` (float64) rounded to the float32 it would be stored as, within its range."""
    return _within_float32(v.cast(pl.Float64)).cast(pl.Float32).cast(pl.Float64)


def _date_expr(schema: pl.Schema, name: str) -> pl.Expr:
    dtype = schema[name]
    c = pl.col(name)
    if dtype == pl.String:
        return c.str.strip_chars().str.to_date()
    return c.dt.date() if isinstance(dtype, pl.Datetime) else c.cast(pl.Date)


def own_levels(c: dict) -> int:
    """How many of a categorical's levels (the first ones) have their own slot; the
    others share its hashed slots (an encoder saved before kept 0 in a hashed one)."""
    return c.get("own", 0) if c.get("hashed", not c["levels"]) else len(c["levels"])


def hashed_slot(level: str, own: int, hash_width: int) -> int:
    """The slot of a level past the ``own`` ones: its stable CRC32 among the hashed slots."""
    return own + zlib.crc32(level.encode()) % hash_width


def _own_slots(columns: list, max_slots: int | None, hash_width: int) -> dict[str, int]:
    """Levels with their own slot by text column (the most frequent first): all of them
    when the encoded width fits ``max_slots``; else the same most for every
    high-cardinality column (each keeping ``hash_width`` hashed slots for the rest)
    within what the other columns leave (at most 3 features each; a categorical its
    levels)."""
    counted = [c for c in columns if c.categories is not None]
    counts = {c.name: len(c.categories) for c in counted if c.kind == "high_cardinality"}
    own = {c.name: len(c.categories) for c in counted}
    fixed = sum(own.get(c.name, 2) + 1 for c in columns if c.name not in counts)
    room = (max_slots if max_slots is not None else 2**62) - fixed - len(counts)
    if not counts or sum(counts.values()) <= room:
        return own
    room -= hash_width * len(counts)
    lo, hi = 0, max(counts.values())
    while lo < hi:  # the most levels per column whose slots fit the room
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if sum(min(n, mid) for n in counts.values()) <= room else (lo, mid - 1)
    return own | {name: min(n, lo) for name, n in counts.items()}


def _categorical(name: str, categories: list, own: dict[str, int], hash_width: int) -> dict:
    levels = [str(v) for v in categories]
    n = own[name]
    if n == len(levels):
        return {"name": name, "levels": levels, "slots": list(range(n)), "width": n + 1}
    slots = list(range(n)) + [hashed_slot(level, n, hash_width) for level in levels[n:]]
    width = n + hash_width + 1
    return {
        "name": name,
        "levels": levels,
        "slots": slots,
        "width": width,
        "hashed": True,
        "own": n,
    }


def _date_stats(col) -> dict:
    lo, hi = (np.datetime64(str(v)[:10], "D").astype(np.int64) for v in (col.min, col.max))
    return {"name": col.name, "mean": float(lo + hi) / 2, "std": max(float(hi - lo) / 3.46, 1.0)}
