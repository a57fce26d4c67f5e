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
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) == 7 and cells[0] in ("ddp", "fsdp"):
            rows[cells[0]] = cells
    assert rows["ddp"][4] == "16.0" and rows["fsdp"][4] == "8.0"  # bytes per parameter: float32 + AdamW
    assert float(rows["ddp"][5]) > 0 and float(rows["fsdp"][6]) > 0
