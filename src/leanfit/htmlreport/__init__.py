"""``leanfit report``: one self-contained HTML file describing a model.

Modules: :mod:`.collect` (the report data: the bundle's training run, or one streaming
pass over DATA through ``evaluate``), :mod:`.figures` (a figure per view of that
data), :mod:`.svg` (the charts, drawn as inline SVG) and :mod:`.page` (the page).
"""

from __future__ import annotations

from rich.console import Console

from leanfit.engines.local.apply import evaluate
from leanfit.htmlreport.collect import collect
from leanfit.htmlreport.figures import figures
from leanfit.htmlreport.page import render
from leanfit.io.outputs import atomic_path, checks_output
from leanfit.memory import Monitor
from leanfit.model import load

__all__ = ["show_report", "write_report"]


@checks_output("out", inputs=("model_path", "data"))
def write_report(
    model_path,
    data=None,
    out="report.html",
    *,
    memory: Monitor | None = None,
    guard=None,
    scheduler: str | None = None,
    dask: bool = False,
) -> dict:
    """Write the HTML report of the bundle ``model_path`` to ``out``; return the summary.

    Without ``data`` the metrics and curves are those of the training holdout, stored
    in the bundle; with ``data`` they come from one streaming pass over it, as
    ``evaluate`` makes them (on Dask with ``dask``), in the same memory.
    """
    memory = memory or Monitor.unbounded()
    evaluation = None
    if data is not None:
        if dask:
            from leanfit.engines.dask import evaluate as dask_evaluate

            evaluation = dask_evaluate(
                model_path, data, scheduler=scheduler, memory=memory, guard=guard, curves=True
            )
        else:
            evaluation = evaluate(model_path, data, memory=memory, guard=guard, curves=True)
    with memory.stage("report"):
        model = load(model_path, memory)
        report = collect(model, str(model_path), evaluation)
        drawn = figures(report)
        with atomic_path(out) as tmp:
            tmp.write_text(render(report, drawn), encoding="utf-8")
    summary = {"bundle": str(model_path), "model": report["model"], "output": str(out)}
    if evaluation is not None:
        summary |= {k: v for k, v in evaluation.items() if k not in summary}
    else:
        summary["rows_holdout"] = model.meta["training"].get("rows_holdout", 0)
    metrics = report["metrics"]
    summary["metrics"] = {k: v for k, v in metrics.items() if k != "curves"} if metrics else None
    summary["figures"] = [f.title for f in drawn]
    return summary


def show_report(summary: dict) -> None:
    """What ``leanfit report`` prints for people."""
    metrics = summary["metrics"]
    where = (
        f"{metrics['n_rows']:,} rows of {', '.join(summary['input'])}"
        if "input" in summary
        else f"the {summary['rows_holdout']:,} rows of the training holdout"
    )
    console = Console(highlight=False, soft_wrap=True)
    if metrics:
        auc = metrics.get("roc_auc")
        ece = metrics.get("expected_calibration_error")
        console.print(
            f"metrics on {where}: accuracy {metrics['accuracy']:.4f}"
            + (f", ROC AUC {auc:.4f}" if auc is not None else "")
            + (f", expected calibration error {ece:.4f}" if ece is not None else "")
        )
    console.print(f"report with {len(summary['figures'])} figures written to {summary['output']}")
