"""`make demo`: generate data once, then inspect, shrink, train, evaluate and predict.

Each step is the real command in a subprocess with ``--json``; the report at the
end shows its wall time, rows per second, peak memory (as the OS counts it) and
holdout metrics.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DATA = Path("data/demo.csv")
TEST = Path("data/demo-test.csv")  # rows the models never saw: another seed
ROWS = 2_000_000
SCHEMA = "data/demo-schema.json"
LIMIT = ["--memory-limit", "1GB"]


def run(*args: str) -> dict:
    print(f"$ leanfit {' '.join(args)}", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "leanfit.cli", *args, "--json", "--force"],  # a rerun replaces
        stdout=subprocess.PIPE,
        text=True,
    )
    if done.returncode:
        sys.exit(done.returncode)
    return json.loads(done.stdout)


def steps() -> list[tuple[str, dict]]:
    out = []
    if not DATA.exists():
        out.append(("make-data", run("make-data", str(DATA), "--rows", str(ROWS), "--seed", "1")))
    if not TEST.exists():
        out.append(
            ("make-data test", run("make-data", str(TEST), "--rows", "200000", "--seed", "2"))
        )
    out.append(("inspect", run("inspect", str(DATA), "--target", "label", "--out", SCHEMA, *LIMIT)))
    out.append(
        ("shrink", run("shrink", str(DATA), "data/demo.parquet", "--schema", SCHEMA, *LIMIT))
    )
    for model, extra in (("sgd", []), ("logistic", []), ("xgboost", ["--rounds", "50"])):
        bundle = f"data/demo-{model}.leanfit"
        args = ["train", str(DATA), "--schema", SCHEMA, "--model", model, "--out", bundle]
        out.append((f"train {model}", run(*args, *extra, *LIMIT)))
    for model in ("sgd", "logistic", "xgboost"):
        bundle = f"data/demo-{model}.leanfit"
        out.append((f"evaluate {model}", run("evaluate", bundle, str(TEST), *LIMIT)))
    out.append(
        (
            "predict sgd",
            run(
                "predict",
                "data/demo-sgd.leanfit",
                str(DATA),
                "--out",
                "data/demo-predictions.parquet",
                "--proba",
                *LIMIT,
            ),
        )
    )
    return out


def main() -> None:
    results = steps()
    print(f"\n{'step':<18}{'s':>7}{'rows/s':>12}{'peak MiB':>10}{'accuracy':>10}{'ROC AUC':>9}")
    for name, r in results:
        rows = r.get("rows") or r.get("rows_train") or (r.get("metrics") or {}).get("n_rows") or 0
        metrics = r.get("metrics") or {}
        acc, auc = metrics.get("accuracy"), metrics.get("roc_auc")
        print(
            f"{name:<18}{r['seconds']:7.1f}{rows / r['seconds']:12,.0f}"
            f"{r['peak_rss_bytes'] / 2**20:10.0f}"
            f"{'' if acc is None else f'{acc:.4f}':>10}{'' if auc is None else f'{auc:.4f}':>9}"
        )
    print(f"train: metrics on its 20% holdout; evaluate: on {TEST}, rows never trained on.")


if __name__ == "__main__":
    main()
