"""Every command's --json speaks one vocabulary (leanfit.summary, docs/json.md)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from leanfit.summary import VOCABULARY, check

ROOT = Path(__file__).resolve().parents[1]
COMMON = {"command", "seconds", "peak_rss_bytes", "memory"}
REQUIRED = {
    "make-data": {"output", "rows", "format", "bytes"},
    "inspect": {"input", "output", "rows", "columns", "features", "target", "classes"},
    "shrink": {"input", "output", "rows", "input_bytes", "output_bytes"},
    "train": {"input", "output", "model", "options", "plan", "rows_train", "rows_holdout"},
    "evaluate": {"input", "bundle", "model", "rows", "metrics"},
    "predict": {"input", "bundle", "model", "output", "rows", "format"},
}


def run(*args) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "leanfit.cli", *map(str, args), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def summaries(tmp_path_factory) -> list[dict]:
    d = tmp_path_factory.mktemp("json")
    data, schema = d / "d.csv", d / "s.json"
    out = [run("make-data", data, "--rows", 3_000, "--classes", 3)]
    out.append(run("inspect", data, "--target", "label", "--out", schema))
    out.append(run("shrink", data, d / "d.parquet", "--schema", schema))
    for model, extra in (("sgd", ["--epochs", "2"]), ("xgboost", ["--rounds", "3"])):
        bundle = d / f"{model}.leanfit"
        out.append(
            run("train", data, "--schema", schema, "--model", model, "--out", bundle, *extra)
        )
        out.append(run("evaluate", bundle, data))
        out.append(run("predict", bundle, data, "--out", d / f"{model}.csv"))
    return out


def test_every_command_speaks_the_vocabulary(summaries):
    for summary in summaries:
        check(summary)
        command = summary["command"]
        assert COMMON | REQUIRED[command] <= set(summary), (command, sorted(summary))
    assert {s["command"] for s in summaries} == set(REQUIRED)


def test_the_same_thing_has_the_same_key(summaries):
    by = {s["command"]: s for s in summaries}
    data = by["inspect"]["input"]
    assert by["shrink"]["input"] == data and by["train"]["input"] == data
    trained = [s for s in summaries if s["command"] == "train"]
    evaluated = [s for s in summaries if s["command"] == "evaluate"]
    for t, e in zip(trained, evaluated, strict=True):
        assert e["bundle"] == t["output"] and e["model"] == t["model"]
        assert e["input"] == data
        names = [c["class"] for c in t["metrics"]["per_class"]]
        assert names == [c["class"] for c in e["metrics"]["per_class"]]
        assert all(isinstance(n, str) for n in names)
    assert by["make-data"]["output"] == data[0]


def test_check_refuses_unknown_keys_and_types():
    with pytest.raises(ValueError, match="not in the vocabulary"):
        check({"model_path": "m.leanfit"})
    with pytest.raises(ValueError, match="should be"):
        check({"rows_train": 1.5})


def test_docs_json_lists_the_vocabulary():
    text = (ROOT / "docs" / "json.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| [^|]+ \| (.+) \|$", text, flags=re.M))
    assert set(rows) == set(VOCABULARY)
    for key, (_, meaning) in VOCABULARY.items():
        assert rows[key] == meaning, key
