"""Every Python and shell example of the README runs as written, in order, in one empty
folder (a later block may use what an earlier one wrote). A block preceded by
``<!-- readme-test: skip (why) -->`` is left out; shell blocks run with ``leanfit``
meaning this interpreter's ``python -m leanfit.cli``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- readme-test: skip[^>]*-->\n)?```(python|sh|bash)\n(.*?)```", re.S)


def examples() -> list[tuple[str, str]]:
    found = BLOCK.findall((ROOT / "README.md").read_text())
    return [(language, code) for skip, language, code in found if not skip]


def test_the_readme_has_python_and_shell_examples():
    languages = {language for language, _ in examples()}
    assert {"python", "sh"} <= languages


def test_every_readme_example_runs(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    shell = f'set -e\nleanfit() {{ "{sys.executable}" -m leanfit.cli "$@"; }}\n'
    for language, code in examples():
        command = (
            [sys.executable, "-c", code] if language == "python" else ["bash", "-c", shell + code]
        )
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{language} block failed:\n{code}\n{done.stderr}"
