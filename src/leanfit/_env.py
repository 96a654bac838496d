"""Settings Polars reads from the environment, made before Polars reads any data.

Polars' CSV reader reads ahead in chunks sized for throughput, not memory (about
230 MB of buffers on 2 threads here with its default). leanfit starts the process
at 1 MiB chunks, the lean reads of training and prediction, and each scan then sets
what it needs (the inspect pass reads with 4 MiB when the budget allows: 5.1 s at
270 MB peak on 8M rows, against 6.1 s at 200 MB with 1 MiB and 5.3 s at 300 MB with
8 MiB), unless the user set ``POLARS_CSV_CHUNK_SIZE``: theirs always wins.
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
START_CHUNK = 1 << 20
if not USER_CHUNK:
    os.environ["POLARS_CSV_CHUNK_SIZE"] = str(START_CHUNK)
# Polars' Parquet reader prefetches many row groups (16 here, up to 512), each
# decoded whole: one keeps 2 threads busy (a bare scan of a 2M-row file of 131,072-row
# groups: 154 MiB peak against 220, at the same CPU). Read when each query starts.
if "POLARS_ROW_GROUP_PREFETCH_SIZE" not in os.environ:
    os.environ["POLARS_ROW_GROUP_PREFETCH_SIZE"] = "1"
# Polars itself exports its jemalloc settings, so a child of a Polars process
# inherits them: add the purge thread unless the setting says something about it.
_JEMALLOC = os.environ.get("_RJEM_MALLOC_CONF", "")
if "background_thread" not in _JEMALLOC:
    os.environ["_RJEM_MALLOC_CONF"] = ",".join(filter(None, [_JEMALLOC, "background_thread:true"]))
# pyarrow (Parquet and IPC reads) allocates with mimalloc, which kept ~150 MB of
# freed record batches resident after a pass over an IPC file; the system allocator
# returns them. A user's own choice wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
