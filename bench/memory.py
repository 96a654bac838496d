"""Peak memory and wall time as the data grows: leanfit against the usual recipes.

Usage: python bench/memory.py [ROWS ...]   (default 1,000,000 4,000,000 16,000,000)

For each size: ``leanfit train --model sgd --memory-limit 400MB`` (the inspect pass
included), the pandas-chunks + ``partial_fit`` recipe and, while it fits in this
machine's memory, ``pandas.read_csv`` + scikit-learn in memory; each in its own
subprocess, its peak RSS read by GNU time. Then a PNG of leanfit's RSS over time
(``--memory-trace``) on the largest file, written to docs/memory-trace.png.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psutil
from recipes import measured, recipe_run

SIZES = [int(a) for a in sys.argv[1:]] or [1_000_000, 4_000_000, 16_000_000]
IN_MEMORY_BYTES_PER_ROW = 1_500  # pandas frame + features + solver copies, measured at 1M
PLOT = Path("docs/memory-trace.png")


def leanfit_run(data: Path, trace: Path) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "leanfit.cli",
        "train",
        str(data),
        "--target",
        "label",
        "--memory-limit",
        "400MB",
        "--memory-trace",
        str(trace),
        "--out",
        "bench/out/memory.leanfit",
        "--json",
        "--force",
    ]
    run = measured(cmd)
    return {**run, "roc_auc": json.loads(run["stdout"])["metrics"]["roc_auc"]}


def plot(trace: Path, rows: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [line.split(",") for line in trace.read_text().splitlines()[1:]]
    t = [float(x[0]) for x in lines]
    mib = [int(x[1]) / 2**20 for x in lines]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(t, mib, lw=1, label="leanfit train --model sgd (RSS)")
    ax.axhline(400e6 / 2**20, color="red", ls="--", lw=1, label="--memory-limit 400MB")
    ax.set(xlabel="seconds", ylabel="MiB", title=f"RSS over time, {rows:,} rows")
    ax.legend(loc="lower right")
    fig.tight_layout()
    PLOT.parent.mkdir(exist_ok=True)
    fig.savefig(PLOT, dpi=100)


def main() -> None:
    from leanfit.synth import write_data

    Path("bench/out").mkdir(parents=True, exist_ok=True)
    print(f"{'rows':>12} {'contender':<34}{'s':>8}{'peak MiB':>10}{'x leanfit':>10}{'AUC':>8}")
    for rows in SIZES:
        data = Path(f"data/bench-{rows}.csv")
        if not data.exists():
            write_data(data, rows=rows, seed=1)
        trace = Path(f"bench/out/trace-{rows}.csv")
        runs = {
            "leanfit (inspect + sgd)": leanfit_run(data, trace),
            "pandas chunks + partial_fit": recipe_run(data, "chunks"),
        }
        if rows * IN_MEMORY_BYTES_PER_ROW < 0.8 * psutil.virtual_memory().available:
            runs["pandas + sklearn in memory"] = recipe_run(data, "memory")
        base = runs["leanfit (inspect + sgd)"]["peak"]
        for name, r in runs.items():
            print(
                f"{rows:>12,} {name:<34}{r['seconds']:8.1f}{r['peak'] / 2**20:10.0f}"
                f"{r['peak'] / base:10.2f}{r['roc_auc']:8.4f}"
            )
    plot(trace, rows)
    print(f"RSS trace of the last leanfit run: {PLOT}")


if __name__ == "__main__":
    main()
