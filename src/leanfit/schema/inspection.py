"""The inspect pass on this machine: the whole input as one piece.

One streaming Polars query computes every column's statistics while parsing
(:func:`leanfit.schema.statistics.piece_stats`); the rules then choose the smallest
storage type that holds every value exactly. A value late in a file that does not
fit the type inferred from the first rows (``3.5`` or ``abc`` in an integer column)
re-reads that column as text, and the column is widened to float or string with the
line of the first such value.

Text levels are counted exactly up to a cap planned from the budget: counting gets
``costs.COUNTING_SHARE`` of the room the limit leaves, shared by the counted columns
that show more than ``NARROW_LEVELS`` levels in the sample; past the cap a column
keeps a summary of its most frequent levels (:mod:`leanfit.schema.counting`).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from leanfit.costs import level_cap, parser_bytes
from leanfit.errors import ColumnTypeError, InputError, MemoryBudgetExceeded
from leanfit.io.diagnose import refuse_short_rows
from leanfit.io.guard import Guard
from leanfit.io.readers import csv_width
from leanfit.io.scan import INSPECT_CHUNK, READ_CHUNK, read_sample, scan, set_read_chunk
from leanfit.io.sizes import estimate_rows
from leanfit.io.source import column_names, resolve_paths
from leanfit.io.translate import translated
from leanfit.memory import Monitor
from leanfit.options import LossyOptions
from leanfit.progress import Progress
from leanfit.schema.columns import Schema
from leanfit.schema.lossy import tolerance
from leanfit.schema.rules import read_types
from leanfit.schema.statistics import (
    ROW,
    build_schema,
    infinite_columns,
    last_column_has_nulls,
    make_plan,
    piece_stats,
)

NARROW_LEVELS = 100  # a counted column with at most these levels in the sample: no share


def inspect(
    data,
    target: str | None = None,
    *,
    memory: Monitor | None = None,
    guard: Guard | None = None,
    lossy: LossyOptions | None = None,
) -> Schema:
    """Run the streaming inspect pass over ``data`` and return its Schema.

    With an active ``guard`` (``--bad-rows skip|quarantine``) bad rows are left out of
    every statistic and recorded in it. With ``lossy`` asking for float16, float columns
    are stored so where their measured error allows (:mod:`leanfit.schema.lossy`).

    Memory: Polars' streaming engine holds a few parse buffers per thread, plus the
    counted levels of text columns (up to the planned cap) and 16 KiB of sketch per
    column: flat in the number of rows.
    """
    paths = resolve_paths(data)
    memory = memory or Monitor.unbounded()
    memory.refuse_mapped(paths)
    read_chunk, fixed = _read_chunk(memory, _width(paths))
    set_read_chunk(read_chunk)  # before the sample: the first read may fix it
    with memory.stage("inspect"):
        room = memory.room(fixed=fixed)
        return _inspect(paths, target, read_chunk, guard, memory.progress, room, tolerance(lossy))


def _read_chunk(memory: Monitor, columns: int) -> tuple[int, int]:
    """4 MiB reads when the budget allows them (faster), else 1 MiB (leaner); and the
    parser's buffers at that size, which grow with the ``columns`` too."""
    try:
        fixed = parser_bytes(columns, inspect=True)
        memory.plan(fixed=fixed)
        return INSPECT_CHUNK, fixed
    except MemoryBudgetExceeded:
        fixed = parser_bytes(columns)
        memory.plan(fixed=fixed)
        return READ_CHUNK, fixed


def plan_level_cap(sample: pl.DataFrame, counted: list[str], room: float) -> int:
    """The levels each counted column may hold exactly, given ``room`` bytes to plan."""
    wide = [
        sample.get_column(n) for n in counted if sample.get_column(n).n_unique() > NARROW_LEVELS
    ]
    value_bytes = max((c.cast(pl.String).str.len_bytes().mean() or 0.0 for c in wide), default=0.0)
    return level_cap(room, len(wide), value_bytes)


def _width(paths) -> int:
    """The columns of the input (a CSV header read to its end, however long)."""
    if paths.form.format == "csv" and paths.frame is None:
        return csv_width(paths[0], paths.form)
    return len(column_names(paths))


def _inspect(
    paths: list[Path],
    target: str | None,
    read_chunk: int,
    guard: Guard | None,
    progress: Progress,
    room: float,
    float16_tolerance: float | None,
) -> Schema:
    widened: list[str] = []
    expected = estimate_rows(paths)
    while True:
        progress.plan(expected)
        sample = read_sample(paths, dict.fromkeys(widened, pl.String), guard)
        plan = make_plan(sample, widened, target, str(paths[0]), float16_tolerance)
        plan.cap = plan_level_cap(sample, plan.counted, room)
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
        value = pl.col(name)
        if plan.types[name] == pl.String:  # a widened column
            value = value.str.strip_chars().cast(pl.Float64, strict=False)
        each = [paths] if paths.frame is not None else [paths.files([p]) for p in paths]
        for part, shown in zip(each, paths.shown, strict=False):  # the file that holds it
            lf = scan(part, types=plan.types).with_row_index(ROW)
            row = lf.filter(value.is_infinite()).select(pl.col(ROW).first()).collect().item()
            if row is None:
                continue
            where = f"row {row + 1}" if paths.form.typed else f"line {row + 2}"
            raise InputError(
                f"{shown}, {where}, column '{name}': the value is not a finite number. "
                "Fix that row, or give --bad-rows skip (or quarantine) to leave such rows out."
            )
