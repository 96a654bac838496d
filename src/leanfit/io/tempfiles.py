"""Temporary folders owned for real, in one temp root per process.

A folder (``leanfit-cache-PID-XXXX``, ``leanfit-xgb-PID-XXXX``) holds an ``.owner``
file that its process keeps locked (``fcntl.flock``) while it lives; the OS drops
the lock when the process dies, however it dies. A folder whose lock can be taken
belongs to nobody, so every run removes such folders from the temp root it uses,
and only those: a pid in the name is for people, never trusted (pids are reused,
and differ between pid namespaces). A folder is locked before it gets its
``leanfit-`` name, so no run ever sees a live folder without its lock.

The temp root is the system's temp dir unless ``--tmp-dir`` (:func:`using_temp_root`)
says otherwise.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from leanfit.io import interrupts

OWNER = ".owner"
KINDS = ("leanfit-cache-", "leanfit-xgb-", "leanfit-model-")  # the last: train without --out
STAGING = ".leanfit-new-"
STAGING_AGE = 3600.0  # seconds after which an unnamed staging folder is abandoned

_root: list[Path | None] = [None]


def temp_root() -> Path:
    """Where temporary folders go: ``--tmp-dir``, else the system temp dir."""
    return _root[0] or Path(tempfile.gettempdir())


@contextlib.contextmanager
def using_temp_root(folder: str | os.PathLike | None) -> Iterator[Path]:
    """Use ``folder`` (None: the system temp dir) as the temp root in the block, after
    removing the ownerless leanfit folders there."""
    previous = _root[0]
    _root[0] = Path(folder) if folder is not None else None
    root = temp_root()
    root.mkdir(parents=True, exist_ok=True)
    sweep(root)
    try:
        yield root
    finally:
        _root[0] = previous


class OwnedDir:
    """A temporary folder locked by this process; :meth:`remove` deletes it."""

    def __init__(self, prefix: str, parent: str | os.PathLike | None = None):
        if prefix not in KINDS:
            raise ValueError(f"OwnedDir: prefix must be one of {KINDS}. Got {prefix!r}.")
        parent = Path(parent) if parent is not None else temp_root()
        parent.mkdir(parents=True, exist_ok=True)
        sweep(parent)
        staging = Path(tempfile.mkdtemp(prefix=STAGING, dir=parent))
        self._lock = os.open(staging / OWNER, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(self._lock, f"{os.getpid()}\n".encode())
        self.path = parent / f"{prefix}{os.getpid()}-{staging.name.removeprefix(STAGING)}"
        os.rename(staging, self.path)
        interrupts.on_exit(self, self.remove)

    def remove(self) -> None:
        """Delete the folder, then let the lock go (the order matters: see ``sweep``)."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
        interrupts.forget(self)

    def __enter__(self) -> OwnedDir:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


@contextlib.contextmanager
def owned_tempdir(prefix: str) -> Iterator[str]:
    """Like ``tempfile.TemporaryDirectory``, but owned (see :class:`OwnedDir`)."""
    with OwnedDir(prefix) as folder:
        yield str(folder.path)


def sweep(parent: Path) -> list[Path]:
    """Remove the leanfit temp folders in ``parent`` whose owner is gone; return them."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            path = Path(entry.path)
            named = entry.name.startswith(KINDS)
            if not (named or entry.name.startswith(STAGING)) or not entry.is_dir():
                continue
            if _ownerless(path, staging=not named):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def _ownerless(folder: Path, *, staging: bool) -> bool:
    """Whether nobody holds ``folder``'s owner lock (a named folder with no owner file
    has none; a staging folder without one may be in the making, unless it is old)."""
    try:
        fd = os.open(folder / OWNER, os.O_RDONLY)
    except FileNotFoundError:
        if not staging:
            return True
        with contextlib.suppress(OSError):
            return time.time() - folder.stat().st_mtime > STAGING_AGE
        return False
    except OSError:  # another user's folder, or one being removed
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True
