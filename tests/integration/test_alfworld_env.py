"""sdar/ALFWorld-v0 on alfworld's real TextWorld engine."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

from sdar_envs.core import INFO_KEYS
from tests.conftest import SMALL_COUNTS, shared_path

pytest.importorskip("alfworld", reason="the ALFWorld engine is not installed (pip install 'sdar[alfworld]')")

from sdar_envs.alfworld.data import TASK_TYPES, GameDataError  # noqa: E402
from sdar_envs.alfworld.env import ALFWorldEnv  # noqa: E402


def make(games: Path, **kwargs) -> gym.Env:
    return gym.make("sdar/ALFWorld-v0", data_dir=games, **kwargs)


def play_expert(env: gym.Env, **reset_kwargs) -> tuple[dict, list[str]]:
    obs, info = env.reset(**reset_kwargs)
    actions, done = [], False
    while not done:
        action = env.unwrapped.expert_action()
        assert action in info["admissible_actions"]
        actions.append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
    return info, actions


def test_check_env(alfworld_games):
    env = make(alfworld_games, render_mode="ansi")
    check_env(env.unwrapped)
    env.close()


@pytest.mark.parametrize("split", ["train", "valid_unseen"])
def test_expert_wins_every_game_of_all_six_types(alfworld_games, split):
    env = make(alfworld_games, split=split)
    seen = set()
    for index in range(env.unwrapped.num_tasks):
        info, actions = play_expert(env, options={"task_index": index})
        assert info["won"] and info["score"] == 1.0, (info["task_id"], actions)
        seen.add(info["task_type"])
    assert seen == set(TASK_TYPES)
    assert env.unwrapped.num_tasks == SMALL_COUNTS[split]


def test_info_contract_and_episode_end(alfworld_games):
    env = make(alfworld_games, max_episode_steps=50)
    obs, info = env.reset(options={"task_index": 0})
    assert set(info) == set(INFO_KEYS)
    assert obs.startswith("-= Welcome to TextWorld, ALFRED! =-")
    assert info["task"] and info["task"] in obs and info["task_type"] in TASK_TYPES
    assert "help" not in info["admissible_actions"] and "look" in info["admissible_actions"]
    rewards = []
    while True:
        obs, reward, terminated, truncated, info = env.step(env.unwrapped.expert_action())
        assert set(info) == set(INFO_KEYS)
        rewards.append(reward)
        if terminated:
            break
    assert rewards[-1] == 1.0 and sum(rewards) == 1.0 and info["won"] and not truncated


def test_truncates_at_max_episode_steps(alfworld_games):
    env = make(alfworld_games, max_episode_steps=3)
    env.reset(options={"task_index": 0})
    ends = [env.step("look")[2:4] for _ in range(3)]
    assert ends == [(False, False), (False, False), (False, True)]
    assert gym.spec("sdar/ALFWorld-v0").max_episode_steps == 50


def test_same_seed_same_episode(alfworld_games):
    def rollout(seed):
        env = make(alfworld_games)
        obs, info = env.reset(seed=seed)
        trace = [obs]
        for action in ["look", "inventory", info["admissible_actions"][0]]:
            trace.append(env.step(action)[0])
        return info["task_id"], trace

    assert rollout(3) == rollout(3)
    assert len({rollout(s)[0] for s in range(6)}) > 1


@pytest.mark.parametrize("action", ["", "fly to the moon", "take the cake", "go to cabinet 99", "ça va ?", "x" * 5000])
def test_bad_actions_get_nothing_happens(alfworld_games, action):
    env = make(alfworld_games)
    env.reset(options={"task_index": 0})
    obs, reward, terminated, truncated, info = env.step(action)
    assert (obs, reward, terminated, info["action_valid"], info["step"]) == ("Nothing happens.", 0.0, False, False, 1)
    assert info["admissible_actions"]


def test_commands_are_case_and_space_insensitive(alfworld_games):
    env = make(alfworld_games)
    _, info = env.reset(options={"task_index": 0})
    command = info["admissible_actions"][0]  # "go to ..."
    obs, _, _, _, info = env.step("  " + command.upper().replace(" ", "   ") + " ")
    assert info["action_valid"] and obs != "Nothing happens."


def test_split_and_task_type_filters(alfworld_games):
    env = ALFWorldEnv(split="valid_seen", data_dir=alfworld_games, task_types=["look_at_obj_in_light"])
    assert set(env.task_types) == {"look_at_obj_in_light"} and env.num_tasks == 1
    train_ids = set(ALFWorldEnv(split="train", data_dir=alfworld_games).task_ids)
    assert not train_ids & set(ALFWorldEnv(split="valid_seen", data_dir=alfworld_games).task_ids)


def test_group_of_copies_of_one_task_in_worker_processes(alfworld_games):
    envs = gym.make_vec(
        "sdar/ALFWorld-v0", num_envs=2, vectorization_mode="async",
        vector_kwargs={"shared_memory": False}, data_dir=str(alfworld_games),
    )
    task_id = ALFWorldEnv(data_dir=alfworld_games).task_ids[4]
    obs, infos = envs.reset(options={"task_id": task_id})
    assert list(infos["task_id"]) == [task_id, task_id] and obs[0] == obs[1]
    obs, rewards, terminated, truncated, infos = envs.step(["look", "dance"])
    assert list(infos["action_valid"]) == [True, False]
    envs.close()


def test_registered_without_prior_import(alfworld_games):
    code = (
        "import gymnasium as gym, sys\n"
        f"env = gym.make('sdar_envs:sdar/ALFWorld-v0', data_dir={str(alfworld_games)!r})\n"
        "obs, info = env.reset(seed=0)\n"
        "assert 'sdar_envs' in sys.modules and info['task_type']\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_documented_information_keys_are_the_returned_keys():
    doc = ALFWorldEnv.__doc__.split("## Information")[1].split("##")[0]
    assert all(f"`{key}`" in doc for key in INFO_KEYS)


# ---------------------------------------------------------------- real-format data and bad data
def hand_written_trial(root: Path, problem=lambda text: text) -> Path:
    """ALFWorld's json_2.1.1 layout around TextWorld's hand-written ALFRED bedroom game (its problem edited)."""
    src = shared_path("alfworld", "textworld_pddl_test")
    trial = root / "json_2.1.1" / "valid_seen" / "look_at_obj_in_light-CD-None-DeskLamp-301" / "trial_T20190908_1"
    trial.mkdir(parents=True)
    game = {
        "pddl_domain": (src / "domain.pddl").read_text(),
        "grammar": (src / "grammar.twl2").read_text(),
        "pddl_problem": problem((src / "problem.pddl").read_text()),
        "solvable": True,
    }
    (trial / "game.tw-pddl").write_text(json.dumps(game))
    traj = {
        "task_type": "look_at_obj_in_light",
        "task_id": "trial_T20190908_1",
        "pddl_params": {"object_target": "CD", "parent_target": "", "mrecep_target": "",
                        "toggle_target": "DeskLamp", "object_sliced": False},
        "turk_annotations": {"anns": [{"task_desc": "Examine a CD under a light.", "high_descs": [], "votes": []}]},
    }
    (trial / "traj_data.json").write_text(json.dumps(traj))
    return root


def test_real_format_trial_with_the_hand_written_alfred_game(tmp_path):
    env = gym.make("sdar/ALFWorld-v0", split="valid_seen", data_dir=hand_written_trial(tmp_path))
    info, actions = play_expert(env, seed=0)
    assert actions == ["go to desk", "take cd from desk", "use desklamp"]
    assert info["won"] and info["task"] == "examine a CD under a light source."


def play_demonstration(env, **reset_kwargs):
    """The demonstrating expert's episode: [(observation before, action, thought)], last info."""
    obs, info = env.reset(**reset_kwargs)
    turns = []
    while True:
        step = env.unwrapped.expert_step()
        turns.append((obs, step.action, step.thought))
        obs, _, terminated, truncated, info = env.step(step.action)
        assert info["action_valid"], step
        if terminated or truncated:
            return turns, info


