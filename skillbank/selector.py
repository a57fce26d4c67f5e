"""`SkillSelector`: the one skill hook, shared by the Gymnasium wrapper and the trainer.

A selector is a bank plus one retrieval setting (strategy, k, budget and how it is measured, an
RNG). Per episode it retrieves skills for the task (`retrieve`) and, when the episode is over,
takes its outcome back (`feedback`). The outcome is always the episode's **task score in [0, 1]**
(the env's final `info["score"]`: 1.0 for a won ALFWorld game, WebShop's purchase reward, the
answer's F1 in Search-QA), whoever calls it, so `ucb_c` means the same exploration everywhere.
Its state (UCB statistics and RNG) is checkpointable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from skillbank.bank import DEFAULT_BUDGET, SkillBank
from skillbank.retrieval import STRATEGIES, Retrieval

DETERMINISTIC = ("keyword", "full")  # the same task always gets the same skills: retrieve once
CACHE_SIZE = 4096


class SkillSelector:
    """Retrieve skills per episode from one bank, learn from each episode's task score.

    - `bank`: a `SkillBank`, a bundled bank name, a bank file or an SDAR skill folder.
    - `strategy`: "keyword" | "full" | "random" | "ucb"; `k`: see `SkillBank.retrieve`.
    - `budget`, `measure`: the prompt budget and how text is counted (characters by default; a
      tokenizer's length for tokens).
    - `seed`: seeds the RNG of the `random` strategy.
    - `ucb_c`: the UCB exploration constant when `bank` is loaded here.
    """

    def __init__(self, bank: SkillBank | str, strategy: str = "keyword", k: int | None = None,
                 budget: int = DEFAULT_BUDGET, measure: Callable[[str], int] = len, seed: int | None = None,
                 ucb_c: float = 1.0) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"skill strategy={strategy!r}: expected one of {list(STRATEGIES)}.")
        self.bank = bank if isinstance(bank, SkillBank) else SkillBank.load(bank, ucb_c=ucb_c)
        self.strategy, self.k, self.budget, self.measure = strategy, k, budget, measure
        self.rng = np.random.default_rng(seed)
        self._cache: dict[tuple[str | None, str], Retrieval] = {}

    def reseed(self, seed: int | None) -> None:
        """Restart the RNG (the `random` strategy's draws) from `seed`."""
        self.rng = np.random.default_rng(seed)

    def retrieve(self, task_type: str | None, task: str = "") -> Retrieval:
        """Skills for one episode of a task (its explicit `task_type`, and its text for keyword rules)."""
        key = (task_type, task)
        if self.strategy in DETERMINISTIC and key in self._cache:
            return self._cache[key]
        got = self.bank.retrieve(task_type, task, strategy=self.strategy, k=self.k, rng=self.rng,
                                 budget=self.budget, measure=self.measure)
        if self.strategy in DETERMINISTIC and len(self._cache) < CACHE_SIZE:
            self._cache[key] = got
        return got

    def feedback(self, shown: Retrieval, score: float) -> None:
        """The episode that was shown `shown` ended with task score `score` (in [0, 1])."""
        if shown.ids:
            self.bank.feedback(shown.ids, float(score), shown.task_type)

    def state_dict(self) -> dict[str, Any]:
        return {"bank": self.bank.state_dict(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bank.load_state_dict(state["bank"])
        self.rng.bit_generator.state = state["rng"]
