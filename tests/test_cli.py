"""The command line, run as users run it: in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

COMMANDS = ["make-data", "inspect", "shrink", "train", "evaluate", "predict"]


def leanfit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "leanfit.cli", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_example(command):
    result = leanfit(command, "--help")
    assert result.returncode == 0
    assert "Example" in result.stdout and "--json" in result.stdout


def test_json_summaries_chain(tmp_path):
    data, schema, model = tmp_path / "d.csv", tmp_path / "s.json", tmp_path / "m.leanfit"
    made = json.loads(leanfit("make-data", data, "--rows", 5_000, "--json").stdout)
    assert made["rows"] == 5_000 and made["peak_rss_bytes"] > 10_000_000
    inspected = json.loads(
        leanfit("inspect", data, "--target", "label", "--out", schema, "--json").stdout
    )
    assert inspected["rows"] == 5_000 and schema.exists()
    trained = json.loads(
        leanfit("train", data, "--schema", schema, "--out", model, "--json").stdout
    )
    assert 0.5 < trained["metrics"]["accuracy"] <= 1.0 and model.exists()
    for key in (
        "accuracy",
        "balanced_accuracy",
        "precision",
        "recall",
        "f1",
        "f1_macro",
        "log_loss",
        "brier_score",
        "roc_auc",
        "average_precision",
        "confusion_matrix",
    ):
        assert key in trained["metrics"]
    evaluated = json.loads(leanfit("evaluate", model, data, "--json").stdout)
    assert evaluated["metrics"]["n_rows"] == 5_000
    preds = tmp_path / "p.csv"
    predicted = json.loads(
        leanfit("predict", model, data, "--out", preds, "--proba", "--json").stdout
    )
    assert predicted["rows"] == 5_000
    assert len(preds.read_text().splitlines()) == 5_001


def test_errors_are_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3,4,5\n")
    result = leanfit("inspect", bad)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: bad.csv, line 3: expected 2 fields, found 3 (3,4,5). Fix or remove that row, "
        "or give --bad-rows skip (or quarantine) to leave such rows out."
    )
    missing = leanfit("train", bad, "--target", "nope")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
