"""inspect throughput against bare streaming parses of the same file, as ratios.

Usage: python bench/inspect_speed.py [ROWS]   (default 8,000,000; data is generated once)
Each leanfit run is the whole command in a subprocess, start-up included.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 8_000_000
DATA = Path(f"data/bench-{ROWS}.csv")


def polars_stream() -> None:
    import polars as pl

    for _ in pl.scan_csv(DATA, infer_schema_length=10_000).collect_batches():
        pass


def pandas_chunks() -> None:
    import pandas as pd

    for _ in pd.read_csv(DATA, chunksize=200_000):
        pass


def pyarrow_stream() -> None:
    import pyarrow.csv as pacsv

    for _ in pacsv.open_csv(DATA):
        pass


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def leanfit_inspect() -> dict:
    cmd = [sys.executable, "-m", "leanfit.cli", "inspect", str(DATA), "--target", "label", "--json"]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return {"seconds": time.perf_counter() - start, **json.loads(out)}


def main() -> None:
    if not DATA.exists():
        from leanfit.synth import write_data

        write_data(DATA, rows=ROWS, seed=1)
    size = DATA.stat().st_size
    peers = {
        "polars streaming": polars_stream,
        "pandas chunks": pandas_chunks,
        "pyarrow open_csv": pyarrow_stream,
    }
    seconds = {name: timed(fn) for name, fn in peers.items()}
    ours = leanfit_inspect()
    ceiling = min(seconds.values())
    print(f"{ROWS:,} rows, {size / 1e9:.2f} GB")
    print(f"{'reader':<20}{'s':>8}{'MB/s':>8}{'leanfit / it (throughput)':>28}")
    for name, s in seconds.items():
        print(f"{name:<20}{s:8.2f}{size / s / 1e6:8.0f}{s / ours['seconds']:28.2f}")
    print(
        f"{'leanfit inspect':<20}{ours['seconds']:8.2f}{size / ours['seconds'] / 1e6:8.0f}"
        f"   peak RSS {ours['peak_rss_bytes'] / 2**20:,.0f} MiB"
    )
    print(f"leanfit inspect reaches {ceiling / ours['seconds']:.0%} of the fastest bare parse.")


if __name__ == "__main__":
    main()
