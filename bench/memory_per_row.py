"""Bytes per row in memory: leanfit's chosen types vs pandas defaults vs reduce_mem_usage.

Usage: python bench/memory_per_row.py [ROWS]   (default 1,000,000)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from leanfit import inspect, shrink, write_data

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
DATA = Path(f"data/bench-mem-{ROWS}.csv")


def reduce_mem_usage(df: pd.DataFrame) -> pd.DataFrame:
    """The widely copied Kaggle recipe: downcast numbers by range, text to category."""
    for col in df.columns:
        kind = df[col].dtype.kind
        if kind in "iu":
            lo, hi = df[col].min(), df[col].max()
            for t in (np.int8, np.int16, np.int32, np.int64):
                if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max:
                    df[col] = df[col].astype(t)
                    break
        elif kind == "f":
            lo, hi = df[col].min(), df[col].max()
            t = (
                np.float16
                if np.finfo(np.float16).min < lo and hi < np.finfo(np.float16).max
                else np.float32
            )
            df[col] = df[col].astype(t)
        else:
            df[col] = df[col].astype("category")
    return df


def main() -> None:
    if not DATA.exists():
        write_data(DATA, rows=ROWS, seed=1)
    df = pd.read_csv(DATA)
    pandas_default = df.memory_usage(deep=True).sum() / len(df)
    recipe = reduce_mem_usage(df).memory_usage(deep=True).sum() / len(df)
    del df
    schema = inspect(DATA, target="label")
    out = DATA.with_suffix(".parquet")
    shrink(DATA, out, schema, force=True)
    table = pq.read_table(out)
    chosen = table.nbytes / table.num_rows
    print(f"{ROWS:,} rows of generated data, bytes per row in memory:")
    print(f"  pandas.read_csv defaults     {pandas_default:8.1f}  (1.00)")
    print(
        f"  reduce_mem_usage recipe      {recipe:8.1f}  ({recipe / pandas_default:.2f}; float16 loses values)"
    )
    print(f"  leanfit chosen types (Arrow) {chosen:8.1f}  ({chosen / pandas_default:.2f}; exact)")


if __name__ == "__main__":
    main()
