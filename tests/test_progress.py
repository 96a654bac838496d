"""Live progress as people see it: commands run with stderr on a pseudo-terminal (the
screen rich draws on), or on a pipe (plain lines), or silenced by ``--quiet``.

Row counts shown are checked against the file's own line count; RSS against the limit
given on the command line.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from leanfit.memory import Monitor
from leanfit.progress import Progress, shown
from leanfit.schema import inspect
from leanfit.synth import write_data

ROWS = 150_000
ESCAPE = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("progress") / "data.csv"
    write_data(path, rows=ROWS, seed=5)
    return path


def lines_of(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f) - 1  # the header


def on_terminal(args: list, cwd: Path, timeout: float = 120) -> tuple[int, str, bytes]:
    """Run ``leanfit ARGS`` with stderr on a 160x30 pseudo-terminal: (exit code, stdout,
    everything written to the terminal)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 160, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env["TERM"] = "xterm-256color"
    out = cwd / "stdout.txt"
    with open(out, "w") as stdout:
        proc = subprocess.Popen(
            [sys.executable, "-m", "leanfit.cli", *map(str, args)],
            stdout=stdout,
            stderr=slave,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
        )
    os.close(slave)
    screen, deadline = bytearray(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([master], [], [], 0.5)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed: the process is gone
                break
            if not chunk:
                break
            screen += chunk
    os.close(master)
    code = proc.wait(timeout=max(deadline - time.monotonic(), 1))
    return code, out.read_text(), bytes(screen)


def text(screen: bytes) -> str:
    """What was written, without rich's cursor and colour sequences."""
    return ESCAPE.sub(b"", screen).replace(b"\r", b"").decode()


def test_terminal_shows_percent_eta_speed_and_memory(data, tmp_path):
    args = ["train", data, "--target", "label", "--model", "sgd", "--epochs", "2"]
    code, stdout, screen = on_terminal([*args, "--memory-limit", "3GB"], tmp_path)
    shown_text = text(screen)
    assert code == 0, shown_text
    assert b"\x1b[" in screen  # drawn live, not as plain lines
    assert re.search(r"inspect .*\b\d{1,3}% ", shown_text)
    assert re.search(r"train .*\b\d{1,3}% .*epoch [12]/2", shown_text)
    assert re.search(r"ETA 0:\d\d:\d\d", shown_text)
    assert re.search(r"[\d,]+ rows/s", shown_text)
    assert re.search(r"memory .*RSS [\d,]+ MB of 3,000 MB \(\d+%\)", shown_text)
    assert re.search(r"holdout loss 0\.\d{5} after epoch 1", shown_text)
    last = re.search(r"evaluate .*holdout loss (0\.\d{5}) after epoch 2", shown_text)
    assert last and re.search(rf"log_loss +. +{last[1]}", stdout), stdout  # the metrics' loss
    # the last frame: inspect read every line of the file; train saw them twice
    rows = lines_of(data)
    assert re.search(rf"inspect .*100% +{rows:,} rows", shown_text), shown_text[-3000:]
    assert re.search(rf"train .*100% +{2 * rows:,} rows", shown_text), shown_text[-3000:]
    assert "trained sgd" in stdout and "rows/s" not in stdout  # progress only on stderr


def test_plain_lines_when_not_a_terminal(data):
    """Lines at most every ``every`` seconds, each with a percent, rows/s, ETA and RSS."""

    class Timed:
        def __init__(self):
            self.lines: list[tuple[float, str]] = []

        def write(self, line: str) -> None:
            self.lines.append((time.perf_counter(), line))

        def flush(self) -> None:
            pass

        def isatty(self) -> bool:
            return False

    stream = Timed()
    memory = Monitor(2 * 10**9, progress=Progress())
    started = time.perf_counter()
    with memory, shown(memory.progress, stream=stream, every=0.05):
        inspect(data, target="label", memory=memory)
    elapsed = time.perf_counter() - started
    times = [t for t, _ in stream.lines]
    assert len(times) >= max(2, int(elapsed / 0.05) // 2), f"too few lines in {elapsed:.2f} s"
    assert all(b - a > 0.04 for a, b in itertools.pairwise(times))
    number = r"\d{1,3}% [\d,]+ rows, [\d,.]+ rows/s"
    line = rf"inspect: {number}, ETA (\d:\d\d:\d\d|-:--:--); RSS [\d,]+ MB of 2,000 MB \(\d+%\)\n"
    assert all(re.fullmatch(line, text) for _, text in stream.lines), stream.lines
    assert any(re.search(r"[1-9]\d?% .*ETA \d:", text) for _, text in stream.lines)


def test_pipe_gets_no_live_display(data, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "leanfit.cli", "inspect", str(data), "--target", "label"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stderr
    assert all(line.startswith("inspect: ") for line in proc.stderr.splitlines())


def test_quiet_prints_no_progress(tmp_path):
    out = tmp_path / "made.csv"
    code, stdout, screen = on_terminal(["make-data", out, "--rows", ROWS, "--quiet"], tmp_path)
    assert code == 0 and lines_of(out) == ROWS
    assert text(screen).strip() == ""
    assert f"wrote {ROWS:,} rows" in stdout


def test_json_stays_one_document_on_stdout(data, tmp_path):
    code, stdout, screen = on_terminal(["inspect", data, "--target", "label", "--json"], tmp_path)
    assert code == 0, text(screen)
    assert json.loads(stdout)["rows"] == lines_of(data)
    assert re.search(r"inspect .*100%", text(screen))


def test_error_is_the_last_line_after_live_progress(data, tmp_path):
    schema = tmp_path / "schema.json"
    inspect(data, target="label").to_json(schema)
    bad = tmp_path / "bad.csv"
    body = data.read_text()
    header = body.splitlines()[0]
    bad.write_text(body + ",".join(["oops"] * len(header.split(","))) + "\n")
    code, _, screen = on_terminal(
        ["shrink", bad, tmp_path / "o.parquet", "--schema", schema], tmp_path
    )
    assert code == 1
    assert re.search(r"shrink .*\d+%", text(screen))  # progress was drawn ...
    tail = screen[screen.rindex(b"Error: ") :]
    assert not ESCAPE.search(tail)  # ... and stopped before the error: nothing drawn after it
    assert text(screen).strip().splitlines()[-1].startswith("Error: ")


@pytest.mark.slow
def test_dask_engine_shows_percent(data, tmp_path):
    args = ["inspect", data, "--target", "label", "--engine", "dask", "--memory-limit", "2GB"]
    code, _, screen = on_terminal(args, tmp_path)
    shown_text = text(screen)
    assert code == 0, shown_text
    assert re.search(rf"inspect .*100% +{lines_of(data):,} rows", shown_text), shown_text[-3000:]
    assert re.search(r"memory .*RSS [\d,]+ MB of 2,000 MB", shown_text)
