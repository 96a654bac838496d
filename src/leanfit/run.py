"""The shell every command runs in, from the command line or from Python.

:func:`running` measures the budget (:class:`~leanfit.memory.Monitor`), uses the
temp folder, checks and claims the outputs (an existing one is replaced only with
``force``) and writes the memory trace; :func:`bad_row_guard` and
:func:`with_quarantine` make and finish the bad-row guard; :func:`finish` adds the
memory report to a summary. ``leanfit.cli``'s ``command`` wrapper and
``leanfit.api``'s functions both use them, so a command behaves the same either way.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from leanfit.errors import ConfigError
from leanfit.io.formats import Source
from leanfit.io.guard import Guard
from leanfit.io.outputs import command_scope
from leanfit.memory import Monitor, default_limit, parse_limit

Output = str | os.PathLike | None


def memory_bytes(limit: str | int | None) -> int:
    """The budget in bytes: ``"512MB"``, ``"2GiB"``, ``"30%"``, an int of bytes, or
    None for the default (a quarter of the memory available now).

    >>> memory_bytes("1GB"), memory_bytes(10**9)
    (1000000000, 1000000000)
    """
    if limit is None:
        return default_limit()
    if isinstance(limit, bool) or not isinstance(limit, int | str):
        raise ConfigError(f"--memory-limit must be a size like 512MB or bytes. Got {limit!r}.")
    if isinstance(limit, int):
        if limit <= 0:
            raise ConfigError(f"--memory-limit must be above 0 bytes. Got {limit}.")
        return limit
    return parse_limit(limit)


@dataclass
class Run:
    """A running command: its memory monitor and the existing outputs it replaces."""

    memory: Monitor
    replaced: list[str] = field(default_factory=list)

    def finish(self, summary: dict) -> dict:
        """``summary`` with the memory report (and, when outputs existed, ``replaced``)."""
        summary = dict(summary)
        if self.replaced:
            summary["replaced"] = self.replaced
        summary["memory"] = self.memory.report()
        summary["peak_rss_bytes"] = summary["memory"]["peak_rss_bytes"]
        return summary


@contextlib.contextmanager
def running(
    outputs: dict[str, Output],
    inputs: Iterable = (),
    *,
    memory_limit: str | int | None = None,
    memory_trace: Output = None,
    tmp_dir: Output = None,
    folder: str | None = None,
    force: bool = False,
) -> Iterator[Run]:
    """Run a command in the block: ``outputs`` (by option name) checked and claimed,
    the temp root set, the budget measured; the trace written even on failure."""
    limit = memory_bytes(memory_limit)
    outputs = {**outputs, "--memory-trace": memory_trace}
    with (
        command_scope(outputs, inputs, tmp_dir=tmp_dir, folder=folder, force=force) as replaced,
        Monitor(limit) as monitor,
    ):
        try:
            yield Run(monitor, replaced)
        finally:
            if memory_trace:
                monitor.write_trace(memory_trace)


def bad_row_guard(bad_rows: str, quarantine: Output, beside: Output) -> Guard:
    """How bad rows are treated; quarantined rows go to ``quarantine`` (default:
    ``BESIDE.quarantine.csv``, beside the output or else the data)."""
    if quarantine and bad_rows != "quarantine":
        raise ConfigError(
            f"--quarantine {quarantine} is written only with --bad-rows quarantine "
            f"(this run has --bad-rows {bad_rows}); add --bad-rows quarantine."
        )
    if isinstance(beside, Source):
        beside = beside.data[0]
    path = Path(quarantine) if quarantine else Path(f"{beside}.quarantine.csv")
    return Guard(bad_rows, path)


def with_quarantine(summary: dict, guard: Guard) -> dict:
    """Write the quarantined rows (if any) and name their file in the summary."""
    written = guard.write()
    return summary | ({"quarantine": written} if written else {})


def on_dask(engine: str, scheduler: str | None, threshold: float | None = None) -> bool:
    """Whether to run on Dask; --scheduler without --engine dask is a mistake, and the
    Dask engine applies the bundle's own --threshold only."""
    if scheduler and engine != "dask":
        raise ConfigError("--scheduler needs --engine dask.")
    if threshold is not None and engine == "dask":
        raise ConfigError("--threshold: --engine dask uses the bundle's; retrain with it.")
    return engine == "dask"
