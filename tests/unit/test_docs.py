"""The README and docs/ link only to what the repository holds, and hold no dated narrative outside the dated pages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"```.*?```", re.S)


def anchors(page: Path) -> set[str]:
    """GitHub's anchor of each heading: lower case, punctuation but `-` and `_` dropped, spaces to `-`."""
    headings = re.findall(r"^#+ (.+)$", _FENCE.sub("", page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def relative_links(page: Path) -> list[str]:
    return [t for t in _LINK.findall(_FENCE.sub("", page.read_text())) if not re.match(r"[a-z]+:", t)]


def test_the_pages_link_to_each_other():
    assert sum(len(relative_links(p)) for p in PAGES) > 40 and all(relative_links(p) for p in PAGES[:1])


def test_the_anchor_rule_follows_github():
    assert re.sub(r"[^\w\- ]", "", "`benchmarks/gpu_step.py`: one step".lower()).replace(" ", "-") == \
        "benchmarksgpu_steppy-one-step"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(page):
    for link in relative_links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.is_relative_to(ROOT), f"{page.name}: {link} points outside the repository"
        assert target.exists(), f"{page.name}: {link} does not exist"
        if anchor:
            assert target.suffix == ".md" and anchor in anchors(target), f"{page.name}: no heading for {link}"


DATED_NARRATIVE = ("afternoon", "faster day", "slower day", "same day", "an hour later", "earlier session",
                   "faster spell", "later that day")


def test_no_dated_narrative_outside_the_dated_pages():
    undated = [p for p in PAGES if p.parent.name != "experiments" and p.name not in ("benchmarks.md", "CHANGELOG.md")]
    sources = [*ROOT.glob("sdar_agent/**/*.py"), *ROOT.glob("sdar_envs/**/*.py"), *ROOT.glob("skillbank/**/*.py"),
               *ROOT.glob("sdar_agent/configs/**/*.yaml")]
    for path in undated + sources:
        text = path.read_text().lower()
        found = [phrase for phrase in DATED_NARRATIVE if re.search(rf"\b{phrase}\b", text)]
        assert not found, f"{path.relative_to(ROOT)}: {found}"


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
