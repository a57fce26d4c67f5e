"""A test env that crashes its worker, hangs, or raises, on a chosen step (by task)."""

from __future__ import annotations

import os
import time

from gymnasium.envs.registration import register, registry

from sdar_envs.core import TaskStart, TextEnv, Transition


class FlakyEnv(TextEnv):
    """Tasks: `fine`, `raise` (raises at step 2), `die` (kills its process at step 2), `hang` (sleeps)."""

    splits = ("train", "test")

    @property
    def task_ids(self):
        return ["fine", "raise", "die", "hang"]

    @property
    def task_types(self):
        return ["ok", "bad", "bad", "bad"]

    def _start(self, index):
        self.kind, self.n = self.task_ids[index], 0
        return TaskStart("Say <action>win</action> twice.", "say win twice", self.task_types[index], ["win"])

    def _act(self, action):
        self.n += 1
        if self.n == 2 and self.kind == "raise":
            raise RuntimeError("the env broke")
        if self.n == 2 and self.kind == "die":
            os._exit(3)
        if self.n == 2 and self.kind == "hang":
            time.sleep(60)
        won = self.n >= 2
        return Transition("ok", float(won), won, won, float(won), action == "win", ["win"])


if "test/Flaky-v0" not in registry:
    register(id="test/Flaky-v0", entry_point="tests.integration.crash_env:FlakyEnv", max_episode_steps=5)
