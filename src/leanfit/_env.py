"""Settings Polars reads from the environment, made before Polars reads any CSV.

Polars' CSV reader reads ahead in chunks sized for throughput, not memory (about
230 MB of buffers on 2 threads here with its default); leanfit reads with 1 MiB
chunks unless the user set ``POLARS_CSV_CHUNK_SIZE`` (then theirs always wins).
Polars keeps the value its first CSV read saw when none was set, so this must run
before that read: ``leanfit/__init__.py`` imports it first.

Polars allocates with jemalloc, which keeps freed pages until later allocations
purge them: after an inspect pass ~90 MB stayed resident with nothing using it.
A background purge thread returns them within a second, at no measured cost in
speed (bench/inspect_speed.py), so the RSS the budget is checked against is honest.
"""

from __future__ import annotations

import os

USER_CHUNK = "POLARS_CSV_CHUNK_SIZE" in os.environ
LEAN_CHUNK = 1 << 20
if not USER_CHUNK:
    os.environ["POLARS_CSV_CHUNK_SIZE"] = str(LEAN_CHUNK)
os.environ.setdefault("_RJEM_MALLOC_CONF", "background_thread:true")
