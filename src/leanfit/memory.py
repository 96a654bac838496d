"""The memory budget: parsing ``--memory-limit``, planning chunk sizes, measuring RSS.

The budget is a contract. A run first measures its baseline (interpreter and
libraries, as the OS counts them), then refuses a limit it cannot honour before
reading any data, saying what limit would work. While it runs, a background
thread samples the resident set size; when it drifts toward the limit, later
chunks shrink. The run stops on the OS's own peak (``VmHWM``), not on the
samples alone: a spike shorter than the sampling interval is seen by the next
sample, and by the check before every output is renamed into place, so a run that
ends well never went over. Every command ends with a report: the limit, the peak
RSS as the OS counts it, and the peak of each stage.

>>> parse_limit("512MB"), parse_limit("2GiB"), parse_limit("1.5 gb")
(512000000, 2147483648, 1500000000)
>>> plan_rows(limit=400_000_000, baseline=200_000_000, fixed=60_000_000, row_bytes=1_000)
65536
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import resource
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from leanfit.errors import ConfigError, MemoryBudgetExceeded
from leanfit.io import interrupts
from leanfit.io.outputs import atomic_path
from leanfit.io.readers import mapped_sizes
from leanfit.progress import Progress

UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
DEFAULT_FRACTION = 0.25
MAPPED_FACTOR = 2  # a mapped IPC file's pages, and as much again decoded (2M rows: 1.2 GB)
# the rest of a run beside them (libraries, buffers, the model, a chunk): 150-175 MB
# measured, and a fresh install maps 50-80 MB more
MAPPED_RUN_BYTES = 250_000_000
SAFETY = 0.9  # plan to use at most this share of the limit; the sampler guards the rest
STOP_GRACE = 1.0  # seconds a run past the limit has to reach a safe point (then it ends)
MIN_ROWS, MAX_ROWS = 1_024, 131_072
UNBOUNDED = 2**62
BATCHED_STAGES = ("train", "encode", "holdout", "quantize", "boost", "drift")  # train, update


def parse_limit(text: str) -> int:
    """Bytes from ``512MB``, ``2GiB`` or ``30%`` (of the machine's total memory)."""
    import psutil

    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z%]*)\s*", str(text))
    unit = match[2].lower() if match else None
    if match is None or (unit not in UNITS and unit != "%"):
        raise ConfigError(f"--memory-limit {text!r} is not a size. Use e.g. 512MB, 2GiB or 25%.")
    if unit == "%":
        if not 0 < float(match[1]) <= 100:
            raise ConfigError(
                f"--memory-limit {text!r}: a share of memory is above 0% and at most 100%."
            )
        return int(psutil.virtual_memory().total * float(match[1]) / 100)
    return int(float(match[1]) * UNITS[unit])


def default_limit() -> int:
    """A quarter of the memory available now: safe beside a browser and an IDE."""
    import psutil

    return int(psutil.virtual_memory().available * DEFAULT_FRACTION)


def current_rss() -> int:
    return _process(os.getpid()).memory_info().rss


@functools.cache
def _process(pid: int):
    """psutil's handle on a process, made once (making one costs ~2 ms of /proc reads)."""
    import psutil

    return psutil.Process(pid)


