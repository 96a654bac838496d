"""The Dask engine on one generated file: 1 worker against 2, and the local engine.

Usage: python bench/dask.py [ROWS]   (default 200,000 rows; keep it small on a laptop)

For each worker count a LocalCluster of single-threaded worker processes (Polars
also limited to one thread per worker, so a worker is one core) runs the same
steps on ``data/bench-dask-ROWS.csv``: ``inspect``, ``train --model nb``,
``train --model logistic``, ``evaluate`` and ``predict``. Reported: wall time per
step (cluster start excluded), the speed-up of 2 workers over 1, and each
worker's peak RSS as the OS counts it (``VmHWM`` of the worker process, over
the whole run). The local engine (one process, Polars on every core) runs
the same steps for reference. Results go to bench/out/dask.json.
"""

from __future__ import annotations

import json
import logging
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


def steps(engine: dict, folder: Path) -> dict[str, float]:
    """Wall seconds of each step with ``engine`` (the dask ``client`` and ``block``, or {})."""
    from leanfit import TrainOptions
    from leanfit.engines import dask as dask_engine
    from leanfit.engines.local.apply import evaluate, predict
    from leanfit.engines.local.train import train
    from leanfit.schema import inspect

    on_dask = bool(engine)
    seconds = {}

    def timed(name, fn, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds[name] = round(time.perf_counter() - start, 3)
        return result

    schema = timed(
        "inspect", dask_engine.inspect if on_dask else inspect, DATA, target="label", **engine
    )
    fit = dask_engine.train if on_dask else train
    for model in ("nb", "logistic"):
        opts = TrainOptions(model=model)
        timed(
            f"train {model}",
            fit,
            DATA,
            schema=schema,
            options=opts,
            out=folder / f"{model}.leanfit",
            **engine,
        )
    bundle = folder / "logistic.leanfit"
    timed("evaluate", dask_engine.evaluate if on_dask else evaluate, bundle, DATA, **engine)
    out = folder / ("preds" if on_dask else "preds.parquet")
    timed("predict", dask_engine.predict if on_dask else predict, bundle, DATA, out, **engine)
    return seconds


def on_cluster(workers: int) -> dict:
    from distributed import Client, LocalCluster

    from leanfit.engines.dask import process_peak_rss

    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=WORKER_MEMORY,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,
            env={"POLARS_MAX_THREADS": "1"},
        ) as cluster,
        Client(cluster) as client,
        tempfile.TemporaryDirectory() as folder,
    ):
        seconds = steps({"client": client}, Path(folder))
        peaks = client.run(process_peak_rss)
    return {"seconds": seconds, "worker_peak_rss_mb": [round(p / 1e6) for p in peaks.values()]}


def main() -> None:
    from leanfit.synth import write_data

    if not DATA.exists():
        DATA.parent.mkdir(parents=True, exist_ok=True)
        write_data(DATA, rows=ROWS, seed=11)
    results = {"rows": ROWS, "bytes": DATA.stat().st_size, "worker_memory": WORKER_MEMORY}
    with tempfile.TemporaryDirectory() as folder:
        results["local"] = {"seconds": steps({}, Path(folder))}
    for workers in (1, 2):  # one cluster at a time
        results[f"dask_{workers}"] = on_cluster(workers)
    one, two = results["dask_1"]["seconds"], results["dask_2"]["seconds"]
    results["speedup_2_over_1"] = {k: round(one[k] / two[k], 2) for k in one}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "dask.json").write_text(json.dumps(results, indent=1))
    print(f"{ROWS:,} rows, {results['bytes'] / 1e6:,.1f} MB CSV")
    print(f"{'step':<16}{'local':>9}{'1 worker':>10}{'2 workers':>11}{'speed-up':>10}")
    for step in one:
        print(
            f"{step:<16}{results['local']['seconds'][step]:>9.2f}{one[step]:>10.2f}"
            f"{two[step]:>11.2f}{results['speedup_2_over_1'][step]:>10.2f}"
        )
    for workers in (1, 2):
        peaks = ", ".join(f"{p:,} MB" for p in results[f"dask_{workers}"]["worker_peak_rss_mb"])
        print(f"peak RSS per worker with {workers} worker(s): {peaks}")


if __name__ == "__main__":
    main()
