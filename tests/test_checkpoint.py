"""Checkpoint and resume of ``leanfit train`` (leanfit.engines.checkpoint), run as users
run it: ``python -m leanfit.cli`` in a subprocess, killed with SIGKILL once a checkpoint
holds the stage under test, then resumed with the same command line plus ``--resume``.
The reference is the same command run uninterrupted without a checkpoint: the resumed
model must be the same, array for array (XGBoost: the same trees, dump for dump).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from leanfit import bundle
from leanfit.cli import main
from leanfit.engines.checkpoint import AUTO_SECONDS, STATE, default_folder, planned_seconds
from leanfit.model import load
from leanfit.options import BoostOptions, TrainOptions
from leanfit.summary import check as check_summary
from leanfit.synth import write_data

SRC = Path(__file__).resolve().parents[1] / "src"
COMMON = ["--target", "label", "--batch-rows", "1000", "--seed", "7"]
KINDS = {
    "sgd": ["--model", "sgd", "--epochs", "3"],
    "nb": ["--model", "nb", "--epochs", "2"],
    "logistic": ["--model", "logistic"],
    "xgboost": [
        "--model",
        "xgboost",
        "--rounds",
        "12",
        "--max-depth",
        "3",
        "--nthread",
        "1",
        "--batch-rows",
        "4000",
    ],
}
# the stage each default test kills in: (what the state must show, as a test of its progress)
KILL_WHEN = {
    "sgd": lambda p, a: p["stage"] == "epochs" and p["index"] > 0,  # inside epoch 2
    "nb": lambda p, a: p["stage"] == "parse" and p["cursor"]["row"] >= 4000,  # first pass
    "logistic": lambda p, a: "lbfgs.coef" in a and len(a["lbfgs.coef"]) >= 3,  # L-BFGS
    "xgboost": lambda p, a: len(p.get("losses", [])) >= 4,  # boosting rounds
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckdata") / "train.csv"
    write_data(path, rows=8_000, seed=11)
    return path


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "leanfit.cli", "train", *map(str, args)]


def env() -> dict:
    return os.environ | {"PYTHONPATH": str(SRC)}


def run(*args) -> Result:
    """``leanfit train`` in this process (the runs that are not killed)."""
    return CliRunner().invoke(main, ["train", *map(str, args)])


def saved_state(folder: Path, since: float = 0.0) -> tuple[dict, dict] | None:
    """The checkpoint's progress and arrays, or None while there is none saved after
    ``since`` (or it is being replaced)."""
    try:
        if (folder / STATE).stat().st_mtime < since:
            return None
        parts, arrays = bundle.load(folder / STATE)
    except Exception:  # not there yet, or renamed under us: read again
        return None
    return parts["meta"]["progress"], arrays


def kill_when(
    args: list, folder: Path, ready, delay: float = 0.0, sig: int = signal.SIGKILL
) -> dict:
    """Start ``train args``; send ``sig`` once its checkpoint satisfies ``ready`` (then
    ``delay`` seconds later); return the progress saved last ({} if it finished). Only
    a state this run saved counts (a resumed run starts beside its predecessor's)."""
    started = time.time()
    with subprocess.Popen(
        cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env()
    ) as proc:
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                state = saved_state(folder, since=started)
                if state is not None and ready(*state):
                    break
                if proc.poll() is not None:
                    break
                time.sleep(0.02)
            time.sleep(delay)
        finally:
            proc.send_signal(sig)
            proc.wait()
        if proc.returncode in (0, -signal.SIGTERM):
            return {}  # it finished first (or SIGTERM came after its handler was gone)
        if sig == signal.SIGTERM:  # one line, naming the checkpoint kept
            error = proc.stderr.read().decode().strip()
            assert proc.returncode == 143 and "is kept: add --resume" in error, error
        else:
            assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    state = saved_state(folder)
    return state[0] if state else {"stage": "done"}  # killed after the model was saved


def same_model(a: Path, b: Path) -> None:
    parts_a, arrays_a = bundle.load(a)
    _, arrays_b = bundle.load(b)
    assert sorted(arrays_a) == sorted(arrays_b)
    if parts_a["model"]["class"] == "BoostedModel":
        assert load(a).estimator.booster.get_dump() == load(b).estimator.booster.get_dump()
    for name, array in arrays_a.items():
        np.testing.assert_array_equal(array, arrays_b[name], err_msg=name)


def leftovers(folder: Path) -> list[str]:
    """What a finished run must not leave: checkpoints, partials, locks, temp folders."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith((".", "leanfit-")))


@pytest.mark.parametrize("kind", list(KINDS))
def test_resume_after_kill_gives_the_same_model(kind, data, tmp_path):
    args = [data, *COMMON, *KINDS[kind], "--tmp-dir", tmp_path / "tmp"]
    ref = run(*args, "--out", tmp_path / "ref.leanfit")
    assert ref.exit_code == 0, ref.stderr
    folder = tmp_path / "ck"
    resumable = [*args, "--out", tmp_path / "m.leanfit", "--checkpoint", folder]
    resumable += ["--checkpoint-every", "0.001"]
    progress = kill_when(resumable, folder, KILL_WHEN[kind])
    assert progress, "the run finished before the kill"
    assert not (tmp_path / "m.leanfit").exists()
    resumed = run(*resumable, "--resume", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    check_summary(summary)
    assert summary["checkpoint"]["resumed"] is True and summary["checkpoint"]["saves"] >= 1
    assert summary["rows"] == 8_000 == summary["rows_train"] + summary["rows_holdout"]
    same_model(tmp_path / "ref.leanfit", tmp_path / "m.leanfit")
    assert not folder.exists() and leftovers(tmp_path) == []
    assert list((tmp_path / "tmp").iterdir()) == []


def test_resume_refuses_another_run(data, tmp_path):
    """Changed options or data, no checkpoint, a checkpoint and no --resume: one-line
    errors, and the checkpoint is kept for the run it belongs to."""
    own = tmp_path / "data.csv"
    own.write_bytes(data.read_bytes())
    folder = tmp_path / "ck"
    args = [own, *COMMON, *KINDS["sgd"], "--out", tmp_path / "m.leanfit", "--checkpoint", folder]
    args += ["--checkpoint-every", "0.001"]
    assert kill_when(args, folder, KILL_WHEN["sgd"])

    def refused(*given) -> str:
        result = run(*given)
        assert result.exit_code == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ")
        assert (folder / STATE).exists()
        return lines[0]

    assert "--epochs was 3 in the checkpointed run, now 4" in refused(
        *args, "--epochs", "4", "--resume"
    )
    assert "holds the state of an interrupted run" in refused(*args)
    with own.open("a") as f:
        f.write(own.read_text().splitlines()[-1] + "\n")  # one more row
    assert f"{own.resolve()} changed since the checkpoint (size" in refused(*args, "--resume")
    other = [*args[:-5], tmp_path / "m2.leanfit", "--checkpoint", tmp_path / "none"]
    assert "there is no checkpoint in" in refused(*other, "--resume")
    assert not (tmp_path / "none").exists()


def test_default_checkpoint_beside_out_only_for_long_runs(data, tmp_path):
    """A short run makes no checkpoint; --resume looks beside --out by default."""
    out = tmp_path / "m.leanfit"
    done = run(data, *COMMON, *KINDS["nb"], "--out", out, "--json")
    assert done.exit_code == 0, done.stderr
    assert "checkpoint" not in json.loads(done.stdout)
    missing = run(data, *COMMON, *KINDS["nb"], "--out", out, "--resume", "--force")
    assert missing.exit_code == 1
    assert f"no checkpoint in {tmp_path / '.m.leanfit.checkpoint'}" in missing.stderr
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_random_kills_resume_to_the_same_model(data, tmp_path):
    """24 trials: each kind killed (SIGKILL, a third of the times SIGTERM) at a random
    moment (a random point of its progress, then a random fraction of a second), the
    resumed run sometimes killed again, then resumed to the uninterrupted run's model;
    at least 20 trials are real kills."""
    rng, killed = random.Random(12), 0
    for trial in range(24):
        kind = list(KINDS)[trial % len(KINDS)]
        where = tmp_path / f"t{trial}"
        where.mkdir()
        args = [data, *COMMON, *KINDS[kind], "--tmp-dir", where / "tmp"]
        ref = where / "ref.leanfit"
        if trial < len(KINDS):
            assert run(*args, "--out", ref).exit_code == 0
        else:
            ref = tmp_path / f"t{trial % len(KINDS)}" / "ref.leanfit"
        folder = where / "ck"
        resumable = [*args, "--out", where / "m.leanfit", "--checkpoint", folder]
        resumable += ["--checkpoint-every", str(rng.choice([0.001, 0.2, 1.0]))]
        targets = sorted(rng.uniform(0, LAST[kind]) for _ in range(1 + (rng.random() < 0.3)))
        for attempt, target in enumerate(targets):
            if attempt and not folder.exists():
                break  # the run finished
            extra = ["--resume"] if attempt else []
            ready = lambda p, a, target=target: done(p, a) >= target  # noqa: E731
            sig = rng.choice([signal.SIGKILL, signal.SIGKILL, signal.SIGTERM])
            stopped = kill_when([*resumable, *extra], folder, ready, rng.uniform(0, 0.3), sig)
            killed += bool(stopped)
        if (folder / STATE).exists():  # (also when killed after saving the model)
            resumed = run(*resumable, "--resume")
            assert resumed.exit_code == 0, (trial, kind, resumed.stderr)
        same_model(ref, where / "m.leanfit")
        # a kill while the run cleans up after saving the model may leave the lock file
        # of --out (the next run writing --out takes it over) and a checkpoint folder
        # whose state is gone (the state is removed first: nothing to resume)
        assert leftovers(where) in ([], [".m.leanfit.lock"]), trial
        assert not (folder / STATE).exists(), trial
    assert killed >= 20


def done(progress: dict, arrays: dict) -> float:
    """How far a run is, from its checkpoint: 0 to 1 in the first pass, then 1 and up
    by epochs, twelfths of L-BFGS passes or of boosting rounds."""
    stage = progress["stage"]
    if stage == "parse":
        return progress.get("cursor", {"row": 0})["row"] / 8_000
    if stage == "epochs":
        return progress["epoch"] - 1 + progress["index"] / 8
    if stage == "lbfgs":
        return 1 + len(arrays.get("lbfgs.coef", ())) / 12
    return 1 + len(progress["losses"]) / 12


LAST = {"sgd": 2.9, "nb": 1.9, "logistic": 1.4, "xgboost": 1.9}  # how far each gets, about


def test_the_default_checkpoint_follows_the_planned_length():
    """A minute is planned from the input size and the passes the options ask for."""
    sgd, boost = TrainOptions(), BoostOptions()
    assert planned_seconds(100_000_000, sgd, boost) < AUTO_SECONDS
    assert planned_seconds(100_000_000, TrainOptions(epochs=100), boost) > AUTO_SECONDS
    assert planned_seconds(1_000_000_000, TrainOptions(model="logistic"), boost) > AUTO_SECONDS
    xgb = TrainOptions(model="xgboost")
    assert planned_seconds(100_000_000, xgb, BoostOptions(rounds=10)) < AUTO_SECONDS
    assert planned_seconds(1_000_000_000, xgb, boost) > AUTO_SECONDS
    assert default_folder("models/churn.leanfit") == Path("models/.churn.leanfit.checkpoint")