def assert_grounded(turns):
    """Every object taken or used was shown by an earlier observation, and the take's thought names it."""
    for i, (_, action, thought) in enumerate(turns):
        seen = " ".join(obs for obs, _, _ in turns[:i + 1])
        verb, _, rest = action.partition(" ")
        if verb in ("take", "use"):
            obj = rest.partition(" from ")[0]
            assert re.search(rf"\b{obj}\b", seen), (action, seen)
        if verb == "take":
            assert f"the {obj}" in thought.lower()  # the thought names what was shown


def test_the_demonstrator_looks_at_a_receptacle_that_shares_its_spot_before_taking_from_it(tmp_path):
    # the desk moved to the bed's spot: arriving at the bed shows the bed only, as in real scenes
    # (the real trial "put a hot potato in sinkbasin" has countertop 2 at coffeemachine 1's spot)
    root = hand_written_trial(tmp_path, lambda text: text.replace("locDesk)", "locBed)"))
    env = gym.make("sdar/ALFWorld-v0", split="valid_seen", data_dir=root)
    turns, info = play_demonstration(env, seed=0)
    assert [a for _, a, _ in turns] == ["go to bed", "examine desk", "take cd from desk", "use desklamp"]
    assert info["won"] and "On the desk, you see" in turns[2][0]  # the desk's contents, shown before the take
    assert_grounded(turns)
    env.close()


