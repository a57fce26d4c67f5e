"""Retrieval strategies and the prompt rendering of retrieved skills.

Every strategy is a function `(spec, task_type, k, rng, bandit) -> list[Section]` chosen by name
from `STRATEGIES`; `render` turns the sections into prompt text within a budget it never exceeds.

- `keyword`: general skills, the task type's skills (at most k), then the common mistakes.
- `full`: every skill in the bank.
- `random`: k skills drawn uniformly without replacement with the caller's RNG.
- `ucb`: a bandit per task type over all the bank's skills; the k arms with the highest
  `mean reward + c * sqrt(ln N / n)` (untried arms first, in bank order), as in the SDAR paper.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from skillbank.schema import BankSpec, Skill

#: (heading, skills) in display order.
Section = tuple[str, list[Skill]]
DEFAULT_K = 6
GENERAL_HEADING = "General principles"
MISTAKES_HEADING = "Common mistakes to avoid"
ANY_TYPE = "*"


@dataclass(frozen=True)
class Retrieval:
    """What a retrieval returns, whatever the strategy."""

    ids: tuple[str, ...]  # the skills in `text`, in display order
    text: str  # prompt text, within the budget
    task_type: str | None  # the bank's task type used (None when the task's type is unknown)
    strategy: str


class UCBBandit:
    """Per task type statistics of the reward that followed each skill."""

    def __init__(self, c: float = 1.0) -> None:
        if not isinstance(c, (int, float)) or c < 0:
            raise ValueError(f"UCB exploration constant c={c!r}: expected a number >= 0.")
        self.c = float(c)
        self.stats: dict[str, dict[str, list[float]]] = {}  # type -> skill id -> [pulls, reward sum]

    def select(self, task_type: str | None, arms: list[Skill], k: int) -> list[Skill]:
        table = self.stats.get(task_type or ANY_TYPE, {})
        total = sum(n for n, _ in table.values())

        def score(arm: Skill) -> float:
            n, reward_sum = table.get(arm.id, (0, 0.0))
            if n == 0:
                return math.inf
            return reward_sum / n + self.c * math.sqrt(math.log(max(total, 1)) / n)

        ranked = sorted(range(len(arms)), key=lambda i: (-score(arms[i]), i))
        return [arms[i] for i in ranked[:k]]

    def update(self, task_type: str | None, skill_ids: list[str], reward: float) -> None:
        table = self.stats.setdefault(task_type or ANY_TYPE, {})
        for skill_id in skill_ids:
            entry = table.setdefault(skill_id, [0, 0.0])
            entry[0] += 1
            entry[1] += float(reward)

    def state_dict(self) -> dict[str, Any]:
        return {"c": self.c, "stats": {t: {i: list(v) for i, v in table.items()} for t, table in self.stats.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            stats = {
                str(t): {str(i): [int(v[0]), float(v[1])] for i, v in table.items()}
                for t, table in state["stats"].items()
            }
            c = float(state["c"])
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            raise ValueError(f"not a UCB bandit state ({type(err).__name__}: {err}); expected the dict "
                             "that SkillBank.state_dict() returned.") from None
        self.c, self.stats = c, stats


# ------------------------------------------------------------------------------ strategies
def _type_heading(task_type: str) -> str:
    return f"Skills for {task_type.replace('_', ' ')} tasks"


def keyword(spec: BankSpec, task_type: str | None, k: int | None, rng, bandit) -> list[Section]:
    """General skills, the task type's skills (at most k), then the common mistakes."""
    typed = list(spec.task_types[task_type].skills)[: k if k is not None else None] if task_type else []
    sections = [(GENERAL_HEADING, list(spec.general))]
    if task_type:
        sections.append((_type_heading(task_type), typed))
    return [*sections, (MISTAKES_HEADING, list(spec.mistakes))]


