"""The same stages on Dask distributed: ``--engine dask``.

Without a scheduler address a :class:`distributed.LocalCluster` is started for the
command and closed at its end: one single-threaded worker process per core (fewer
when ``--memory-limit`` cannot give each at least ``MIN_WORKER_BYTES``), the limit
split evenly between them (dask's nanny restarts a worker that passes 95% of its
share). With ``--scheduler tcp://host:8786`` leanfit connects to a running cluster
(``dask scheduler`` / ``dask worker``): partitions are then sized from the workers'
own memory limits, and ``--memory-limit`` bounds only this client process.

Workers read the data (paths every worker sees, or fsspec URLs; see
:mod:`leanfit.dask_parts`); the client only sends small plans and receives
statistics, coefficients and metrics, never rows. The outputs are the local
engine's: the same schema.json, the same bundle format (a bundle trained on either
engine loads and predicts on the other), the same metrics. Predictions become a
Parquet dataset, one file per partition, in a temporary folder renamed when complete.

Entry points: :func:`inspect` and :func:`train` here, ``evaluate`` and ``predict``
in :mod:`leanfit.dask_apply` (also reachable as ``dask_engine.evaluate`` and
``dask_engine.predict``); partitions in :mod:`leanfit.dask_parts`, the inspect
merge in :mod:`leanfit.dask_inspect`, models in :mod:`leanfit.dask_train` and
:mod:`leanfit.dask_boost`. See docs/cluster.md.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leanfit.dask_parts import Part, block_size, plan_parts, resolve
from leanfit.errors import ConfigError, MemoryBudgetExceeded
from leanfit.memory import Monitor, peak_rss
from leanfit.schema import Schema

MIN_WORKER_BYTES = 500_000_000


@dataclass
class Cluster:
    """A connected client and what the partition plan needs to know of the workers."""

    client: object
    workers: int
    worker_memory: int
    address: str

    def report(self) -> dict:
        """Workers, their memory limit and each one's peak RSS (OS count) so far."""
        peaks = self.client.run(process_peak_rss)
        return {
            "scheduler": self.address,
            "workers": self.workers,
            "memory_per_worker_bytes": self.worker_memory,
            "worker_peak_rss_bytes": dict(sorted(peaks.items())),
        }


def process_peak_rss() -> int:
    """This process's own peak RSS (Linux: VmHWM). ``getrusage`` would not do in a
    worker: its ``ru_maxrss`` starts at the RSS of the process that forked it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return peak_rss()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def local_shape(limit: int, cores: int | None = None) -> tuple[int, int | str]:
    """Workers and memory per worker of the LocalCluster for a total ``limit``."""
    cores = cores or _cores()
    if limit >= Monitor.unbounded().limit:
        return cores, "auto"
    if limit < MIN_WORKER_BYTES:
        raise MemoryBudgetExceeded(
            f"--memory-limit {limit / 1e6:,.0f}MB is below the {MIN_WORKER_BYTES / 1e6:,.0f}MB "
            "one Dask worker needs (interpreter, libraries and a partition). Use --memory-limit "
            f"{MIN_WORKER_BYTES * cores / 1e6:,.0f}MB for {cores} workers, or --engine local."
        )
    workers = max(1, min(cores, limit // MIN_WORKER_BYTES))
    return workers, limit // workers


@contextlib.contextmanager
def cluster(
    scheduler: str | None = None, memory: Monitor | None = None, *, client=None
) -> Iterator[Cluster]:
    """Yield a :class:`Cluster`: ``client``'s, one at ``scheduler``, or a LocalCluster
    sized from the cores and ``memory.limit`` (closed on exit)."""
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError(
            "--engine dask needs Dask distributed: pip install 'dask[distributed]'."
        ) from None

    with _worker_deaths():
        if client is not None:
            yield _describe(client)
        elif scheduler:
            try:
                remote = Client(scheduler, timeout="10s")
            except (OSError, TimeoutError) as exc:
                raise ConfigError(
                    f"--scheduler {scheduler}: no Dask scheduler answers there ({exc}). Start "
                    "one with `dask scheduler` and workers with `dask worker ADDRESS`."
                ) from None
            with remote:
                yield _describe(remote)
        else:
            with _local_cluster((memory or Monitor.unbounded()).limit) as c:
                yield _describe(c)


@contextlib.contextmanager
def _local_cluster(limit: int):
    from distributed import Client, LocalCluster

    workers, per_worker = local_shape(limit)
    threads = max(1, _cores() // workers)
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=per_worker,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,  # task errors reach the client as exceptions
            env={"POLARS_MAX_THREADS": str(threads)},
        ) as local,
        Client(local) as c,
    ):
        yield c


@contextlib.contextmanager
def _worker_deaths():
    """A worker killed by its nanny for passing its memory share: a budget error."""
    from distributed import KilledWorker

    try:
        yield
    except KilledWorker as exc:
        raise MemoryBudgetExceeded(
            f"a Dask worker died while running {exc.task!r}, usually because it went over "
            "its memory share (dask's nanny restarts a worker at 95% of it). Give the workers "
            "more memory (--memory-limit, or `dask worker --memory-limit`), or fewer workers "
            "per machine."
        ) from None


def _describe(client) -> Cluster:
    info = client.scheduler_info(n_workers=-1)
    limits = [w.get("memory_limit") or 0 for w in info["workers"].values()]
    if not limits:
        raise ConfigError(f"the Dask scheduler at {info.get('address')} has no workers.")
    smallest = min(limits) or 4_000_000_000
    return Cluster(client, len(limits), smallest, info.get("address", ""))


def locate(data, workers: int, worker_memory: int, block: int | None = None):
    """On a worker: the input files and their partitions."""
    paths = resolve(data)
    if block is None:
        from leanfit.dask_parts import _size

        block = block_size(sum(_size(p) for p in paths), workers, worker_memory)
    return paths, plan_parts(paths, block)


def absolute(path) -> str:
    """A local path made absolute here: workers do not share the client's working folder."""
    from leanfit.dask_parts import is_url

    return str(path) if is_url(path) else os.path.abspath(os.fspath(path))


