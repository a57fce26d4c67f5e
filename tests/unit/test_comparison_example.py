"""examples/sdar_vs_grpo_cpu.py: the table's statistics, the curve, and reuse of finished runs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "sdar_vs_grpo_cpu.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("sdar_vs_grpo_cpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(train: list[float], val: dict[int, float], valid: float = 1.0) -> list[dict]:
    out = []
    for step, success in enumerate(train, start=1):
        row = {"step": step, "episode/success_rate": success, "perf/rollout_s": 30.0, "perf/update_s": 10.0 * step}
        if step in val:
            row.update({"val/success_rate": val[step], "val/valid_action_ratio": valid})
        out.append(row)
    return out


def test_table_is_mean_and_sample_std_over_seeds_at_the_last_validation(example):
    start = {s: {"val/success_rate": 5 / 24, "val/valid_action_ratio": 1.0} for s in (0, 1, 2)}
    runs = {"grpo": {0: rows([0, 0.5], {1: 0.5, 2: 4 / 24}), 1: rows([0, 1], {2: 6 / 24}),
                     2: rows([0.5, 0.5], {2: 3 / 24}, valid=0.99)}}
    text = example.table(start, runs, {"sft": 500.0, "grpo": 2100.0}, "# header")
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
             for line in text.splitlines() if line.startswith("| ") and not line.startswith("| method")}
    assert cells["SFT model (step 0)"] == ["0.208 ± 0.000", "1.000 ± 0.000", "-", "-", "500"]
    # final validations 4, 6, 3 of 24: mean 0.181, sample std 0.064 (not the earlier step-1 0.5)
    assert cells["grpo"][0] == "0.181 ± 0.064"
    assert cells["grpo"][1] == "0.997 ± 0.006"
    assert cells["grpo"][2] == "0.417 ± 0.144"  # per-seed mean training success 0.25, 0.5, 0.5
    assert cells["grpo"][3:] == ["45", "2100"]  # 30 s rollout + 10 / 20 s update
    assert example.mean_std([]) == "-" and example.mean_std([0.25]) == "0.250 ± 0.000"


def test_plot_writes_the_curve(example, tmp_path):
    pytest.importorskip("matplotlib", reason="the curve needs matplotlib")
    start = {s: {"val/success_rate": 0.2} for s in (0, 1)}
    runs = {algo: {s: rows([0, 0], {1: 0.1 * s, 2: 0.2}) for s in (0, 1)} for algo in ("grpo", "sdar")}
    example.plot(start, runs, tmp_path)
    assert (tmp_path / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_finished_runs_and_start_validations_are_reused(example, tmp_path):
    run = tmp_path / "grpo-seed0"
    (run / "final").mkdir(parents=True)
    (run / "final" / "config.json").write_text("{}")
    finished = rows([0, 1], {2: 0.25})
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in finished) + "\n")
    got, fresh = example.train_rl(tmp_path, tmp_path / "model", "grpo", 0, 2, 2, [])
    assert (got, fresh) == (finished, False)
    (tmp_path / "start-seed0.json").write_text(json.dumps({"val/success_rate": 0.5}))
    assert example.validate_start(tmp_path, tmp_path / "model", 0, []) == ({"val/success_rate": 0.5}, False)


def test_paired_table_pools_the_seeds_validation_reports(example, tmp_path):
    pytest.importorskip("scipy", reason="the paired statistics need scipy")

    def report(name, step, wins):
        folder = tmp_path / name / "validations"
        folder.mkdir(parents=True)
        outcomes = {f"task{i}": [w] for i, w in enumerate(wins)}
        (folder / f"step_{step:06d}_valid_unseen.json").write_text(json.dumps({"outcomes": outcomes}))

    for seed in (0, 1):
        report(f"start-seed{seed}", 0, [True, False, False, False])
        report(f"grpo-seed{seed}", 2, [True, True, True, False])
    text = example.paired_table(tmp_path, [0, 1], ["grpo"], 2)
    row = next(line for line in text.splitlines() if line.startswith("| SFT model | grpo |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    # 8 (seed, task) pairs: 2 wins -> 6 wins, won by GRPO alone on 4, by the SFT model alone on none
    assert cells[2:4] == ["0.250", "0.750"] and cells[4].startswith("+0.500 [") and cells[5] == "4 / 0"
    assert cells[6] == "0.125"  # exact McNemar: 2 x 0.5^4
