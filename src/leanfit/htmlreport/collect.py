"""The report's data: what a bundle holds of its training run and, with DATA, the
metrics and curves of one streaming pass over DATA (the ``evaluate`` of either engine).

Everything here is a summary of bounded size (counts, histogram-based curve points,
the run record of :mod:`leanfit.runrecord`), so a report on 100M rows costs what
one on 1M rows costs. The page embeds this dict as JSON, so its numbers can be read
back (and checked) from the HTML file itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from leanfit.costs import bytes_per_row
from leanfit.errors import ConfigError
from leanfit.model import Model
from leanfit.schema.columns import Schema

TOP_WEIGHTS = 15  # the largest and the smallest weights shown
ACCOUNTING = ("rows", "rows_train", "rows_holdout", "rows_unlabelled", "rows_bad")


def collect(model: Model, bundle: str, evaluation: dict | None = None) -> dict[str, Any]:
    """The report data of ``model`` (read from ``bundle``): on the training holdout, or
    on DATA when ``evaluation`` (an ``evaluate`` summary with curves) is given."""
    training = model.meta["training"]
    scored = evaluation or training
    rows = {"training run": _accounting(training)}
    if evaluation is not None:
        rows["report data"] = _accounting(evaluation) | {"scored": evaluation["metrics"]["n_rows"]}
    return {
        "bundle": str(bundle),
        "model": training["model"],
        "classes": [str(c) for c in model.classes],
        "scored_on": "data" if evaluation is not None else "holdout",
        "input": scored.get("input", []),
        "metrics": scored.get("metrics"),
        "missing_metrics": "" if evaluation else "the training run held out no rows; give DATA",
        "rows": rows,
        "run": training.get("run_record"),
        "weights": feature_weights(model),
        "schema": schema_table(model.schema),
    }


def _accounting(summary: dict) -> dict[str, int]:
    return {key: summary[key] for key in ACCOUNTING if summary.get(key) is not None}


def feature_weights(model: Model, top: int = TOP_WEIGHTS) -> dict[str, Any] | None:
    """The model's weights by feature name, the ``top`` largest and smallest: XGBoost's
    gain by column, a binary linear model's coefficients by encoded feature, else the
    absolute coefficients summed by column. None for kinds without any (nb, mlp)."""
    kind = model.meta["training"]["model"]
    try:
        if kind == "xgboost":
            table = model.feature_importances()
            names, values = table["column"].to_list(), table["importance"].to_list()
            title, axis = "Gain by feature", "average split gain (XGBoost)"
        else:
            table = model.coefficients()
            if "coefficient" in table.columns:
                table = table.filter(table["feature"] != "(intercept)")
                names, values = table["feature"].to_list(), table["coefficient"].to_list()
                title = "Coefficients by feature"
                axis = f"coefficient (log-odds of class {model.classes[1]})"
            else:
                names = table["feature"].to_list()[:-1]
                values = np.abs(table.drop("feature").to_numpy()[:-1]).max(axis=1).tolist()
                title, axis = "Coefficients by feature", "largest |coefficient| over the classes"
    except ConfigError:
        return None
    ranked = sorted(zip(values, names), key=lambda pair: -pair[0])
    note = ""
    if len(ranked) > 2 * top:
        note = f"The {top} largest and {top} smallest of {len(ranked):,} features."
        ranked = ranked[:top] + ranked[-top:]
    return {
        "title": title,
        "axis": axis,
        "features": [name for _, name in ranked],
        "values": [float(value) for value, _ in ranked],
        "note": note,
    }


def schema_table(schema: Schema) -> dict[str, Any]:
    """Each column's kind, storage and bytes per row (as pandas loads the CSV by
    default, and as leanfit stores it), and the totals."""
    columns = [
        {
            "column": c.name,
            "kind": c.kind,
            "storage": c.storage,
            "feature": c.feature,
            "bytes_pandas": bytes_per_row(c, pandas_default=True),
            "bytes_stored": bytes_per_row(c),
        }
        for c in schema.columns
    ]
    return {
        "rows": schema.rows,
        "target": schema.target,
        "columns": columns,
        "bytes_pandas": sum(c["bytes_pandas"] for c in columns),
        "bytes_stored": sum(c["bytes_stored"] for c in columns),
    }
