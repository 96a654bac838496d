"""What a training run keeps for its report, bounded whatever the run's length.

The bundle's training summary holds it as ``run_record`` (see :func:`run_record`):

- the learning curve: the loss after each epoch (holdout log loss), L-BFGS pass
  (the training objective) or boosting round (holdout log loss), recorded from the
  run's progress events by :class:`LearningCurve`, at most ``MAX_CURVE_POINTS``;
- the memory trace: the :class:`~leanfit.memory.Monitor`'s RSS samples reduced to at
  most ``MAX_TRACE_POINTS`` (the highest sample of each time slice, so peaks stay),
  with the stages as time bands;
- the seconds spent in each stage.

>>> samples = [(0.0, 100, "setup"), (0.5, 300, "train"), (1.5, 200, "train"), (2.0, 150, "save")]
>>> stage_seconds(samples)
{'setup': 0.5, 'train': 1.5}
>>> trace = memory_trace(samples, max_points=3)
>>> trace["seconds"], trace["rss_bytes"], trace["stages"]
([0.5, 1.5], [300, 200], [['setup', 0.0, 0.5], ['train', 0.5, 2.0], ['save', 2.0, 2.0]])
>>> curve = LearningCurve()
>>> curve({"stage": "boost", "round": 1, "holdout_logloss": 0.5})
>>> curve.as_dict()
{'step': 'boosting round', 'loss': 'holdout log loss', 'x': [1], 'y': [0.5]}
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from leanfit.progress import Progress

MAX_TRACE_POINTS = 2_000
MAX_CURVE_POINTS = 1_000
Sample = tuple[float, int, str]


class LearningCurve:
    """A listener of the run's :class:`~leanfit.progress.Progress` that records the loss
    of each epoch, L-BFGS pass or boosting round."""

    def __init__(self):
        self.step: str | None = None
        self.loss: str | None = None
        self.x: list[int] = []
        self.y: list[float] = []

    def __call__(self, event: dict) -> None:
        point = _point(event)
        if point is not None:
            self.step, self.loss, x, y = point
            if self.x and self.x[-1] == x:  # the same step measured again: the later one
                self.x.pop(), self.y.pop()
            self.x.append(x)
            self.y.append(float(y))
            if len(self.x) > MAX_CURVE_POINTS:  # every other point, the last one kept
                self.x, self.y = self.x[-1::-2][::-1], self.y[-1::-2][::-1]

    @classmethod
    def of(cls, progress: Progress) -> LearningCurve:
        """The curve listening to ``progress`` (made and attached on first use)."""
        found = [fn for fn in progress.listeners if isinstance(fn, cls)]
        if found:
            return found[0]
        curve = cls()
        progress.listeners.append(curve)
        return curve

    def as_dict(self) -> dict[str, Any] | None:
        """``step``, ``loss`` (what x and y are), ``x`` and ``y``; None without points."""
        if not self.x:
            return None
        return {"step": self.step, "loss": self.loss, "x": list(self.x), "y": list(self.y)}


def _point(event: dict) -> tuple[str, str, int, float] | None:
    """(step, loss name, x, y) of a progress event that ends a step, else None."""
    stage = event.get("stage")
    if stage == "epoch" and "holdout_log_loss" in event:
        return "epoch", "holdout log loss", event["epoch"], event["holdout_log_loss"]
    if stage == "lbfgs":
        return "L-BFGS pass", "training loss (objective)", event["iteration"], event["loss"]
    if stage == "boost":
        holdout = [v for k, v in event.items() if k.startswith("holdout_")]
        if holdout:
            return "boosting round", "holdout log loss", event["round"], holdout[0]
    return None


def stage_seconds(samples: list[Sample]) -> dict[str, float]:
    """Seconds per stage: each gap between samples counts for the earlier one's stage."""
    seconds: dict[str, float] = {}
    for (t, _, stage), (after, _, _) in itertools.pairwise(samples):
        seconds[stage] = seconds.get(stage, 0.0) + after - t
    return {stage: round(s, 3) for stage, s in seconds.items()}


def memory_trace(samples: list[Sample], max_points: int = MAX_TRACE_POINTS) -> dict[str, list]:
    """At most ``max_points`` samples (the highest of each equal time slice) as
    ``seconds`` and ``rss_bytes``, and ``stages``: ``[stage, start, end]`` bands."""
    if not samples:
        return {"seconds": [], "rss_bytes": [], "stages": []}
    t = np.array([s[0] for s in samples])
    rss = np.array([s[1] for s in samples])
    span = max(float(t[-1] - t[0]), 1e-9)
    slices = np.minimum(((t - t[0]) / span * max_points).astype(np.int64), max_points - 1)
    order = np.lexsort((-rss, slices))  # by slice, highest first
    _, first = np.unique(slices[order], return_index=True)
    kept = np.sort(order[first])
    stages = [s[2] for s in samples]
    bands = _bands(t, stages)
    if len(bands) > max_points:
        bands = _bands(t[kept], [stages[i] for i in kept])
    return {
        "seconds": [round(float(x), 3) for x in t[kept]],
        "rss_bytes": [int(x) for x in rss[kept]],
        "stages": bands,
    }


def _bands(t: np.ndarray, stages: list[str]) -> list[list]:
    """``[stage, start, end]`` for each run of samples in one stage; a band ends where
    the next begins."""
    bands: list[list] = []
    for when, stage in zip(t, stages):
        if bands and bands[-1][0] == stage:
            continue
        if bands:
            bands[-1][2] = round(float(when), 3)
        bands.append([stage, round(float(when), 3), round(float(when), 3)])
    bands[-1][2] = round(float(t[-1]), 3)
    return bands


def run_record(memory) -> dict[str, Any]:
    """The ``run_record`` of a training summary: ``learning_curve`` (None when the run
    saw no step; the training engines attach :meth:`LearningCurve.of` their progress
    before they start), ``memory_trace`` (with ``limit_bytes`` and ``baseline_bytes``)
    and ``stage_seconds``, from ``memory`` (a Monitor) as the run stands now."""
    curve = LearningCurve.of(memory.progress)
    samples = list(memory.samples)  # the sampling thread appends meanwhile
    trace = memory_trace(samples) | {"limit_bytes": memory.limit, "baseline_bytes": memory.baseline}
    return {
        "learning_curve": curve.as_dict(),
        "memory_trace": trace,
        "stage_seconds": stage_seconds(samples),
    }
