"""Writing outputs safely: checked against the inputs, one writer at a time, written
under a temporary name renamed when complete; and Arrow writers.

- :func:`check_output` refuses, before any work, an output that is one of the
  inputs (the same device and inode: through symlinks and hard links), one inside
  an input directory (it would be read as input next time), or an existing
  directory (unless the output is a folder, as ``predict --engine dask`` writes).
- An output is *claimed* for the whole command: a lock file ``.NAME.lock`` beside it,
  held with ``fcntl.flock`` until the rename. A second run writing the same output
  refuses at once; the OS drops the lock of a process that dies, so a stale lock
  file never blocks.
- :func:`atomic_path` writes ``.NAME.partial-PID`` and renames it. Its owner is the
  claim: whoever holds the output's lock is the only live writer, so every partial
  of that output found when the lock is taken was left by a dead run and is removed.

Nothing leanfit writes ever appears half-done under its final name.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import glob as globlib
import inspect
import itertools
import os
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from leanfit.errors import ConfigError
from leanfit.io import interrupts
from leanfit.io.formats import DATA_SUFFIXES, Input
from leanfit.io.source import Source
from leanfit.io.tempfiles import using_temp_root

PARQUET_ROW_GROUP = 131_072


# --------------------------------------------------------------------------- checks


def check_output(
    out: str | os.PathLike, inputs: Iterable = (), *, label: str = "--out", folder: bool = False
) -> None:
    """Refuse ``out`` (a :class:`~leanfit.errors.ConfigError` naming ``label``) when
    writing it could destroy or change an input, or it is a directory (``folder``: an
    output that is itself a folder, refused when it is or holds an input)."""
    out = Path(out)
    files, dirs = input_files(inputs)
    target = _stat(out)
    if target is not None and stat.S_ISDIR(target.st_mode) and not folder:
        raise ConfigError(f"{label} {out} is a directory; give the path of a file instead.")
    if target is not None and not (stat.S_ISDIR(target.st_mode) or stat.S_ISREG(target.st_mode)):
        raise ConfigError(  # an output replaces its path: /dev/null would become a file
            f"{label} {out} is a device, pipe or socket, which leanfit never replaces; "
            "give the path of a file instead."
        )
    for path in files:
        if target is not None and _same(_stat(path), target):
            raise ConfigError(
                f"{label} {out} is the input {path} (the same file); choose another output path."
            )
        if folder and _inside(path, out):
            raise ConfigError(
                f"{label} {out} holds the input {path}, and writing it replaces the folder; "
                "choose another output folder."
            )
    for directory in dirs:
        if _inside(out, directory) and (folder or out.name.lower().endswith(DATA_SUFFIXES)):
            raise ConfigError(
                f"{label} {out} is inside the input directory {directory}, where it would be "
                "read as input; choose a path outside it."
            )


def input_files(inputs: Iterable) -> tuple[list[Path], list[Path]]:
    """The local files (data files of directories included) and the directories of
    ``inputs``: paths, globs or lists of them; URLs are left out."""
    files: list[Path] = []
    dirs: list[Path] = []
    for item in _flat(inputs):
        text = str(item).removeprefix("file://")
        if "://" in text:
            continue
        path = Path(text)
        if path.is_dir():
            dirs.append(path)
            files += [p for p in path.rglob("*") if p.name.endswith(DATA_SUFFIXES)]
        elif path.exists():
            files.append(path)
        elif any(ch in text for ch in "*?["):
            files += [Path(p) for p in globlib.glob(text, recursive=True)]
    return files, dirs


def _flat(items) -> Iterator:
    """The paths in ``items`` (in-memory data names none)."""
    if isinstance(items, str | os.PathLike):
        yield items
    elif isinstance(items, Source):
        yield from items.data
    elif isinstance(items, list | tuple | Input):
        for item in items:
            yield from _flat(item)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None


def _same(a: os.stat_result | None, b: os.stat_result) -> bool:
    return a is not None and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _inside(path: Path, folder: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


# --------------------------------------------------------------------------- claims


@dataclass
class Claim:
    """This process's lock on one output; counted, so nested claims share it."""

    path: Path  # the lock file
    fd: int
    count: int = 1


