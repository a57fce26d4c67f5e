"""Wrappers over the sdar envs.

`PrivilegedSkills` is SDAR's skill hook for Gymnasium users: at every reset it retrieves skills for
the task through a `skillbank.SkillSelector` and puts them in `info["skills"]`; when the episode
ends it gives the selector the episode's task score (`info["score"]`, in [0, 1]), which is what the
`ucb` strategy learns from. The trainer uses the same selector class, with the same feedback. The
student's observation is untouched: the skills are privileged context for the teacher (or for the
student's prompt in Skill-GRPO), and the caller decides where they go.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym


class PrivilegedSkills(gym.Wrapper):
    """Add retrieved skills to `info["skills"]` at reset; report each episode's task score to the bank.

    ## Information
    `info["skills"]` (reset only): `{"ids": [...], "text": "...", "task_type": <bank type or None>,
    "strategy": "<name>"}`.

    ## Arguments
    - `env`: an sdar env (its `info` gives `task_type`, `task` and `score`).
    - `bank`: a `skillbank.SkillBank`, a bank name or path; default: the env's own bank
      (`env.unwrapped.skill_bank`).
    - `strategy`: "keyword" | "full" | "random" | "ucb".
    - `k`: skills to retrieve (see `SkillBank.retrieve`).
    - `budget`, `measure`: the prompt budget and how it is counted (characters by default).
    - `seed`: seeds the wrapper's RNG for the `random` strategy; `reset(seed=s)` reseeds it.

    In a vector env each copy holds its own bank, so UCB statistics are per copy; the trainer
    retrieves in its own process instead, with one selector for all rollouts.
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
        from skillbank import SkillSelector
        from skillbank.bank import DEFAULT_BUDGET

        if bank is None:
            bank = getattr(env.unwrapped, "skill_bank", None)
            if bank is None:
                raise ValueError(
                    f"{type(env.unwrapped).__name__} names no default skill bank; pass bank= (a SkillBank, "
                    "a bundled bank name or a path)."
                )
        self.selector = SkillSelector(bank, strategy, k, DEFAULT_BUDGET if budget is None else budget, measure, seed)
        self._shown: Any = None

    @property
    def bank(self):
        """The `skillbank.SkillBank` the skills come from."""
        return self.selector.bank

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self.selector.reseed(seed)
        obs, info = self.env.reset(seed=seed, options=options)
        self._shown = self.selector.retrieve(info.get("task_type"), info.get("task", ""))
        shown = {"ids": list(self._shown.ids), "text": self._shown.text, "task_type": self._shown.task_type,
                 "strategy": self._shown.strategy}
        return obs, {**info, "skills": shown}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if (terminated or truncated) and self._shown is not None:
            self.selector.feedback(self._shown, float(info.get("score", 0.0)))
            self._shown = None
        return obs, reward, terminated, truncated, info
