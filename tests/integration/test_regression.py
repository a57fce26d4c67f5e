"""One training step of `grpo` and `sdar` on the tiny model gives the stored metrics (to 1e-6).

A refactor must not change what the trainer computes. When a change is meant to change it, run
`SDAR_UPDATE_GOLDEN=1 pytest tests/integration/test_regression.py` and say why in the commit.

The step samples its rollouts from the initial weights, then makes four AdamW steps on them (two
mini-batches, two epochs), so the stored metrics cover the rollout, the advantages, the loss terms
and the update after the policy has moved (importance ratios, clipping, the KL to the reference).
No rollout is sampled from updated weights: a second step's rollout differed between two machines
(the same code gave the same tokens run after run on each, under 1e-5 relative noise on the
weights, any thread count and micro-batch size, yet other tokens on the other machine), so a
second step would test the machine rather than the code.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="the trainer needs transformers (pip install 'sdar[train]')")

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden_one_step.json"
TIMINGS = ("perf/",)


def one_step(tmp_path, games, algo):
    from sdar_agent.config import load_config
    from sdar_agent.trainer import Trainer

    cfg = load_config("demo", [
        "model.name=tiny", "model.compute_dtype=float32", f"algo.name={algo}", f"name={algo}",
        f"output_dir={tmp_path}", "steps=1", "save_every=0", "val_every=0", "algo.mini_batches=2", "algo.epochs=2",
        "env.num_workers=0",
        "rollout.tasks_per_step=2", "rollout.group_size=2", "rollout.max_response_tokens=8", "env.max_turns=2",
        "log.progress=false", "log.tensorboard=false", "log.plot=false", "algo.lr=1e-3", "algo.micro_batch_size=3",
        "algo.kl_coef=0.05", f"env.kwargs={{data_dir: {games}}}", "rollout.template=test-lenient",
    ])
    trainer = Trainer(cfg)
    try:
        trainer.train()
    finally:
        trainer.close()
    rows = [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if not k.startswith(TIMINGS)} for row in rows]


@pytest.mark.parametrize("algo", ["grpo", "sdar"])
def test_one_step_matches_the_stored_metrics(tmp_path, alfworld_games, lenient_template, algo):
    rows = one_step(tmp_path, alfworld_games, algo)
    stored = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
    if os.environ.get("SDAR_UPDATE_GOLDEN"):
        stored[algo] = rows
        GOLDEN.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"stored new golden metrics for {algo} in {GOLDEN}")
    assert algo in stored, f"no stored metrics for {algo}: run with SDAR_UPDATE_GOLDEN=1"
    expected = stored[algo]
    assert [sorted(r) for r in rows] == [sorted(r) for r in expected]
    for got, want in zip(rows, expected, strict=True):
        for key, value in want.items():
            assert math.isclose(got[key], value, rel_tol=1e-6, abs_tol=1e-6), (got["step"], key, got[key], value)
