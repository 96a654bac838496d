"""Where `leanfit train --model sgd` spends its time: parse, encode, learn.

Usage: python bench/hot_path.py [ROWS]   (default 2,000,000; data made once under data/)

Runs the training stream four times in this process, each time doing one stage more,
so the differences between lines are the cost of each stage (wall and CPU seconds;
Polars parses and encodes on its own threads while Python learns):

1. parse:  Polars' streaming CSV scan of the columns training reads;
2. encode: plus the encoder's expressions (standardising, level codes, label codes),
           run by Polars inside the scan;
3. block:  plus turning each chunk into numpy (dense part and one-hot slots), the
           holdout split and the CSR matrix the learner takes;
4. learn:  plus ``SGDClassifier.partial_fit`` and caching the holdout rows.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import polars as pl

from leanfit.encode.batches import encoded_columns
from leanfit.encode.cache import BlockCache
from leanfit.engines.local.train import Trainer, encoded_blocks
from leanfit.io.scan import iter_batches, scan
from leanfit.io.source import resolve_paths
from leanfit.options import TrainOptions
from leanfit.schema import inspect

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
DATA = Path(f"data/bench-{ROWS}.csv")
OPTS = TrainOptions(model="sgd", batch_rows=65_536)


def timed(stage) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    stage()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    if not DATA.exists():
        from leanfit.synth import write_data

        write_data(DATA, rows=ROWS, seed=1)
    schema = inspect(DATA, target="label")
    trainer = Trainer(schema, OPTS)
    paths = resolve_paths(DATA)
    lf = scan(paths, schema.read_overrides())
    read = [*trainer.encoder.input_columns, schema.target]
    encoded = lf.select(encoded_columns(lf.collect_schema(), schema, trainer.encoder, OPTS))

    def drain(query: pl.LazyFrame):
        return lambda: sum(b.height for b in iter_batches(query, paths, OPTS.batch_rows))

    def blocks():
        for _ in encoded_blocks(DATA, schema, trainer.encoder, OPTS, one_hot=False):
            pass

    def learn():
        with BlockCache() as train_cache, BlockCache() as holdout_cache:
            trainer.fit(DATA, train_cache, holdout_cache)

    stages = {
        "parse": drain(lf.select(read)),
        "encode": drain(encoded),
        "block": blocks,
        "learn": learn,
    }
    print(f"{ROWS:,} rows, {DATA.stat().st_size / 1e9:.2f} GB, chunks of {OPTS.batch_rows:,}")
    print(f"{'up to stage':<10}{'wall s':>8}{'cpu s':>8}{'stage wall s':>14}{'share':>8}")
    results = {name: timed(stage) for name, stage in stages.items()}
    total, before = results["learn"][0], 0.0
    for name, (wall, cpu) in results.items():
        step = wall - before
        print(f"{name:<10}{wall:8.2f}{cpu:8.2f}{step:14.2f}{step / total:8.0%}")
        before = wall


if __name__ == "__main__":
    main()
