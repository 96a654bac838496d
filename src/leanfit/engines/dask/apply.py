"""Applying a bundle on Dask: ``evaluate`` and ``predict`` by partition.

The bundle is loaded by the client and sent once to every worker; each worker
reads its partitions and either accumulates :class:`~leanfit.metrics.StreamingMetrics`
(merged pairwise on the workers, in partition order) or writes one Parquet file
per partition into a temporary folder, renamed to the output when complete.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from leanfit.encode.batches import RowCounts
from leanfit.engines.dask.cluster import (
    absolute,
    cluster,
    follow,
    gather_following,
    merge_metrics,
    partitions_for,
    tree_reduce,
)
from leanfit.errors import ConfigError, InputError
from leanfit.io.outputs import PARQUET_ROW_GROUP, checks_output
from leanfit.io.partitions import Part, read_part
from leanfit.io.sizes import estimate_rows
from leanfit.io.translate import located_values
from leanfit.memory import Monitor
from leanfit.model import load
from leanfit.options import DEFAULT_BATCH_ROWS


def evaluate(
    model_path,
    data,
    *,
    scheduler: str | None = None,
    memory: Monitor | None = None,
    client=None,
    block: int | None = None,
    guard=None,
    curves: bool = False,
) -> dict:
    """Metrics of a bundle on labelled data: per-partition StreamingMetrics, merged
    (with ``curves``, the points of the curves too: StreamingMetrics.curves)."""
    model = load(model_path, memory)
    memory = memory or Monitor.unbounded()
    with memory.stage("evaluate"), cluster(scheduler, memory, client=client) as cl:
        c = cl.client
        paths, parts, types = partitions_for(cl, data, model.schema, block, guard)
        expected = estimate_rows(paths)
        memory.progress.plan(expected)
        shared = c.scatter(model, broadcast=True)
        futures = c.map(evaluate_part, parts, types=types, model=shared, pure=False)
        whole = tree_reduce(c, futures, merge_counted)
        follow(futures, memory.progress, [(expected or 0) / len(parts)] * len(parts))
        metrics, read = whole.result()
        report = cl.report()
    if metrics is None:
        raise InputError(f"{data}: no labelled rows to evaluate.")
    result = metrics.result(class_names=[str(k) for k in model.classes], curves=curves)
    counts = RowCounts(read=read, unlabelled=read - result["n_rows"])  # and their warnings
    return {
        **model.describe(model_path, paths),
        **counts.summary(guard, f"'{model.schema.target}'"),
        "metrics": result,
        "engine": "dask",
        "partitions": len(parts),
        "cluster": report,
    }


def evaluate_part(part: Part, types: dict | None, model):
    """StreamingMetrics of ``model`` on the partition's labelled rows (None if none),
    and the rows read."""
    frame = read_part(part, types)
    metrics = model.new_metrics()
    for start in range(0, frame.height, DEFAULT_BATCH_ROWS):
        with located_values(part.input):
            model.add_metrics(metrics, frame.slice(start, DEFAULT_BATCH_ROWS), part.name)
    return (metrics if metrics.n_rows else None), frame.height


def merge_counted(a: tuple, b: tuple) -> tuple:
    """Two ``(metrics, rows)`` merged."""
    return merge_metrics(a[0], b[0]), a[1] + b[1]


# --------------------------------------------------------------------------- predict


@checks_output("out", inputs=("model_path", "data"), folder=True)
def predict(
    model_path,
    data,
    out,
    *,
    scheduler: str | None = None,
    client=None,
    block: int | None = None,
    proba: bool = False,
    keep: tuple[str, ...] = (),
    memory: Monitor | None = None,
    guard=None,
) -> dict:
    """Predictions as a Parquet dataset at ``out``: a folder of ``part-NNNNN.parquet``
    files, one per partition in input order, written by the workers into a temporary
    folder beside ``out`` and renamed to ``out`` when every partition is done."""
    out = Path(absolute(out))
    if out.name.endswith((".csv", ".csv.gz", ".tsv", ".gz")):
        raise ConfigError(
            f"--out {out}: --engine dask writes a Parquet dataset (a folder of part files); "
            "give a folder name such as preds/ or preds.parquet."
        )
    model = load(model_path, memory)
    if proba and not model.predictor.has_proba:
        raise InputError(f"--proba: model {type(model.estimator).__name__} gives no probabilities.")
    memory = memory or Monitor.unbounded()
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    with memory.stage("predict"), cluster(scheduler, memory, client=client) as cl:
        c = cl.client
        paths, parts, types = partitions_for(cl, data, model.schema, block, guard)
        shared = c.scatter(model, broadcast=True)
        args = {"types": types, "model": shared, "folder": str(tmp), "proba": proba, "keep": keep}
        memory.progress.plan(estimate_rows(paths))
        futures: list = []
        try:
            futures = c.map(predict_part, parts, **args, pure=False)
            rows = gather_following(c, futures, memory.progress, int)
            if not sum(rows):
                raise InputError(f"{data}: no rows to predict.")
            c.submit(_publish, str(tmp), str(out), pure=False).result()
        except BaseException:
            from distributed import wait

            # the other partitions' tasks run on: discarded before they end, they wrote after
            wait(futures)
            c.submit(_discard, str(tmp), pure=False).result()
            raise
        report = cl.report()
    return {
        **model.describe(model_path, paths),
        "output": str(out),
        "rows": int(sum(rows)) + (guard.count if guard is not None else 0),
        "rows_predicted": int(sum(rows)),
        "rows_bad": guard.count if guard is not None else 0,
        **({"warnings": [guard.warning()]} if guard is not None and guard.count else {}),
        "format": "parquet",
        "files": sum(1 for r in rows if r),
        "engine": "dask",
        "partitions": len(parts),
        "cluster": report,
    }


def predict_part(part: Part, types, model, folder: str, proba: bool, keep) -> int:
    """Write the partition's predictions to ``folder/part-NNNNN.parquet``; its row count."""
    import pyarrow.parquet as pq

    frame = read_part(part, types)
    if not frame.height:
        return 0
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder) / f"part-{part.index:05d}.parquet"
    writer = None
    try:
        for start in range(0, frame.height, DEFAULT_BATCH_ROWS):
            with located_values(part.input):
                table = model.prediction_table(frame.slice(start, DEFAULT_BATCH_ROWS), proba, keep)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="zstd")
            writer.write(table, row_group_size=PARQUET_ROW_GROUP)
    finally:
        if writer is not None:
            writer.close()
    return frame.height


def _publish(tmp: str, out: str) -> None:
    """Rename the finished folder to ``out``, replacing what was there."""
    import shutil

    target = Path(out)
    old = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def _discard(tmp: str) -> None:
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
