"""What pyproject.toml declares installs everywhere: one XGBoost wheel per platform
(xgboost-cpu where it is published, xgboost elsewhere), and lower bounds that hold the
APIs leanfit calls (the slow test installs the declared minimums into a fresh venv)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PLATFORMS = {
    ("linux", "x86_64"): "xgboost-cpu",
    ("win32", "AMD64"): "xgboost-cpu",
    ("linux", "aarch64"): "xgboost",
    ("darwin", "arm64"): "xgboost",
    ("darwin", "x86_64"): "xgboost",
    ("win32", "ARM64"): "xgboost",
}


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


@pytest.mark.parametrize(("platform", "machine"), list(PLATFORMS))
def test_exactly_one_xgboost_wheel_per_platform(platform, machine):
    env = {"sys_platform": platform, "platform_machine": machine}
    chosen = [
        r.name
        for r in requirements()
        if r.name.startswith("xgboost") and (r.marker is None or r.marker.evaluate(env))
    ]
    assert chosen == [PLATFORMS[platform, machine]]


def minimums() -> dict[str, Version]:
    found = {}
    for r in requirements():
        low = [Version(s.version) for s in r.specifier if s.operator == ">="]
        assert low, f"{r.name} has no lower bound"
        found[r.name] = low[0]
    return found


def test_polars_bound_has_collect_batches():
    """leanfit.io.scan streams with LazyFrame.collect_batches, new in Polars 1.34.0
    (1.33.1's wheel has no such method)."""
    assert minimums()["polars"] >= Version("1.34")


@pytest.mark.slow
def test_the_declared_minimum_versions_install_and_train(tmp_path):
    """A fresh venv with every dependency at its declared minimum imports leanfit and
    trains sgd and xgboost from the command line (downloads ~400 MB)."""
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    here = {"sys_platform": sys.platform}
    pins = [
        f"{r.name}=={minimums()[r.name]}"
        for r in requirements()
        if r.marker is None or r.marker.evaluate(here)
    ]
    pip = [str(python), "-m", "pip", "install", "-q", "--only-binary=:all:"]
    subprocess.run([*pip, *pins], check=True)
    env = {"PYTHONPATH": str(ROOT / "src")}
    run = [str(python), "-m", "leanfit.cli"]
    data = tmp_path / "d.csv"
    subprocess.run([*run, "make-data", data, "--rows", "3000"], check=True, env=env)
    for model in ("sgd", "xgboost"):
        out = tmp_path / f"{model}.leanfit"
        done = subprocess.run(
            [*run, "train", data, "-t", "label", "--model", model, "--out", out],
            capture_output=True, text=True, check=False, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
