"""The README's script example runs as written, and its CLI table names real commands."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from provenance._cli import build_parser

README = Path(__file__).parents[1] / "README.md"


def test_script_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = re.search(r"## In a script\n\n```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None
    assert len(code.group(1).strip().splitlines()) <= 12
    env = {"PROVENANCE_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    src = str(Path(__file__).parents[1] / "src")
    result = subprocess.run(
        [sys.executable, "-c", code.group(1)], cwd=tmp_path, env={**env, "PYTHONPATH": src},
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "exact-file"
    assert (tmp_path / "harbour.png").is_file()


def test_every_command_in_the_readme_exists() -> None:
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert choices is not None
    named = set(re.findall(r"^\| `provenance ([a-z-]+)", README.read_text(), re.M))
    assert named and named <= set(choices)
