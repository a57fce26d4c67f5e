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


@pytest.mark.parametrize("env_id", sdar_envs.ENV_IDS)
def test_both_id_forms_make_the_env(env_id, tmp_path, request):
    """`import sdar_envs; gym.make("sdar/X-v0")` (the form other env packages use) and the prefix form
    `gym.make("sdar_envs:sdar/X-v0")` in a fresh interpreter that never imported sdar_envs."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip(NEEDS[env_id], reason=f"{env_id}'s engine is not installed (pip install 'sdar[all]')")
    data = {"ALFWORLD_DATA": str(request.getfixturevalue("alfworld_games"))} if "ALFWorld" in env_id else {}
    env = {**os.environ, **data}
    root = Path(__file__).resolve().parents[2]
    for code in (f"import gymnasium as gym, sdar_envs; e = gym.make({env_id!r}); e.reset(seed=0); print('ok')",
                 f"import gymnasium as gym, sys; e = gym.make('sdar_envs:{env_id}'); e.reset(seed=0); "
                 "print('ok' if 'sdar_envs' in sys.modules else 'no')"):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env=env,
                              timeout=300)
        assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


@pytest.mark.parametrize("make", sdar_envs.ENV_IDS, indirect=True)
def test_a_malformed_action_is_invalid_and_a_finished_episode_pays_nothing(make):
    from sdar_envs.core import EPISODE_OVER, NOT_TEXT

    env = make()
    try:
        env.reset(seed=0)
        for bad in ("search[\udc80 shoes]", "\ud800 city", "<answer>\udc80</answer>", "9" * 5000):
            obs, reward, terminated, truncated, info = env.step(bad)
            assert not info["action_valid"] and reward == 0.0 and not terminated, bad[:20]
            assert obs.startswith(NOT_TEXT) == any(0xD800 <= ord(c) <= 0xDFFF for c in bad)  # a lone surrogate
        env.unwrapped._ended = (True, False)  # as after a win: nothing more to earn, whatever the action
        obs, reward, terminated, _, info = env.step("look")
        assert obs.startswith(EPISODE_OVER) and reward == 0.0 and terminated and not info["action_valid"]
    finally:
        env.close()
