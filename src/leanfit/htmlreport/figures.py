"""The report's figures, each drawn from the report data (:mod:`.collect`): streamed
summaries (counts, histograms, curve points), never rows.

Every figure has an ``id``, a title and a body (SVG or a table); a figure whose data
the bundle or the run does not hold says why in its body instead of being left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html import escape

from leanfit.htmlreport.svg import (
    Band,
    Extras,
    Frame,
    Series,
    bar_chart,
    heatmap,
    line_chart,
)

MIB = 2**20
LIMIT_IN_VIEW = 4  # the memory chart shows the limit when it is at most this times the peak
METRIC_ROWS = (
    ("n_rows", "rows scored"),
    ("accuracy", "accuracy"),
    ("balanced_accuracy", "balanced accuracy"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("f1", "F1"),
    ("f1_macro", "F1 (macro)"),
    ("log_loss", "log loss"),
    ("brier_score", "Brier score"),
    ("roc_auc", "ROC AUC"),
    ("auc_error_bound", "ROC AUC error bound (histogram)"),
    ("average_precision", "average precision"),
    ("expected_calibration_error", "expected calibration error"),
)
ROW_PARTS = (
    ("rows_train", "trained on"),
    ("rows_holdout", "held out"),
    ("scored", "scored"),
    ("rows_unlabelled", "without a label"),
    ("rows_bad", "bad rows left out"),
)


@dataclass
class Figure:
    id: str
    title: str
    body: str


def figures(data: dict) -> list[Figure]:
    """Every figure of the report, in page order."""
    metrics = data["metrics"]
    curves = (metrics or {}).get("curves")
    why = "" if metrics else data["missing_metrics"]  # no metrics: no curves either
    run = data.get("run") or {}
    return [
        _figure("metrics", "Metrics", metrics, _metrics_table, why),
        _figure("confusion", "Confusion matrix", metrics, _confusion, why),
        _figure("roc", _titled("ROC curve", "AUC", data, "roc_auc"), curves, _roc, why),
        _figure(
            "pr",
            _titled("Precision-recall curve", "AP", data, "average_precision"),
            curves,
            _precision_recall,
            why,
        ),
        _figure(
            "calibration",
            _titled("Calibration (reliability)", "ECE", data, "expected_calibration_error"),
            curves,
            _calibration,
            why,
        ),
        _figure(
            "scores",
            "Score histograms by class",
            curves,
            lambda c: _score_histograms(c, data["classes"]),
            why,
        ),
        _figure(
            "weights",
            (data.get("weights") or {}).get("title", "Feature weights"),
            data.get("weights"),
            _weights,
            "this model kind has no coefficients or gains",
        ),
        _figure(
            "learning",
            "Learning curve",
            run.get("learning_curve"),
            _learning,
            "the run recorded no loss per epoch, pass or round (one epoch, or no holdout)",
        ),
        _figure("memory", "Memory over time (training run)", run.get("memory_trace"), _memory),
        _figure("stages", "Time per stage (training run)", run.get("stage_seconds"), _stages),
        _figure("rows", "Row accounting", data["rows"], _rows),
        _figure("schema", "Schema", data["schema"], _schema),
    ]


def _figure(id: str, title: str, value, draw: Callable, missing: str = "") -> Figure:
    if not value:
        why = missing or "this bundle does not hold it (trained before reports were recorded)"
        return Figure(id, title, f'<p class="missing">Not available: {escape(why)}.</p>')
    return Figure(id, title, draw(value))


def _titled(title: str, short: str, data: dict, key: str) -> str:
    """The title with the metric's value (macro: the mean over the classes, one-vs-rest)."""
    value = (data["metrics"] or {}).get(key)
    if value is None:
        return title
    average = "macro " if len(data["classes"]) > 2 else ""
    return f"{title} ({average}{short} {value:.4f})"


def _metrics_table(metrics: dict) -> str:
    rows = [(label, metrics.get(key)) for key, label in METRIC_ROWS]
    body = "".join(
        f"<tr><th>{label}</th><td>{value:,}</td></tr>"
        if isinstance(value, int)
        else f"<tr><th>{label}</th><td>{value:.5f}</td></tr>"
        for label, value in rows
        if value is not None
    )
    per_class = "".join(
        f"<tr><td>{escape(str(c['class']))}</td><td>{c['precision']:.4f}</td>"
        f"<td>{c['recall']:.4f}</td><td>{c['f1']:.4f}</td><td>{c['support']:,}</td></tr>"
        for c in metrics["per_class"]
    )
    return (
        f'<table class="metrics">{body}</table>'
        '<table class="per-class"><tr><th>class</th><th>precision</th><th>recall</th>'
        f"<th>F1</th><th>support</th></tr>{per_class}</table>"
    )


def _confusion(metrics: dict) -> str:
    labels = [str(c["class"]) for c in metrics["per_class"]]
    return heatmap(metrics["confusion_matrix"], labels, "predicted class", "true class")


def _names(curves: dict) -> list[str]:
    return [f"class {c['class']}" for c in curves["classes"]]


def _unit_frame(x_title: str, y_title: str) -> Frame:
    return Frame(x_title, y_title, (0.0, 1.0), (0.0, 1.0))


def _roc(curves: dict) -> str:
    series = [
        Series(name, c["roc"]["fpr"], c["roc"]["tpr"])
        for name, c in zip(_names(curves), curves["classes"])
    ]
    series.append(Series("chance", [0, 1], [0, 1], color="#999", dashed=True))
    frame = _unit_frame("false positive rate", "true positive rate")
    return line_chart(series, frame, Extras(legend="bottom right"))


