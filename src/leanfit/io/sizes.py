"""How many rows an input holds, as progress expects them (``leanfit.progress``).

Parquet files say it in their footers; a CSV file's rows are estimated from its size
and the lines of its first MiB (gzip'd: the lines its first compressed MiB holds).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import polars as pl

from leanfit.errors import LeanfitError
from leanfit.io.source import GZIP_MAGIC, is_parquet, is_url, local_path
from leanfit.io.translate import translated

HEAD_BYTES = 1 << 20  # what is read of each CSV file


def estimate_rows(paths: list) -> int | None:
    """The rows of ``paths`` as progress expects them: Parquet's from its footers,
    a CSV file's from its size and the lines of its first MiB (gzip'd: the lines its
    first compressed MiB holds); None for remote files or one that cannot be read
    (the pass itself then says why)."""
    total = 0
    for path in map(str, paths):
        if is_url(path) and not path.startswith("file://"):
            return None
        path = local_path(path)
        try:
            if is_parquet(Path(path)):
                with translated([Path(path)]):
                    total += pl.scan_parquet(path).select(pl.len()).collect().item()
                continue
            with open(path, "rb") as f:
                head = f.read(HEAD_BYTES)
            gzipped = head[:2] == GZIP_MAGIC
            text = zlib.decompressobj(wbits=31).decompress(head) if gzipped else head
        except (OSError, zlib.error, LeanfitError):
            return None
        lines = text.count(b"\n") + (not text.endswith(b"\n"))
        whole = len(head) < HEAD_BYTES
        total += lines - 1 if whole else int(Path(path).stat().st_size * lines / len(head)) - 1
    return total