_claims: dict[Path, Claim] = {}


def lock_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return Path(os.path.realpath(out.parent)) / f".{out.name}.lock"


@contextlib.contextmanager
def claimed_output(
    out: str | os.PathLike, inputs: Iterable = (), *, label: str = "--out", folder: bool = False
) -> Iterator[Path]:
    """Check ``out`` (:func:`check_output`) and hold its lock in the block."""
    check_output(out, inputs, label=label, folder=folder)
    claim = _claim(Path(out), label)
    try:
        yield Path(out)
    finally:
        _release(claim)


def checks_output(
    param: str, inputs: tuple[str, ...] = (), *, label: str = "--out", folder: bool = False
) -> Callable[[Callable], Callable]:
    """Decorate a library function that writes the output given as its argument
    ``param``: check it against the arguments named in ``inputs`` and claim it for
    the call (nothing happens when that argument is None)."""

    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            out = bound.arguments[param]
            if out is None:
                return fn(*args, **kwargs)
            sources = [bound.arguments[name] for name in inputs]
            with claimed_output(out, sources, label=label, folder=folder):
                return fn(*args, **kwargs)

        return guarded

    return decorate


def _claim(out: Path, label: str) -> Claim:
    path = lock_path(out)
    claim = _claims.get(path)
    if claim is not None:
        claim.count += 1
        return claim
    out.parent.mkdir(parents=True, exist_ok=True)
    claim = _claims[path] = Claim(path, _lock(path, out, label))
    interrupts.on_exit(claim, functools.partial(_unlink, path))
    _remove_partials(out)
    return claim


def _lock(path: Path, out: Path, label: str) -> int:
    """The descriptor of ``path``, locked; refuse when another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(
                f"another leanfit run (pid {owner}) is writing {out}; wait for it to finish "
                f"or choose another {label}."
            ) from None
        if _same(_stat(path), os.fstat(fd)):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)  # its owner removed the file after we opened it: take the new one


def _release(claim: Claim) -> None:
    claim.count -= 1
    if claim.count:
        return
    _claims.pop(claim.path, None)
    _unlink(claim.path)  # removed while still locked, so no one locks a dead file
    os.close(claim.fd)
    interrupts.forget(claim)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _remove_partials(final: Path) -> None:
    """Delete the temporaries of ``final``: with its lock held, their writers are gone."""
    for stale in final.parent.glob(f".{final.name}.partial-*"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            _unlink(stale)


# --------------------------------------------------------------------------- writing


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` on success.

    ``final`` is claimed meanwhile (if the command has not claimed it already). On
    any error, and when SIGINT or SIGTERM arrived before the rename, the temporary
    file is removed and ``final`` is left untouched. ``durable`` also survives a power
    loss: the file is fsynced before the rename, and its folder after.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "a.txt") as tmp:
    ...     _ = tmp.write_text("hi")
    >>> (d / "a.txt").read_text(), sorted(p.name for p in d.iterdir())
    ('hi', ['a.txt'])
    """
    final = Path(final)
    with claimed_output(final, label="output"):
        tmp = final.with_name(f".{final.name}.partial-{os.getpid()}")
        interrupts.on_exit(tmp, functools.partial(_unlink, tmp))
        try:
            yield tmp
            if durable:
                fsync(tmp)
            with interrupts.publishing:
                interrupts.check_publish()
                os.replace(tmp, final)
            if durable:
                fsync(final.parent)
        except BaseException:
            _unlink(tmp)
            raise
        finally:
            interrupts.forget(tmp)


