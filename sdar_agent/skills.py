"""The trainer's side of the skill hook: retrieval per trajectory, prompts with skills, UCB feedback.

Skills are retrieved once per trajectory at reset (from the env's explicit `task_type`), shown to
the teacher (SDAR family) or to the student (Skill-GRPO), and after the episode its return goes
back to the bank, which is what the `ucb` strategy learns from. The bank's state is saved with
training checkpoints.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from sdar_agent.config import SkillsConfig
from skillbank import Retrieval, SkillBank

PRIVILEGED_PREFIX = "[Privileged Skill Information]\n{skills}\n\n"


class SkillContext:
    """A skill bank with the run's retrieval settings; its state is checkpointable."""

    def __init__(self, cfg: SkillsConfig, default_bank: str | None, tokenizer: Any, seed: int) -> None:
        source = cfg.bank or default_bank
        if not source:
            raise ValueError("skills.bank is empty and the env names no default bank; set skills.bank=<bank>.")
        self.cfg = cfg
        self.bank = SkillBank.load(source, ucb_c=cfg.ucb_c)
        self.rng = np.random.default_rng(seed)
        self._tokenizer = tokenizer

    def _measure(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def retrieve(self, task_type: str, task: str) -> Retrieval:
        if self.cfg.strategy in ("keyword", "full"):  # deterministic: retrieve once per task
            return self._cached(task_type, task)
        return self._retrieve(task_type, task)

    @functools.lru_cache(maxsize=4096)  # noqa: B019  (one context per run; bounded)
    def _cached(self, task_type: str, task: str) -> Retrieval:
        return self._retrieve(task_type, task)

    def _retrieve(self, task_type: str, task: str) -> Retrieval:
        return self.bank.retrieve(task_type, task, strategy=self.cfg.strategy, k=self.cfg.k or None, rng=self.rng,
                                  budget=self.cfg.budget_tokens, measure=self._measure)

    def feedback(self, records: list[tuple[list[str], float, str | None]]) -> None:
        """(skill ids, episode return, task type) for each finished episode."""
        for ids, reward, task_type in records:
            if ids:
                self.bank.feedback(ids, reward, task_type)

    def state_dict(self) -> dict[str, Any]:
        return {"bank": self.bank.state_dict(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bank.load_state_dict(state["bank"])
        self.rng.bit_generator.state = state["rng"]


@dataclass(frozen=True)
class SkillUse:
    """How a rollout uses skills: who sees them and where they go."""

    context: SkillContext
    in_student: bool  # Skill-GRPO: the student's own prompt holds the skills
    for_teacher: bool  # SDAR family: build the teacher's prompt too
    placement: str  # "user_message" | "prefix"
