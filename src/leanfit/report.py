"""Human-readable reports and JSON summaries of the commands' results."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from leanfit.costs import bytes_per_row
from leanfit.schema.columns import Schema
from leanfit.schema.lossy import lossy_key

console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def inspect_summary(schema: Schema, out: str | None, guard=None) -> dict:
    pandas_row = sum(bytes_per_row(c, pandas_default=True) for c in schema.columns)
    chosen_row = sum(bytes_per_row(c) for c in schema.columns)
    return {
        "input": schema.sources,
        "output": out,
        "rows": schema.rows + (guard.count if guard is not None else 0),
        "rows_bad": guard.count if guard is not None else 0,
        "columns": len(schema.columns),
        "features": len(schema.features),
        "target": schema.target,
        "classes": schema.classes,
        "class_counts": schema.class_counts,
        "bytes_per_row_pandas_default": round(pandas_row, 2),
        "bytes_per_row_chosen": round(chosen_row, 2),
        "warnings": schema.warnings
        + [f"{c.name}: {c.note}" for c in schema.columns if c.note]
        + ([guard.warning()] if guard is not None and guard.count else []),
        "kinds": {c.name: c.kind for c in schema.columns},
        "storage": {c.name: c.storage for c in schema.columns},
    } | lossy_key(schema)


def show_inspect(schema: Schema, summary: dict) -> None:
    table = Table(title=f"{schema.rows:,} rows in {', '.join(schema.sources)}")
    for header in (
        "column",
        "kind",
        "storage",
        "nulls",
        "min",
        "max",
        "mean",
        "std",
        "distinct",
        "B/row pandas",
        "B/row chosen",
    ):
        table.add_column(
            header, justify="left" if header in ("column", "kind", "storage") else "right"
        )
    for c in schema.columns:
        distinct = "" if c.distinct is None else f"{'' if c.distinct_exact else '~'}{c.distinct:,}"
        table.add_row(
            c.name + ("" if c.feature else " (not a feature)"),
            c.kind,
            c.storage,
            f"{c.nulls:,}",
            _fmt(c.min),
            _fmt(c.max),
            _fmt(c.mean),
            _fmt(c.std),
            distinct,
            f"{bytes_per_row(c, pandas_default=True):.2f}",
            f"{bytes_per_row(c):.2f}",
        )
    console.print(table)
    pandas_row, chosen_row = (
        summary["bytes_per_row_pandas_default"],
        summary["bytes_per_row_chosen"],
    )
    console.print(
        f"Memory per row: {pandas_row:.1f} B as pandas loads it by default, {chosen_row:.1f} B "
        f"with the chosen types ({chosen_row / pandas_row:.0%})."
    )
    if schema.target:
        counts = ", ".join(f"{k}: {n:,}" for k, n in zip(schema.classes, schema.class_counts))
        console.print(f"Target '{schema.target}': {counts}")
    show_lossy(summary)
    for warning in summary["warnings"]:
        console.print(f"[yellow]Warning:[/yellow] {warning}")
    if summary["output"]:
        console.print(f"Schema written to {summary['output']}")


def show_lossy(s: dict) -> None:
    """With --lossy-floats: each float column's measured error as float16 and its storage;
    after training, the holdout metrics with those columns read at float32 beside them."""
    if not s.get("lossy"):
        return
    lossy = s["lossy"]
    table = Table(title=f"float16 where the relative error is at most {lossy['tolerance']:g}")
    for header in (
        "column",
        "storage",
        "max relative error",
        "max absolute error",
        "beyond ±65504",
    ):
        table.add_column(header, justify="left" if header in ("column", "storage") else "right")
    for name, c in lossy["columns"].items():
        errors = (f"{c['max_rel_error']:.3g}", f"{c['max_abs_error']:.3g}")
        table.add_row(name, c["storage"], *errors, f"{c['beyond_range']:,}")
    console.print(table)
    if lossy.get("note"):
        console.print(lossy["note"])
    if s.get("metrics_unrounded") and s.get("metrics"):
        table = Table(title="holdout metrics: float16 inputs (as trained) vs unrounded (float32)")
        for header in ("metric", "float16 inputs", "float32 inputs", "change"):
            table.add_column(header, justify="left" if header == "metric" else "right")
        for key in METRIC_LINES:
            lossy_value, exact = s["metrics"].get(key), s["metrics_unrounded"].get(key)
            if lossy_value is not None and exact is not None:
                table.add_row(
                    key, f"{lossy_value:.5f}", f"{exact:.5f}", f"{lossy_value - exact:+.5f}"
                )
        console.print(table)


def show_shrink(s: dict) -> None:
    show_lossy(s)
    show_accounting(s)
    console.print(
        f"{s['rows_written']:,} rows: {s['input_bytes'] / 1e6:,.1f} MB on disk -> {s['output_bytes'] / 1e6:,.1f} MB "
        f"Parquet ({s['output']}).\nIn memory: {s['memory_bytes_pandas_default'] / 1e6:,.1f} MB as pandas "
        f"loads it by default -> {s['memory_bytes_chosen'] / 1e6:,.1f} MB with the chosen types."
    )


METRIC_LINES = (
    "accuracy",
    "balanced_accuracy",
    "f1",
    "f1_macro",
    "log_loss",
    "brier_score",
    "roc_auc",
    "average_precision",
)


def show_metrics(metrics: dict | None) -> None:
    if not metrics:
        console.print("No holdout rows: no metrics (use --holdout > 0).")
        return
    table = Table(title=f"metrics on {metrics['n_rows']:,} rows")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in METRIC_LINES:
        if metrics.get(key) is not None:
            table.add_row(key, f"{metrics[key]:.5f}")
    console.print(table)
    console.print(
        f"confusion matrix (rows: true, columns: predicted): {metrics['confusion_matrix']}"
    )


ACCOUNTED = (
    ("rows_train", "trained on"),
    ("rows_holdout", "held out"),
    ("rows_predicted", "predicted"),
    ("rows_written", "written"),
    ("rows_unlabelled", "without a label"),
    ("rows_bad", "bad"),
)


def show_accounting(s: dict) -> None:
    """Where every input row went, and a warning for each row not used."""
    if "rows" not in s:
        return
    parts = [f"{s[key]:,} {what}" for key, what in ACCOUNTED if s.get(key)]
    if "metrics" in s and "rows_train" not in s and s["metrics"]:
        parts.insert(0, f"{s['metrics']['n_rows']:,} scored")
    console.print(f"rows read: {s['rows']:,}" + (f" = {' + '.join(parts)}" if parts else ""))
    for warning in s.get("warnings", []):
        console.print(f"[yellow]Warning:[/yellow] {warning}")
    if s.get("quarantine"):
        console.print(f"bad rows written to {s['quarantine']}")


def show_train(s: dict) -> None:
    console.print(
        f"trained {s['model']} on {s['rows_train']:,} rows ({s['features']:,} features"
        f"{', sparse' if s.get('sparse') else ''}); held out {s['rows_holdout']:,} rows."
    )
    if s.get("matrix"):
        console.print(
            f"XGBoost data: {s['matrix']}; {s['rounds_trained']} rounds trained, round "
            f"{s['best_iteration'] + 1} kept."
        )
    if s.get("threshold") is not None:
        console.print(
            f"threshold {s['options']['threshold']}: the second class is predicted where its "
            f"probability is at least {s['threshold']:.4g} (the metrics count at it)."
        )
    if s.get("feature_importance"):
        top = list(s["feature_importance"].items())[:10]
        console.print("top features by gain: " + ", ".join(f"{k} {v:,.1f}" for k, v in top))
    if s["dropped"]:
        console.print(f"not used as features: {', '.join(s['dropped'])}")
    for note in s.get("notes", []):
        console.print(f"[yellow]Note:[/yellow] {note}")
    show_metrics(s["metrics"])
    show_lossy(s)
    show_accounting(s)
    if s.get("output"):
        console.print(f"model saved to {s['output']}")
    if s.get("checkpoint"):
        c = s["checkpoint"]
        console.print(
            f"{'resumed; ' if c['resumed'] else ''}{c['saves']} checkpoints saved "
            f"({c['save_seconds']:.1f} s), then removed"
        )
    if s.get("report"):
        console.print(f"report written to {s['report']}")


def show_evaluate(s: dict) -> None:
    show_metrics(s["metrics"])
    show_accounting(s)


def show_predict(s: dict) -> None:
    console.print(f"wrote {s.get('rows_predicted', s['rows']):,} predictions to {s['output']}")
    show_accounting(s)


def show_drift(drift: dict) -> None:
    """The columns whose distribution moved (or that hold values the model has not
    seen), largest shift first, and the label balance old vs new."""
    said = ("below_min", "above_max", "new_levels")
    rows = [
        c
        for c in drift["columns"]
        if c["shift"] >= drift["threshold"] or any(c.get(key) for key in said)
    ]
    table = Table(title=f"drift of {drift['rows']:,} new rows against the model's schema")
    for header in ("column", "kind", "shift", "mean shift", "std shift", "nulls old -> new"):
        table.add_column(header, justify="left" if header in ("column", "kind") else "right")
    for header in ("below min", "above max", "new levels (rows)"):
        table.add_column(header, justify="right")
    for c in rows:
        name = c["column"] + (" *" if c["shift"] >= drift["threshold"] else "")
        levels = f"{c['new_levels']:,} ({c['new_level_rows']:,})" if c.get("new_levels") else ""
        table.add_row(
            name,
            c["kind"],
            f"{c['shift']:.3f}",
            _signed(c.get("mean_shift")),
            _signed(c.get("std_shift")),
            f"{c['null_rate_old']:.2%} -> {c['null_rate_new']:.2%}",
            f"{c['below_min']:,}" if c.get("below_min") else "",
            f"{c['above_max']:,}" if c.get("above_max") else "",
            levels,
        )
    if rows:
        console.print(table)
    shifted = ", ".join(drift["shifted"]) or "none"
    console.print(f"shifted columns (shift >= {drift['threshold']}, marked *): {shifted}")
    labels = drift["labels"]
    shares = zip(labels["classes"], labels["share_old"], labels["share_new"])
    console.print(
        "label shares old -> new: " + ", ".join(f"{k} {a:.1%} -> {b:.1%}" for k, a, b in shares)
    )


def _signed(value) -> str:
    return "" if value is None else f"{value:+.3f}"


def show_update(s: dict) -> None:
    show_drift(s["drift"])
    if s["categories_added"]:
        added = ", ".join(f"{k} {n:,}" for k, n in s["categories_added"].items())
        console.print(f"new levels given their own slot: {added}")
    before, after = s["metrics_before"], s["metrics"]
    if before and after:
        table = Table(title=f"holdout of the new data: {after['n_rows']:,} rows")
        for header in ("metric", "old model", "updated model"):
            table.add_column(header, justify="left" if header == "metric" else "right")
        for key in METRIC_LINES:
            if after.get(key) is not None:
                table.add_row(key, f"{before[key]:.5f}", f"{after[key]:.5f}")
        console.print(table)
    else:
        console.print("No holdout rows: no metrics before and after (the model's --holdout is 0).")
    console.print(f"updated {s['model']} on {s['rows_train']:,} new rows.")
    show_accounting(s)
    if s.get("output"):
        console.print(f"model saved to {s['output']}")
