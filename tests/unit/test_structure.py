"""The code's structure: imports point one way, the command line is imported by nothing, docs match the code."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sdar_agent", "sdar_envs", "skillbank")


def _main_guard(node: ast.AST) -> bool:
    """`if __name__ == "__main__":` - what runs only when the module is the program, never on import."""
    test = getattr(node, "test", None)
    return (isinstance(node, ast.If) and isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__")


def imports_of(path: Path) -> set[str]:
    """The project modules `path` imports anywhere (functions included), except under its main guard."""
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _main_guard(child):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative
                    base = ".".join(module.split(".")[: -child.level] + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def project_graph() -> dict[str, set[str]]:
    files = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
             for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    # a module's own parent packages load before it whatever it imports: not an edge of its own
    return {name: {m for m in imports_of(path) if m in files and not name.startswith(f"{m}.") and m != name}
            for name, path in files.items()}


def test_no_import_cycle():
    graph = project_graph()
    done: set[str] = set()

    def walk(node: str, path: list[str]) -> None:
        if node in path:
            pytest.fail("import cycle: " + " -> ".join(path[path.index(node) :] + [node]))
        if node in done:
            return
        for nxt in sorted(graph[node]):
            walk(nxt, [*path, node])
        done.add(node)

    for name in sorted(graph):
        walk(name, [])


def test_only_entry_points_reach_the_command_line_module():
    importers = sorted(name for name, deps in project_graph().items() if "sdar_agent.cli" in deps)
    assert importers == [], importers  # train/sft/evaluate reach it only under their main guard


def test_the_envs_and_the_skill_banks_never_import_the_trainer():
    for name, deps in project_graph().items():
        if not name.startswith("sdar_agent"):
            assert not {d for d in deps if d.startswith("sdar_agent")}, name


def test_docs_metrics_page_is_generated_from_the_metric_table():
    pytest.importorskip("numpy", reason="the tracker needs numpy")
    from sdar_agent.tracking import metrics_markdown

    assert (ROOT / "docs" / "metrics.md").read_text() == metrics_markdown(), \
        "docs/metrics.md is out of date: python -m sdar_agent.tracking > docs/metrics.md"


def test_a_non_finite_metric_is_written_as_null(tmp_path, caplog):
    pytest.importorskip("numpy", reason="the tracker needs numpy")
    import logging

    from sdar_agent.tracking import Tracker

    tracker = Tracker(tmp_path, enabled=True, tensorboard=False)
    with caplog.at_level(logging.WARNING):
        tracker.log(1, {"actor/pg_loss": math.nan, "actor/grad_norm": math.inf, "actor/lr": 1e-3})
        tracker.log(2, {"actor/pg_loss": math.nan, "actor/lr": 1e-3})
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0] == {"step": 1, "actor/pg_loss": None, "actor/grad_norm": None, "actor/lr": 1e-3}
    assert rows[1]["actor/pg_loss"] is None
    assert caplog.text.count("actor/pg_loss is nan") == 1  # one warning per key
