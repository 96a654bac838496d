"""The memory budget, proved by the OS: each command runs in a subprocess and its
peak RSS is read with getrusage(RUSAGE_CHILDREN) in a wrapper process of its own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from leanfit.memory import parse_limit
from leanfit.schema import Schema
from leanfit.synth import write_data, write_many_levels

LIMIT = "400MB"
# The fast test runs right after a fresh install (CI): the just-written library files
# then map 50-80 MB more into every process than on a machine where they have settled
# (measured here: scikit-learn's import 232 MB fresh, 188 MB after the page cache was
# dropped). It checks the same contract under a limit with that headroom; the slow
# tests hold every stage to 400 MB from 1M to 8M and 16M rows.
FAST_LIMIT = "460MB"
MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "sys.stderr.write(done.stderr)\n"
    "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"
)


def peak_of(*args, env: dict | None = None) -> tuple[int, int, str]:
    """Exit code, peak RSS in bytes (as the OS counts it) and stderr of one command, run
    as a user would (without the POLARS_CSV_CHUNK_SIZE this process's leanfit set), with
    ``env`` added."""
    cmd = [sys.executable, "-c", MEASURE, sys.executable, "-m", "leanfit.cli", *map(str, args)]
    env = {k: v for k, v in os.environ.items() if k != "POLARS_CSV_CHUNK_SIZE"} | (env or {})
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    code, peak = done.stdout.split()
    return int(code), int(peak), done.stderr


def _jobs(data, tmp, limit=LIMIT):
    schema, model = tmp / "schema.json", tmp / "m.leanfit"
    base = ["--memory-limit", limit]
    return {
        "inspect": ["inspect", data, "--target", "label", "--out", schema, *base],
        "train sgd": ["train", data, "--target", "label", "--out", model, *base],  # inspects too
        "train logistic": [
            "train",
            data,
            "--schema",
            schema,
            "--model",
            "logistic",
            "--out",
            tmp / "l.leanfit",
            *base,
        ],
        "predict": ["predict", model, data, "--out", tmp / "p.parquet", *base],
    }


def _peaks(data, tmp, limit=LIMIT) -> dict[str, int]:
    peaks = {}
    for name, args in _jobs(data, tmp, limit).items():
        code, peak, err = peak_of(*args)
        assert code == 0, f"{name}: {err}"
        peaks[name] = peak
    return peaks


def test_every_stage_under_the_limit(tmp_path):
    data = tmp_path / "d.csv"
    write_data(data, rows=300_000, seed=2)
    for name, peak in _peaks(data, tmp_path, FAST_LIMIT).items():
        assert peak < parse_limit(FAST_LIMIT), f"{name} peaked at {peak / 1e6:.0f} MB"


def test_a_limit_below_the_minimum_is_refused_before_any_work(tmp_path):
    data = tmp_path / "d.csv"
    write_data(data, rows=1_000, seed=2)
    code, _, err = peak_of(
        "train",
        data,
        "--target",
        "label",
        "--out",
        tmp_path / "m.leanfit",
        "--memory-limit",
        "64MB",
    )
    assert code == 2
    assert "Error: --memory-limit 64MB is below the" in err and "Use --memory-limit" in err
    assert not (tmp_path / "m.leanfit").exists()


def test_the_report_says_what_it_measured(tmp_path):
    data = tmp_path / "d.csv"
    write_data(data, rows=20_000, seed=2)
    trace = tmp_path / "trace.csv"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "leanfit.cli",
            "inspect",
            str(data),
            "--json",
            "--memory-limit",
            "1GiB",
            "--memory-trace",
            str(trace),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    memory = json.loads(done.stdout)["memory"]
    assert memory["limit_bytes"] == 2**30 and memory["within_limit"]
    assert 0 < memory["baseline_bytes"] <= memory["peak_rss_bytes"]
    assert "inspect" in memory["peak_by_stage_bytes"]
    lines = trace.read_text().splitlines()
    assert lines[0] == "seconds,rss_bytes,stage" and len(lines) > 2


@pytest.mark.slow
@pytest.mark.parametrize("big", [8_000_000, 16_000_000])
def test_memory_is_flat_in_data_size(tmp_path_factory, big):
    """1M rows against 8M (every stage) and 16M (inspect and train sgd): under the limit,
    and within 15%."""
    peaks = {}
    for rows in (1_000_000, big):
        tmp = tmp_path_factory.mktemp(f"rows{rows}")
        data = tmp / "d.csv"
        write_data(data, rows=rows, seed=5)
        if big == 16_000_000:
            jobs = _jobs(data, tmp)
            peaks[rows] = {}
            for name in ("inspect", "train sgd"):
                code, peak, err = peak_of(*jobs[name])
                assert code == 0, err
                peaks[rows][name] = peak
        else:
            peaks[rows] = _peaks(data, tmp)
        data.unlink()
    for name, small_peak in peaks[1_000_000].items():
        assert peaks[big][name] < parse_limit(LIMIT), name
        assert peaks[big][name] <= 1.15 * small_peak, f"{name}: {peaks}"


# Freed pages returned at once: the peak is then what is live, within 2 MB from run to
# run, where jemalloc's decay (500 ms) made it vary by 30 MB with the machine's load.
PURGED = {"_RJEM_MALLOC_CONF": "dirty_decay_ms:0,muzzy_decay_ms:0,background_thread:true"}


def _inspect_peaks(tmp, rows: int, limit: str) -> tuple[dict, Schema]:
    """Peaks of inspecting the first ``rows`` and 8 x ``rows`` rows of a file whose
    ``merchant`` levels grow with the rows (10% of rows bring a new one), and the
    larger file's schema."""
    big = tmp / "big.csv"
    write_many_levels(big, rows=8 * rows, seed=4)
    small = tmp / "small.csv"
    with open(big) as src, open(small, "w") as dst:
        dst.writelines(line for _, line in zip(range(rows + 1), src))
    peaks = {}
    for data in (small, big):
        args = ["inspect", data, "--target", "label", "--out", tmp / f"{data.stem}.json"]
        code, peak, err = peak_of(*args, "--memory-limit", limit, env=PURGED)
        assert code == 0, err
        peaks[data.stem] = peak
    return peaks, Schema.from_json(tmp / "big.json")


def test_inspect_memory_is_flat_past_the_cap_of_levels(tmp_path):
    """400k rows (about 40k merchants, counted exactly) against 3.2M (about 320k, past
    the cap planned for 300MB): the peak grows less than 15% (measured +8%; before the
    counts were capped by the budget, +22 to +25%)."""
    peaks, schema = _inspect_peaks(tmp_path, 400_000, "300MB")
    merchant = schema.column("merchant")
    assert not merchant.distinct_exact and merchant.top_count_error is not None
    assert peaks["big"] <= 1.15 * peaks["small"], peaks


@pytest.mark.slow
def test_inspect_memory_is_flat_from_1m_to_8m_rows(tmp_path):
    """The same at 1M against 8M rows (under 1GB the 4 MiB reads' peak varies by 20 MB
    from run to run even purged: bench/inspect_memory.py measures that case)."""
    peaks, schema = _inspect_peaks(tmp_path, 1_000_000, "300MB")
    assert not schema.column("merchant").distinct_exact
    assert peaks["big"] <= 1.15 * peaks["small"], peaks


def test_an_arrow_ipc_file_too_big_to_map_is_refused_and_the_limit_it_names_holds(tmp_path):
    """Polars maps an IPC file into memory: one that cannot fit is refused before it is
    read (the OS's peak stays far below the limit), and a run under the limit the error
    names trains within it."""
    import re

    import polars as pl

    data, out = tmp_path / "d.arrow", tmp_path / "m.leanfit"
    write_data(tmp_path / "d.csv", rows=400_000, seed=2)
    pl.scan_csv(tmp_path / "d.csv").sink_ipc(data)
    (tmp_path / "d.csv").unlink()
    assert data.stat().st_size > 60e6

    code, peak, err = peak_of(
        "train", data, "--target", "label", "--out", out, "--memory-limit", "300MB"
    )
    assert code == 2 and not out.exists()
    assert "Polars reads Arrow IPC files through a memory map" in err and "leanfit shrink" in err
    assert peak < parse_limit("300MB") - data.stat().st_size / 2  # refused before reading

    named = re.search(r"or give --memory-limit ([\d,]+MB) or more", err).group(1).replace(",", "")
    code, peak, err = peak_of(
        "train", data, "--target", "label", "--out", out, "--memory-limit", named
    )
    assert code == 0, err
    assert peak < parse_limit(named)


def test_a_dask_worker_refuses_an_ipc_file_it_cannot_map(tmp_path):
    """On Dask a worker maps one IPC file (one partition) at a time: locating the
    partitions refuses a file twice too big for a worker's memory, and not one that fits."""
    import polars as pl

    from leanfit.engines.dask.cluster import locate
    from leanfit.errors import MemoryBudgetExceeded
    from leanfit.memory import current_rss

    data = tmp_path / "d.arrow"
    pl.DataFrame({"x": range(2_000_000), "label": [0, 1] * 1_000_000}).write_ipc(data)
    size = data.stat().st_size
    with pytest.raises(MemoryBudgetExceeded, match=r"do not fit a worker's .*each worker"):
        locate(str(data), 2, int(current_rss() + 1.5 * size))
    paths, parts = locate(str(data), 2, int((current_rss() + 2 * size) / 0.8))
    assert len(parts) == 1 and list(paths) == [str(data)]


SPIKE = 300_000_000


def _spike() -> None:
    """Hold SPIKE bytes for a moment, between two of the sampler's looks."""
    import numpy as np

    held = np.ones(SPIKE // 8)
    del held


def test_a_spike_between_samples_stops_the_run_before_any_output(tmp_path):
    from leanfit.errors import MemoryBudgetExceeded
    from leanfit.io.outputs import atomic_path
    from leanfit.memory import Monitor, current_rss

    out = tmp_path / "model.leanfit"
    monitor = Monitor(current_rss() + SPIKE // 2, interval=60.0)  # one look a minute
    with monitor, monitor.stage("train"):
        _spike()
        with (
            pytest.raises(MemoryBudgetExceeded, match="over --memory-limit"),
            atomic_path(out) as tmp,
        ):
            tmp.write_text("fitted")
        with pytest.raises(MemoryBudgetExceeded, match="during train"):
            monitor.check()  # the safe point before every chunk sees it too
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_runs_peak_is_its_own_not_the_sessions(tmp_path):
    """In a notebook, leanfit runs after other work: its report, and its stop, count
    from the run's start."""
    from leanfit.memory import Monitor, current_rss, peak_rss

    _spike()
    assert peak_rss() > current_rss() + SPIKE // 2
    with Monitor(current_rss() + SPIKE // 2) as monitor, monitor.stage("train"):
        monitor.check()
    report = monitor.report()
    assert report["within_limit"] and report["peak_rss_bytes"] < report["limit_bytes"]


def test_the_over_limit_advice_names_only_options_the_command_has():
    from leanfit.memory import Monitor

    monitor = Monitor(100_000_000)
    for stage, advice in (("train", True), ("predict", False), ("inspect", False)):
        with monitor.stage(stage):
            message = str(monitor.over_limit(200_000_000))
        assert ("--batch-rows" in message) is advice, message


def test_a_resumed_runs_peak_counts_the_process_before_the_kill():
    from leanfit.memory import Monitor, peak_rss

    earlier = peak_rss() + 100_000_000  # the killed process's samples, from its checkpoint
    monitor = Monitor(earlier + SPIKE)
    with monitor, monitor.stage("train"):
        monitor.continue_trace([(0.0, 50_000_000, "setup"), (1.0, earlier, "train")])
    report = monitor.report()
    assert report["peak_rss_bytes"] == earlier == report["peak_by_stage_bytes"]["train"]


def test_thousands_of_dense_columns_are_refused_before_training_not_during(tmp_path):
    """Each dense number column costs the training stage ~93 KB whatever the rows (its
    encoding expressions): 3,000 of them are planned, and a limit that cannot hold them
    is refused with one that can, before a row is learned."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(10)
    frame = pd.DataFrame(
        rng.integers(0, 5, size=(50, 3_000)), columns=[f"c{i}" for i in range(3_000)]
    )
    frame["label"] = rng.integers(0, 2, 50)
    frame.to_csv(tmp_path / "dense.csv", index=False)
    args = ["train", tmp_path / "dense.csv", "--target", "label", "--out", tmp_path / "m.leanfit"]
    code, _, err = peak_of(*args, "--memory-limit", "450MB")
    assert code == 2 and "is below the" in err.strip().splitlines()[-1], err
    advised = re.search(r"Use --memory-limit ([\d,]+MB)", err)[1].replace(",", "")
    code, peak, err = peak_of(*args, "--memory-limit", advised)
    assert code == 0 and peak <= parse_limit(advised), err


def test_a_run_spawned_by_a_big_process_counts_its_own_peak(tmp_path):
    """getrusage's ru_maxrss of a process starts at its parent's peak (the memory it
    had at exec): a run started by a 600 MB process under --memory-limit 500MB was
    stopped at once. The run's own peak (VmHWM) is what counts."""
    data = tmp_path / "d.csv"
    write_data(data, rows=2_000, seed=4)
    spawn = (
        "import subprocess, sys\nimport numpy as np\n"
        "held = np.ones(600_000_000 // 8)\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stderr.write(done.stderr)\nprint(done.returncode)\nprint(done.stdout)\n"
    )
    command = [sys.executable, "-m", "leanfit.cli", "inspect", str(data), "--json"]
    env = {k: v for k, v in os.environ.items() if k != "POLARS_CSV_CHUNK_SIZE"}
    done = subprocess.run(
        [sys.executable, "-c", spawn, *command, "--memory-limit", "500MB"],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    code, report = done.stdout.split("\n", 1)
    assert code == "0", done.stderr
    assert json.loads(report)["peak_rss_bytes"] < 500_000_000
