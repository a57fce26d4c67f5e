"""The skill hook on real envs, and the documented custom-env example."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

from sdar_envs.wrappers import PrivilegedSkills
from skillbank import STRATEGIES, SkillBank

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "custom_env"


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_wrapper_on_alfworld_with_the_env_default_bank(alfworld_games, strategy):
    env = PrivilegedSkills(gym.make("sdar/ALFWorld-v0", data_dir=alfworld_games), strategy=strategy, k=3, seed=0)
    assert env.bank.spec.name == "alfworld"
    obs, info = env.reset(options={"task_index": 0})
    skills = info["skills"]
    assert skills["task_type"] == info["task_type"]  # the explicit type, never parsed from text
    assert skills["ids"] and skills["text"] and skills["strategy"] == strategy
    assert skills["text"] not in obs  # privileged: the observation is untouched
    if strategy == "keyword":
        assert any(i.startswith("place-") or i.startswith("two-") or i.startswith("look-") or i.startswith(
            ("clean-", "heat-", "cool-")) for i in skills["ids"])


def test_each_task_type_gets_its_own_skills(alfworld_games):
    env = PrivilegedSkills(gym.make("sdar/ALFWorld-v0", data_dir=alfworld_games))
    prefixes = {"pick_heat_then_place_in_recep": "heat-", "pick_cool_then_place_in_recep": "cool-",
                "pick_clean_then_place_in_recep": "clean-", "look_at_obj_in_light": "look-",
                "pick_two_obj_and_place": "two-", "pick_and_place_simple": "place-"}
    for index in range(env.unwrapped.num_tasks):
        _, info = env.reset(options={"task_index": index})
        typed = [i for i in info["skills"]["ids"] if not i.startswith(("gen-", "err-"))]
        assert typed and all(i.startswith(prefixes[info["task_type"]]) for i in typed)


def test_ucb_learns_from_each_episodes_task_score(alfworld_games):
    bank = SkillBank.load("alfworld")
    env = PrivilegedSkills(gym.make("sdar/ALFWorld-v0", data_dir=alfworld_games, max_episode_steps=2),
                           bank=bank, strategy="ucb", k=2)
    _, info = env.reset(options={"task_index": 0})
    shown, task_type = info["skills"]["ids"], info["task_type"]
    done = False
    while not done:  # no task can be won in 2 steps: a 0 return
        *_, terminated, truncated, _ = env.step(env.unwrapped.expert_action())
        done = terminated or truncated
    assert all(bank.bandit.stats[task_type][i] == [1, 0.0] for i in shown)
    _, info = env.reset(options={"task_index": 0})
    assert not set(info["skills"]["ids"]) & set(shown)  # untried arms come first
    won = PrivilegedSkills(gym.make("sdar/ALFWorld-v0", data_dir=alfworld_games), bank=SkillBank.load("alfworld"),
                           strategy="ucb", k=2)
    _, info = won.reset(options={"task_index": 0})
    done = False
    while not done:
        *_, terminated, truncated, last = won.step(won.unwrapped.expert_action())
        done = terminated or truncated
    assert last["won"] and last["score"] == 1.0
    stats = won.bank.bandit.stats[info["task_type"]]
    assert all(stats[i] == [1, 1.0] for i in info["skills"]["ids"])  # the task score, in [0, 1]


def test_wrapper_argument_errors(alfworld_games):
    with pytest.raises(ValueError, match="strategy='nearest'"):
        PrivilegedSkills(gym.make("sdar/ALFWorld-v0", data_dir=alfworld_games), strategy="nearest")


def test_custom_env_example_passes_the_contract():
    sys.path.insert(0, str(EXAMPLE))
    try:
        from guess_env import GuessNumberEnv
    finally:
        sys.path.remove(str(EXAMPLE))
    check_env(GuessNumberEnv(render_mode="ansi"))
    train, test = GuessNumberEnv("train"), GuessNumberEnv("test")
    assert not set(train.task_ids) & set(test.task_ids)  # disjoint (type, secret) pairs


def test_custom_env_example_script_runs():
    result = subprocess.run([sys.executable, str(EXAMPLE / "play.py")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "won 15/15 test tasks" in result.stdout and "Skills for small range tasks:" in result.stdout
