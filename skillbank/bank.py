"""`SkillBank`: a validated bank with retrieval, UCB feedback and checkpointable state."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skillbank import formats, retrieval
from skillbank.schema import BankSpec, SkillBankError, validate

BANKS_DIR = Path(__file__).parent / "banks"
DEFAULT_BUDGET = 4000  # characters, about 1000 tokens
FORMATS = ("auto", "sdar", "skillrl", "sdar-dir")
OFFICIAL = "sdar:"  # `sdar:<env>`: skills/<env>/ of a ZJU-REAL/SDAR checkout, under $SDAR_SKILLS_DIR


def official_folder(source: str) -> Path:
    """The folder of `sdar:<env>` (SDAR's released skills): `$SDAR_SKILLS_DIR/<env>`."""
    root = os.environ.get("SDAR_SKILLS_DIR")
    env = source[len(OFFICIAL):]
    if not root:
        raise FileNotFoundError(
            f"skill bank {source!r} is SDAR's released skill folder skills/{env}/: set $SDAR_SKILLS_DIR to the "
            "skills/ folder of a ZJU-REAL/SDAR checkout (git clone https://github.com/ZJU-REAL/SDAR), or use "
            f"one of the project's banks {bundled_banks()}.")
    folder = Path(root).expanduser() / env
    if not (folder / formats.MAPPING_FILE).is_file():
        raise FileNotFoundError(f"skill bank {source!r}: {folder} has no {formats.MAPPING_FILE}; $SDAR_SKILLS_DIR "
                                "must be the skills/ folder of a ZJU-REAL/SDAR checkout.")
    return folder


def bundled_banks() -> list[str]:
    """Names of the banks shipped with the package (`SkillBank.load(name)` loads one)."""
    return sorted(p.stem for p in BANKS_DIR.glob("*.json"))


class SkillBank:
    """Skills as privileged context: general advice, advice per task type, and common mistakes.

    >>> bank = SkillBank.load("alfworld")
    >>> got = bank.retrieve("pick_heat_then_place_in_recep", strategy="keyword")
    >>> got.task_type, got.ids[:1]
    ('pick_heat_then_place_in_recep', ('gen-admissible',))
    """

    def __init__(self, spec: BankSpec, source: str = "<memory>", ucb_c: float = 1.0) -> None:
        self.spec = spec
        self.source = source
        self.bandit = retrieval.UCBBandit(ucb_c)
        self._keyword_rules = [
            (task_type, re.compile(r"\b(?:" + "|".join(re.escape(k) for k in group.keywords) + r")\b"))
            for task_type, group in spec.task_types.items()
            if group.keywords
        ]

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, source: str | Path, format: str = "auto", ucb_c: float = 1.0) -> SkillBank:
        """Load a bank: a bundled name, a bank file (ours or SkillRL's), an SDAR skill folder, or `sdar:<env>`.

        `sdar:<env>` is SDAR's released folder for an env, found under $SDAR_SKILLS_DIR.
        """
        if format not in FORMATS:
            raise ValueError(f"format={format!r}: expected one of {list(FORMATS)}.")
        path = official_folder(source) if isinstance(source, str) and source.startswith(OFFICIAL) else Path(source)
        if not path.exists() and isinstance(source, str) and (BANKS_DIR / f"{source}.json").is_file():
            path = BANKS_DIR / f"{source}.json"
        if path.is_dir():
            return cls(validate(formats.from_sdar_dir(path, path.name), str(path)), str(path), ucb_c)
        if not path.is_file():
            raise FileNotFoundError(
                f"skill bank {str(source)!r} not found: give a file, an SDAR skill folder, or one of the "
                f"bundled banks {bundled_banks()}."
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise SkillBankError(str(path), [f"not valid JSON: {err}"]) from None
        if format == "skillrl" or (format == "auto" and isinstance(data, dict) and "general_skills" in data):
            data = formats.from_skillrl(data, path.stem, str(path))
        return cls(validate(data, str(path)), str(path), ucb_c)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>", ucb_c: float = 1.0) -> SkillBank:
        return cls(validate(data, source), source, ucb_c)

    def save(self, path: str | Path) -> None:
        """Write the bank in our format (e.g. after importing another one)."""
        Path(path).write_text(json.dumps(self.spec.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    # ------------------------------------------------------------------ retrieval
    def resolve_task_type(self, task_type: str | None, task: str = "") -> str | None:
        """The bank's task type: the explicit one when the bank knows it, else keyword rules on `task`."""
        explicit = self.spec.canonical_type(task_type)
        if explicit is not None:
            return explicit
        text = task.lower()
        for candidate, pattern in self._keyword_rules:
            if pattern.search(text):
                return candidate
        return None

    def retrieve(
        self,
        task_type: str | None = None,
        task: str = "",
        strategy: str = "keyword",
        k: int | None = None,
        rng: Any = None,
        budget: int = DEFAULT_BUDGET,
        measure: Callable[[str], int] = len,
    ) -> retrieval.Retrieval:
        """Choose skills for a task and render them as prompt text within `budget`.

        `strategy` is one of `retrieval.STRATEGIES`; `k` caps the task-type skills (`keyword`) or
        the number of skills (`random`, `ucb`; default 6); `rng` drives `random`; `measure` counts
        the budget (characters by default; pass a tokenizer's length for tokens).
        """
        if strategy not in retrieval.STRATEGIES:
            raise ValueError(f"strategy={strategy!r}: expected one of {list(retrieval.STRATEGIES)}.")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 0):
            raise ValueError(f"k={k!r}: expected an int >= 0 or None.")
        resolved = self.resolve_task_type(task_type, task)
        sections = retrieval.STRATEGIES[strategy](self.spec, resolved, k, rng, self.bandit)
        # Under a tight budget the task's own skills (section 1 when its type is known) go in
        # first, then the general ones, then the rest.
        n = len(sections)
        priority = [1, 0, *range(2, n)] if resolved is not None and n > 1 else list(range(n))
        text, ids = retrieval.render(sections, budget, measure, priority, self.spec.layout)
        return retrieval.Retrieval(tuple(ids), text, resolved, strategy)

    def feedback(self, skill_ids: list[str] | tuple[str, ...], reward: float, task_type: str | None = None) -> None:
        """Report the episode's reward after the skills `skill_ids` were shown (updates UCB)."""
        known = {s.id for s in self.spec.all_skills()}
        unknown = [i for i in skill_ids if i not in known]
        if unknown:
            raise ValueError(f"feedback for unknown skill id(s) {unknown} of bank {self.spec.name!r}.")
        self.bandit.update(self.spec.canonical_type(task_type) or task_type, list(skill_ids), reward)

    # ------------------------------------------------------------------ checkpoint state
    def state_dict(self) -> dict[str, Any]:
        return {"bank": self.spec.name, "ucb": self.bandit.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get("bank") != self.spec.name:
            found = state.get("bank") if isinstance(state, dict) else state
            raise ValueError(f"this state belongs to skill bank {found!r}, not {self.spec.name!r}.")
        self.bandit.load_state_dict(state["ucb"])
