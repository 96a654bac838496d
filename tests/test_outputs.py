"""Inputs are sacred, outputs have one writer, temporary files have a real owner, and
SIGINT/SIGTERM end any stage cleanly: run as users run it, in subprocesses.

Leftovers are looked for where they would be: in the ``--tmp-dir`` the run was given
(``leanfit-*`` folders) and beside the output (``.NAME.partial-*``, ``.NAME.lock``).
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leanfit.errors import ConfigError
from leanfit.io.tempfiles import STAGING, OwnedDir
from leanfit.synth import write_data

BIG_ROWS = 200_000


def leanfit(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "leanfit.cli", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        **kwargs,
    )


def start(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "leanfit.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(*folders: Path) -> list[str]:
    """Temporary folders, partial files and lock files in ``folders``."""
    found = []
    for folder in folders:
        for entry in folder.iterdir() if folder.exists() else []:
            name = entry.name
            temporary = name.startswith(("leanfit-", ".leanfit-")) or ".partial-" in name
            if temporary or name.endswith(".lock"):
                found.append(name)
    return sorted(found)


def one_error_line(stderr: str) -> str:
    """The one ``Error:`` line, last on stderr (progress lines may come before it)."""
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    assert "Traceback" not in stderr
    return errors[0]


def assert_whole(out: Path) -> None:
    """``out`` is a complete output of the big input: a bundle that loads, or every row."""
    if out.suffix == ".leanfit":
        from leanfit.model import load

        assert load(out).classes is not None
    elif out.suffix == ".parquet":
        import pyarrow.parquet as pq

        assert pq.ParquetFile(out).metadata.num_rows == BIG_ROWS
    else:
        with out.open() as lines:
            assert sum(1 for _ in lines) == BIG_ROWS + 1


@pytest.fixture(scope="module")
def model(small_csv, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.leanfit"
    result = leanfit("train", small_csv, "--target", "label", "--out", path)
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.csv"
    write_data(path, rows=BIG_ROWS, seed=5)
    return path


# --------------------------------------------------------------------------- inputs


def command_writing(command: str, data: Path, out: Path, model: Path) -> list:
    return {
        "predict": ["predict", model, data, "--out", out],
        "shrink": ["shrink", data, out],
        "train": ["train", data, "--target", "label", "--out", out],
        "inspect": ["inspect", data, "--out", out],
    }[command]


@pytest.mark.parametrize("how", ["same path", "symlink", "hard link"])
@pytest.mark.parametrize("command", ["predict", "shrink", "train", "inspect"])
def test_an_output_that_is_the_input_is_refused(command, how, small_csv, model, tmp_path):
    data = tmp_path / "data.csv"
    data.write_bytes(small_csv.read_bytes())
    before = digest(data)
    out = {"same path": data, "symlink": tmp_path / "link.csv", "hard link": tmp_path / "hard.csv"}
    out = out[how]
    if how == "symlink":
        out.symlink_to(data)
    elif how == "hard link":
        os.link(data, out)
    result = leanfit(*command_writing(command, data, out, model))
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert f"{out} is the input {data} (the same file)" in line, line
    assert digest(data) == before and data.stat().st_size == small_csv.stat().st_size
    assert leftovers(tmp_path) == []


def test_an_output_inside_an_input_directory_is_refused(small_csv, model, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.csv").write_bytes(small_csv.read_bytes())
    result = leanfit("predict", model, folder, "--out", folder / "preds.csv")
    assert result.returncode == 1
    assert "inside the input directory" in one_error_line(result.stderr)
    assert sorted(p.name for p in folder.iterdir()) == ["a.csv"]


def test_an_output_that_is_a_directory_is_refused(small_csv, model, tmp_path):
    (tmp_path / "preds").mkdir()
    result = leanfit("predict", model, small_csv, "--out", tmp_path / "preds")
    assert result.returncode == 1
    assert "is a directory" in one_error_line(result.stderr)
    assert list((tmp_path / "preds").iterdir()) == []


@pytest.mark.parametrize("command", ["predict", "shrink", "train", "inspect"])
def test_an_output_that_is_a_pipe_or_device_is_never_replaced(command, small_csv, model, tmp_path):
    """``--out /dev/null --force`` once renamed a file over the device; a FIFO stands in."""
    pipe = tmp_path / "out.parquet"
    os.mkfifo(pipe)
    result = leanfit(*command_writing(command, small_csv, pipe, model), "--force")
    assert result.returncode == 1
    assert "is a device, pipe or socket" in one_error_line(result.stderr)
    assert pipe.is_fifo()


def test_the_memory_trace_may_not_overwrite_an_input(small_csv, model, tmp_path):
    data = tmp_path / "data.csv"
    os.link(small_csv, data)
    before = digest(small_csv)
    result = leanfit(
        "predict", model, small_csv, "--out", tmp_path / "p.csv", "--memory-trace", data
    )
    assert result.returncode == 1
    assert "--memory-trace" in one_error_line(result.stderr)
    assert digest(small_csv) == before and not (tmp_path / "p.csv").exists()


def test_the_python_api_is_protected_too(small_csv, tmp_path):
    from leanfit.engines.dask.apply import predict as predict_on_dask
    from leanfit.engines.local.apply import predict
    from leanfit.engines.local.shrink import shrink

    data = tmp_path / "data.csv"
    data.write_bytes(small_csv.read_bytes())
    before = digest(data)
    with pytest.raises(ConfigError, match="the same file"):
        predict("any.leanfit", data, data)
    os.link(data, tmp_path / "hard.parquet")
    with pytest.raises(ConfigError, match="the same file"):
        shrink(data, tmp_path / "hard.parquet")
    with pytest.raises(ConfigError, match="holds the input"):  # a folder output replaces it
        predict_on_dask("any.leanfit", data, tmp_path)
    with pytest.raises(ConfigError, match="is a directory"):
        write_data(tmp_path, rows=10)
    assert digest(data) == before and leftovers(tmp_path) == []


# --------------------------------------------------------------------------- one writer


def wait_for(predicate, timeout: float = 60.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the run ended first: {process.communicate()}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_two_runs_writing_one_output_have_one_writer(big_csv, tmp_path):
    out = tmp_path / "m.leanfit"
    args = ["train", big_csv, "--target", "label", "--out", out, "--batch-rows", 4096]
    first = start(*args)
    wait_for(lambda: (tmp_path / ".m.leanfit.lock").exists(), process=first)
    second = leanfit(*args)
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert second.returncode == 1
    line = one_error_line(second.stderr)
    assert f"another leanfit run (pid {first.pid}) is writing {out}" in line, line
    saved = [s for s in (stdout, second.stdout) if "model saved" in s]
    assert len(saved) == 1 and "model saved" not in second.stdout
    from leanfit.model import load

    assert load(out).classes is not None
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- signals


def any_in(folder: Path, prefix: str):
    return lambda: any(p.name.startswith(prefix) for p in folder.iterdir())


def stage_run(stage: str, data: Path, model: Path | None, tmp_path: Path, quick: bool = False):
    """The command of ``stage``, its output, and a marker that holds once it runs
    (``quick``: few rounds or epochs, for the run after an interrupted one)."""
    tmp, out_dir = tmp_path / "tmp", tmp_path / "out"
    tmp.mkdir(exist_ok=True)
    out_dir.mkdir(exist_ok=True)
    train = ["train", data, "--target", "label", "--tmp-dir", tmp, "--batch-rows", 4096]
    if stage == "predict":
        out = out_dir / "p.csv"
        return (
            ["predict", model, data, "--out", out, "--tmp-dir", tmp],
            out,
            any_in(out_dir, ".p.csv.partial-"),
        )
    if stage == "shrink":
        out = out_dir / "d.parquet"
        return ["shrink", data, out, "--tmp-dir", tmp], out, any_in(out_dir, ".d.parquet.partial-")
    out = out_dir / "m.leanfit"
    kind = stage.removeprefix("train-")
    extra = ["--rounds", 5 if quick else 1000] if kind == "xgboost" else []
    extra += ["--epochs", 2 if quick else 50] if kind == "sgd" else []
    marker = any_in(tmp, "leanfit-xgb-" if kind == "xgboost" else "leanfit-cache-")
    return [*train, "--model", kind, *extra, "--out", out], out, marker


def assert_clean_interrupt(process, signum: int, out: Path, tmp_path: Path) -> None:
    name = signal.Signals(signum).name
    assert process.returncode == 128 + signum, process.stderr_text
    line = one_error_line(process.stderr_text)
    assert line == f"Error: interrupted ({name}); nothing was written."
    assert not out.exists()
    assert leftovers(tmp_path / "tmp", tmp_path / "out") == []


SIGNAL_CASES = [
    ("train-sgd", signal.SIGINT),
    ("train-logistic", signal.SIGTERM),
    ("train-xgboost", signal.SIGINT),  # the slow trials send xgboost SIGTERM too
    ("predict", signal.SIGTERM),
    ("shrink", signal.SIGINT),
]


def interrupt(stage, signum, data, model, tmp_path, delay=0.0):
    """Run ``stage`` on ``data`` and send it ``signum`` ``delay`` s after it started."""
    args, out, marker = stage_run(stage, data, model, tmp_path)
    process = start(*args)
    wait_for(marker, process=process)
    time.sleep(delay)
    process.send_signal(signum)
    _, process.stderr_text = process.communicate(timeout=120)
    return process, out


@pytest.mark.parametrize(("stage", "signum"), SIGNAL_CASES, ids=lambda c: str(c))
def test_a_signal_ends_the_stage_cleanly_and_the_next_run_succeeds(
    stage, signum, big_csv, small_csv, model, tmp_path
):
    process, out = interrupt(stage, signum, big_csv, model, tmp_path)
    assert_clean_interrupt(process, signum, out, tmp_path)
    again = leanfit(*stage_run(stage, small_csv, model, tmp_path, quick=True)[0])
    assert again.returncode == 0, again.stderr
    assert out.exists() and leftovers(tmp_path / "tmp", tmp_path / "out") == []


def test_after_sigkill_the_next_run_removes_only_dead_owners_folders(big_csv, small_csv, tmp_path):
    args, out, marker = stage_run("train-logistic", big_csv, None, tmp_path)
    tmp = tmp_path / "tmp"
    process = start(*args)
    wait_for(marker, process=process)
    process.kill()
    process.communicate()
    dead = leftovers(tmp)  # a kill while a cache folder was made leaves it staged
    assert dead and all(name.startswith(("leanfit-cache-", STAGING)) for name in dead)
    reused = tmp / f"leanfit-cache-{os.getpid()}-reused"  # a live pid, but no lock held
    reused.mkdir()
    (reused / ".owner").write_text(f"{os.getpid()}\n")
    (tmp / f"leanfit-xgb-{os.getpid()}-old").mkdir()  # no owner file at all
    (out.parent / f".{out.name}.partial-{os.getpid()}").write_bytes(b"half")
    with OwnedDir("leanfit-cache-", tmp) as alive:  # this process holds its lock
        again = leanfit(*stage_run("train-logistic", small_csv, None, tmp_path, quick=True)[0])
        assert again.returncode == 0, again.stderr
        assert leftovers(tmp) == [alive.path.name]
        assert leftovers(out.parent) == [] and out.exists()
    assert leftovers(tmp) == []


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(30))
def test_signals_at_random_moments_never_leave_a_wrong_output(
    trial, big_csv, small_csv, model, tmp_path
):
    rng = random.Random(trial)
    stage = rng.choice(["train-sgd", "train-logistic", "train-xgboost", "predict", "shrink"])
    signum = rng.choice([signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
    process, out = interrupt(stage, signum, big_csv, model, tmp_path, rng.uniform(0, 3))
    if process.returncode == 0 or out.exists():  # it finished before the signal
        assert_whole(out)
    elif signum == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
    else:
        assert_clean_interrupt(process, signum, out, tmp_path)
    again = leanfit(*stage_run(stage, small_csv, model, tmp_path, quick=True)[0])
    assert again.returncode == 0, again.stderr
    assert out.exists() and leftovers(tmp_path / "tmp", tmp_path / "out") == []
