"""Boosted trees from a CSV: leanfit's streaming fit vs two plain XGBoost recipes.

Usage: python bench/boosting.py [ROWS]   (default 2,000,000; data made once under data/)

Every contender runs in its own subprocess, which reports its wall time, its CPU
time, its peak RSS (``ru_maxrss``) and the holdout ROC AUC. All use the same rows for training
and holdout (leanfit's row-number hash, 20%), the same XGBoost settings (hist,
100 rounds, depth 6, learning rate 0.3, 256 bins, 2 threads) and the holdout as
the evaluation set during training:

a.  leanfit: ``inspect`` then ``fit_booster`` without a memory limit (QuantileDMatrix
    fed by the typed stream);
a2. the command line, ``leanfit train --model xgboost --memory-limit 1GB`` (inspect,
    plan, train, save the bundle): the planner picks the matrix (external memory when
    the in-memory one would take more than half the limit);
b.  XGBoost in memory: ``pandas.read_csv`` with category dtypes, QuantileDMatrix
    (as ``XGBClassifier`` builds it);
c.  XGBoost external memory: a hand-written iterator over ``pandas.read_csv`` chunks
    (categories gathered in a first pass so every chunk codes them alike),
    ExtMemQuantileDMatrix.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROUNDS, DEPTH, RATE, BINS, THREADS = 100, 6, 0.3, 256, 2
HOLDOUT, SEED, CHUNK = 0.2, 0, 131_072
TEXT = ["plan", "region", "product"]
DATE = "signup_date"
SKIP = ["customer_id", "label"]
PARAMS = {
    "tree_method": "hist",
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "max_depth": DEPTH,
    "learning_rate": RATE,
    "max_bin": BINS,
    "nthread": THREADS,
    "seed": SEED,
}
CONTENDERS = {
    "a": "a.  leanfit fit_booster",
    "a2": "a2. leanfit CLI, --memory-limit 1GB",
    "b": "b.  XGBoost in memory (pandas)",
    "c": "c.  XGBoost ext. memory (pandas chunks)",
}


def data_path(rows: int) -> Path:
    return Path(f"data/bench-boost-{rows}.csv")


# --------------------------------------------------------------------------- contenders


def run_leanfit(path: Path) -> dict:
    from leanfit.engines.local.boost import fit_booster
    from leanfit.options import BoostOptions, TrainOptions
    from leanfit.schema import inspect

    schema = inspect(path, target="label")
    opts = BoostOptions(ROUNDS, DEPTH, RATE, BINS, early_stopping_rounds=0, nthread=THREADS)
    _, summary = fit_booster(path, schema, TrainOptions(holdout=HOLDOUT, seed=SEED), opts)
    return {"auc": summary["metrics"]["roc_auc"], "note": summary["matrix"]}


def run_leanfit_cli(path: Path) -> dict:
    import contextlib
    import io

    from leanfit.cli import main

    out = io.StringIO()
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(out):
        args = ["train", str(path), "--target", "label", "--model", "xgboost", "--json"]
        args += ["--memory-limit", "1GB", "--nthread", str(THREADS), "--out", f"{tmp}/m.leanfit"]
        args += ["--early-stopping-rounds", "0"]  # all ROUNDS, as the references
        main(args, standalone_mode=False)
    summary = json.loads(out.getvalue())
    return {"auc": summary["metrics"]["roc_auc"], "note": summary["matrix"]}


def _prepare(df, categories: dict | None = None):
    """Features as XGBoost takes them from pandas: dates to days, text as category."""
    import pandas as pd

    X = df.drop(columns=SKIP)
    X[DATE] = (pd.to_datetime(X[DATE]) - pd.Timestamp(0)).dt.days
    for name in TEXT:
        dtype = pd.CategoricalDtype(categories[name]) if categories else "category"
        X[name] = X[name].astype(dtype)
    return X, df["label"].to_numpy()


def _held(start: int, n: int) -> np.ndarray:
    from leanfit.encode.batches import holdout_mask

    return holdout_mask(np.arange(start, start + n, dtype=np.uint64), HOLDOUT, SEED)


COMMON = {"max_bin": BINS, "enable_categorical": True, "nthread": THREADS}


def _fit_and_score(make) -> float:
    """Train on ``make("train")`` with ``make("holdout", ref=train)`` as eval set; its AUC."""
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score

    train = make("train")
    holdout = make("holdout", ref=train)
    booster = xgb.train(PARAMS, train, ROUNDS, evals=[(holdout, "holdout")], verbose_eval=False)
    return float(roc_auc_score(holdout.get_label(), booster.predict(holdout)))


def run_pandas_memory(path: Path) -> dict:
    import pandas as pd
    import xgboost as xgb

    X, y = _prepare(pd.read_csv(path))
    held = _held(0, len(X))

    def make(side: str, ref=None):
        rows = held if side == "holdout" else ~held
        return xgb.QuantileDMatrix(X[rows], y[rows], ref=ref, **COMMON)

    return {"auc": _fit_and_score(make), "note": "QuantileDMatrix from a DataFrame"}


def run_pandas_chunks(path: Path) -> dict:
    import pandas as pd
    import xgboost as xgb

    levels: dict[str, set] = {name: set() for name in TEXT}
    for chunk in pd.read_csv(path, usecols=TEXT, chunksize=CHUNK):
        for name in TEXT:
            levels[name].update(chunk[name].dropna().unique())
    categories = {name: sorted(values) for name, values in levels.items()}
    folder = tempfile.mkdtemp(prefix="bench-xgb-")

    class Chunks(xgb.DataIter):
        def __init__(self, side: str):
            super().__init__(cache_prefix=os.path.join(folder, side))
            self.side, self.reader, self.start = side, None, 0

        def reset(self) -> None:
            self.reader, self.start = None, 0

        def next(self, input_data) -> bool:
            if self.reader is None:
                self.reader = pd.read_csv(path, chunksize=CHUNK)
            chunk = next(self.reader, None)
            if chunk is None:
                return False
            held = _held(self.start, len(chunk))
            self.start += len(chunk)
            X, y = _prepare(chunk[held if self.side == "holdout" else ~held], categories)
            input_data(data=X, label=y)
            return True

    def make(side: str, ref=None):
        return xgb.ExtMemQuantileDMatrix(Chunks(side), ref=ref, **COMMON)

    try:
        auc = _fit_and_score(make)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"auc": auc, "note": "ExtMemQuantileDMatrix, categories from a first pass"}


def child(name: str, path: Path) -> None:
    started = time.perf_counter()
    runners = {
        "a": lambda: run_leanfit(path),
        "a2": lambda: run_leanfit_cli(path),
        "b": lambda: run_pandas_memory(path),
        "c": lambda: run_pandas_chunks(path),
    }
    result = runners[name]()
    result["seconds"] = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    result["peak_mb"] = usage.ru_maxrss / 1024
    print(json.dumps(result))


# --------------------------------------------------------------------------- parent


def main(rows: int) -> None:
    from leanfit.synth import write_data

    path = data_path(rows)
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        write_data(path, rows=rows, seed=2)
    env = os.environ | {"POLARS_MAX_THREADS": str(THREADS), "OMP_NUM_THREADS": str(THREADS)}
    results = {}
    for name in CONTENDERS:
        done = subprocess.run(
            [sys.executable, __file__, "--child", name, str(rows)],
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode:
            print(f"{CONTENDERS[name]} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    report(rows, path, results)


def report(rows: int, path: Path, results: dict) -> None:
    base = results.get("a")
    print(
        f"{rows:,} rows ({path.stat().st_size / 1e6:,.0f} MB CSV), {ROUNDS} rounds, depth {DEPTH}"
    )
    print(
        f"{'contender':42} {'wall s':>7} {'x':>5} {'CPU s':>7} {'x':>5} {'peak MiB':>8} {'x':>5}"
        f" {'AUC':>8}  matrix"
    )
    for name, r in results.items():
        cells = []
        for key, width in (("seconds", 7), ("cpu_seconds", 7), ("peak_mb", 8)):
            ratio = r[key] / base[key] if base else float("nan")
            cells.append(f"{r[key]:{width}.1f} {ratio:5.2f}")
        print(f"{CONTENDERS[name]:42} {' '.join(cells)} {r['auc']:8.5f}  {r['note']}")
    print("Ratios are vs a. On a shared machine wall times vary a lot; CPU time less so.")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], data_path(int(sys.argv[3])))
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000)
