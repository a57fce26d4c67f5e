"""benchmarks/parallel_memory.py end to end on two CPU processes with the tiny shape."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="the trainer needs transformers (pip install 'sdar[train]')")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "parallel_memory.py"


def test_fsdp_holds_half_the_states_of_ddp_on_two_processes(alfworld_games, capsys):
    spec = importlib.util.spec_from_file_location("parallel_memory", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--shape", "tiny", "--layers", "0", f"env.kwargs={{data_dir: {alfworld_games}}}",
                 "env.num_workers=0", "rollout.max_response_tokens=8"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[1:]:
        row = dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        rows[row["config"]] = row
    assert header[:3] == ["date", "machine", "commit"] and "cores" in rows["ddp"]["machine"]
    assert rows["ddp"]["bytes / param"] == "16.0" and rows["fsdp"]["bytes / param"] == "8.0"  # float32 + AdamW
    assert float(rows["ddp"]["peak GB"]) > 0 and float(rows["fsdp"]["s / step"]) > 0
