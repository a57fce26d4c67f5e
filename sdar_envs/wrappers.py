"""Wrappers over the sdar envs.

`PrivilegedSkills` is SDAR's skill hook: at every reset it retrieves skills for the task from a
skill bank and puts them in `info["skills"]`; when the episode ends it reports the episode's
return to the bank, which is what the `ucb` strategy learns from. The student's observation is
untouched: the skills are privileged context for the teacher (or for the student's prompt in
Skill-GRPO), and the trainer decides where they go.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np


class PrivilegedSkills(gym.Wrapper):
    """Add retrieved skills to `info["skills"]` at reset; report episode returns to the bank.

    ## Information
    `info["skills"]` (reset only): `{"ids": [...], "text": "...", "task_type": <bank type or None>,
    "strategy": "<name>"}`.

    ## Arguments
    - `env`: an sdar env (its `info` gives `task_type` and `task`).
    - `bank`: a `skillbank.SkillBank`, a bank name or path; default: the env's own bank
      (`env.unwrapped.skill_bank`).
    - `strategy`: "keyword" | "full" | "random" | "ucb".
    - `k`: skills to retrieve (see `SkillBank.retrieve`).
    - `budget`, `measure`: the prompt budget and how it is counted (characters by default).
    - `seed`: seeds the wrapper's RNG for the `random` strategy; `reset(seed=s)` reseeds it.

    In a vector env each copy holds its own bank, so UCB statistics are per copy; the trainer
    retrieves in its own process instead, with one bank state for all rollouts.
    """

    def __init__(
        self,
        env: gym.Env,
        bank: Any = None,
        strategy: str = "keyword",
        k: int | None = None,
        budget: int | None = None,
        measure: Callable[[str], int] = len,
        seed: int | None = None,
    ) -> None:
        super().__init__(env)
        from skillbank import STRATEGIES, SkillBank
        from skillbank.bank import DEFAULT_BUDGET

        if strategy not in STRATEGIES:
            raise ValueError(f"PrivilegedSkills(strategy={strategy!r}): expected one of {list(STRATEGIES)}.")
        if bank is None:
            bank = getattr(env.unwrapped, "skill_bank", None)
            if bank is None:
                raise ValueError(
                    f"{type(env.unwrapped).__name__} names no default skill bank; pass bank= (a SkillBank, "
                    "a bundled bank name or a path)."
                )
        self.bank = bank if isinstance(bank, SkillBank) else SkillBank.load(bank)
        self.strategy, self.k, self.measure = strategy, k, measure
        self.budget = DEFAULT_BUDGET if budget is None else budget
        self._rng = np.random.default_rng(seed)
        self._shown: dict[str, Any] | None = None
        self._return = 0.0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        obs, info = self.env.reset(seed=seed, options=options)
        got = self.bank.retrieve(
            info.get("task_type"), info.get("task", ""), self.strategy, self.k, self._rng, self.budget, self.measure
        )
        self._shown = {"ids": list(got.ids), "text": got.text, "task_type": got.task_type, "strategy": got.strategy}
        self._return = 0.0
        return obs, {**info, "skills": dict(self._shown)}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._return += float(reward)
        if (terminated or truncated) and self._shown is not None:
            task_type = self._shown["task_type"] or info.get("task_type")
            self.bank.feedback(self._shown["ids"], self._return, task_type)
            self._shown = None
        return obs, reward, terminated, truncated, info
