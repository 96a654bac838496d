"""Training on one generated file: leanfit against the recipes users would write instead.

Usage: python bench/train.py [ROWS] [--memory-limit=400MB] [--only=sgd,logistic,chunks,memory]
(default 2,000,000 rows, every contender; leanfit runs under the memory limit)

Every contender runs in its own subprocess, so its peak RSS and its CPU seconds (user
+ system, start-up included) are the OS's count for that process alone; CPU seconds
are what to compare when other work shares the machine, since wall time then favours
single-threaded contenders. All score ROC AUC and accuracy on the same holdout rows
(leanfit's row-hash split, seed 0, 20%). Contenders:

* leanfit: ``leanfit inspect`` + ``leanfit train --model sgd --epochs 1`` (and
  ``--model logistic``), the whole commands, start-up included;
* pandas-chunks: ``read_csv(chunksize=100_000)``, mean-fill and scale from the
  first chunk, one-hot from the first chunk's levels, FeatureHasher for the
  high-cardinality column, ``SGDClassifier.partial_fit`` (the widely copied recipe);
* in-memory: ``pandas.read_csv`` of the whole file, the same features, and
  scikit-learn's ``LogisticRegression`` (lbfgs).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from recipes import measured, recipe_run

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 2_000_000
DATA = Path(f"data/bench-{ROWS}.csv")
OUT = Path("bench/out")
LIMIT = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--memory-limit=")), "400MB")
ONLY = next(
    (a.split("=", 1)[1] for a in sys.argv if a.startswith("--only=")), "sgd,logistic,chunks,memory"
).split(",")


def leanfit_run(model: str) -> dict:
    schema = OUT / "schema.json"
    cli = [sys.executable, "-m", "leanfit.cli"]
    limit = ["--memory-limit", LIMIT, "--force"]  # a rerun replaces its outputs
    inspected = measured(
        [*cli, "inspect", str(DATA), "--target", "label", "--out", str(schema), "--json", *limit]
    )
    trained = measured(
        [
            *cli,
            "train",
            str(DATA),
            "--schema",
            str(schema),
            "--model",
            model,
            "--out",
            str(OUT / f"{model}.leanfit"),
            "--json",
            *limit,
        ]
    )
    metrics = json.loads(trained["stdout"])["metrics"]
    return {
        "seconds": inspected["seconds"] + trained["seconds"],
        "cpu": inspected["cpu"] + trained["cpu"],
        "peak": max(inspected["peak"], trained["peak"]),
        "roc_auc": metrics["roc_auc"],
        "accuracy": metrics["accuracy"],
    }


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    if not DATA.exists():
        from leanfit.synth import write_data

        write_data(DATA, rows=ROWS, seed=1)
    contenders = {
        "sgd": ("leanfit sgd (inspect+train)", lambda: leanfit_run("sgd")),
        "logistic": ("leanfit logistic (inspect+train)", lambda: leanfit_run("logistic")),
        "chunks": ("pandas chunks + SGD partial_fit", lambda: recipe_run(DATA, "chunks")),
        "memory": ("pandas + LogisticRegression in memory", lambda: recipe_run(DATA, "memory")),
    }
    runs = {name: run() for key, (name, run) in contenders.items() if key in ONLY}
    base = next(iter(runs.values()))
    print(f"{ROWS:,} rows, {DATA.stat().st_size / 1e9:.2f} GB; ratios are against the first")
    print(
        f"{'contender':<40}{'s':>7}{'x':>6}{'cpu s':>7}{'x':>6}{'MiB':>7}{'x':>6}{'AUC':>8}{'acc':>8}"
    )
    for name, r in runs.items():
        print(
            f"{name:<40}{r['seconds']:7.1f}{r['seconds'] / base['seconds']:6.2f}"
            f"{r['cpu']:7.1f}{r['cpu'] / base['cpu']:6.2f}"
            f"{r['peak'] / 2**20:7.0f}{r['peak'] / base['peak']:6.2f}"
            f"{r['roc_auc']:8.4f}{r['accuracy']:8.4f}"
        )


if __name__ == "__main__":
    main()
