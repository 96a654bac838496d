"""What float16 storage (``--lossy-floats float16``) did to a trained model's metrics.

The model learned from its float16 columns as float16 holds them, and its holdout
``metrics`` are measured so. One more pass over the input reads the same holdout rows
with those columns at full precision (float32, as without the option) and measures the
same model on them: ``metrics_unrounded``, at the same cut. Training a second
model at float32 would double the cost; the difference between the two metrics is the
effect of the rounding on the inputs of this model, not of the rounding on its training.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

from leanfit.costs import PARSER_BYTES, chunk_row_bytes
from leanfit.encode.encoder import Encoder
from leanfit.engines.shared import block_metrics
from leanfit.errors import MemoryBudgetExceeded
from leanfit.models.registry import scores
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
    encoder: Encoder,
    model,
    blocks_of: Callable[[Encoder, int], Iterator],
    memory,
    cut: float | None,
    holdout: bool,
) -> dict:
    """With ``--lossy-floats``: ``lossy`` (the choice and error per column, see
    :func:`~leanfit.schema.lossy.lossy_report`) and, given ``holdout`` rows and float16
    columns, ``metrics_unrounded``: the model on the holdout rows of
    ``blocks_of(encoder, rows)`` (a pass in chunks of ``rows`` yielding
    ``(X, y, train_mask)``, ``X`` one-hot blocks) read at float32.

    The pass is planned from what the process holds after training (the model, the
    allocator's kept pages): when the budget leaves no room for its parser buffers and a
    small chunk, it is not run and ``lossy.note`` says so."""
    reported = lossy_key(schema)
    exact = exact_encoder(encoder) if reported else None
    if exact is None or not holdout:
        return reported
    try:
        rows = memory.plan(fixed=PARSER_BYTES, row_bytes=chunk_row_bytes(schema, exact))
    except MemoryBudgetExceeded:
        reported["lossy"]["note"] = NO_ROOM
        return reported
    names = [str(c) for c in schema.classes]
    with memory.stage("evaluate unrounded"):
        memory.progress.plan(schema.rows)
        held = _held_out(blocks_of(exact, rows=rows), exact)
        metrics = block_metrics(lambda X: scores(model, X), held, len(names))
    if metrics is None:
        return reported
    found = (metrics if cut is None else metrics.cut_at(cut)).result(class_names=names)
    return reported | {"metrics_unrounded": found}


def _held_out(blocks: Iterator, encoder: Encoder) -> Iterator:
    """``(X, y, None)`` of the holdout rows of ``(X, y, train_mask)`` blocks: selected on
    the compact one-hot block, then expanded as the model takes it (as the first pass)."""
    for X, y, train in blocks:
        if not train.all():
            yield encoder.expand(X[~train]), y[~train], None