def fsync(path: str | os.PathLike) -> None:
    """Flush a file's (or a folder's entries') data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def writer_for(
    path: Path, schema, fmt: str, *, gzip: bool = False
) -> Iterator[Callable[..., None]]:
    """Open a streaming writer of Arrow tables of ``schema`` in format ``fmt`` (one of
    :data:`~leanfit.io.formats.OUTPUTS`' values; ``csv`` with ``gzip`` is ``csv.gz``);
    yield ``write`` (which stops the run when SIGINT or SIGTERM has arrived)."""
    import pyarrow as pa

    if fmt == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetWriter(path, schema, compression="zstd") as writer:
            yield _checked(lambda data: writer.write(data, row_group_size=PARQUET_ROW_GROUP))
    elif fmt == "ipc":
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            yield _checked(writer.write)
    elif fmt == "ndjson":
        import polars as pl

        with open(path, "wb") as sink:
            yield _checked(lambda data: pl.from_arrow(data).write_ndjson(sink))
    else:
        import pyarrow.csv as pacsv

        compression = "gzip" if gzip or fmt == "csv.gz" else None
        with (
            pa.output_stream(str(path), compression=compression) as sink,
            pacsv.CSVWriter(sink, schema) as writer,
        ):
            yield _checked(writer.write)


def write_batches(
    out: str | os.PathLike, batches: Iterator, fmt: str | None, on_rows: Callable[[int], None]
) -> dict:
    """Write Arrow record ``batches`` to ``out`` (``fmt``, default from its suffix:
    Parquet, else CSV, gzip'd for ``.gz``), under its name only when complete; tell
    ``on_rows`` the rows of each batch. The summary of ``leanfit make-data``."""
    out = Path(out)
    fmt = fmt or ("parquet" if out.suffix == ".parquet" else "csv")
    written = 0
    with atomic_path(out) as tmp:
        first = next(batches)
        with writer_for(tmp, first.schema, fmt, gzip=out.suffix == ".gz") as write:
            for batch in itertools.chain([first], batches):
                write(batch)
                written += batch.num_rows
                on_rows(batch.num_rows)
    return {"output": str(out), "rows": written, "format": fmt, "bytes": out.stat().st_size}


def _checked(write: Callable[..., None]) -> Callable[..., None]:
    def checked_write(data) -> None:
        interrupts.check()
        write(data)

    return checked_write


# --------------------------------------------------------------------------- commands


@contextlib.contextmanager
def command_scope(
    outputs: dict[str, str | os.PathLike | None],
    inputs: Iterable = (),
    *,
    tmp_dir: str | os.PathLike | None = None,
    folder: str | None = None,
    force: bool = False,
) -> Iterator[list[str]]:
    """What one command owns while it runs: its temp root (swept) and every output,
    checked and claimed; yields the outputs that exist and will be replaced (an
    existing output is refused unless ``force``). ``outputs`` maps each option's name
    (``--out``) to its path; ``folder`` names the one that is a folder. (The caller
    records signals around it: :func:`leanfit.io.interrupts.interruptible`.)"""
    inputs = list(_flat(inputs))
    given = {label: Path(path) for label, path in outputs.items() if path is not None}
    _refuse_twice(given)
    with using_temp_root(tmp_dir), contextlib.ExitStack() as stack:
        for label, path in given.items():
            stack.enter_context(claimed_output(path, inputs, label=label, folder=label == folder))
        yield _existing(given, force)


def _existing(outputs: dict[str, Path], force: bool) -> list[str]:
    """The outputs that exist; without ``force`` the first is refused."""
    existing = {label: path for label, path in outputs.items() if os.path.lexists(path)}
    if existing and not force:
        label, path = next(iter(existing.items()))
        raise ConfigError(
            f"{label} {path} exists; give --force (Python: force=True) to replace it."
        )
    return [str(path) for path in existing.values()]


def _refuse_twice(outputs: dict[str, Path]) -> None:
    """Two options naming one file would overwrite each other."""
    seen: dict[str, str] = {}
    for label, path in outputs.items():
        key = os.path.realpath(path)
        if key in seen:
            raise ConfigError(f"{label} {path} is also {seen[key]}; give each its own path.")
        seen[key] = label
