"""What the benchmarks compare leanfit with: the recipes users write instead, each run
and measured in a subprocess of its own (peak RSS and CPU time as the OS counts them,
by GNU time)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

RECIPE = r"""
import sys, json, time
import numpy as np, pandas as pd, scipy.sparse as sp
from sklearn.feature_extraction import FeatureHasher
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import roc_auc_score
from leanfit.encode.batches import holdout_mask

path, mode, target = sys.argv[1], sys.argv[2], sys.argv[3]
MANY = 1_000  # text columns with more levels in the first chunk are hashed

class Features:
    def __init__(self, first):
        self.num = [c for c in first.columns if c != target and first[c].dtype.kind in "fiub"]
        text = [c for c in first.columns if c != target and c not in self.num]
        self.high = [c for c in text if first[c].nunique() > MANY]
        self.cat = [c for c in text if c not in self.high]
        self.mean = first[self.num].astype(float).mean()
        self.std = first[self.num].astype(float).std().replace(0, 1)
        self.levels = {c: sorted(first[c].dropna().unique()) for c in self.cat}
        self.hasher = FeatureHasher(1024, input_type="string")
    def __call__(self, df):
        num = ((df[self.num].astype(float) - self.mean) / self.std).fillna(0.0).to_numpy(np.float32)
        cats = [pd.get_dummies(pd.Categorical(df[c], categories=self.levels[c])).to_numpy(np.float32)
                for c in self.cat]
        hashed = [self.hasher.transform([[f"{c}={v}"] for v in df[c].astype(str)]) for c in self.high]
        return sp.hstack([sp.csr_matrix(num)] + [sp.csr_matrix(c) for c in cats] + hashed).tocsr()

start = time.perf_counter()
scores, labels = [], []
if mode == "chunks":
    model, feats, offset = SGDClassifier(loss="log_loss", random_state=0), None, 0
    for df in pd.read_csv(path, chunksize=100_000):
        feats = feats or Features(df)
        hold = holdout_mask(np.arange(offset, offset + len(df), dtype=np.uint64), 0.2, 0)
        offset += len(df)
        X, y = feats(df), df[target].to_numpy()
        model.partial_fit(X[~hold], y[~hold], classes=[0, 1])
        scores.append(X[hold]), labels.append(y[hold])
    held, proba = np.concatenate(labels), model.predict_proba(sp.vstack(scores))[:, 1]
else:
    df = pd.read_csv(path)
    hold = holdout_mask(np.arange(len(df), dtype=np.uint64), 0.2, 0)
    X, y = Features(df)(df), df[target].to_numpy()
    model = LogisticRegression(max_iter=1000).fit(X[~hold], y[~hold])
    held, proba = y[hold], model.predict_proba(X[hold])[:, 1]
auc, accuracy = roc_auc_score(held, proba), float(np.mean((proba > 0.5) == held))
print(json.dumps({"roc_auc": auc, "accuracy": accuracy}))
"""


PARSE = r"""
import sys
import polars as pl
pl.scan_csv(sys.argv[1]).select(pl.all().null_count()).collect(engine="streaming")
"""


def parse_run(data) -> dict:
    """A bare Polars streaming parse of every column of ``data`` (CSV): the floor."""
    return measured([sys.executable, "-c", PARSE, str(data)])


def measured(cmd: list[str]) -> dict:
    """Wall seconds, CPU seconds (user + system), peak RSS bytes (both by GNU time) and
    stdout of one subprocess."""
    start = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M %U %S", *cmd], capture_output=True, text=True, check=True
    )
    peak_kb, user, system = done.stderr.strip().splitlines()[-1].split()
    return {
        "seconds": time.perf_counter() - start,
        "cpu": float(user) + float(system),
        "peak": int(peak_kb) * 1024,
        "stdout": done.stdout,
    }


def recipe_run(data, mode: str, target: str = "label") -> dict:
    """Run a recipe ("chunks" or "memory") on ``data``: seconds and CPU seconds (start-up
    included), peak bytes, ROC AUC and accuracy (at 0.5)."""
    run = measured([sys.executable, "-c", RECIPE, str(data), mode, target])
    scores = json.loads(run.pop("stdout"))
    return {**run, "roc_auc": scores["roc_auc"], "accuracy": scores["accuracy"]}