def peak_rss() -> int:
    """This process's peak resident set size as the OS counts it: ``VmHWM``, where
    Linux has it. ``getrusage``'s ``ru_maxrss`` starts at the peak of the process that
    spawned this one (its memory at ``exec``): a run started from a 1 GB test process
    was stopped at once under ``--memory-limit 1GB``."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak() -> None:
    """Start this process's peak over from what it holds now (Linux 4.0+), so that a
    run's peak is its own, not that of earlier work in the same Python session."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def plan_rows(
    *, limit: int, baseline: int, fixed: int, row_bytes: float, max_rows: int = MAX_ROWS
) -> int:
    """Rows per chunk so that ``baseline + fixed + rows * row_bytes`` fits the limit.

    ``fixed`` is what the run holds whatever the chunk size (parser buffers, the
    model); ``row_bytes`` what one more row per chunk costs across every live copy;
    ``max_rows`` the most a chunk may have (fewer for wide rows: ``costs.chunk_rows_cap``),
    and the fewest it may have when that is below ``MIN_ROWS``.
    """
    max_rows = max(1, min(max_rows, MAX_ROWS))
    fewest = min(MIN_ROWS, max_rows)
    room = room_left(limit=limit, baseline=baseline, fixed=fixed)
    rows = int(room // max(row_bytes, 1.0)) if row_bytes > 0 else (max_rows if room > 0 else 0)
    if rows < fewest:
        need = baseline + fixed + fewest * row_bytes
        raise MemoryBudgetExceeded(
            f"--memory-limit {_mb(limit)} is below the {_mb(need / SAFETY)} this run needs "
            f"(interpreter and libraries {_mb(baseline)}, buffers and model {_mb(fixed)}, one "
            f"chunk of {fewest:,} rows {_mb(fewest * row_bytes)}). "
            f"Use --memory-limit {_mb(need / SAFETY * 1.25, up=True)} or more."
        )
    return min(max_rows, 1 << (rows.bit_length() - 1))


def refuse_mapped(paths, mapped: int, limit: int, whose: str = "--memory-limit") -> None:
    """Refuse ``mapped`` bytes of Arrow IPC files (:func:`~leanfit.io.readers.mapped_sizes`)
    that cannot fit twice (the mapped pages, and the batches decoded from them) beside
    what this process holds, under ``limit`` (``whose``: the run's, or a worker's)."""
    need = current_rss() + MAPPED_FACTOR * mapped
    if mapped and need > limit * SAFETY:
        more = _mb((need + MAPPED_RUN_BYTES) / SAFETY, up=True)
        give = f"--memory-limit {more} or more"
        if whose != "--memory-limit":  # a Dask worker's share
            give = f"each worker {more} or more (a LocalCluster splits --memory-limit)"
        raise MemoryBudgetExceeded(
            f"{paths[0]}: Polars reads Arrow IPC files through a memory map whose pages "
            f"count in the resident set: {_mb(mapped)} of them, and the batches decoded "
            f"from them, do not fit {whose} {_mb(limit)}. Write the data as Parquet once, "
            "which is read a row group at a time (leanfit shrink DATA OUT.parquet "
            f"--memory-limit {more}), or give {give}."
        )


def room_left(*, limit: int, baseline: int, fixed: int) -> float:
    """Bytes the plan may still give out: the planned share of the limit beyond what
    the run holds (``baseline``) and its fixed costs."""
    return (limit * SAFETY) - baseline - fixed


def _mb(n: float, up: bool = False) -> str:
    mb = n / 1e6
    if up:
        mb = 10 * -(-mb // 10)
    return f"{mb:,.0f}MB"


@dataclass
class Monitor:
    """Samples RSS in a background thread; knows the peak per stage.

    Use as a context manager around a run; ``stage(name)`` labels what follows, and
    opens a stage of ``progress`` (:mod:`leanfit.progress`), which every sample reaches.
    """

    limit: int
    interval: float = 0.05
    samples: list[tuple[float, int, str]] = field(default_factory=list)
    stage_peaks: dict[str, int] = field(default_factory=dict)
    baseline: int = 0
    progress: Progress = field(default_factory=Progress)
    _stage: str = "setup"
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self._t0 = time.perf_counter()

    @classmethod
    def unbounded(cls) -> Monitor:
        """A monitor with no limit and no sampling thread, for library calls without one."""
        return cls(limit=UNBOUNDED)

    @property
    def budget(self) -> int | None:
        """The limit in bytes; None for an unbounded monitor."""
        return self.limit if self.limit < UNBOUNDED else None

    def __enter__(self) -> Monitor:
        interrupts.clear_stop()
        reset_peak()
        interrupts.before_publish(self._check_peak)
        self.baseline = current_rss()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True, name="leanfit-rss")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        interrupts.before_publish(None)
        interrupts.clear_stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        rss = current_rss()
        self.samples.append((time.perf_counter() - self._t0, rss, self._stage))
        self.stage_peaks[self._stage] = max(self.stage_peaks.get(self._stage, 0), rss)
        self.progress.measure(rss, self.limit)
        if self._thread is not None and self._stage != "setup":
            # the run is stopped even inside one long native call (a Polars query); in
            # setup, the planner's refusal says more
            self._check_peak()

    def _check_peak(self) -> None:
        """Stop the run when the OS's peak is over the limit (from any thread)."""
        peak = peak_rss()
        if peak > self.limit:
            interrupts.stop(self.over_limit(peak), grace=STOP_GRACE)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        previous, self._stage = self._stage, name
        self._sample()
        try:
            with self.progress.stage(name):
                yield
        finally:
            self._sample()
            self._stage = previous

    def plan(
        self,
        *,
        fixed: int,
        row_bytes: float = 0.0,
        baseline: int | None = None,
        max_rows: int = MAX_ROWS,
    ) -> int:
        """Rows per chunk (at most ``max_rows``) for ``baseline`` (default: what the run
        holds now) plus ``fixed`` and ``row_bytes`` per row; refuses (MemoryBudgetExceeded)
        when not even a small chunk fits."""
        baseline = current_rss() if baseline is None else baseline
        return plan_rows(
            limit=self.limit, baseline=baseline, fixed=fixed, row_bytes=row_bytes, max_rows=max_rows
        )

    def refuse_mapped(self, paths) -> None:
        """Refuse, before reading, an input Polars maps into memory that cannot fit
        beside the run (:func:`refuse_mapped`): its files read in one query."""
        refuse_mapped(paths, sum(mapped_sizes(paths)), self.limit)

    def room(self, *, fixed: int) -> float:
        """Bytes left to plan beyond what the run holds now and ``fixed``."""
        return room_left(limit=self.limit, baseline=current_rss(), fixed=fixed)

    def check(self) -> None:
        """Stop the run when SIGINT or SIGTERM arrived (see leanfit.io.interrupts) or the
        resident set has gone over the limit: the safe point before every chunk."""
        interrupts.check()
        peak = peak_rss()
        if peak > self.limit:
            raise self.over_limit(peak)

    def over_limit(self, rss: int) -> MemoryBudgetExceeded:
        """The error of a run past the limit (inspect has no chunk size to make smaller)."""
        chunks = " or a smaller --batch-rows" if self._stage in BATCHED_STAGES else ""
        return MemoryBudgetExceeded(
            f"memory use reached {_mb(rss)}, over --memory-limit {_mb(self.limit)}, during "
            f"{self._stage}. Nothing was written. Use --memory-limit {_mb(rss * 1.25, up=True)}"
            f"{chunks}."
        )

    @property
    def pressure(self) -> float:
        """The latest RSS as a share of the limit."""
        return self.samples[-1][1] / self.limit if self.samples else 0.0

    def report(self) -> dict:
        """The limit, the baseline, the peak (the OS's, or a stage's of an earlier
        process of the run, resumed from its checkpoint) and the peak of each stage."""
        peak = max([peak_rss(), *self.stage_peaks.values()])
        return {
            "limit_bytes": self.limit,
            "baseline_bytes": self.baseline,
            "peak_rss_bytes": peak,
            "peak_by_stage_bytes": dict(self.stage_peaks),
            "within_limit": peak <= self.limit,
        }

    def continue_trace(self, samples: list[tuple[float, int, str]]) -> None:
        """Put an earlier run's samples (a checkpoint's) before this one's, which then
        follow them in time; their stage peaks count too."""
        shift = samples[-1][0] if samples else 0.0
        self._t0 -= shift
        self.samples[:0] = samples
        for _, rss, stage in samples:
            self.stage_peaks[stage] = max(self.stage_peaks.get(stage, 0), rss)
        self.samples[len(samples) :] = [
            (t + shift, r, s) for t, r, s in self.samples[len(samples) :]
        ]

    def write_trace(self, path: str | Path) -> None:
        with atomic_path(path) as tmp, open(tmp, "w") as f:
            f.write("seconds,rss_bytes,stage\n")
            f.writelines(f"{t:.3f},{rss},{stage}\n" for t, rss, stage in self.samples)