def full(spec: BankSpec, task_type: str | None, k: int | None, rng, bandit) -> list[Section]:
    """Every skill in the bank."""
    return _group(spec, spec.all_skills(), task_type)


def random_skills(spec: BankSpec, task_type: str | None, k: int | None, rng, bandit) -> list[Section]:
    """Draw k skills (default 6) uniformly without replacement with the caller's RNG."""
    arms = spec.all_skills()
    k = min(DEFAULT_K if k is None else k, len(arms))
    chosen = sorted(_generator(rng).choice(len(arms), size=k, replace=False).tolist())
    return _group(spec, [arms[i] for i in chosen], task_type)


def ucb(spec: BankSpec, task_type: str | None, k: int | None, rng, bandit: UCBBandit) -> list[Section]:
    """The k skills (default 6) with the highest UCB score for the task type."""
    arms = spec.all_skills()
    chosen = {s.id for s in bandit.select(task_type, arms, DEFAULT_K if k is None else k)}
    return _group(spec, [s for s in arms if s.id in chosen], task_type)


STRATEGIES: dict[str, Callable[..., list[Section]]] = {
    "keyword": keyword,
    "full": full,
    "random": random_skills,
    "ucb": ucb,
}


def _group(spec: BankSpec, skills: list[Skill], task_type: str | None) -> list[Section]:
    """Put chosen skills under the heading of the section they come from; the task's type first."""
    chosen = {s.id for s in skills}
    sections = [(GENERAL_HEADING, [s for s in spec.general if s.id in chosen])]
    types = sorted(spec.task_types, key=lambda t: t != task_type)  # stable: the task's type first
    placed: set[str] = {s.id for s in spec.general}
    for t in types:
        group = [s for s in spec.task_types[t].skills if s.id in chosen and s.id not in placed]
        placed.update(s.id for s in group)
        sections.append((_type_heading(t), group))
    sections.append((MISTAKES_HEADING, [s for s in spec.mistakes if s.id in chosen and s.id not in placed]))
    return sections


def _generator(rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, random.Random):
        return np.random.default_rng(rng.getrandbits(64))
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng={rng!r}: expected a numpy Generator, a random.Random, an int seed or None.")


# ------------------------------------------------------------------------------ rendering
def render_skill(skill: Skill) -> str:
    """One skill as a prompt line."""
    return f"- {skill.title}: {skill.principle} (When: {skill.when})"


def render(sections: list[Section], budget: int, measure: Callable[[str], int] = len,
           priority: list[int] | None = None, layout: str = "lines") -> tuple[str, list[str]]:
    """Prompt text for `sections` whose `measure` never exceeds `budget`, and the ids it holds.

    Skills are admitted one by one in `priority` order of sections (default: display order),
    each only if the whole text still fits; the text keeps the display order. `layout` "lines":
    a heading per section and a line per skill; "verbatim": each skill's own text, blocks joined
    by a blank line (the reference SDAR code's teacher context).
    """
    if not isinstance(budget, int) or budget < 0:
        raise ValueError(f"budget={budget!r}: expected an int >= 0 (characters, or tokens with measure=).")
    order = priority if priority is not None else list(range(len(sections)))
    admitted: set[str] = set()

    def text_of(ids: set[str]) -> str:
        if layout == "verbatim":
            shown = dict.fromkeys(s for _, skills in sections for s in skills if s.id in ids)
            return "\n\n".join(s.text or render_skill(s) for s in shown)
        blocks = []
        for heading, skills in sections:
            lines = [render_skill(s) for s in skills if s.id in ids]
            if lines:
                blocks.append("\n".join([f"{heading}:", *lines]))
        return "\n\n".join(blocks)

    for index in order:
        for skill in sections[index][1]:
            trial = admitted | {skill.id}
            if measure(text_of(trial)) <= budget:
                admitted = trial
    ids = [s.id for _, skills in sections for s in skills if s.id in admitted]
    return text_of(admitted), list(dict.fromkeys(ids))
