"""Checkpoints of boosted trees (:mod:`leanfit.engines.checkpoint`): the blocks of the
first pass, the rounds so far as a saved booster, and the holdout losses early
stopping has seen.

XGBoost continues a saved booster into the same trees as an uninterrupted run (the
prediction cache is rebuilt from the trees; ``hist`` without sampling draws nothing
at random), and early stopping is given the losses of the rounds before the kill.
"""

from __future__ import annotations

from dataclasses import asdict

import xgboost as xgb

from leanfit.encode.batches import RowCounts
from leanfit.engines.checkpoint import BOOST_ROUNDS, Checkpoint
from leanfit.models.booster import BoostedModel
from leanfit.models.registry import restore_model
from leanfit.options import BoostOptions, Plan
from leanfit.schema.columns import Schema


class BoostCheckpoint:
    """Saves and restores one boosting run; ``iters`` are its train and holdout
    :class:`~leanfit.engines.local.boost.BatchIter` (their blocks in the checkpoint)."""

    def __init__(self, checkpoint: Checkpoint, schema: Schema, plan: Plan, iters: list):
        self.checkpoint, self.schema, self.plan, self.iters = checkpoint, schema, plan, iters
        saved = checkpoint.progress
        self.losses: list[float] = list(saved.get("losses", []))
        self.parsed = saved.get("stage") == "boost"
        if self.parsed:  # the first pass is done: read its blocks back
            for it, rows in zip(iters, saved["rows"]):
                it.reuse_blocks(rows)
            iters[0].counts = RowCounts(**saved["counts"])
        else:  # the schema and plan: a resumed run never inspects again
            checkpoint.save({"stage": "parse", "plan": plan.as_dict()}, schema)

    def after_parse(self) -> None:
        """Save once both matrices are made: later runs never parse again."""
        if not self.parsed:
            self.parsed = True
            self.save(None)

    def save(self, booster: xgb.Booster | None) -> None:
        iters = self.iters
        progress = {
            "stage": "boost",
            "rows": [it.rows for it in iters],
            "counts": asdict(iters[0].counts),
            "plan": self.plan.as_dict(),
            "losses": self.losses,
        }
        model = ({}, {})
        if booster is not None:
            model = BoostedModel(booster, iters[0].features, len(self.schema.classes)).state()
        caches = {it.which: it.blocks for it in iters}
        self.checkpoint.save(progress, self.schema, model=model, caches=caches)

    def booster(self) -> xgb.Booster | None:
        """The rounds saved so far, or None."""
        settings = self.checkpoint.saved[0]["model"] if self.checkpoint.saved else {}
        if not settings:
            return None
        return restore_model(settings, self.checkpoint.saved_arrays("model.")).booster

    def callbacks(self, bopts: BoostOptions, start: xgb.Booster | None) -> list:
        """Early stopping (given the saved losses) and the saving of rounds."""
        found = [SaveRounds(self)]
        if bopts.early_stopping_rounds:
            metric = "logloss" if len(self.schema.classes) == 2 else "mlogloss"
            stopper = early_stopping(bopts.early_stopping_rounds, start, metric, self.losses)
            found.insert(0, stopper)
        return found


class SaveRounds(xgb.callback.TrainingCallback):
    """Records each round's holdout loss; saves every ``BOOST_ROUNDS`` rounds or when due."""

    def __init__(self, saver: BoostCheckpoint):
        super().__init__()
        self.saver = saver

    def after_iteration(self, model, epoch: int, evals_log: dict) -> bool:
        holdout = list(evals_log.get("holdout", {}).values())
        if holdout:
            self.saver.losses.append(holdout[-1][-1])
        if model.num_boosted_rounds() % BOOST_ROUNDS == 0 or self.saver.checkpoint.due():
            self.saver.save(model)
        return False


def early_stopping(
    rounds: int, start: xgb.Booster | None, metric: str, losses: list[float]
) -> xgb.callback.EarlyStopping:
    """XGBoost's early stopping, having seen the holdout ``metric``'s ``losses`` of the
    rounds of ``start``."""
    stopper = xgb.callback.EarlyStopping(rounds=rounds)
    for i in range(len(losses) if start is not None else 0):
        stopper.after_iteration(start, i, {"holdout": {metric: losses[: i + 1]}})
    return stopper