def test_real_alfworld_texts_match_generated_games(alfworld_games):
    """The generated games speak like ALFWorld's real transcripts."""
    transcripts = json.loads(shared_path("alfworld", "react_prompts", "alfworld.json").read_text())
    real = transcripts["react_heat_0"]
    env = make(alfworld_games, task_types=["pick_heat_then_place_in_recep"])
    obs, info = env.reset(options={"task_index": 0})
    assert "You are in the middle of a room. Looking quickly around you, you see a " in real
    assert "You are in the middle of a room. Looking quickly around you, you see a " in obs
    assert "Your task is to: " in real and "Your task is to: " in obs
    *_, last = [env.step(a)[0] for a in json.loads((env.unwrapped.games[0].game_file).read_text())["walkthrough"]]
    assert last.startswith("You move the ")


def test_corrupt_problem_is_an_error_naming_the_file(alfworld_games, tmp_path):
    import shutil

    root = tmp_path / "json_2.1.1"
    shutil.copytree(alfworld_games / "valid_seen", root / "valid_seen")
    game_file = next(root.rglob("game.tw-pddl"))
    data = json.loads(game_file.read_text())
    data["pddl_problem"] = data["pddl_problem"].replace("(:init", "(:init (", 1)
    game_file.write_text(json.dumps(data))
    env = ALFWorldEnv(split="valid_seen", data_dir=tmp_path)
    index = env.task_ids.index(game_file.parent.relative_to(root / "valid_seen").as_posix())
    with pytest.raises(ValueError, match="could not load this game") as err:
        env.reset(options={"task_index": index})
    assert str(game_file) in str(err.value)


def test_corrupt_game_file_fails_at_construction(alfworld_games, tmp_path):
    import shutil

    shutil.copytree(alfworld_games / "valid_seen", tmp_path / "json_2.1.1" / "valid_seen")
    game_file = next((tmp_path / "json_2.1.1").rglob("game.tw-pddl"))
    game_file.write_text(game_file.read_text()[:100])
    with pytest.raises(GameDataError, match="not valid JSON .* truncated") as err:
        ALFWorldEnv(split="valid_seen", data_dir=tmp_path)
    assert str(game_file) in str(err.value)


def test_importing_alfworld_never_becomes_the_users_data_setting(monkeypatch):
    """alfworld/info.py writes ~/.cache/alfworld into $ALFWORLD_DATA on import; later envs must not take it."""
    import os

    from sdar_agent.workers import EnvPool
    from sdar_envs.alfworld.data import ALFWORLD_DEFAULT

    assert "ALFWORLD_DATA" not in os.environ  # the conftest unsets it: no data configured
    env = gym.make("sdar_envs:sdar/ALFWorld-v0", embedded="small")
    env.reset(seed=0)  # loads alfworld's engine
    assert "ALFWORLD_DATA" not in os.environ
    check_env(env.unwrapped)  # re-makes the env from its spec in this process
    env.close()
    train = EnvPool("sdar/ALFWorld-v0", {"split": "train", "embedded": "small"}, 1, 3, use_workers=False)
    val = EnvPool("sdar/ALFWorld-v0", {"split": "valid_unseen", "embedded": "small"}, 1, 3, use_workers=False)
    assert train.call("task_ids") and val.call("task_ids")
    train.close()
    val.close()
    # a notebook that imported alfworld itself before any env was made
    monkeypatch.setenv("ALFWORLD_DATA", str(ALFWORLD_DEFAULT))
    again = gym.make("sdar_envs:sdar/ALFWorld-v0", embedded="small", split="valid_unseen")
    assert again.unwrapped.num_tasks > 0
    again.close()


@pytest.mark.parametrize("split", ["train", "valid_unseen"])
def test_expert_step_wins_every_game_and_explains_itself(alfworld_games, split):
    env = gym.make("sdar/ALFWorld-v0", data_dir=str(alfworld_games), split=split)
    for index in range(env.unwrapped.num_tasks):
        turns, info = play_demonstration(env, options={"task_index": index})
        thoughts = [t for _, _, t in turns]
        assert info["won"], (info["task_type"], thoughts)
        assert all(0 < len(t.split()) <= 20 for t in thoughts)  # short (<= 30 tokens)
        assert_grounded(turns)
    again = gym.make("sdar/ALFWorld-v0", data_dir=str(alfworld_games), split=split)
    env.reset(options={"task_index": 0})
    again.reset(options={"task_index": 0})
    assert env.unwrapped.expert_step() == again.unwrapped.expert_step()  # seeded: the same demonstration
    env.close()
    again.close()


def test_a_won_game_pays_its_reward_once_and_a_closed_env_says_so(alfworld_games):
    env = make(alfworld_games)
    info, actions = play_expert(env, options={"task_index": 0})
    assert info["won"]
    steps = info["step"]
    for _ in range(3):  # the winning command again: no reward to farm
        _, reward, terminated, _, info = env.step(actions[-1])
        assert (reward, terminated, info["action_valid"], info["step"]) == (0.0, True, False, steps)
    env.reset(options={"task_index": 0})
    env.close()
    with pytest.raises(RuntimeError, match=r"step\(\) called after close\(\)"):
        env.step("look")
    assert env.reset(options={"task_index": 0})[1]["step"] == 0  # a closed env starts again on reset
    env.close()
