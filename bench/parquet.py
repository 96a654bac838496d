"""Training from leanfit shrink's Parquet against training from the CSV it came from,
and against a bare Polars streaming parse of that CSV, all measured in this run.

Usage: python bench/parquet.py [ROWS] [--memory-limit=400MB]
(default 2,000,000 generated rows; the CSV is made once and shared with bench/train.py)

Every step is a subprocess timed and measured by GNU time (wall seconds, CPU seconds
user + system, peak RSS): CPU seconds are what to compare when other work shares the
machine. ``train`` includes its inspect pass and runs under the memory limit. Also
printed: pandas' footprint of the shrunk file against its default footprint of the CSV
(``memory_usage(deep=True)``), the done-means of issue 14.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from recipes import measured

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 2_000_000
DATA = Path(f"data/bench-{ROWS}.csv")
OUT = Path("bench/out")
SHRUNK = OUT / f"bench-{ROWS}.parquet"
LIMIT = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--memory-limit=")), "400MB")
CLI = [sys.executable, "-m", "leanfit.cli"]
BARE_PARSE = (
    "import sys, polars as pl\n"
    "for _ in pl.scan_csv(sys.argv[1], infer_schema_length=10_000).collect_batches(): pass"
)
PANDAS_RATIO = (
    "import sys, pandas as pd\n"
    "csv = pd.read_csv(sys.argv[1]).memory_usage(deep=True).sum()\n"
    "print(pd.read_parquet(sys.argv[2]).memory_usage(deep=True).sum() / csv)"
)


def train(data: Path) -> dict:
    out = OUT / f"parquet-bench-{data.suffix[1:]}.leanfit"
    cmd = ["train", str(data), "--target", "label", "--out", str(out), "--json", "--force"]
    run = measured([*CLI, *cmd, "--memory-limit", LIMIT])
    return run | {"roc_auc": json.loads(run["stdout"])["metrics"]["roc_auc"]}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    if not DATA.exists():
        from leanfit.synth import write_data

        write_data(DATA, rows=ROWS, seed=1)
    shrunk = measured([*CLI, "shrink", str(DATA), str(SHRUNK), "--force", "--quiet"])
    runs = {
        "bare Polars parse of the CSV": measured([sys.executable, "-c", BARE_PARSE, str(DATA)]),
        "leanfit train CSV": train(DATA),
        "leanfit train Parquet": train(SHRUNK),
    }
    ratio = float(measured([sys.executable, "-c", PANDAS_RATIO, str(DATA), str(SHRUNK)])["stdout"])
    print(f"{ROWS:,} rows; --memory-limit {LIMIT}; shrink took {shrunk['seconds']:.1f} s")
    print(f"{'step':<30}{'wall s':>8}{'CPU s':>8}{'peak MiB':>10}{'AUC':>8}")
    for name, run in runs.items():
        auc = f"{run['roc_auc']:8.4f}" if "roc_auc" in run else ""
        print(f"{name:<30}{run['seconds']:8.1f}{run['cpu']:8.1f}{run['peak'] / 2**20:10.0f}{auc}")
    ours = runs["leanfit train Parquet"]
    for name in ("leanfit train CSV", "bare Polars parse of the CSV"):
        other = runs[name]
        print(
            f"Parquet train / {name}: wall {ours['seconds'] / other['seconds']:.2f}x, "
            f"CPU {ours['cpu'] / other['cpu']:.2f}x, peak {ours['peak'] / other['peak']:.2f}x"
        )
    print(f"pandas footprint of the shrunk file / of the CSV: {ratio:.3f} (goal: <= 0.35)")


if __name__ == "__main__":
    main()
