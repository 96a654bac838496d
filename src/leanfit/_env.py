"""Settings Polars reads from the environment, made before Polars reads any CSV.

Polars' CSV reader reads ahead in chunks sized for throughput, not memory (about
230 MB of buffers on 2 threads here with its default); leanfit reads with 1 MiB
chunks unless the user set ``POLARS_CSV_CHUNK_SIZE`` (then theirs always wins).
Polars keeps the value its first CSV read saw when none was set, so this must run
before that read: ``leanfit/__init__.py`` imports it first.
"""

from __future__ import annotations

import os

USER_CHUNK = "POLARS_CSV_CHUNK_SIZE" in os.environ
LEAN_CHUNK = 1 << 20
if not USER_CHUNK:
    os.environ["POLARS_CSV_CHUNK_SIZE"] = str(LEAN_CHUNK)
