"""What both engines run between passes: early stopping and the holdout's loss.

>>> stopper, history = EarlyStopping(patience=2), []
>>> [stopper.stop(e, loss, history, print) for e, loss in enumerate([0.6, 0.5, 0.5, 0.5], 1)][-1]
{'stage': 'epoch', 'epoch': 1, 'holdout_log_loss': 0.6}
{'stage': 'epoch', 'epoch': 2, 'holdout_log_loss': 0.5}
{'stage': 'epoch', 'epoch': 3, 'holdout_log_loss': 0.5}
{'stage': 'epoch', 'epoch': 4, 'holdout_log_loss': 0.5}
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from leanfit.errors import InputError
from leanfit.metrics import StreamingMetrics, threshold_rule
from leanfit.model import save_bundle
from leanfit.models.registry import scores
from leanfit.runrecord import run_record

Progress = Callable[[dict], None]


class EarlyStopping:
    """Stop when the holdout log loss has not improved by 1e-4 for ``patience`` epochs."""

    def __init__(self, patience: int):
        self.patience, self.best, self.stale = patience, np.inf, 0

    def stop(self, epoch: int, loss: float, history: list[dict], progress: Progress) -> bool:
        """Record ``loss`` after ``epoch`` in ``history``; whether to stop now."""
        history.append({"epoch": epoch, "holdout_log_loss": loss})
        progress({"stage": "epoch", "epoch": epoch, "holdout_log_loss": loss})
        if loss < self.best - 1e-4:
            self.best, self.stale = loss, 0
        else:
            self.stale += 1
        return self.stale >= self.patience


def log_loss_sum(model, blocks: Iterable) -> tuple[float, int]:
    """The summed log loss of ``model`` over ``(X, y, w)`` blocks, and their row count."""
    total, count = 0.0, 0
    for X, y, _ in blocks:
        p = np.clip(scores(model, X)[np.arange(len(y)), y], 1e-15, 1.0)
        total -= float(np.log(p).sum())
        count += len(y)
    return total, count


def block_metrics(proba: Callable, blocks: Iterable, n_classes: int) -> StreamingMetrics | None:
    """StreamingMetrics of ``proba(X)`` on ``(X, y, w)`` blocks (None when there are none)."""
    metrics = StreamingMetrics(n_classes)
    for X, y, _ in blocks:
        metrics.update(np.asarray(y, dtype=np.int64), proba(X))
    return metrics if metrics.n_rows else None


def holdout_result(
    metrics: StreamingMetrics | None, rule: str | None, class_names: list[str]
) -> tuple[dict | None, float | None]:
    """The holdout metrics as a summary reports them, and the ``--threshold`` cut: a
    fixed one, or the one its rule picks on the holdout (the metrics then count at it)."""
    if rule is None:
        return (metrics.result(class_names=class_names, curves=True) if metrics else None), None
    if metrics is None:
        return None, metrics_free_cut(rule, len(class_names))
    cut = metrics.tuned_threshold(rule)
    return metrics.cut_at(cut).result(class_names=class_names, curves=True), cut


def metrics_free_cut(rule: str, n_classes: int) -> float:
    """A fixed cut; a rule to tune needs holdout rows."""
    kind, level = threshold_rule(rule, n_classes)
    if kind != "fixed":
        raise InputError(f"--threshold {rule}: no holdout rows to tune it on; raise --holdout.")
    return level


def save_trained(out, schema, encoder, model, summary: dict, memory) -> dict:
    """Save the trained model's bundle to ``out`` (if given), with the run's record
    (:mod:`leanfit.runrecord`); the summary, naming ``output``."""
    if out is None:
        return summary
    with memory.stage("save"):
        save_bundle(out, schema, encoder, model, summary | {"run_record": run_record(memory)})
    return summary | {"output": str(out)}