def _locate(cl: Cluster, data, block: int | None) -> tuple[list[str], list[Part]]:
    data = [absolute(d) for d in data] if isinstance(data, list | tuple) else absolute(data)
    return cl.client.submit(locate, data, cl.workers, cl.worker_memory, block, pure=False).result()


def tree_reduce(client, futures: list, merge):
    """Merge results pairwise on the workers, in partition order; the future of the whole."""
    while len(futures) > 1:
        pairs = [futures[i : i + 2] for i in range(0, len(futures), 2)]
        futures = [client.submit(merge, *p, pure=False) if len(p) == 2 else p[0] for p in pairs]
    return futures[0]


def merge_metrics(a, b):
    if a is None or b is None:
        return a if b is None else b
    return copy.deepcopy(a).merge(b)


# --------------------------------------------------------------------------- inspect


def inspect(
    data,
    target: str | None = None,
    *,
    scheduler: str | None = None,
    memory: Monitor | None = None,
    client=None,
    block: int | None = None,
) -> Schema:
    """The inspect pass on the cluster: the same Schema as :func:`leanfit.schema.inspect`."""
    memory = memory or Monitor.unbounded()
    with memory.stage("inspect"), cluster(scheduler, memory, client=client) as cl:
        return inspect_on(cl, data, target, block)


def inspect_on(cl: Cluster, data, target: str | None, block: int | None = None) -> Schema:
    from leanfit.dask_inspect import build_schema, make_plan, partition_stats

    c = cl.client
    paths, parts = _locate(cl, data, block)
    widened: list[str] = []
    while True:
        plan = c.submit(make_plan, paths, widened, target, pure=False).result()
        results = c.gather(c.map(partition_stats, parts, plan=plan, pure=False))
        widen = sorted({r["widen"] for r in results if "widen" in r} - set(widened))
        if not widen:
            break
        widened += widen
    last = list(plan.types)[-1]
    if sum(r["stats"][f"{last}:nulls"] for r in results):
        c.submit(_refuse_short_rows, paths, pure=False).result()
    return build_schema(paths, results, plan)


def _refuse_short_rows(paths: list[str]) -> None:
    from leanfit.dask_parts import is_url
    from leanfit.schema import _refuse_short_rows as refuse

    refuse([Path(p) for p in paths if not is_url(p)])


# --------------------------------------------------------------------------- train


def train(
    data,
    target: str | None = None,
    *,
    schema: Schema | None = None,
    out=None,
    options=None,
    progress=None,
    memory: Monitor | None = None,
    boost=None,
    scheduler: str | None = None,
    client=None,
    block: int | None = None,
) -> dict:
    """Train on the cluster; save the same bundle as :func:`leanfit.train.train`.

    ``nb`` and ``logistic`` give the local engine's model (see
    :mod:`leanfit.dask_train`); ``xgboost`` trains through ``xgboost.dask``; the
    SGD family averages per-partition models after every epoch.
    """
    from leanfit.dask_train import check_model, fit
    from leanfit.predict import save_bundle
    from leanfit.train import TrainOptions, check_target

    opts = options or TrainOptions()
    opts.check()
    check_model(opts)
    memory = memory or Monitor.unbounded()
    with cluster(scheduler, memory, client=client) as cl:
        if schema is None:
            with memory.stage("inspect"):
                schema = inspect_on(cl, data, target, block)
        check_target(schema, target)
        with memory.stage("train"):
            model, encoder, summary = fit(cl, data, schema, opts, boost, progress, block)
        summary["cluster"] = cl.report()
    if out is not None:
        with memory.stage("save"):
            save_bundle(out, schema, encoder, model, summary)
        summary["model_path"] = str(out)
    return summary


def row_offsets(cl: Cluster, parts: list[Part], types) -> tuple[list[int], int]:
    """Each partition's first global row number (a cheap counting pass), and the total."""
    from leanfit.dask_parts import count_rows

    counts = cl.client.gather(cl.client.map(count_rows, parts, types=types, pure=False))
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64).tolist()
    return offsets, int(sum(counts))


def __getattr__(name: str):
    """``evaluate`` and ``predict`` live in :mod:`leanfit.dask_apply`."""
    if name in ("evaluate", "predict"):
        from leanfit import dask_apply

        return getattr(dask_apply, name)
    raise AttributeError(f"module 'leanfit.dask_engine' has no attribute {name!r}")
