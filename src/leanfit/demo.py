"""`make demo`: generate data once, then inspect, shrink, train, evaluate and predict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DATA = Path("data/demo.csv")
ROWS = 2_000_000


def run(*args: str) -> None:
    print(f"\n$ leanfit {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "leanfit.cli", *args], check=True)


def main() -> None:
    if not DATA.exists():
        run("make-data", str(DATA), "--rows", str(ROWS), "--seed", "1")
    run("inspect", str(DATA), "--target", "label", "--out", "data/demo-schema.json")
    run("shrink", str(DATA), "data/demo.parquet", "--schema", "data/demo-schema.json")
    for model in ("sgd", "logistic"):
        bundle = f"data/demo-{model}.leanfit"
        run(
            "train",
            str(DATA),
            "--schema",
            "data/demo-schema.json",
            "--model",
            model,
            "--out",
            bundle,
        )
    run("evaluate", "data/demo-logistic.leanfit", "data/demo.parquet")
    run(
        "predict",
        "data/demo-sgd.leanfit",
        str(DATA),
        "--out",
        "data/demo-predictions.parquet",
        "--proba",
        "--keep",
        "customer_id",
    )


if __name__ == "__main__":
    main()