def _precision_recall(curves: dict) -> str:
    series = [
        Series(name, c["precision_recall"]["recall"], c["precision_recall"]["precision"])
        for name, c in zip(_names(curves), curves["classes"])
    ]
    return line_chart(series, _unit_frame("recall", "precision"), Extras(legend="bottom left"))


def _calibration(curves: dict) -> str:
    series = [
        Series(name, c["calibration"]["mean_predicted"], c["calibration"]["observed"], markers=True)
        for name, c in zip(_names(curves), curves["classes"])
    ]
    series.append(Series("perfectly calibrated", [0, 1], [0, 1], color="#999", dashed=True))
    frame = _unit_frame("mean predicted probability (bin)", "share of the class (bin)")
    return line_chart(series, frame, Extras(legend="top left"))


def _score_histograms(curves: dict, classes: list[str]) -> str:
    """Per curve class: the share of its rows, and of the others, in each score bin."""
    charts = []
    for c in curves["classes"]:
        scores, name = c["scores"], str(c["class"])
        others = f"class {classes[0]} rows" if len(classes) == 2 else "other classes' rows"
        shares = {}
        for key, label in (("negative", others), ("positive", f"class {name} rows")):
            total = sum(scores[key]) or 1
            shares[label] = [v / total for v in scores[key]]
        top = max(max(v) for v in shares.values()) or 1.0
        series = [
            Series(label, scores["edges"], values, step=True, fill=True)
            for label, values in shares.items()
        ]
        frame = Frame(
            f"predicted probability of class {name}",
            "share of the group's rows",
            (0.0, 1.0),
            (0.0, top * 1.05),
        )
        charts.append(line_chart(series, frame))
    if len(charts) == 1:
        return charts[0]
    return "".join(f'<div class="small">{chart}</div>' for chart in charts)


def _weights(weights: dict) -> str:
    return bar_chart(weights["features"], weights["values"], weights["axis"]) + (
        f'<p class="note">{escape(weights["note"])}</p>' if weights.get("note") else ""
    )


def _learning(curve: dict) -> str:
    series = [Series(curve["loss"], curve["x"], curve["y"], markers=len(curve["x"]) <= 60)]
    low, high = _range(curve["y"])
    pad = (high - low) * 0.06
    frame = Frame(curve["step"], curve["loss"], _range(curve["x"]), (low - pad, high + pad))
    return line_chart(series, frame)


def _memory(trace: dict) -> str:
    seconds, rss = trace["seconds"], [v / MIB for v in trace["rss_bytes"]]
    limit, peak = trace["limit_bytes"] / MIB, max(rss, default=1.0)
    shown = limit <= LIMIT_IN_VIEW * peak  # else the limit would flatten the trace
    bands = [Band(stage, start, end) for stage, start, end in trace["stages"]]
    frame = Frame(
        "seconds since the command started",
        "resident memory (MiB)",
        _range([0.0, *seconds]),
        (0.0, max(peak, limit if shown else 0) * 1.1),
    )
    label = f"--memory-limit {limit:,.0f} MiB"
    extras = Extras(bands=bands, hlines=[(limit, label)] if shown else [], legend="")
    if not shown:
        extras.note = f"↑ {label}: {limit / peak:,.0f}× the peak, above the chart"
    series = [Series("RSS", seconds, rss)]
    note = (
        f'<p class="note">peak of the samples {peak:,.0f} MiB; baseline '
        f"{trace['baseline_bytes'] / MIB:,.0f} MiB; {len(seconds):,} samples shown.</p>"
    )
    return line_chart(series, frame, extras) + note


def _stages(seconds: dict) -> str:
    labels = list(seconds)
    return bar_chart(labels, [seconds[s] for s in labels], "seconds", fmt=lambda v: f"{v:,.2f}")


def _rows(rows: dict) -> str:
    tables = []
    for title, counts in rows.items():
        parts = [(label, counts[key]) for key, label in ROW_PARTS if counts.get(key) is not None]
        total = counts["rows"]
        cells = "".join(
            f"<tr><th>{label}</th><td>{value:,}</td><td>{value / max(total, 1):.2%}</td></tr>"
            for label, value in parts
        )
        balanced = "=" if sum(v for _, v in parts) == total else "≠"
        tables.append(
            f'<table class="rows"><caption>{escape(title)}</caption>'
            f"<tr><th>rows read</th><td>{total:,}</td><td>{balanced} the sum below</td></tr>"
            f"{cells}</table>"
        )
        labels = [label for label, _ in parts]
        tables.append(bar_chart(labels, [v for _, v in parts], "rows", fmt=lambda v: f"{v:,.0f}"))
    return "".join(tables)


def _schema(schema: dict) -> str:
    head = ("column", "kind", "storage", "feature", "B/row pandas", "B/row stored")
    rows = "".join(
        f"<tr><td>{escape(c['column'])}</td><td>{escape(c['kind'])}</td>"
        f"<td>{escape(c['storage'])}</td><td>{'yes' if c['feature'] else 'no'}</td>"
        f"<td>{c['bytes_pandas']:.2f}</td><td>{c['bytes_stored']:.2f}</td></tr>"
        for c in schema["columns"]
    )
    total = (
        f"<tr><th>total</th><td></td><td></td><td></td><th>{schema['bytes_pandas']:.2f}"
        f"</th><th>{schema['bytes_stored']:.2f}</th></tr>"
    )
    cells = "".join(f"<th>{h}</th>" for h in head)
    chart = bar_chart(
        ["as pandas loads it", "as leanfit stores it"],
        [schema["bytes_pandas"], schema["bytes_stored"]],
        "bytes per row",
    )
    return f'<table class="schema"><tr>{cells}</tr>{rows}{total}</table>{chart}'


def _range(values: list[float]) -> tuple[float, float]:
    present = [v for v in values if v is not None]
    return (min(present), max(present)) if present else (0.0, 1.0)
