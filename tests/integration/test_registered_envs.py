"""Every registered env: the contract checker, and a seeded rollout that is the same twice."""

from __future__ import annotations

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import sdar_envs
from sdar_envs import INFO_KEYS

NEEDS = {"sdar/ALFWorld-v0": "alfworld", "sdar/WebShop-v0": "pyserini", "sdar/SearchQA-v0": "pyserini"}


@pytest.fixture
def make(request, monkeypatch):
    env_id = request.param
    pytest.importorskip(NEEDS[env_id], reason=f"{env_id}'s engine is not installed (pip install 'sdar[all]')")
    if env_id == "sdar/ALFWorld-v0":
        monkeypatch.setenv("ALFWORLD_DATA", str(request.getfixturevalue("alfworld_games")))
    return lambda: gym.make(f"sdar_envs:{env_id}", split="train")


def rollout(env, seed: int, steps: int = 4):
    obs, info = env.reset(seed=seed)
    trace = [(obs, info["task_id"])]
    for i in range(steps):
        admissible = info["admissible_actions"]
        action = admissible[(seed + i) % len(admissible)] if admissible else f"<search> {info['task']} </search>"
        if action == "search[<query>]":
            action = f"search[{info['task'].split(',')[0]}]"
        obs, reward, terminated, truncated, info = env.step(action)
        assert set(info) == set(INFO_KEYS)
        trace.append((obs, reward, terminated, truncated, info["action_valid"]))
        if terminated or truncated:
            break
    return trace


@pytest.mark.parametrize("make", sdar_envs.ENV_IDS, indirect=True)
def test_registered_env_passes_the_checker_and_is_deterministic_under_a_seed(make):
    env = make()
    check_env(env.unwrapped, skip_render_check=True)
    a, b = make(), make()
    for seed in (0, 7):
        assert rollout(a, seed) == rollout(b, seed)
    assert rollout(a, 0)[0][1] != rollout(a, 1)[0][1] or a.unwrapped.num_tasks == 1  # the seed picks the task
    for e in (env, a, b):
        e.close()
