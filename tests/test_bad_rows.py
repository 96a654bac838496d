"""Bad rows: quarantined or skipped, counted, and never changing the model of the good rows.

A dirty copy of a generated file gets ragged rows, bytes that are not UTF-8, text in a
number column, inf, an empty line and rows without a label; the same file with the bad
lines removed by hand is the reference.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from leanfit.synth import write_data

BAD = 30


def leanfit(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "leanfit.cli", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )


def summary(*args) -> dict:
    done = leanfit(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def dirty(tmp_path_factory):
    """(dirty file, hand-cleaned file, the bad line numbers, data lines in the file)."""
    folder = tmp_path_factory.mktemp("dirty")
    clean = folder / "clean.csv"
    write_data(clean, rows=6_000, seed=11)
    header, *body = clean.read_bytes().rstrip(b"\n").split(b"\n")
    names = [n.strip('"') for n in header.decode().split(",")]
    rng = random.Random(2)
    bad = sorted(rng.sample(range(len(body)), BAD))
    rows = list(body)
    for k, i in enumerate(bad):
        fields = rows[i].split(b",")
        kind = k % 6
        if kind == 0:
            rows[i] += b",extra"
        elif kind == 1:
            rows[i] = b",".join(fields[:-3])
        elif kind == 2:
            fields[names.index("plan")] = b"\xff\xfeplan"
        elif kind == 3:
            fields[names.index("balance")] = b"abc"
        elif kind == 4:
            fields[names.index("balance")] = b"-inf"
        else:
            rows[i] = b""
        if kind in (2, 3, 4):
            rows[i] = b",".join(fields)
    label = names.index("label")
    for i in range(5, len(rows), 211):  # rows without a label are counted, not bad
        if i not in bad:
            fields = rows[i].split(b",")
            fields[label] = b""
            rows[i] = b",".join(fields)
    path, by_hand = folder / "dirty.csv", folder / "by_hand.csv"
    path.write_bytes(header + b"\n" + b"\n".join(rows) + b"\n")
    kept = [r for i, r in enumerate(rows) if i not in set(bad)]
    by_hand.write_bytes(header + b"\n" + b"\n".join(kept) + b"\n")
    return path, by_hand, [i + 2 for i in bad], len(rows)


@pytest.mark.parametrize("model", ["sgd", "logistic", "xgboost"])
def test_quarantine_holds_the_bad_lines_and_the_model_is_the_cleaned_files(dirty, tmp_path, model):
    path, by_hand, bad_lines, n_rows = dirty
    extra = ["--rounds", "5"] if model == "xgboost" else []
    quarantine = tmp_path / "bad.csv"
    args = ["train", path, "-t", "label", "-m", model, *extra, "--bad-rows", "quarantine"]
    got = summary(*args, "--quarantine", quarantine, "--out", tmp_path / "q.leanfit")
    ref = summary(
        "train", by_hand, "-t", "label", "-m", model, *extra, "--out", tmp_path / "h.leanfit"
    )
    # the quarantine file: exactly the bad lines, by number, verbatim after the reason
    lines = quarantine.read_bytes().rstrip(b"\n").split(b"\n")
    assert [int(line.split(b",")[1]) for line in lines[1:]] == bad_lines
    original = path.read_bytes().split(b"\n")
    for line in lines[1:]:
        number = int(line.split(b",")[1])
        assert line.endswith(b"," + original[number - 1]) or original[number - 1] == b""
    # the accounting adds up to the file's data lines
    assert got["rows"] == n_rows and got["rows_bad"] == BAD
    parts = got["rows_train"] + got["rows_holdout"] + got["rows_unlabelled"] + got["rows_bad"]
    assert parts == got["rows"]
    assert got["rows_unlabelled"] == ref["rows_unlabelled"] > 0
    assert any("bad rows" in w for w in got["warnings"])
    # the model equals the one trained on the file with the bad lines removed by hand
    assert got["rows_train"] == ref["rows_train"] and got["rows_holdout"] == ref["rows_holdout"]
    assert got["metrics"]["confusion_matrix"] == ref["metrics"]["confusion_matrix"]
    assert got["metrics"]["log_loss"] == pytest.approx(ref["metrics"]["log_loss"], rel=1e-12)


def test_the_bad_rows_do_not_depend_on_chunks_or_the_memory_limit(dirty, tmp_path):
    path = dirty[0]
    files = []
    for i, extra in enumerate((["--batch-rows", "1024"], ["--memory-limit", "2GB"])):
        out = tmp_path / f"q{i}.csv"
        args = ["train", path, "-t", "label", "--bad-rows", "quarantine", "--quarantine", out]
        summary(*args, "--out", tmp_path / f"m{i}.leanfit", *extra)
        files.append(out.read_bytes())
    assert files[0] == files[1] and files[0].count(b"\n") == BAD + 1


def test_evaluate_and_predict_account_for_every_row(dirty, tmp_path):
    path, by_hand, _, n_rows = dirty
    model = tmp_path / "m.leanfit"
    summary("train", by_hand, "-t", "label", "--out", model)
    evaluated = summary("evaluate", model, path, "--bad-rows", "skip")
    assert evaluated["rows"] == n_rows and evaluated["rows_bad"] == BAD
    assert evaluated["metrics"]["n_rows"] + evaluated["rows_unlabelled"] + BAD == n_rows
    preds = tmp_path / "p.csv"
    predicted = summary("predict", model, path, "--out", preds, "--bad-rows", "skip")
    assert predicted["rows_predicted"] == len(preds.read_text().splitlines()) - 1
    assert predicted["rows_predicted"] + predicted["rows_bad"] == n_rows
    assert not (tmp_path / "p.csv.quarantine.csv").exists()  # skip writes no quarantine


def test_by_default_the_first_bad_row_stops_the_run_naming_it(dirty):
    done = leanfit("train", dirty[0], "-t", "label")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("Error: ") and "line " in done.stderr


def test_nan_is_missing_and_inf_names_its_line(tmp_path):
    data = tmp_path / "n.csv"
    data.write_text("x,c,label\n1.5,a,0\nNaN,b,1\n2.5,a,0\n3.5,b,1\n")
    schema = tmp_path / "s.json"
    summary("inspect", data, "-t", "label", "--out", schema)
    x = next(c for c in json.loads(schema.read_text())["columns"] if c["name"] == "x")
    assert x["nulls"] == 1 and x["mean"] == pytest.approx(2.5)
    data.write_text("x,c,label\n1.5,a,0\n2.5,b,1\ninf,a,0\n3.5,b,1\n")
    done = leanfit("inspect", data, "-t", "label")
    assert done.returncode == 1
    assert "line 4, column 'x'" in done.stderr and "--bad-rows" in done.stderr


def test_quoted_commas_are_not_bad_rows(tmp_path):
    data = tmp_path / "q.csv"
    rows = [f'"{i}, street",{i % 7},{i % 2}' for i in range(300)]
    data.write_text("addr,n,label\n" + "\n".join(rows) + "\n1,2\n")
    got = summary("inspect", data, "-t", "label", "--bad-rows", "skip")
    assert got["rows"] == 301 and got["rows_bad"] == 1


def test_whole_numbers_written_otherwise_are_not_bad_rows(tmp_path):
    """``-0`` and ``3.0`` in a column stored as uint8 are the numbers 0 and 3: with
    --bad-rows skip they are neither bad rows nor read as missing, with or without
    --schema, so the model is the one of the same file with ``0`` and ``3`` written."""
    rng = random.Random(4)
    rows = [(rng.randint(0, 9), rng.randint(0, 1)) for _ in range(400)]
    plain = "a,b,y\n" + "".join(f"{a},{a % 3},{y}\n" for a, y in rows)
    odd = "a,b,y\n" + "".join(f"{'-0' if a == 0 else f'{a}.0'},{a % 3},{y}\n" for a, y in rows)
    (tmp_path / "plain.csv").write_text(plain)
    (tmp_path / "odd.csv").write_text(odd)
    schema = tmp_path / "schema.json"
    assert leanfit("inspect", tmp_path / "plain.csv", "-t", "y", "--out", schema).returncode == 0
    ref = summary("train", tmp_path / "plain.csv", "-t", "y", "--out", tmp_path / "p.leanfit")
    for extra in ([], ["--schema", schema]):
        got = summary(
            *("train", tmp_path / "odd.csv", "-t", "y", "--bad-rows", "skip", *extra),
            *("--out", tmp_path / f"o{len(extra)}.leanfit"),
        )
        assert got["rows_bad"] == 0 and got["rows_train"] == ref["rows_train"]
        assert got["metrics"]["log_loss"] == pytest.approx(ref["metrics"]["log_loss"], rel=1e-12)
