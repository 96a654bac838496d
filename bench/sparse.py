"""Wide, mostly-zero data: leanfit against a bare Polars parse of the same file.

Usage: python bench/sparse.py [ROWS] [COLUMNS] [DENSITY]
       (default 20,000 rows of 10,000 count columns at 1% non-zeros, about 400 MB;
       made once under data/ with ``leanfit make-data --sparse-columns``)

Every step runs in its own subprocess, which reports its wall time, its CPU time
(user + system: the machine may be shared) and its peak RSS (``ru_maxrss``):

- bare parse: Polars' streaming CSV scan of the file, every column, nothing kept;
- ``leanfit inspect``, and ``leanfit train`` (sgd, inspect included) and
  ``leanfit train --schema --model logistic``, each under ``--memory-limit 1GB``.

Printed: rows/s, CPU seconds, peak and each step's ratio to the bare parse.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

MEASURE = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "wall = time.perf_counter() - t\n"
    "use = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(done.returncode, wall, use.ru_utime + use.ru_stime, use.ru_maxrss * 1024)\n"
    "sys.stderr.write(done.stderr[-2000:])\n"
)
BARE_PARSE = "import sys, polars as pl\nfor _ in pl.scan_csv(sys.argv[1]).collect_batches(): pass\n"


def measure(*command) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *map(str, command)], capture_output=True, text=True
    )
    code, wall, cpu, peak = done.stdout.split()
    if code != "0":
        sys.exit(f"{command[:4]} failed: {done.stderr}")
    return {"wall": float(wall), "cpu": float(cpu), "peak": int(peak)}


def data_path(rows: int, columns: int, density: float) -> Path:
    path = Path("data") / f"sparse_{rows}x{columns}_{density}.csv"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        options = ["--rows", rows, "--sparse-columns", columns, "--density", density]
        measure(sys.executable, "-m", "leanfit.cli", "make-data", path, *options)
    return path


def main(rows: int = 20_000, columns: int = 10_000, density: float = 0.01) -> None:
    data = data_path(rows, columns, density)
    leanfit = [sys.executable, "-m", "leanfit.cli"]
    limit = ["--memory-limit", "1GB", "--quiet"]
    with tempfile.TemporaryDirectory() as tmp:
        schema = Path(tmp) / "schema.json"
        steps = {
            "bare Polars parse": [sys.executable, "-c", BARE_PARSE, data],
            "leanfit inspect": [*leanfit, "inspect", data, "--target", "label", "--out", schema],
            "leanfit train (sgd)": [*leanfit, "train", data, "--target", "label"],
            "leanfit train --model logistic": [
                *[*leanfit, "train", data, "--schema", schema, "--model", "logistic"],
            ],
        }
        results = {}
        for name, command in steps.items():
            if name != "bare Polars parse":
                command = [*command, *limit]
                if "train" in name:
                    command += ["--out", Path(tmp) / f"{len(results)}.leanfit"]
            results[name] = measure(*command)
    bare = results["bare Polars parse"]
    print(f"{data} ({data.stat().st_size / 1e6:,.0f} MB, {rows:,} rows x {columns:,} columns)")
    print(f"{'step':32} {'rows/s':>9} {'wall s':>7} {'CPU s':>7} {'peak MB':>8} {'CPU ratio':>9}")
    for name, r in results.items():
        ratio = r["cpu"] / bare["cpu"]
        print(
            f"{name:32} {rows / r['wall']:9,.0f} {r['wall']:7.1f} {r['cpu']:7.1f} "
            f"{r['peak'] / 1e6:8,.0f} {ratio:9.2f}"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    args = sys.argv[1:]
    main(*(int(a) for a in args[:2]), *(float(a) for a in args[2:3]))
