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

from leanfit.engines.dask.apply import evaluate, predict
from leanfit.engines.dask.cluster import cluster, process_peak_rss
from leanfit.engines.dask.inspect import inspect, inspect_on
from leanfit.engines.dask.train import check_model, fit, layout
from leanfit.memory import Monitor
from leanfit.model import save_bundle
from leanfit.options import BoostOptions, TrainOptions
from leanfit.runrecord import LearningCurve, run_record
from leanfit.schema.columns import Schema
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
    progress=None,
    memory: Monitor | None = None,
    guard=None,
) -> dict:
    """Train on the cluster; save the same bundle as :func:`leanfit.train`.

    ``nb`` and ``logistic`` give the local engine's model (see
    :mod:`leanfit.engines.dask.train`); ``xgboost`` trains through ``xgboost.dask``;
    the SGD family averages per-partition models after every epoch.
    """
    opts = options or TrainOptions()
    opts.check()
    check_model(opts)
    memory = memory or Monitor.unbounded()
    progress = LearningCurve(progress)
    with cluster(scheduler, memory, client=client) as cl:
        if schema is None:
            with memory.stage("inspect"):
                schema = inspect_on(cl, data, target, block, guard)
        check_target(schema, target)
        with memory.stage("train"):
            where = layout(cl, data, schema, block, guard)
            if opts.model == "xgboost":
                from leanfit.engines.dask.boost import fit_booster  # XGBoost only when used

                model, encoder, summary = fit_booster(cl, where, schema, opts, boost, progress)
            else:
                model, encoder, summary = fit(cl, where, schema, opts, progress)
        summary = {"input": where.paths, **summary, "cluster": cl.report()}
    bad = guard.count if guard is not None else 0
    used = summary["rows_train"] + summary["rows_holdout"]
    summary |= {"rows": where.rows + bad, "rows_unlabelled": where.rows - used, "rows_bad": bad}
    if out is not None:
        with memory.stage("save"):
            record = {"run_record": run_record(memory, progress, summary)}
            save_bundle(out, schema, encoder, model, summary | record)
        summary["output"] = str(out)
    return summary
