"""A text column of thousands of levels: leanfit against in-memory references.

Usage: python bench/high_cardinality.py [ROWS] [LEVELS]
(default 2,000,000 rows and 5,000 levels of ``product``; the training file and a test
file of ROWS / 4 rows, drawn with another seed, are made once under data/)

Every contender runs in its own subprocess, trains on the whole training file and
scores the test file (ROC AUC); it reports its wall time, its CPU time and its peak
RSS (``ru_maxrss``), parsing and scoring included:

l1. ``leanfit train --model logistic --holdout 0 --memory-limit 1GB``: every level its
    own coefficient (exact L-BFGS);
l2. scikit-learn ``LogisticRegression`` on full one-hot features, in memory (pandas,
    ``OneHotEncoder``; numbers imputed and standardised);
s1. ``leanfit train`` (sgd, one epoch), every level its own slot;
x1. ``leanfit train --model xgboost --holdout 0 --memory-limit 1GB``: native categorical
    splits for ``product``;
x2. XGBoost in memory with native categoricals (``XGBClassifier(enable_categorical=True)``
    on pandas category columns);
x3. as x1, but ``product`` entered as its frequency rank (what leanfit did before, and
    does past ``RANK_ABOVE`` levels): the time native splits cost.

XGBoost: 100 rounds, depth 6, learning rate 0.3, 256 bins, 2 threads, on every side.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROUNDS, DEPTH, RATE, BINS, THREADS = 100, 6, 0.3, 256, 2
CONTENDERS = {
    "l1": "l1. leanfit logistic, 1GB",
    "l2": "l2. sklearn LogisticRegression, one-hot",
    "s1": "s1. leanfit sgd, 1GB",
    "x1": "x1. leanfit xgboost, 1GB",
    "x2": "x2. XGBoost in memory, native categories",
    "x3": "x3. leanfit xgboost, 1GB, product as rank",
}


def data_paths(rows: int, levels: int) -> tuple[Path, Path]:
    stem = f"data/bench-levels-{levels}-{rows}"
    return Path(f"{stem}.csv"), Path(f"{stem}-test.csv")


# --------------------------------------------------------------------------- contenders


def run_leanfit(train: Path, test: Path, model: str) -> dict:
    """``leanfit train`` as the command line runs it, then the bundle scores ``test``."""
    import polars as pl
    from sklearn.metrics import roc_auc_score

    from leanfit.cli import main
    from leanfit.model import Model

    out = io.StringIO()
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(out):
        args = ["train", str(train), "--target", "label", "--model", model, "--holdout", "0"]
        args += ["--memory-limit", "1GB", "--json", "--quiet", "--out", f"{tmp}/m.leanfit"]
        if model == "xgboost":
            args += ["--rounds", str(ROUNDS), "--max-depth", str(DEPTH), "--nthread", str(THREADS)]
            args += ["--learning-rate", str(RATE), "--max-bin", str(BINS)]
        main(args, standalone_mode=False)
        bundle = Model.load(f"{tmp}/m.leanfit")
        y = pl.read_csv(test, columns=["label"])["label"].to_numpy()
        auc = roc_auc_score(y, bundle.predict_proba(test)[:, 1])
    summary = json.loads(out.getvalue())
    notes = "; ".join(summary.get("notes", [])) or f"{summary['features']:,} features"
    within = summary["memory"]["within_limit"]
    return {"auc": float(auc), "note": f"{notes}; within 1GB: {within}"}


def run_leanfit_rank(train: Path, test: Path) -> dict:
    import leanfit.encode.trees as trees

    trees.RANK_ABOVE = 0  # every text column with a category list as its rank
    return run_leanfit(train, test, "xgboost")


def frame(path: Path):
    """The file as pandas loads it: the date as days since 1970, month and weekday."""
    import pandas as pd

    df = pd.read_csv(path).drop(columns=["customer_id"])
    day = pd.to_datetime(df.pop("signup_date"))
    df["days"] = (day - pd.Timestamp("1970-01-01")).dt.days.astype(float)
    df["month"], df["weekday"] = day.dt.month, day.dt.day_of_week
    df["is_member"] = df["is_member"].astype(float)
    return df, df.pop("label").to_numpy()


def text_columns(df) -> list[str]:
    import pandas as pd

    return [c for c in df.columns if pd.api.types.is_string_dtype(df[c])]


def run_sklearn(train: Path, test: Path) -> dict:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X, y = frame(train)
    text = text_columns(X)
    numbers = [c for c in X.columns if c not in text]
    columns = ColumnTransformer(
        [
            ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), numbers),
            ("text", OneHotEncoder(handle_unknown="ignore"), text),
        ]
    )
    full = columns.fit_transform(X)
    model = LogisticRegression(max_iter=5_000).fit(full, y)
    del X, full
    X_test, y_test = frame(test)
    auc = roc_auc_score(y_test, model.predict_proba(columns.transform(X_test))[:, 1])
    return {"auc": float(auc), "note": f"{len(model.coef_[0]):,} features"}


def run_xgboost(train: Path, test: Path) -> dict:
    import pandas as pd
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score

    X, y = frame(train)
    X_test, y_test = frame(test)
    X, X_test = X.drop(columns=["month", "weekday"]), X_test.drop(columns=["month", "weekday"])
    for c in text_columns(X):
        X[c] = X[c].astype("category")
        seen = X_test[c].where(X_test[c].isin(X[c].cat.categories))
        X_test[c] = pd.Categorical(seen, categories=X[c].cat.categories)
    model = xgb.XGBClassifier(
        n_estimators=ROUNDS,
        max_depth=DEPTH,
        learning_rate=RATE,
        max_bin=BINS,
        n_jobs=THREADS,
        enable_categorical=True,
    ).fit(X, y)
    auc = roc_auc_score(y_test, model.predict_proba(X_test)[:, 1])
    return {"auc": float(auc), "note": "pandas category columns"}


def child(name: str, train: Path, test: Path) -> None:
    started = time.perf_counter()
    runners = {
        "l1": lambda: run_leanfit(train, test, "logistic"),
        "l2": lambda: run_sklearn(train, test),
        "s1": lambda: run_leanfit(train, test, "sgd"),
        "x1": lambda: run_leanfit(train, test, "xgboost"),
        "x2": lambda: run_xgboost(train, test),
        "x3": lambda: run_leanfit_rank(train, test),
    }
    result = runners[name]()
    result["seconds"] = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    result["peak_mb"] = usage.ru_maxrss / 1024
    print(json.dumps(result))


# --------------------------------------------------------------------------- parent


def main(rows: int, levels: int) -> None:
    from leanfit.synth import write_data

    train, test = data_paths(rows, levels)
    if not test.exists():
        train.parent.mkdir(exist_ok=True)
        write_data(train, rows=rows, seed=1, levels=levels)
        write_data(test, rows=max(rows // 4, 1), seed=2, levels=levels)
    env = os.environ | {"POLARS_MAX_THREADS": str(THREADS), "OMP_NUM_THREADS": str(THREADS)}
    results = {}
    for name in CONTENDERS:
        done = subprocess.run(
            [sys.executable, __file__, "--child", name, str(rows), str(levels)],
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode:
            print(f"{CONTENDERS[name]} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    report(rows, levels, train, results)


def report(rows: int, levels: int, train: Path, results: dict) -> None:
    size = train.stat().st_size / 1e6
    print(f"{rows:,} rows ({size:,.0f} MB CSV), product of at most {levels:,} levels")
    print(
        f"{'contender':44} {'wall s':>7} {'CPU s':>7} {'peak MiB':>8} {'AUC':>8} {'vs ref':>8}"
        "  notes"
    )
    references = {"l1": "l2", "s1": "l2", "x1": "x2", "x3": "x2"}
    for name, r in results.items():
        ref = results.get(references.get(name, ""))
        gap = f"{r['auc'] - ref['auc']:+8.4f}" if ref else " " * 8
        print(
            f"{CONTENDERS[name]:44} {r['seconds']:7.1f} {r['cpu_seconds']:7.1f} "
            f"{r['peak_mb']:8.0f} {r['auc']:8.5f} {gap}  {r['note']}"
        )
    print("vs ref: AUC minus the in-memory reference (l2 for linear models, x2 for trees).")
    print("On a shared machine wall times vary a lot; CPU time less so.")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], *data_paths(int(sys.argv[3]), int(sys.argv[4])))
    else:
        args = [int(a) for a in sys.argv[1:3]]
        main(*(args + [2_000_000, 5_000][len(args) :]))
