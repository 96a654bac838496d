"""The same stages on Dask distributed: ``--engine dask``.

Entry points: :func:`inspect`, :func:`train`, :func:`evaluate` and :func:`predict`,
with the local engine's arguments plus ``scheduler`` (a running scheduler's address;
default: a LocalCluster for the call), ``client`` (an existing Dask client) and
``block`` (bytes per partition). The outputs are the local engine's: the same
schema.json, the same bundle format (a bundle trained on either engine loads and
predicts on the other), the same metrics. Modules: :mod:`.cluster` (the cluster and
what every step shares), :mod:`.inspect`, :mod:`.train`, :mod:`.boost`,
:mod:`.apply`. See docs/cluster.md.
"""

from __future__ import annotations

from leanfit.encode.batches import RowCounts
from leanfit.engines.dask.apply import evaluate, predict
from leanfit.engines.dask.cluster import cluster, process_peak_rss
from leanfit.engines.dask.inspect import inspect, inspect_on
from leanfit.engines.dask.train import check_model, fit, layout
from leanfit.engines.shared import save_trained
from leanfit.memory import Monitor
from leanfit.options import BoostOptions, TrainOptions
from leanfit.runrecord import LearningCurve
from leanfit.schema.columns import Schema
from leanfit.schema.lossy import apply_lossy, lossy_key
from leanfit.schema.rules import check_target

__all__ = ["evaluate", "inspect", "predict", "process_peak_rss", "train"]


def train(
    data,
    target: str | None = None,
    *,
    scheduler: str | None = None,
    client=None,
    block: int | None = None,
    schema: Schema | None = None,
    out=None,
    options: TrainOptions | None = None,
    boost: BoostOptions | None = None,
    memory: Monitor | None = None,
    guard=None,
) -> dict:
    """Train on the cluster; save the same bundle as :func:`leanfit.train`.

    ``nb`` and ``logistic`` give the local engine's model (see
    :mod:`leanfit.engines.dask.train`); ``xgboost`` trains through ``xgboost.dask``;
    the SGD family averages per-partition models after every epoch. Progress goes to
    ``memory.progress`` as partitions' results arrive on the client.
    """
    opts = options or TrainOptions()
    opts.check()
    check_model(opts)
    memory = memory or Monitor.unbounded()
    LearningCurve.of(memory.progress)
    with cluster(scheduler, memory, client=client) as cl:
        if schema is None:
            with memory.stage("inspect"):
                schema = inspect_on(cl, data, target, block, guard, memory.progress, opts.lossy)
        schema = apply_lossy(schema, opts.lossy)
        check_target(schema, target)
        with memory.stage("train"):
            where = layout(cl, data, schema, block, guard, memory.progress)
            if opts.model == "xgboost":
                from leanfit.engines.dask.boost import fit_booster  # XGBoost only when used

                model, encoder, summary = fit_booster(cl, where, schema, opts, boost, memory)
            else:
                model, encoder, summary = fit(cl, where, schema, opts, memory.progress)
        summary = {"input": list(where.paths), **summary, "cluster": cl.report()}
        summary |= lossy_key(schema)
    used = summary["rows_train"] + summary["rows_holdout"]
    counts = RowCounts(read=where.rows, unlabelled=where.rows - used)  # and their warnings
    summary |= counts.summary(guard, f"'{schema.target}'")
    return save_trained(out, schema, encoder, model, summary, memory)
