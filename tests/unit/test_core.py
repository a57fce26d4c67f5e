"""The env contract of sdar_envs.core, on a tiny env defined here."""

from __future__ import annotations

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

from sdar_envs.core import INFO_KEYS, TaskStart, TextEnv, TextSpace, Transition


class GuessEnv(TextEnv):
    """Guess the task's secret word; three tasks of two types."""

    splits = ("train", "test")
    secrets = {"t0": ("apple", "fruit"), "t1": ("pear", "fruit"), "t2": ("oak", "tree")}

    @property
    def task_ids(self):
        return list(self.secrets)

    @property
    def task_types(self):
        return [t for _, t in self.secrets.values()]

    def _start(self, index):
        self.word, kind = list(self.secrets.values())[index]
        return TaskStart(f"Guess the {kind}.", f"guess the {kind}", kind, ["guess[apple]", "guess[pear]", "guess[oak]"])

    def _act(self, action):
        valid = action.startswith("guess[") and action.endswith("]")
        won = valid and action[6:-1] == self.word
        return Transition("Right!" if won else "No.", float(won), won, won, float(won), valid, [])


def test_check_env_passes():
    check_env(GuessEnv(render_mode="ansi"))


def test_info_has_exactly_the_contract_keys_on_reset_and_step():
    env = GuessEnv()
    _, info = env.reset(seed=0)
    assert set(info) == set(INFO_KEYS)
    *_, info = env.step("guess[oak]")
    assert set(info) == set(INFO_KEYS)


def test_task_selection_by_id_index_and_seed():
    env = GuessEnv()
    assert env.reset(options={"task_id": "t2"})[1]["task_type"] == "tree"
    assert env.reset(options={"task_index": 1})[1]["task_id"] == "t1"
    assert env.reset(options={"task_index": -1})[1]["task_id"] == "t2"
    first = [env.reset(seed=s)[1]["task_id"] for s in range(10)]
    again = [GuessEnv().reset(seed=s)[1]["task_id"] for s in range(10)]
    assert first == again and len(set(first)) > 1


@pytest.mark.parametrize(
    "options, message",
    [
        ({"task_id": "nope"}, "no such task"),
        ({"task_index": 3}, "expected an int in [0, 3)"),
        ({"task_index": "1"}, "expected an int"),
        ({"task_id": "t0", "task_index": 0}, "not both"),
        ({"taskid": "t0"}, "unknown option"),
    ],
)
def test_bad_task_options_say_what_is_wrong(options, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        GuessEnv().reset(options=options)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        GuessEnv(split="dev")
    with pytest.raises(ValueError, match="render_mode='human'"):
        GuessEnv(render_mode="human")


def test_step_contract():
    env = GuessEnv(render_mode="ansi")
    with pytest.raises(RuntimeError, match="before reset"):
        env.step("guess[oak]")
    env.reset(options={"task_id": "t0"})
    with pytest.raises(TypeError, match="takes the action as a str"):
        env.step(3)
    obs, reward, terminated, truncated, info = env.step("apple")
    assert (obs, reward, terminated, info["action_valid"], info["step"]) == ("No.", 0.0, False, False, 1)
    obs, reward, terminated, truncated, info = env.step("guess[apple]")
    assert (reward, terminated, truncated, info["won"], info["score"], info["step"]) == (1.0, True, False, True, 1.0, 2)
    assert env.render() == "Guess the fruit.\n> apple\nNo.\n> guess[apple]\nRight!"


def test_text_space_holds_any_string():
    space = TextSpace(10)
    assert space.contains("über café")
    assert space.contains("")
    assert not space.contains("x" * 11)
    assert not space.contains(b"bytes")
    assert isinstance(space.sample(), str)


def test_vector_env_runs_group_of_one_task():
    envs = gym.vector.SyncVectorEnv([GuessEnv for _ in range(3)])
    _, infos = envs.reset(options={"task_id": "t1"})
    assert list(infos["task_id"]) == ["t1"] * 3
    _, rewards, terminated, _, _ = envs.step(["guess[pear]", "guess[oak]", "x"])
    assert list(rewards) == [1.0, 0.0, 0.0] and list(terminated) == [True, False, False]


def test_set_tasks_checks_ids_and_types():
    from sdar_envs.core import TextEnv

    class Tiny(TextEnv):
        def _start(self, index):
            raise NotImplementedError

        def _act(self, action):
            raise NotImplementedError

    env = Tiny()
    env.set_tasks(["a", "b"], ["x", "y"])
    assert env.task_ids == ["a", "b"] and env.task_types == ["x", "y"] and env._index_of("b") == 1
    env.set_tasks(["c"], ["z"])
    assert env._index_of("c") == 0  # the id index is rebuilt
    with pytest.raises(ValueError, match="unique"):
        env.set_tasks(["a", "a"], ["x", "x"])
    with pytest.raises(ValueError, match="2 task ids but 1 task types"):
        env.set_tasks(["a", "b"], ["x"])


def test_a_finished_episode_pays_nothing_more():
    """After a win, more steps (even the winning action again) get reward 0, action_valid=False, the same step."""
    from sdar_envs.core import EPISODE_OVER

    env = GuessEnv()
    env.reset(options={"task_id": "t2"})
    _, reward, terminated, _, info = env.step("guess[oak]")
    assert (reward, terminated, info["won"], info["step"]) == (1.0, True, True, 1)
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step("guess[oak]")
        assert (reward, terminated, truncated, info["action_valid"], info["step"]) == (0.0, True, False, False, 1)
        assert obs.startswith(EPISODE_OVER) and info["won"] and info["score"] == 1.0
    assert env.reset(options={"task_id": "t2"})[1]["step"] == 0 and env.step("guess[oak]")[1] == 1.0  # a new episode



def test_an_action_that_is_not_text_is_invalid_not_an_error():
    from sdar_envs.core import NOT_TEXT

    env = GuessEnv()
    first, _ = env.reset(options={"task_id": "t0"})
    for bad in ("guess[\udc80 apple]", "\ud800"):
        obs, reward, terminated, _, info = env.step(bad)
        assert obs.startswith(NOT_TEXT) and obs.endswith(first) and not info["action_valid"]
        assert (reward, terminated) == (0.0, False) and info["admissible_actions"] == ["guess[apple]", "guess[pear]",
                                                                                    "guess[oak]"]
    assert info["step"] == 2 and env.step("guess[apple]")[1] == 1.0


def test_server_errors_log_one_line_rate_limited(caplog):
    import logging

    from sdar_envs.serving import RateLimitedLog

    log = RateLimitedLog(logging.getLogger("test.flood"), interval_s=60)
    with caplog.at_level(logging.ERROR, logger="test.flood"):
        for i in range(1000):
            log.error("request %d failed", i)
        log._last = -float("inf")  # the interval has passed
        log.error("request %d failed", 1000)
    lines = caplog.text.strip().splitlines()
    assert len(lines) == 2 and "request 0 failed" in lines[0] and "Traceback" not in caplog.text
    assert "and 999 more like it" in lines[1]
