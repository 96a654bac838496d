"""What float16 storage (``--lossy-floats float16``) did to a trained model's metrics.

The model learned from its float16 columns as float16 holds them, and its holdout
``metrics`` are measured so. One more pass over the input reads the same holdout rows
with those columns unrounded (float32, as without the option) and measures the same
model on them: ``metrics_unrounded``, at the same cut. Training a second model at
float32 would double the cost; the difference between the two metrics is the effect of
the rounding on the inputs of this model, not of the rounding on its training.

The pass is planned from what the process holds after training (the model, the
allocator's kept pages): when the budget leaves no room for its parser buffers and a
small chunk, it is not run and ``lossy.note`` says so.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

from leanfit.costs import PARSER_BYTES
from leanfit.encode.encoder import Encoder
from leanfit.engines.shared import block_metrics
from leanfit.errors import MemoryBudgetExceeded
from leanfit.schema.columns import Schema
from leanfit.schema.lossy import lossy_key

NO_ROOM = (
    "metrics_unrounded not measured: after training, --memory-limit leaves no room for "
    "one more pass over the input"
)


def exact_encoder(encoder: Encoder) -> Encoder | None:
    """``encoder`` reading its float16 columns at full precision (None: it has none)."""
    if not any(n.get("float16") for n in encoder.numeric):
        return None
    exact = Encoder.from_dict(copy.deepcopy(encoder.to_dict()))
    for n in exact.numeric:
        n.pop("float16", None)
    return exact


def lossy_summary(
    schema: Schema,
    memory,
    cut: float | None,
    unrounded: Callable[[int], Iterator] | None = None,
    proba: Callable | None = None,
    row_bytes: float = 0.0,
    fixed: int = PARSER_BYTES,
) -> dict:
    """With ``--lossy-floats``: ``lossy`` (the choice and error per column, see
    :func:`~leanfit.schema.lossy.lossy_report`) and, given ``unrounded`` (a pass in
    chunks of so many rows yielding the holdout rows ``(X, y, w)`` with the float16
    columns read at float32; None: no float16 column or no holdout), the
    ``metrics_unrounded`` of ``proba(X)``; ``row_bytes`` and ``fixed`` (the reader's
    buffers: :func:`~leanfit.costs.reader_bytes`) plan that pass's chunks."""
    reported = lossy_key(schema)
    if not reported or unrounded is None:
        return reported
    try:
        rows = memory.plan(fixed=fixed, row_bytes=row_bytes)
    except MemoryBudgetExceeded:
        reported["lossy"]["note"] = NO_ROOM
        return reported
    names = [str(c) for c in schema.classes]
    with memory.stage("evaluate unrounded"):
        memory.progress.plan(schema.rows)
        metrics = block_metrics(proba, unrounded(rows), len(names))
    if metrics is None:
        return reported
    found = (metrics if cut is None else metrics.cut_at(cut)).result(class_names=names)
    return reported | {"metrics_unrounded": found}


def linear_holdout(blocks_of: Callable, encoder: Encoder, holdout: bool):
    """The ``unrounded`` pass of a linear model: the holdout rows of
    ``blocks_of(exact encoder, rows=rows)`` (``(X, y, train_mask)``, one-hot blocks),
    selected on the compact block, then expanded as the model takes them; None without
    float16 columns or ``holdout`` rows."""
    exact = exact_encoder(encoder)
    if exact is None or not holdout:
        return None

    def unrounded(rows: int) -> Iterator:
        for X, y, train in blocks_of(exact, rows=rows):
            if not train.all():
                yield exact.expand(X[~train]), y[~train], None

    return unrounded
