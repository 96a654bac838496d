"""SIGINT and SIGTERM: recorded when they arrive, acted upon at safe points.

Raising from a signal handler is unsafe here: the main thread may be inside
XGBoost's C++ (which calls back into Python for data) or inside a Polars query
running Python callbacks, and an exception unwinding through either crashed runs
(a Polars panic, then SIGSEGV). So the handler only records the signal, and
:func:`check`, called at safe points (before every chunk, after every boosting
round, before every rename of an output), raises :class:`~leanfit.errors.Interrupted`.

A watcher thread learns of each signal through a wakeup pipe, even while the main
thread runs native code for a long time (one Polars query, one ``sink_parquet``).
When no safe point is reached within ``GRACE`` seconds, or on a second signal, it
removes what the run owns (the ``on_exit`` callbacks: temporary folders, partial
files, lock files), prints the one-line error and ends the process.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

from leanfit.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACE = 3.0  # seconds the main thread has to reach a safe point before the hard exit


class _State:
    signum: int | None = None
    received_at: float = 0.0
    acknowledged = False  # Interrupted was raised: the main thread is cleaning up


_state = _State()
_cleanups: dict[int, Callable[[], None]] = {}
publishing = threading.Lock()  # held while an output is renamed into place


def received() -> int | None:
    """The signal received by this command, if any."""
    return _state.signum


def check() -> None:
    """Raise :class:`~leanfit.errors.Interrupted` if SIGINT or SIGTERM has arrived."""
    signum = _state.signum
    if signum is not None:
        _state.acknowledged = True
        raise Interrupted.by_signal(signum, signal.Signals(signum).name)


def on_exit(key: object, cleanup: Callable[[], None]) -> None:
    """Run ``cleanup`` if the process has to end without unwinding (see the module doc)."""
    _cleanups[id(key)] = cleanup


def forget(key: object) -> None:
    _cleanups.pop(id(key), None)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Record SIGINT and SIGTERM while the block runs (main thread only; elsewhere a
    no-op); the previous handlers are restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.signum, _state.acknowledged = None, False
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    previous = {s: signal.signal(s, _record) for s in SIGNALS}
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    watcher = threading.Thread(target=_watch, args=(read_end,), daemon=True, name="leanfit-sig")
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        for s, handler in previous.items():
            signal.signal(s, handler)
        os.close(write_end)  # the watcher sees the end of the pipe and stops
        watcher.join(timeout=1.0)
        _state.signum = None


def _record(signum: int, frame) -> None:
    _note(signum)


def _note(signum: int) -> None:
    if _state.signum is None:
        _state.signum, _state.received_at = signum, time.monotonic()


def _watch(read_end: int) -> None:
    """Count signals from the wakeup pipe; end the process when the run does not."""
    count = 0
    try:
        while True:
            timeout = None
            if _state.signum is not None and not _state.acknowledged:
                timeout = max(0.0, _state.received_at + GRACE - time.monotonic())
            ready, _, _ = select.select([read_end], [], [], timeout)
            if not ready:
                if not _state.acknowledged:
                    hard_exit(_state.signum)
                continue
            data = os.read(read_end, 64)
            if not data:
                return
            for signum in (b for b in data if b in SIGNALS):
                _note(signum)
                count += 1
            if count >= 2:
                hard_exit(_state.signum)
    finally:
        os.close(read_end)


def hard_exit(signum: int) -> None:
    """Remove what the run owns, print the one-line error and end the process now."""
    with contextlib.suppress(Exception):
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (never closed: we exit)
    publishing.acquire(timeout=5.0)
    for cleanup in list(_cleanups.values()):
        with contextlib.suppress(Exception):
            cleanup()
    message = Interrupted.by_signal(signum, signal.Signals(signum).name)
    with contextlib.suppress(OSError):
        os.write(2, f"Error: {message}\n".encode())
    os._exit(message.exit_code)
