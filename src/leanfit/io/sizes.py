"""How many rows an input holds, as progress expects them (``leanfit.progress``).

Parquet and Arrow IPC files say it in their footers; a CSV or JSON-lines file's rows
are estimated from its size and the lines of its first MiB (gzip'd: the lines its
first compressed MiB holds).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import polars as pl

from leanfit.errors import LeanfitError
from leanfit.io.formats import format_of
from leanfit.io.readers import is_url
from leanfit.io.source import resolve_paths
from leanfit.io.translate import translated

HEAD_BYTES = 1 << 20  # what is read of each text file


def estimate_rows(data) -> int | None:
    """The rows of ``data`` (an Input, or anything :func:`resolve_paths` takes) as
    progress expects them: Parquet's and IPC's from their footers, a CSV or JSON-lines
    file's from its size and the lines of its first MiB (gzip'd: the lines its first
    compressed MiB holds); None for in-memory data, remote or other compressed files, or
    a file that cannot be read (the pass itself then says why)."""
    try:
        inp = resolve_paths(data)
    except LeanfitError:  # the pass itself says what is wrong
        return None
    if inp.frame is not None:
        return None
    total = 0
    for path in inp.paths:
        if is_url(path):
            return None
        try:
            if inp.form.format in ("parquet", "ipc"):
                scan = pl.scan_parquet if inp.form.format == "parquet" else pl.scan_ipc
                with translated([Path(path)]):
                    total += scan(path).select(pl.len()).collect().item()
                continue
            with open(path, "rb") as f:
                head = f.read(HEAD_BYTES)
            compression = format_of(path)[1]
            if compression not in (None, "gzip"):
                return None
            text = zlib.decompressobj(wbits=31).decompress(head) if compression else head
        except (OSError, zlib.error, LeanfitError):
            return None
        lines = text.count(b"\n") + (not text.endswith(b"\n"))
        header = 1 if inp.form.format == "csv" else 0
        whole = len(head) < HEAD_BYTES
        total += (
            lines - header if whole else int(Path(path).stat().st_size * lines / len(head)) - header
        )
    return total
