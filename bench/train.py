"""Training on one file: leanfit against a bare Polars parse and the recipes users write.

Usage: python bench/train.py [ROWS] [--memory-limit=400MB] [--only=parse,sgd,logistic,chunks]
       [--data=FILE.csv --target=NAME]
(default 2,000,000 generated rows, every contender; leanfit runs under the memory limit;
``--data`` benchmarks any CSV instead, e.g. one of ``bench/other_data.py``)

Every contender runs in its own subprocess, so its peak RSS and its CPU seconds (user
+ system, start-up included) are the OS's count for that process alone; CPU seconds
are what to compare when other work shares the machine, since wall time then favours
single-threaded contenders. All score ROC AUC and accuracy on the same holdout rows
(leanfit's row-hash split, seed 0, 20%). Contenders:

* parse: a bare Polars streaming parse of every column (``null_count`` of each): the
  floor any reader of the file pays;
* leanfit: ``leanfit train DATA --target ...`` (inspect included), ``--model sgd
  --epochs 1`` and ``--model logistic``, the whole commands, start-up included;
* pandas-chunks: ``read_csv(chunksize=100_000)``, mean-fill and scale from the
  first chunk, one-hot from the first chunk's levels, FeatureHasher for text columns
  of more than 1,000 levels, ``SGDClassifier.partial_fit`` (the widely copied recipe);
* in-memory: ``pandas.read_csv`` of the whole file, the same features, and
  scikit-learn's ``LogisticRegression`` (lbfgs).

Each row prints its wall and CPU seconds and peak as ratios against the parse and
against the pandas-chunks recipe, measured in the same run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from recipes import measured, parse_run, recipe_run


def option(name: str, default: str) -> str:
    return next((a.split("=", 1)[1] for a in sys.argv if a.startswith(f"--{name}=")), default)


ROWS = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 2_000_000
DATA = Path(option("data", f"data/bench-{ROWS}.csv"))
TARGET = option("target", "label")
OUT = Path("bench/out")
LIMIT = option("memory-limit", "400MB")
ONLY = option("only", "parse,sgd,logistic,chunks,memory").split(",")


def leanfit_run(model: str) -> dict:
    cli = [sys.executable, "-m", "leanfit.cli", "train", str(DATA), "--target", TARGET]
    cli += ["--model", model, "--out", str(OUT / f"{model}.leanfit"), "--json", "-q"]
    trained = measured([*cli, "--memory-limit", LIMIT, "--force"])
    metrics = json.loads(trained["stdout"])["metrics"]
    return {**trained, "roc_auc": metrics["roc_auc"], "accuracy": metrics["accuracy"]}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    if not DATA.exists():
        from leanfit.synth import write_data

        write_data(DATA, rows=ROWS, seed=1)
    contenders = {
        "parse": ("bare Polars streaming parse", lambda: parse_run(DATA)),
        "sgd": ("leanfit train sgd (inspect incl.)", lambda: leanfit_run("sgd")),
        "logistic": ("leanfit train logistic (inspect incl.)", lambda: leanfit_run("logistic")),
        "chunks": ("pandas chunks + SGD partial_fit", lambda: recipe_run(DATA, "chunks", TARGET)),
        "memory": (
            "pandas + LogisticRegression in memory",
            lambda: recipe_run(DATA, "memory", TARGET),
        ),
    }
    runs = {name: run() for key, (name, run) in contenders.items() if key in ONLY}
    parse = runs.get(contenders["parse"][0])
    recipe = runs.get(contenders["chunks"][0])
    print(f"{DATA}: {DATA.stat().st_size / 1e9:.2f} GB, leanfit under --memory-limit {LIMIT}")
    print(
        f"{'contender':<40}{'s':>7}{'/parse':>8}{'/recipe':>8}{'cpu s':>7}{'/parse':>8}"
        f"{'MiB':>7}{'AUC':>8}{'acc':>8}"
    )
    for name, r in runs.items():
        wall = [r["seconds"] / ref["seconds"] if ref else float("nan") for ref in (parse, recipe)]
        cpu = r["cpu"] / parse["cpu"] if parse else float("nan")
        auc, acc = r.get("roc_auc", float("nan")), r.get("accuracy", float("nan"))
        print(
            f"{name:<40}{r['seconds']:7.1f}{wall[0]:8.2f}{wall[1]:8.2f}{r['cpu']:7.1f}{cpu:8.2f}"
            f"{r['peak'] / 2**20:7.0f}{auc:8.4f}{acc:8.4f}"
        )
    (OUT / "train.json").write_text(json.dumps({k: {**v, "stdout": None} for k, v in runs.items()}))


if __name__ == "__main__":
    main()
