"""A second generator, unlike leanfit's own: the shape of the file issue 14 measured.

Usage: python bench/other_data.py ROWS OUT.csv [--seed=N]

29 columns: 20 floats written with 4-7 significant digits (about 3% missing each),
5 integers, text columns of 5, 50 and 5,000 levels (Zipf-like frequencies), and a
binary ``y`` drawn from a logistic model of all of them, the 5,000-level column
included (its levels carry their own effects, so hashing or ranking them costs AUC).
Written in chunks of 200,000 rows with Polars, in constant memory.
"""

from __future__ import annotations

import sys

import numpy as np
import polars as pl

CHUNK = 200_000
LEVELS = {"colour": 5, "city": 50, "merchant": 5_000}


def level_effects(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {name: rng.normal(0, 0.8, n) for name, n in LEVELS.items()}


def level_draws(rng: np.random.Generator, n: int, rows: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** 0.8
    return rng.choice(n, size=rows, p=weights / weights.sum())


def chunk(rng: np.random.Generator, rows: int, effects: dict, weights: np.ndarray) -> pl.DataFrame:
    floats = rng.normal(0, 1, (rows, 20)) * np.linspace(0.5, 300, 20)
    ints = rng.poisson([2, 10, 40, 300, 5000], (rows, 5))
    logit = (floats / np.linspace(0.5, 300, 20)) @ weights[:20] + (ints / ints.mean(0)) @ weights[
        20:25
    ]
    columns: dict[str, pl.Series | np.ndarray] = {}
    for i in range(20):
        values = np.round(floats[:, i], 4 - i % 3)
        missing = rng.random(rows) < 0.03
        columns[f"f{i:02d}"] = pl.Series(values).set(pl.Series(missing), None)
    for i in range(5):
        columns[f"n{i}"] = ints[:, i]
    for name, n in LEVELS.items():
        codes = level_draws(rng, n, rows)
        logit = logit + effects[name][codes]
        columns[name] = np.char.add(f"{name[:2]}_", codes.astype(str))
    probability = 1 / (1 + np.exp(-(logit - 0.8)))
    columns["y"] = (rng.random(rows) < probability).astype(np.int8)
    return pl.DataFrame(columns)


def main() -> None:
    rows, out = int(sys.argv[1]), sys.argv[2]
    seed = next((int(a.split("=")[1]) for a in sys.argv if a.startswith("--seed=")), 0)
    rng = np.random.default_rng(seed)
    effects, weights = level_effects(rng), rng.normal(0, 0.4, 25)
    with open(out, "wb") as f:
        for start in range(0, rows, CHUNK):
            frame = chunk(rng, min(CHUNK, rows - start), effects, weights)
            frame.write_csv(f, include_header=start == 0)


if __name__ == "__main__":
    main()
