"""``leanfit report`` and ``train --report``: the numbers in the page against
scikit-learn and pandas on the same rows, the training holdout without DATA, gains of
boosted trees, a page that references nothing outside itself, and every figure drawn
in a real browser (headless Chromium; the screenshot is kept for a person to look at)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import chromium
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import confusion_matrix, roc_auc_score

from leanfit.engines.local.train import train
from leanfit.htmlreport import write_report
from leanfit.htmlreport.figures import figures
from leanfit.model import load
from leanfit.options import BoostOptions, TrainOptions
from leanfit.summary import check
from leanfit.synth import write_data

TITLES = (
    "Metrics",
    "Confusion matrix",
    "ROC curve (AUC ",
    "Precision-recall curve (AP ",
    "Calibration (reliability) (ECE ",
    "Score histograms by class",
    "Coefficients by feature",
    "Learning curve",
    "Memory over time (training run)",
    "Time per stage (training run)",
    "Row accounting",
    "Schema",
)
FIGURE_IDS = (
    "fig-metrics",
    "fig-confusion",
    "fig-roc",
    "fig-pr",
    "fig-calibration",
    "fig-scores",
    "fig-weights",
    "fig-learning",
    "fig-memory",
    "fig-stages",
    "fig-rows",
    "fig-schema",
)
SCREENSHOTS = Path("/tmp/leanfit-report-screenshots")


def cli(*args, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "leanfit.cli", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode == 0) == ok, done.stderr
    return done


def embedded(html: Path) -> dict:
    """The report data the page embeds."""
    text = html.read_text()
    found = re.search(
        r'<script type="application/json" id="leanfit-report-data">(.*?)</script>', text
    )
    return json.loads(found[1].replace("<\\/", "</"))


@pytest.fixture(scope="module")
def trained(small_csv, tmp_path_factory) -> dict:
    """An sgd bundle with its train --report page, and a report of it on other data."""
    d = tmp_path_factory.mktemp("report")
    new = d / "new.csv"
    write_data(new, rows=8_000, seed=11)
    bundle, page, on_data = d / "m.leanfit", d / "train.html", d / "data.html"
    trained = cli(
        "train",
        small_csv,
        "-t",
        "label",
        "--epochs",
        "3",
        "--out",
        bundle,
        "--report",
        page,
        "--json",
    )
    reported = cli("report", bundle, new, "--out", on_data, "--json")
    return {
        "dir": d,
        "data": new,
        "bundle": bundle,
        "page": page,
        "on_data": on_data,
        "train": json.loads(trained.stdout),
        "report": json.loads(reported.stdout),
    }


def test_report_on_data_equals_sklearn_on_the_same_rows(trained):
    summary, data = trained["report"], embedded(trained["on_data"])
    check(summary)
    assert summary["output"] == str(trained["on_data"]) and len(summary["figures"]) == 12
    assert summary["input"] == [str(trained["data"])] and data["scored_on"] == "data"
    with open(trained["data"]) as f:
        lines = sum(1 for _ in f) - 1
    assert summary["rows"] == lines == summary["metrics"]["n_rows"]
    model = load(trained["bundle"])
    proba = model.predict_proba(str(trained["data"]))
    labels = pd.read_csv(trained["data"], usecols=["label"])["label"].astype(str)
    y = labels.map({str(c): i for i, c in enumerate(model.classes)}).to_numpy()
    metrics = data["metrics"]
    reference = roc_auc_score(y, proba[:, 1])
    assert abs(metrics["roc_auc"] - reference) <= metrics["auc_error_bound"]
    assert metrics["confusion_matrix"] == confusion_matrix(y, proba.argmax(axis=1)).tolist()
    (curves,) = metrics["curves"]["classes"]
    assert abs(np.trapezoid(curves["roc"]["tpr"], curves["roc"]["fpr"]) - reference) < 2e-3
    # the expected calibration error, recomputed with pandas from the same probabilities
    frame = pd.DataFrame({"y": y == 1, "p": proba[:, 1]})
    frame["bin"] = np.minimum((frame.p * 10).astype(int), 9)
    bins = frame.groupby("bin").agg(rows=("p", "size"), p=("p", "mean"), y=("y", "mean"))
    ece = float((bins.rows * (bins.y - bins.p).abs()).sum() / len(frame))
    assert metrics["expected_calibration_error"] == pytest.approx(ece, abs=1e-7)
    assert [r for r in curves["calibration"]["rows"] if r] == bins.rows.tolist()
    page = trained["on_data"].read_text()
    assert f"ECE {ece:.4f}" in page and f"AUC {metrics['roc_auc']:.4f}" in page


def test_report_without_data_is_the_training_holdout(trained):
    page, summary = trained["page"], trained["train"]
    assert summary["report"] == str(page)
    data = embedded(page)
    assert data["scored_on"] == "holdout"
    stored = load(trained["bundle"]).meta["training"]
    assert data["metrics"] == stored["metrics"]
    assert data["metrics"]["n_rows"] == summary["rows_holdout"] == stored["rows_holdout"]
    assert {k: v for k, v in data["metrics"].items() if k != "curves"} == {
        k: v for k, v in summary["metrics"].items() if k != "curves"
    }
    run = data["run"]
    assert run["learning_curve"]["step"] == "epoch"
    losses = [h["holdout_log_loss"] for h in summary["history"]]
    assert run["learning_curve"]["y"] == [*losses, summary["metrics"]["log_loss"]]
    assert run["learning_curve"]["x"] == list(range(1, summary["epochs_run"] + 1))
    trace = run["memory_trace"]
    assert 0 < len(trace["seconds"]) <= 2_000 and trace["limit_bytes"] > max(trace["rss_bytes"])
    assert {"inspect", "train", "evaluate"} <= set(run["stage_seconds"])
    rows = data["rows"]["training run"]
    assert rows["rows"] == 20_000 == rows["rows_train"] + rows["rows_holdout"]


def test_the_page_references_nothing_outside_itself(trained):
    for page in (trained["page"], trained["on_data"]):
        text = page.read_text()
        assert not re.search(r"https?://", text)
        assert not re.search(r"<(link|img|iframe|object|embed)\b|\bsrc=|url\(|@import", text)
        assert "<script" not in text.replace('<script type="application/json"', "")
        assert 'class="missing"' not in text


def test_xgboost_report_shows_gains(small_csv, tmp_path):
    bundle, page = tmp_path / "x.leanfit", tmp_path / "x.html"
    opts = TrainOptions(model="xgboost", batch_rows=8_192)
    train(small_csv, "label", out=bundle, options=opts, boost=BoostOptions(rounds=6))
    summary = write_report(bundle, None, page)
    weights = embedded(page)["weights"]
    assert summary["figures"][6] == weights["title"] == "Gain by feature"
    gains = load(bundle).feature_importances()
    assert weights["features"][:5] == gains["column"].to_list()[:5]
    assert weights["values"][0] == pytest.approx(gains["importance"][0])
    curve = embedded(page)["run"]["learning_curve"]
    assert curve["step"] == "boosting round" and curve["x"] == list(range(1, 7))


def test_a_bundle_without_curves_or_run_record_says_so(trained):
    """Bundles saved before reports were recorded: every figure is there, saying why."""
    data = embedded(trained["on_data"])
    data["metrics"].pop("curves")
    data["run"] = None
    drawn = figures(data)
    assert [f.id for f in drawn] == [b.removeprefix("fig-") for b in FIGURE_IDS]
    missing = {f.id for f in drawn if "Not available" in f.body}
    assert missing == {"roc", "pr", "calibration", "scores", "learning", "memory", "stages"}


def test_report_output_is_checked_like_any_output(trained, tmp_path):
    done = cli("report", trained["bundle"], "--out", trained["bundle"], ok=False)
    assert done.stderr.startswith("Error: --out") and "is the input" in done.stderr
    assert load(trained["bundle"]).metrics is not None  # the bundle is untouched


@pytest.mark.skipif(chromium.BINARY is None, reason="chromium is not installed (make chromium)")
def test_every_figure_is_drawn_in_chromium(trained):
    SCREENSHOTS.mkdir(exist_ok=True)
    shot = SCREENSHOTS / "train-report.png"
    boxes = chromium.render(trained["page"], shot)
    image = Image.open(shot).convert("RGB")
    assert [b["title"][: len(t)] for b, t in zip(boxes, TITLES)] == list(TITLES)
    assert [b["id"] for b in boxes] == list(FIGURE_IDS)
    for figure in boxes:
        assert _ink(image, figure["caption"], dark=True) > 40, figure["title"]
        assert _ink(image, figure["box"], dark=True) > 400, figure["title"]
        for svg in figure["svgs"]:  # every chart has coloured marks: data, not only axes
            assert _ink(image, svg, dark=False) > 30, figure["title"]
    assert sum(len(f["svgs"]) for f in boxes) >= 11


def _ink(image: Image.Image, box: list[float], *, dark: bool) -> int:
    """Pixels in ``box`` that are dark (text, lines) or, with ``dark=False``, coloured."""
    x, y, w, h = (round(v) for v in box)
    assert w > 20 and h > 10
    pixels = np.asarray(image.crop((x, y, x + w, y + h))).astype(int)
    if dark:
        return int((pixels.max(axis=2) < 160).sum())
    return int((pixels.max(axis=2) - pixels.min(axis=2) > 60).sum())


@pytest.mark.slow
@pytest.mark.skipif(chromium.BINARY is None, reason="chromium is not installed (make chromium)")
def test_multiclass_and_boosted_reports_draw_every_figure(multi_csv, small_csv, tmp_path):
    for name, data, extra in (
        ("logistic", multi_csv, ["--model", "logistic"]),
        ("xgboost", small_csv, ["--model", "xgboost", "--rounds", "10"]),
    ):
        page = tmp_path / f"{name}.html"
        cli(
            "train",
            data,
            "-t",
            "label",
            *extra,
            "--out",
            tmp_path / f"{name}.leanfit",
            "--report",
            page,
        )
        boxes = chromium.render(page, SCREENSHOTS / f"{name}-report.png")
        image = Image.open(SCREENSHOTS / f"{name}-report.png").convert("RGB")
        assert len(boxes) == len(TITLES)
        for figure in boxes:
            assert _ink(image, figure["box"], dark=True) > 400, (name, figure["title"])
            for svg in figure["svgs"]:
                assert _ink(image, svg, dark=False) > 30, (name, figure["title"])


@pytest.mark.slow
def test_report_on_dask_equals_local(trained, tmp_path):
    pytest.importorskip("distributed")
    local = trained["report"]
    done = cli(
        "report",
        trained["bundle"],
        trained["data"],
        "--engine",
        "dask",
        "--out",
        tmp_path / "dask.html",
        "--json",
    )
    summary = json.loads(done.stdout)
    assert summary["engine"] == "dask" and summary["rows"] == local["rows"]
    assert summary["metrics"]["confusion_matrix"] == local["metrics"]["confusion_matrix"]
    assert summary["metrics"]["roc_auc"] == pytest.approx(local["metrics"]["roc_auc"], abs=1e-12)
    ours, theirs = embedded(tmp_path / "dask.html"), embedded(trained["on_data"])
    assert (
        ours["metrics"]["curves"]["classes"][0]["calibration"]["rows"]
        == (theirs["metrics"]["curves"]["classes"][0]["calibration"]["rows"])
    )


def test_ci_runs_the_browser_test():
    """CI (CI=true, root, after the Makefile's chromium step) runs the browser test."""
    if os.environ.get("CI") == "true" and os.geteuid() == 0:
        assert chromium.BINARY, "chromium is missing in CI: see the Makefile's chromium target"
