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


PEERS = {
    "polars streaming": "import polars as pl\n"
    "for _ in pl.scan_csv(PATH, infer_schema_length=10_000).collect_batches(): pass",
    "pandas chunks": "import pandas as pd\nfor _ in pd.read_csv(PATH, chunksize=200_000): pass",
    "pyarrow open_csv": "import pyarrow.csv as c\nfor _ in c.open_csv(PATH): pass",
}


def timed(code: str) -> float:
    """Seconds of a bare parse, timed inside its own process (start-up not counted),
    so that no reader's open file or memory lingers in this one."""
    script = f"import time\nPATH = {str(DATA)!r}\nt = time.perf_counter()\n{code}\n"
    script += "print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return float(out.stdout)


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
    seconds = {name: timed(code) for name, code in PEERS.items()}
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
