"""The README's Python blocks run as written (on a small generated set via $ALFWORLD_DATA)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index, alfworld_games, monkeypatch):
    monkeypatch.setenv("ALFWORLD_DATA", str(alfworld_games))
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), {})


def test_ci_runs_the_readme_test_command():
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in README.read_text() and "\nmake test\n" in ci
