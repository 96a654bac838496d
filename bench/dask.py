"""The Dask engine on one generated file: 1 worker against 2, and the local engine.

Usage: python bench/dask.py [ROWS]   (default 200,000 rows; keep it small on a laptop)

For each worker count the LocalCluster leanfit starts (single-threaded worker
processes, here with Polars limited to one thread each, so a worker is one core)
runs the same
steps on ``data/bench-dask-ROWS.csv``: ``inspect``, ``train --model nb``,
``train --model logistic``, ``evaluate`` and ``predict``. Reported per step: wall
time (cluster start excluded), the speed-up of 2 workers over 1, and from Dask's
task stream the number of tasks, the seconds spent computing in tasks summed over
the workers, and the workers' utilisation: that sum over wall time x workers (1.0:
no worker ever idle, waiting for the scheduler, the client or a transfer). CPU
seconds of the workers (whole processes) and of the client (the LocalCluster's
scheduler runs in it) say whether total work grows with the worker count, which
wall times on a shared machine cannot. The local engine (one process, Polars on
every core) runs the same steps, reported as ratios to one bare Polars streaming
parse of the file measured in the same run. Each worker's peak RSS is the OS's
(``VmHWM`` of the worker process, over the whole run). Results go to
bench/out/dask.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# this file is named dask.py: keep its folder off the import path, or it hides the package
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
DATA = Path(f"data/bench-dask-{ROWS}.csv")
OUT = Path("bench/out")
WORKER_MEMORY = "1.5GB"
BARE_PARSE = "import polars as pl\nfor _ in pl.scan_csv(PATH).collect_batches(): pass"


def cpu_seconds() -> float:
    """User and system CPU seconds of this whole process (every thread)."""
    return time.process_time()


class Timer:
    """Runs steps and records, per step, wall seconds and, on a cluster, the task
    stream's compute seconds per worker and the CPU seconds of workers and client."""

    def __init__(self, client=None):
        self.client = client
        self.steps: dict[str, dict] = {}
        self.tasks: dict[str, list] = {}

    def __call__(self, name: str, fn, *args, **kwargs):
        if self.client is None:
            start = time.perf_counter()
            result = fn(*args, **kwargs)
            self.steps[name] = {"seconds": round(time.perf_counter() - start, 3)}
            return result
        from distributed import get_task_stream

        c = self.client
        workers0, client0, sent0 = c.run(cpu_seconds), cpu_seconds(), sent_bytes(c)
        with get_task_stream(client=c) as stream:
            start = time.perf_counter()
            result = fn(*args, client=c, **kwargs)
            wall = time.perf_counter() - start
        workers1, client1 = c.run(cpu_seconds), cpu_seconds()
        self.tasks[name] = stream.data
        self.steps[name] = described(stream.data, wall, len(workers1)) | {
            "worker_cpu_seconds": round(sum(workers1.values()) - sum(workers0.values()), 2),
            "client_cpu_seconds": round(client1 - client0, 2),
            "sent_bytes": sent_bytes(c) - sent0,
        }
        return result


def sent_bytes(client) -> int:
    """Bytes the workers have sent so far (results to the client, data to each other),
    as the workers' own metrics count them (reported to the scheduler every second)."""
    time.sleep(1.1)  # let the last heartbeat carry the step's metrics
    metrics = client.run_on_scheduler(scheduler_metrics)
    return int(metrics.get(("get-data", "memory-read", "bytes"), 0))


def scheduler_metrics(dask_scheduler) -> dict:
    return dict(dask_scheduler.cumulative_worker_metrics)


def described(tasks: list[dict], wall: float, workers: int) -> dict:
    """Wall seconds, task count, compute seconds per worker and utilisation."""
    busy: dict[str, float] = {}
    moving = 0.0
    for task in tasks:
        for ss in task["startstops"]:
            seconds = ss["stop"] - ss["start"]
            if ss["action"] == "compute":
                busy[task["worker"]] = busy.get(task["worker"], 0.0) + seconds
            else:  # transfer, disk-read, disk-write
                moving += seconds
    compute = sum(busy.values())
    return {
        "seconds": round(wall, 3),
        "tasks": len(tasks),
        "compute_seconds": round(compute, 2),
        "compute_per_worker": [round(s, 2) for s in sorted(busy.values())],
        "moving_seconds": round(moving, 2),
        "utilisation": round(compute / (wall * workers), 3),
    }


