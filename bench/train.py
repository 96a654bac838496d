"""Training on one generated file: leanfit against the recipes users would write instead.

Usage: python bench/train.py [ROWS] [--skip-in-memory]   (default 2,000,000 rows)

Every contender runs in its own subprocess, so its peak RSS is the OS's count for
that process alone; all score ROC AUC on the same holdout rows (leanfit's row-hash
split, seed 0, 20%). Contenders:

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
import subprocess
import sys
import time
from pathlib import Path

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 2_000_000
DATA = Path(f"data/bench-{ROWS}.csv")
OUT = Path("bench/out")

RECIPE = r"""
import sys, json, time
import numpy as np, pandas as pd, scipy.sparse as sp
from sklearn.feature_extraction import FeatureHasher
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import roc_auc_score
from leanfit.train import holdout_mask

path, mode = sys.argv[1], sys.argv[2]
DROP = ["customer_id", "label", "signup_date"]
HIGH = "product"

class Features:
    def __init__(self, first):
        self.num = [c for c in first.columns if c not in DROP and first[c].dtype.kind in "fiub"]
        self.cat = [c for c in first.columns if c not in DROP + [HIGH] + self.num]
        self.mean = first[self.num].astype(float).mean()
        self.std = first[self.num].astype(float).std().replace(0, 1)
        self.levels = {c: sorted(first[c].dropna().unique()) for c in self.cat}
        self.hasher = FeatureHasher(1024, input_type="string")
    def __call__(self, df):
        num = ((df[self.num].astype(float) - self.mean) / self.std).fillna(0.0).to_numpy(np.float32)
        cats = [pd.get_dummies(pd.Categorical(df[c], categories=self.levels[c])).to_numpy(np.float32)
                for c in self.cat]
        hashed = self.hasher.transform([[v] for v in df[HIGH].astype(str)])
        return sp.hstack([sp.csr_matrix(num)] + [sp.csr_matrix(c) for c in cats] + [hashed]).tocsr()

start = time.perf_counter()
scores, labels = [], []
if mode == "chunks":
    model, feats, offset = SGDClassifier(loss="log_loss", random_state=0), None, 0
    for df in pd.read_csv(path, chunksize=100_000):
        feats = feats or Features(df)
        hold = holdout_mask(np.arange(offset, offset + len(df), dtype=np.uint64), 0.2, 0)
        offset += len(df)
        X, y = feats(df), df["label"].to_numpy()
        model.partial_fit(X[~hold], y[~hold], classes=[0, 1])
        scores.append(X[hold]), labels.append(y[hold])
    auc = roc_auc_score(np.concatenate(labels), model.predict_proba(sp.vstack(scores))[:, 1])
else:
    df = pd.read_csv(path)
    hold = holdout_mask(np.arange(len(df), dtype=np.uint64), 0.2, 0)
    X, y = Features(df)(df), df["label"].to_numpy()
    model = LogisticRegression(max_iter=1000).fit(X[~hold], y[~hold])
    auc = roc_auc_score(y[hold], model.predict_proba(X[hold])[:, 1])
print(json.dumps({"seconds": time.perf_counter() - start, "roc_auc": auc}))
"""


def measured(cmd: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS bytes (GNU time) and stdout of one subprocess."""
    start = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True, check=True
    )
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    return time.perf_counter() - start, peak_kb * 1024, done.stdout


def leanfit_run(model: str) -> dict:
    schema = OUT / "schema.json"
    cli = [sys.executable, "-m", "leanfit.cli"]
    t1, m1, _ = measured(
        [*cli, "inspect", str(DATA), "--target", "label", "--out", str(schema), "--json"]
    )
    t2, m2, out = measured(
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
        ]
    )
    return {
        "seconds": t1 + t2,
        "peak": max(m1, m2),
        "roc_auc": json.loads(out)["metrics"]["roc_auc"],
    }


def recipe_run(mode: str) -> dict:
    seconds, peak, out = measured([sys.executable, "-c", RECIPE, str(DATA), mode])
    return {"seconds": seconds, "peak": peak, "roc_auc": json.loads(out)["roc_auc"]}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    if not DATA.exists():
        from leanfit.synth import write_data

        write_data(DATA, rows=ROWS, seed=1)
    runs = {
        "leanfit sgd (inspect+train)": leanfit_run("sgd"),
        "leanfit logistic (inspect+train)": leanfit_run("logistic"),
        "pandas chunks + SGD partial_fit": recipe_run("chunks"),
    }
    if "--skip-in-memory" not in sys.argv:
        runs["pandas + LogisticRegression in memory"] = recipe_run("memory")
    base = runs["leanfit sgd (inspect+train)"]
    print(f"{ROWS:,} rows, {DATA.stat().st_size / 1e9:.2f} GB; ratios are against leanfit sgd")
    print(f"{'contender':<40}{'s':>8}{'x':>7}{'peak MiB':>10}{'x':>7}{'AUC':>8}")
    for name, r in runs.items():
        print(
            f"{name:<40}{r['seconds']:8.1f}{r['seconds'] / base['seconds']:7.2f}"
            f"{r['peak'] / 2**20:10.0f}{r['peak'] / base['peak']:7.2f}{r['roc_auc']:8.4f}"
        )


if __name__ == "__main__":
    main()
