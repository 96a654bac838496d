"""The inspect pass on this machine: the whole input as one piece.

One streaming Polars query computes every column's statistics while parsing
(:func:`leanfit.schema.statistics.piece_stats`); the rules then choose the smallest
storage type that holds every value exactly. A value late in a file that does not
fit the type inferred from the first rows (``3.5`` or ``abc`` in an integer column)
re-reads that column as text, and the column is widened to float or string with the
line of the first such value.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from leanfit.costs import parser_bytes
from leanfit.errors import ColumnTypeError, InputError, MemoryBudgetExceeded
from leanfit.io.diagnose import refuse_short_rows
from leanfit.io.guard import Guard
from leanfit.io.readers import csv_width
from leanfit.io.scan import INSPECT_CHUNK, READ_CHUNK, read_sample, scan, set_read_chunk
from leanfit.io.sizes import estimate_rows
from leanfit.io.source import column_names, resolve_paths
from leanfit.io.translate import translated
from leanfit.memory import Monitor
from leanfit.progress import Progress
from leanfit.schema.columns import Schema
from leanfit.schema.rules import read_types
from leanfit.schema.statistics import (
    ROW,
    build_schema,
    infinite_columns,
    last_column_has_nulls,
    make_plan,
    piece_stats,
)


def inspect(
    data, target: str | None = None, *, memory: Monitor | None = None, guard: Guard | None = None
) -> Schema:
    """Run the streaming inspect pass over ``data`` and return its Schema.

    With an active ``guard`` (``--bad-rows skip|quarantine``) bad rows are left out of
    every statistic and recorded in it.

    Memory: Polars' streaming engine holds a few parse buffers per thread plus
    the exact category counts of low-cardinality text columns.
    """
    paths = resolve_paths(data)
    memory = memory or Monitor.unbounded()
    read_chunk = _read_chunk(memory, _width(paths))
    set_read_chunk(read_chunk)  # before the sample: the first read may fix it
    with memory.stage("inspect"):
        return _inspect(paths, target, read_chunk, guard, memory.progress)


def _read_chunk(memory: Monitor, columns: int) -> int:
    """4 MiB reads when the budget allows them (faster), else 1 MiB (leaner); the
    parser's buffers grow with the ``columns`` too."""
    try:
        memory.plan(fixed=parser_bytes(columns, inspect=True))
        return INSPECT_CHUNK
    except MemoryBudgetExceeded:
        memory.plan(fixed=parser_bytes(columns))
        return READ_CHUNK


def _width(paths) -> int:
    """The columns of the input (a CSV header read to its end, however long)."""
    if paths.form.format == "csv" and paths.frame is None:
        return csv_width(paths[0], paths.form)
    return len(column_names(paths))


def _inspect(
    paths: list[Path], target: str | None, read_chunk: int, guard: Guard | None, progress: Progress
) -> Schema:
    widened: list[str] = []
    expected = estimate_rows(paths)
    while True:
        progress.plan(expected)
        sample = read_sample(paths, dict.fromkeys(widened, pl.String), guard)
        plan = make_plan(sample, widened, target, str(paths[0]))
        lf = scan(paths, types=sample.schema, read_chunk=read_chunk, guard=guard)
        try:
            with translated(paths):
                piece = piece_stats(lf, plan, mergeable=False, on_rows=progress.advance)
        except ColumnTypeError as error:
            if error.column in widened:
                raise
            widened.append(error.column)
            continue
        break
    if not (guard and guard.active):
        if piece["stats"]["__rows__"] and last_column_has_nulls([piece], plan):
            refuse_short_rows(paths)
        refuse_infinite(paths, [piece], plan)
    schema = build_schema(paths.shown, [piece], plan)
    if guard is not None and guard.active:
        guard.vouch(paths, read_types(schema))  # its types were chosen from these rows
    return schema


def refuse_infinite(paths: list[Path], pieces: list[dict], plan) -> None:
    """``inf`` in a number column stops the run, naming the first such line (with
    ``--bad-rows skip|quarantine`` its row is left out instead)."""
    for name in infinite_columns(pieces, plan):
        lf = scan(paths, types=plan.types).with_row_index(ROW)
        value = pl.col(name)
        if plan.types[name] == pl.String:  # a widened column
            value = value.str.strip_chars().cast(pl.Float64, strict=False)
        first = lf.filter(value.is_infinite()).select(pl.col(ROW).first()).collect()
        row = int(first.item())
        where = f"row {row + 1}" if paths.form.typed else f"line {row + 2}"
        raise InputError(
            f"{paths[0]}, {where}, column '{name}': the value is not a finite number. "
            "Fix that row, or give --bad-rows skip (or quarantine) to leave such rows out."
        )