def steps(timer: Timer, folder: Path) -> None:
    """Run every step with ``timer``: on its client's cluster, or the local engine."""
    from leanfit import TrainOptions
    from leanfit.engines import dask as dask_engine
    from leanfit.engines.local.apply import evaluate, predict
    from leanfit.engines.local.train import train
    from leanfit.schema import inspect

    on_dask = timer.client is not None
    schema = timer("inspect", dask_engine.inspect if on_dask else inspect, DATA, target="label")
    fit = dask_engine.train if on_dask else train
    for model in ("nb", "logistic"):
        opts = TrainOptions(model=model)
        out = folder / f"{model}.leanfit"
        timer(f"train {model}", fit, DATA, schema=schema, options=opts, out=out)
    bundle = folder / "logistic.leanfit"
    timer("evaluate", dask_engine.evaluate if on_dask else evaluate, bundle, DATA)
    out = folder / ("preds" if on_dask else "preds.parquet")
    timer("predict", dask_engine.predict if on_dask else predict, bundle, DATA, out)


def on_cluster(workers: int) -> dict:
    """The steps on the LocalCluster leanfit starts, one core (one Polars thread) per worker."""
    from leanfit.engines.dask import process_peak_rss
    from leanfit.engines.dask.cluster import local_cluster

    with (
        local_cluster(workers, WORKER_MEMORY, polars_threads=1) as client,
        tempfile.TemporaryDirectory() as folder,
    ):
        timer = Timer(client)
        steps(timer, Path(folder))
        peaks = client.run(process_peak_rss)
    return {"steps": timer.steps, "worker_peak_rss_mb": [round(p / 1e6) for p in peaks.values()]}


def bare_parse() -> float:
    """Seconds of one bare Polars streaming parse of the file, in its own process."""
    script = f"import time\nPATH = {str(DATA)!r}\nt = time.perf_counter()\n{BARE_PARSE}\n"
    script += "print(time.perf_counter() - t)"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return float(done.stdout)


def main() -> None:
    from leanfit.synth import write_data

    if not DATA.exists():
        DATA.parent.mkdir(parents=True, exist_ok=True)
        write_data(DATA, rows=ROWS, seed=11)
    results = {"rows": ROWS, "bytes": DATA.stat().st_size, "worker_memory": WORKER_MEMORY}
    results["bare_parse_seconds"] = round(bare_parse(), 3)
    local = Timer()
    with tempfile.TemporaryDirectory() as folder:
        steps(local, Path(folder))
    results["local"] = local.steps
    for workers in (1, 2):  # one cluster at a time
        results[f"dask_{workers}"] = on_cluster(workers)
    one, two = results["dask_1"]["steps"], results["dask_2"]["steps"]
    results["speedup_2_over_1"] = {k: round(one[k]["seconds"] / two[k]["seconds"], 2) for k in one}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "dask.json").write_text(json.dumps(results, indent=1))
    report(results)


def report(results: dict) -> None:
    parse = results["bare_parse_seconds"]
    one, two = results["dask_1"]["steps"], results["dask_2"]["steps"]
    print(f"{results['rows']:,} rows, {results['bytes'] / 1e6:,.1f} MB CSV")
    print(f"bare Polars streaming parse: {parse:.2f} s")
    print(
        f"{'step':<16}{'local':>8}{'/parse':>8}{'1 worker':>10}{'2 workers':>11}"
        f"{'speed-up':>10}{'util 1':>8}{'util 2':>8}{'tasks 1/2':>11}{'cpu s 1/2':>13}"
    )
    for step in one:
        here = results["local"][step]["seconds"]
        cpu = f"{one[step]['worker_cpu_seconds']:.1f}/{two[step]['worker_cpu_seconds']:.1f}"
        print(
            f"{step:<16}{here:>8.2f}{here / parse:>8.2f}{one[step]['seconds']:>10.2f}"
            f"{two[step]['seconds']:>11.2f}{results['speedup_2_over_1'][step]:>10.2f}"
            f"{one[step]['utilisation']:>8.0%}{two[step]['utilisation']:>8.0%}"
            f"{one[step]['tasks']:>6}/{two[step]['tasks']:<4}{cpu:>13}"
        )
    print("util: seconds computing in tasks (task stream) over wall x workers")
    print("cpu s: CPU seconds of the worker processes, summed")
    print(f"{'step':<16}{'client cpu s 1/2':>18}{'MB sent by workers 1/2':>24}")
    for step in one:
        client = f"{one[step]['client_cpu_seconds']:.2f}/{two[step]['client_cpu_seconds']:.2f}"
        sent = f"{one[step]['sent_bytes'] / 1e6:.2f}/{two[step]['sent_bytes'] / 1e6:.2f}"
        print(f"{step:<16}{client:>18}{sent:>24}")
    for workers in (1, 2):
        peaks = ", ".join(f"{p:,} MB" for p in results[f"dask_{workers}"]["worker_peak_rss_mb"])
        print(f"peak RSS per worker with {workers} worker(s): {peaks}")


if __name__ == "__main__":
    main()
