"""The inspect pass on Dask: every partition is one piece of the local pass.

A worker reads the sample and makes the plan (:func:`leanfit.schema.statistics.make_plan`);
every partition then runs :func:`~leanfit.schema.statistics.piece_stats` on its
own rows, with mergeable distinct-count sketches; the client merges the pieces with
:func:`~leanfit.schema.statistics.build_schema`, as the local engine does with its one
piece. See :mod:`leanfit.schema.statistics` for the merge rules and where the two
engines' estimates of distinct counts differ.
"""

from __future__ import annotations

import polars as pl

from leanfit.engines.dask.cluster import (
    Cluster,
    cluster,
    gather_following,
    guard_parts,
    locate_on,
)
from leanfit.errors import ColumnTypeError
from leanfit.io.diagnose import refuse_short_rows
from leanfit.io.formats import Input
from leanfit.io.guard import Guard
from leanfit.io.partitions import Part, sample, scan_part
from leanfit.io.sizes import estimate_rows
from leanfit.io.translate import translated
from leanfit.memory import Monitor
from leanfit.options import LossyOptions
from leanfit.progress import Progress
from leanfit.schema.columns import Schema
from leanfit.schema.inspection import refuse_infinite
from leanfit.schema.lossy import tolerance
from leanfit.schema.rules import read_types
from leanfit.schema.statistics import (
    InspectPlan,
    build_schema,
    infinite_columns,
    last_column_has_nulls,
    make_plan,
    piece_stats,
)


def inspect(
    data,
    target: str | None = None,
    *,
    scheduler: str | None = None,
    memory: Monitor | None = None,
    client=None,
    block: int | None = None,
    guard: Guard | None = None,
    lossy: LossyOptions | None = None,
) -> Schema:
    """The inspect pass on the cluster: the same Schema as :func:`leanfit.schema.inspect`."""
    memory = memory or Monitor.unbounded()
    with memory.stage("inspect"), cluster(scheduler, memory, client=client) as cl:
        return inspect_on(cl, data, target, block, guard, memory.progress, lossy)


def inspect_on(
    cl: Cluster,
    data,
    target: str | None,
    block: int | None = None,
    guard: Guard | None = None,
    progress: Progress | None = None,
    lossy: LossyOptions | None = None,
) -> Schema:
    """The inspect pass on ``cl``; ``progress`` advances as partitions' statistics arrive."""
    c, progress = cl.client, progress or Progress()
    paths, parts = locate_on(cl, data, block)
    expected = estimate_rows(paths)
    lenient = guard if guard is not None and guard.active else None
    widened: list[str] = []
    while True:
        plan = c.submit(plan_on_worker, paths, widened, target, lenient, pure=False).result()
        plan.float16_tolerance = tolerance(lossy)
        guarded = guard_parts(cl, paths, parts, plan.types, guard)
        progress.plan(expected)
        futures = c.map(partition_stats, guarded, plan=plan, pure=False)
        pieces = gather_following(c, futures, progress, piece_rows)
        widen = sorted({p["widen"] for p in pieces if "widen" in p} - set(widened))
        if not widen:
            break
        widened += widen
    if lenient is None and last_column_has_nulls(pieces, plan):
        c.submit(refuse_short_rows, paths, pure=False).result()
    if lenient is None and infinite_columns(pieces, plan):  # named as the local pass does
        c.submit(refuse_infinite, paths, pieces, plan, pure=False).result()
    schema = build_schema(list(paths), pieces, plan)
    if lenient is not None:
        guard.vouch(paths, read_types(schema))
    return schema


def plan_on_worker(
    paths: Input, widened: list[str], target: str | None, guard: Guard | None = None
) -> InspectPlan:
    """Read the sample (on a worker) and make the local engine's plan."""
    frame = sample(paths, dict.fromkeys(widened, pl.String), guard)
    return make_plan(frame, widened, target, paths[0])


def partition_stats(part: Part, plan: InspectPlan) -> dict:
    """Mergeable statistics of one partition, or ``{"widen": column}`` when a value
    does not fit its parser type (the client then widens that column and starts over)."""
    lf = scan_part(part, plan.types)  # workers import leanfit: Polars reads as _env.py set
    try:
        with translated(part.input):
            return piece_stats(lf, plan, mergeable=True)
    except ColumnTypeError as error:
        return {"widen": error.column}


def piece_rows(piece: dict) -> int:
    return piece["stats"]["__rows__"] if "stats" in piece else 0
