"""A complete small sdar environment: guess a secret number from "higher" / "lower" hints.

This file, `guess_skills.json` and `play.py` are the documented way to add an environment:
1. subclass `sdar_envs.TextEnv`: declare `splits`, `skill_bank` and `prompt_template` (how the
   agent is asked to answer and how its answer is read: `sdar_envs.answers.PromptTemplate`; the
   generic `<think>` / `<action>` one when left out), list the tasks of a split
   (`self.set_tasks(task_ids, task_types)`), and implement `_start` (first observation) and `_act`
   (one action);
2. optionally give it an expert (`expert_step`: the next action and a thought; the SFT stage
   learns from it) - here, bisection;
3. write its skill bank (`guess_skills.json`, format in `skillbank.schema`);
4. `register()` it under an id with a string entry point and a step limit.
"""

from __future__ import annotations

import re
from pathlib import Path

from gymnasium.envs.registration import register as gym_register
from gymnasium.envs.registration import registry

from sdar_envs import TextEnv
from sdar_envs.answers import PromptTemplate
from sdar_envs.core import ExpertStep, TaskStart, Transition

ENV_ID = "examples/GuessNumber-v0"
RANGES = {"small_range": 10, "large_range": 100}
_GUESS = re.compile(r"^\s*guess\[\s*(-?\d+)\s*\]\s*$", re.I)


class GuessNumberEnv(TextEnv):
    """Guess a secret integer in [1, N] with "higher" / "lower" hints.

    ## Description
    Two task types: `small_range` (N = 10) and `large_range` (N = 100); each split holds a fixed
    list of secrets (train and test are disjoint).

    ## Action Space
    `guess[n]` with an integer n. Anything else is invalid: the env says so, `action_valid=False`.

    ## Observation Space
    "Guess the secret number between 1 and 100.", then "Higher.", "Lower." or "Correct!".

    ## Rewards
    1.0 on the correct guess, 0 otherwise.

    ## Episode End
    Terminated on the correct guess; truncated by the registered step limit (12).

    ## Information
    The contract keys: `task`, `task_id` ("large_range-042"), `task_type`, `admissible_actions`
    (empty: the space is open), `won`, `score` (1.0 once won), `action_valid`, `step`.
    """

    splits = ("train", "test")
    skill_bank = str(Path(__file__).with_name("guess_skills.json"))
    prompt_template = PromptTemplate(
        "guess_number",
        "You are an agent guessing a secret number from higher / lower hints by typing actions.",
        "First reason about what to do next inside <think> </think>. Then write exactly one action "
        "inside <action> </action>: guess[n] with an integer n.",
    )

    def __init__(self, split: str = "train", render_mode: str | None = None) -> None:
        super().__init__(split=split, render_mode=render_mode)
        offset = 0 if split == "train" else 1  # disjoint splits: train from 1, test from 2, same stride
        self._tasks = [
            (f"{kind}-{secret:03d}", kind, secret)
            for kind, top in RANGES.items()
            for secret in range(1 + offset, top + 1, max(2, top // 10))
        ]
        self.set_tasks([task_id for task_id, _, _ in self._tasks], [kind for _, kind, _ in self._tasks])

    def _start(self, index: int) -> TaskStart:
        _, kind, self._secret = self._tasks[index]
        self._low, self._high = 1, RANGES[kind]  # what the hints so far allow
        task = f"Guess the secret number between 1 and {RANGES[kind]}."
        return TaskStart(observation=task, task=task, task_type=kind)

    def expert_step(self) -> ExpertStep:
        """Bisection: guess the middle of what the hints still allow."""
        middle = (self._low + self._high) // 2
        thought = self.thought_rng().choice([f"It is between {self._low} and {self._high}; I try the middle.",
                                             f"{middle} halves what is left."])
        return ExpertStep(f"guess[{middle}]", thought)

    def _act(self, action: str) -> Transition:
        match = _GUESS.match(action)
        if match is None:
            return Transition("Invalid action: answer as guess[n] with an integer n.", 0.0, False, False, 0.0, False)
        guess = int(match.group(1))
        if guess < self._secret:
            self._low = max(self._low, guess + 1)
        elif guess > self._secret:
            self._high = min(self._high, guess - 1)
        won = guess == self._secret
        feedback = "Correct!" if won else ("Higher." if guess < self._secret else "Lower.")
        return Transition(feedback, float(won), won, won, float(won), True)


def register() -> None:
    """Register `examples/GuessNumber-v0` (idempotent)."""
    if ENV_ID not in registry:
        gym_register(id=ENV_ID, entry_point=f"{__name__}:GuessNumberEnv", max_episode_steps=12)
