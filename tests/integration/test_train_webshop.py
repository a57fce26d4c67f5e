"""The trainer on sdar/WebShop-v0, unchanged: a 2-step SDAR run with the tiny model."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers", reason="the trainer needs transformers (pip install 'sdar[train]')")
pytest.importorskip("pyserini", reason="WebShop's extras are not installed (pip install 'sdar[webshop]')")

from sdar_agent.prompts import template_for  # noqa: E402
from tests.integration.test_trainer import run_preset  # noqa: E402


def test_webshop_template_is_the_default_for_the_env():
    template = template_for("sdar_envs:sdar/WebShop-v0")
    assert template.name == "webshop" and "search[your keywords]" in template.instruction
    parsed = template.parse("<think>find tea</think><action>search[Green Tea]</action>")
    assert parsed.valid and parsed.action == "search[green tea]"


@pytest.mark.slow
def test_two_sdar_steps_on_webshop(tmp_path):
    rows, changed = run_preset(tmp_path, "webshop_sdar_qwen2.5-3b", "ws")
    assert changed and [r["step"] for r in rows] == [1, 2]
    for key in ("sdar/gate_mean", "sdar/teacher_gap_mean", "episode/score", "episode/success_rate", "val/score",
                "val/success_rate"):
        assert key in rows[-1] and rows[-1][key] == rows[-1][key], key
    types = {k.rsplit("/", 1)[1] for k in rows[-1] if k.startswith("episode/success_rate/")}
    assert types and types <= {"beauty", "electronics", "fashion", "garden", "grocery"}


@pytest.mark.parametrize("mode, expected", [("env", [0.0, 7.5]), ("won", [0.0, 0.0])])
def test_reward_modes_env_score_or_win_only(mode, expected):
    from sdar_agent.rollout import RolloutBatch, Sample, _advance, _finish, _Trajectory

    t = _Trajectory(0, 0, "g")
    for step, (reward, won, score) in enumerate([(0.0, False, 0.0), (0.75, False, 0.75)]):
        sample = Sample([1], [2], 0, 0, step, 0.0, True, "g", "beauty")
        info = {"won": won, "score": score, "admissible_actions": []}
        _advance(t, ("obs", reward, step == 1, False, info), sample, "click[buy now]", 10.0, mode == "won")
    assert [s.reward for s in t.samples] == expected
    batch = RolloutBatch([], [])
    _finish(batch, [t], 0, 0.1)
    assert batch.episodes[0].score == 0.75 and not batch.episodes[0].won
    won = _Trajectory(1, 0, "g")
    sample = Sample([1], [2], 0, 1, 0, 0.0, True, "g", "beauty")
    _advance(won, ("obs", 1.0, True, False, {"won": True, "score": 1.0}), sample, "a", 10.0, mode == "won")
    assert sample.reward == 10.0
