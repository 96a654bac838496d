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

Another thread may stop the run the same way (:func:`stop`: the memory sampler, when
the resident set passes the limit inside one long native call): its error is raised
at the next safe point, or printed by the watcher when none comes within its grace.
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

from leanfit.errors import Interrupted, LeanfitError

SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACE = 3.0  # seconds the main thread has to reach a safe point before the hard exit


class _State:
    signum: int | None = None
    error: LeanfitError | None = None  # a stop asked by another thread (see stop)
    grace: float = GRACE
    received_at: float = 0.0
    acknowledged = False  # the error was raised: the main thread is cleaning up
    wake: int | None = None  # the watcher's pipe, to tell it of a stop
    probe: Callable[[], None] | None = None  # may call stop() before an output is renamed


_state = _State()
_cleanups: dict[int, Callable[[], None]] = {}
publishing = threading.Lock()  # held while an output is renamed into place


def received() -> int | None:
    """The signal received by this command, if any."""
    return _state.signum


def check() -> None:
    """Raise :class:`~leanfit.errors.Interrupted` if SIGINT or SIGTERM has arrived, or
    the error of a :func:`stop`."""
    error = pending()
    if error is not None:
        _state.acknowledged = True
        raise error


def before_publish(probe: Callable[[], None] | None) -> None:
    """Have ``probe`` (which may :func:`stop` the run) called before every output is
    renamed into place (the memory monitor's last look at the peak); None: no probe."""
    _state.probe = probe


def check_publish() -> None:
    """:func:`check`, after the :func:`before_publish` probe has had its say."""
    if _state.probe is not None:
        _state.probe()
    check()


def pending() -> LeanfitError | None:
    """The error that stops the run, if a signal or a :func:`stop` asked for one."""
    if _state.signum is not None:
        return Interrupted.by_signal(_state.signum, signal.Signals(_state.signum).name)
    return _state.error


def stop(error: LeanfitError, grace: float = GRACE) -> None:
    """Stop the run with ``error`` (from any thread): raised by the next :func:`check`;
    under :func:`interruptible`, the process ends with it after ``grace`` seconds
    without a safe point."""
    if pending() is not None:
        return
    _state.error, _state.grace, _state.received_at = error, grace, time.monotonic()
    if _state.wake is not None:
        with contextlib.suppress(OSError):
            os.write(_state.wake, b"\0")


def clear_stop() -> None:
    """Forget a :func:`stop` (a new run starts)."""
    _state.error, _state.acknowledged = None, False


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
    _state.signum, _state.error, _state.acknowledged = None, None, False
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    _state.wake = write_end
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
        _state.wake = None
        os.close(write_end)  # the watcher sees the end of the pipe and stops
        watcher.join(timeout=1.0)
        _state.signum, _state.error = None, None


def _record(signum: int, frame) -> None:
    _note(signum)


def _note(signum: int) -> None:
    if _state.signum is None and _state.error is None:
        _state.signum, _state.grace, _state.received_at = signum, GRACE, time.monotonic()


def _watch(read_end: int) -> None:
    """Count signals from the wakeup pipe; end the process when the run does not."""
    count = 0
    try:
        while True:
            timeout = None
            if pending() is not None and not _state.acknowledged:
                timeout = max(0.0, _state.received_at + _state.grace - time.monotonic())
            ready, _, _ = select.select([read_end], [], [], timeout)
            if not ready:
                if not _state.acknowledged:
                    hard_exit(pending())
                continue
            data = os.read(read_end, 64)
            if not data:
                return
            for signum in (b for b in data if b in SIGNALS):
                _note(signum)
                count += 1
            if count >= 2:
                hard_exit(pending())
    finally:
        os.close(read_end)


def hard_exit(message: LeanfitError) -> None:
    """Remove what the run owns, print the one-line ``message`` and end the process now."""
    with contextlib.suppress(Exception):
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (never closed: we exit)
    publishing.acquire(timeout=5.0)
    for cleanup in list(_cleanups.values()):
        with contextlib.suppress(Exception):
            cleanup()
    with contextlib.suppress(OSError):
        os.write(2, f"Error: {message}\n".encode())
    os._exit(message.exit_code)
