"""Writing outputs safely: a temporary name renamed when complete, and Arrow writers.

Nothing leanfit writes ever appears half-done under its final name.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

PARQUET_ROW_GROUP = 131_072


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` on success.

    On any error (including KeyboardInterrupt) the temporary file is removed and
    ``final`` is left untouched. A run killed outright (SIGKILL) cannot clean up: its
    hidden ``.NAME.partial-PID`` is removed by the next run writing the same output.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "a.txt") as tmp:
    ...     _ = tmp.write_text("hi")
    >>> (d / "a.txt").read_text(), sorted(p.name for p in d.iterdir())
    ('hi', ['a.txt'])
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(final)
    tmp = final.with_name(f".{final.name}.partial-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _remove_stale_partials(final: Path) -> None:
    """Delete temporaries for ``final`` left by processes that no longer run."""
    for stale in final.parent.glob(f".{final.name}.partial-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not process_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def writer_for(
    path: Path, schema, fmt: str, *, gzip: bool = False
) -> Iterator[Callable[..., None]]:
    """Open a streaming CSV or Parquet writer for an Arrow ``schema``; yield ``write``."""
    import pyarrow as pa

    if fmt == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetWriter(path, schema, compression="zstd") as writer:
            yield lambda data: writer.write(data, row_group_size=PARQUET_ROW_GROUP)
    else:
        import pyarrow.csv as pacsv

        compression = "gzip" if gzip else None
        with (
            pa.output_stream(str(path), compression=compression) as sink,
            pacsv.CSVWriter(sink, schema) as writer,
        ):
            yield writer.write
