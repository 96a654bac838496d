"""The Dask cluster of ``--engine dask``: starting or joining it, and what every step
on it shares (locating partitions, row offsets, merging results on the workers).

Without a scheduler address a :class:`distributed.LocalCluster` is started for the
command and closed at its end: one single-threaded worker process per core (fewer
when ``--memory-limit`` cannot give each at least ``MIN_WORKER_BYTES``), the limit
split evenly between them (dask's nanny restarts a worker that passes 95% of its
share). With ``--scheduler tcp://host:8786`` leanfit connects to a running cluster
(``dask scheduler`` / ``dask worker``): partitions are then sized from the workers'
own memory limits, and ``--memory-limit`` bounds only this client process.

Workers read the data (paths every worker sees, or fsspec URLs; see
:mod:`leanfit.io.partitions`); the client only sends small plans and receives
statistics, coefficients and metrics, never rows. The outputs are the local
engine's: the same schema.json, the same bundle format (a bundle trained on either
engine loads and predicts on the other), the same metrics. Predictions become a
Parquet dataset, one file per partition, in a temporary folder renamed when complete.

Partitions are :mod:`leanfit.io.partitions`; see docs/cluster.md.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from leanfit.errors import ConfigError, MemoryBudgetExceeded
from leanfit.io.formats import Source, names_files
from leanfit.io.guard import Guard
from leanfit.io.partitions import (
    Part,
    block_size,
    count_lines,
    count_rows,
    parse_types,
    plan_parts,
)
from leanfit.io.readers import is_url, mapped_sizes
from leanfit.io.sizes import estimate_rows
from leanfit.io.source import resolve_paths, size
from leanfit.memory import Monitor, peak_rss, refuse_mapped
from leanfit.progress import Progress
from leanfit.schema.rules import read_types

MIN_WORKER_BYTES = 500_000_000
PRELOAD = "leanfit.engines.dask.preload"
WORKER_WAIT_S = 15  # for a worker still connecting, or one its nanny is restarting


@dataclass
class Cluster:
    """A connected client and what the partition plan needs to know of the workers."""

    client: object
    workers: int
    worker_memory: int
    address: str
    addresses: tuple[str, ...] = ()

    def place(self, index: int) -> dict:
        """``submit`` keywords putting partition ``index`` on a worker, round robin, so
        that every worker holds as many partitions as the others (their number is a
        multiple of the workers'). Loose: a task whose worker has left runs elsewhere."""
        if not self.addresses:
            return {}
        where = self.addresses[index % len(self.addresses)]
        return {"workers": [where], "allow_other_workers": True}

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
    workers, per_worker = local_shape(limit)
    with local_cluster(workers, per_worker) as c:
        yield c


# a worker's share of the cores, for Polars and for BLAS (numpy's products in the exact
# logistic's passes): one worker alone would otherwise use every core for BLAS
THREAD_SETTINGS = (
    "POLARS_MAX_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
)


@contextlib.contextmanager
def local_cluster(
    workers: int, per_worker: int | str, polars_threads: int | None = None
) -> Iterator[object]:
    """A client of a new LocalCluster: ``workers`` single-threaded worker processes
    with ``per_worker`` bytes each, Polars and BLAS sharing the cores between them (or
    ``polars_threads`` each), leanfit imported when a worker starts (:mod:`.preload`),
    and no work stealing: tasks stay where :meth:`Cluster.place` puts them, by their
    partitions' blocks."""
    import dask
    from distributed import Client, LocalCluster

    threads = polars_threads or max(1, _cores() // workers)
    with (
        dask.config.set(
            {
                "distributed.scheduler.work-stealing": False,
                "distributed.worker.profile.enabled": False,
            }
        ),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=per_worker,
            dashboard_address=None,
            # its HTTP server on a free port: it took 8787 even without the dashboard,
            # and a second cluster (another run, a user's own) warned of the clash
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0", "dashboard": False},
            silence_logs=logging.CRITICAL,  # task errors reach the client as exceptions
            env={name: str(threads) for name in THREAD_SETTINGS},
            preload=[PRELOAD],
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
    with contextlib.suppress(TimeoutError):
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    info = client.scheduler_info(n_workers=-1)
    limits = [w.get("memory_limit") or 0 for w in info["workers"].values()]
    if not limits:
        raise ConfigError(f"the Dask scheduler at {info.get('address')} has no workers.")
    smallest = min(limits) or 4_000_000_000
    addresses = tuple(sorted(info["workers"]))
    return Cluster(client, len(limits), smallest, info.get("address", ""), addresses)


def locate(data, workers: int, worker_memory: int, block: int | None = None):
    """On a worker: the input files and their partitions; unless ``block`` is given,
    sized by the workers' memory and as many for every worker."""
    paths = resolve_paths(data)
    # a worker reads one IPC file at a time, as one partition
    refuse_mapped(paths, max(mapped_sizes(paths), default=0), worker_memory, "a worker's")
    if block is not None:
        return paths, plan_parts(paths, block)
    block = block_size(sum(size(p) for p in paths), workers, worker_memory)
    return paths, plan_parts(paths, block, multiple=workers)


def absolute(path) -> str:
    """A local path made absolute here: workers do not share the client's working folder."""
    return str(path) if is_url(path) else os.path.abspath(os.fspath(path))


def locate_on(cl: Cluster, data, block: int | None) -> tuple[list[str], list[Part]]:
    """The input files and partitions of ``data``, found by a worker."""
    if not names_files(data):
        raise ConfigError(
            f"--engine dask reads files every worker can open (paths, folders, globs, URLs), "
            f"not a {type(data).__name__}: write it to Parquet first, or use the local engine."
        )
    if isinstance(data, Source):
        data = Source(*map(absolute, data.data), separator=data.separator)
    else:
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


def partitions_for(cl: Cluster, data, schema, block: int | None, guard=None):
    """``(paths, parts, types)`` of ``data`` read with ``schema``: the parser's types,
    or with an active ``guard`` the schema's own, every partition knowing its bad rows.
    The parser's types are a future, being inferred by a worker: tasks given it start
    when it is done, without waiting for the client."""
    paths, parts = locate_on(cl, data, block)
    if guard is not None and guard.active:
        types = read_types(schema)
        return paths, guard_parts(cl, paths, parts, types, guard), types
    types = cl.client.submit(parse_types, paths, schema.read_overrides(), pure=False)
    return paths, parts, types


def resolved(types):
    """``types`` itself, or the value of a future of them (:func:`partitions_for`)."""
    from distributed import Future

    return types.result() if isinstance(types, Future) else types


def guard_parts(cl: Cluster, paths: list[str], parts: list[Part], types: dict, guard) -> list[Part]:
    """``parts`` with their bad rows found: each file screened by a worker (as
    :meth:`~leanfit.io.guard.Guard.screen` does locally, so the bad lines are the local
    engine's), recorded in ``guard``, and each partition given the line number of its
    first row and the line numbers of its bad ones."""
    if guard is None or not guard.active:
        return parts
    if any(is_url(p) and not p.startswith("file://") for p in paths):
        raise ConfigError("--bad-rows skip or quarantine needs files every worker sees, not URLs.")
    if paths.form.typed:
        raise ConfigError(
            "--bad-rows skip or quarantine on --engine dask screens CSV files; typed files "
            "(Parquet, IPC, JSON lines) have no unparseable rows: leave the option out, or "
            "use the local engine to leave out rows holding inf."
        )
    c = cl.client
    separator = paths.form.separator
    todo = [p for p in paths if not guard.screened(p, types, separator)]
    screened = c.map(screen_file, todo, types=types, separator=separator, pure=False)
    for found in c.gather(screened):
        guard.found.update(found)
    guard.vouch(paths.files(todo), types)
    lines = c.gather(c.map(count_lines, parts, pure=False))
    out, first = [], {}
    for part, count in zip(parts, lines, strict=True):
        start = first.get(part.path, 2)
        first[part.path] = start + count
        skip = tuple(
            n for (p, n) in sorted(guard.found) if p == part.path and start <= n < start + count
        )
        out.append(replace(part, first_line=start, skip=skip))
    return out


def screen_file(path: str, types: dict, separator: str = ",") -> dict:
    """On a worker: the bad lines of one file for ``types`` (see leanfit.io.guard)."""
    guard = Guard("skip")
    guard.screen(path, types, separator)
    return guard.found


def follow(futures: list, progress: Progress, rows: list[int]) -> None:
    """Wait for ``futures``, advancing ``progress`` by ``rows[i]`` as the i-th completes;
    then raise the error of the first that failed, in their order (as
    :func:`gather_following` does)."""
    from distributed import as_completed

    by_key = {f.key: n for f, n in zip(futures, rows, strict=True)}
    for future in as_completed(futures):
        progress.advance(by_key[future.key])
    failed = next((f for f in futures if f.status == "error"), None)
    if failed is not None:
        failed.result()  # raises its error


def gather_following(c, futures: list, progress: Progress, rows_of) -> list:
    """The results of ``futures`` in their order, advancing ``progress`` by
    ``rows_of(result)`` as each arrives. When some fail, every one is waited for and
    the error raised is the first in their order (partitions in file order: the first
    bad row, not whichever task failed first)."""
    from distributed import as_completed

    order = {f.key: i for i, f in enumerate(futures)}
    results: list = [None] * len(futures)
    failed = len(futures)
    for future in as_completed(futures):
        i = order[future.key]
        if future.status == "finished":
            results[i] = future.result()
            progress.advance(rows_of(results[i]))
        else:
            failed = min(failed, i)
    if failed < len(futures):
        futures[failed].result()  # raises its error
    return results


def row_offsets(
    cl: Cluster, parts: list[Part], types, progress: Progress | None = None
) -> tuple[list[int], int]:
    """Each partition's first global row number (a cheap counting pass), and the total;
    plain CSV partitions are counted while ``types`` (maybe a future) is inferred."""
    progress = progress or Progress()
    with progress.stage("count"):
        progress.plan(estimate_rows(sorted({p.path for p in parts})))
        futures = [
            cl.client.submit(count_rows, p, None if p.plain_csv else types, pure=False)
            for p in parts
        ]
        counts = gather_following(cl.client, futures, progress, int)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64).tolist()
    return offsets, int(sum(counts))
