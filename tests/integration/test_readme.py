"""The Python blocks of the README and docs/ run as written and print what their comments say (small data).

A `print(...)` line whose comment does not start with "e.g." states its output: the comment up to
", and" / " and " (the rest describes what varies), with "..." standing for any text.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
BLOCKS = [(page.relative_to(ROOT), block) for page in PAGES
          for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S)]
_PRINT = re.compile(r"^\s*print\(.*\)\s*#\s*(?P<comment>.*)$")


def stated_outputs(block: str) -> list[str | None]:
    """For each print line of the block, in order, the output its comment states (None: not stated)."""
    stated = []
    for line in block.splitlines():
        if not line.lstrip().startswith("print("):
            continue
        match = _PRINT.match(line)
        comment = match.group("comment").strip() if match else ""
        if not comment or comment.startswith("e.g."):
            stated.append(None)
            continue
        stated.append(re.split(r",? and ", comment, maxsplit=1)[0].strip().strip("'\""))
    return stated


def matches(printed: str, stated: str) -> bool:
    """`printed` starts with the stated text, its "..." standing for any text."""
    pieces = stated.split("...")
    if not printed.startswith(pieces[0].rstrip()):
        return False
    at = len(pieces[0].rstrip())
    for piece in pieces[1:]:
        found = printed.find(piece.strip(), at)
        if found < 0:
            return False
        at = found + len(piece.strip())
    return True


def test_readme_has_python_examples():
    in_readme = [b for page, b in BLOCKS if page == Path("README.md")]
    assert in_readme and len(BLOCKS) >= 8
    assert sum(s is not None for _, b in BLOCKS for s in stated_outputs(b)) >= 8  # results the pages promise


def test_the_checker_can_fail():
    assert matches("True 7", "True") and not matches("False 7", "True")
    assert matches('<information>Doc 1(Title: "Ab") text', '<information>Doc 1(Title: "...") ...')
    assert not matches("<info>", '<information>Doc 1(Title: "...") ...')
    assert stated_outputs('print(x)  # 1.0 True, and the category\nprint(y)  # e.g. 3') == ["1.0 True", None]


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"{page}-{i}" for i, (page, _) in enumerate(BLOCKS)])
def test_readme_block_prints_what_it_says(index, alfworld_games, monkeypatch):
    monkeypatch.setenv("ALFWORLD_DATA", str(alfworld_games))
    printed: list[str] = []

    def record(*args, sep=" ", **kwargs):
        printed.append(sep.join(str(a) for a in args))

    page, block = BLOCKS[index]
    exec(compile(block, f"{page}[python block {index}]", "exec"), {"print": record})
    stated = stated_outputs(block)
    assert len(printed) == len(stated), "a README example prints in a loop: state its output another way"
    for got, want in zip(printed, stated, strict=True):
        assert want is None or matches(got, want), f"{page} says {want!r}, the code printed {got[:200]!r}"


def test_ci_runs_the_readme_test_command():
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in README.read_text() and "\nmake test\n" in ci
