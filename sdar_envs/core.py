"""The contract every sdar environment keeps (the README's "Use an environment").

`TextEnv` is the base class of all benchmarks. A subclass says which tasks a split holds
(`set_tasks(task_ids, task_types)`), how to start one (`_start`) and how to apply an action (`_act`);
the base class does everything the contract asks of every env alike:

- `reset(seed=, options={"task_id" | "task_index": ...})` selects the task (GRPO plays the same
  task in G envs); with no task option the task is drawn from `self.np_random`, so a seed fixes it.
- every `reset` and `step` returns an `info` dict with exactly the keys in `INFO_KEYS`.
- `render_mode="ansi"` renders the text transcript of the episode.
- `expert_step()` returns the next action of the env's expert with a short thought explaining it
  (an `ExpertStep`), or None where the env has no expert: the demonstrations of the SFT stage. An
  expert shows only what a student could know from the episode so far; where it cannot (no
  grounded way to win this task), it raises `NoDemonstration` and the task gets no demonstration.

Time limits are not counted here: registration's `max_episode_steps` adds gymnasium's
`TimeLimit`, which truncates the episode.
"""

from __future__ import annotations

import random
import string
import zlib
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
from gymnasium import spaces

from sdar_envs.answers import GENERIC, PromptTemplate

#: The `info` keys of every env, on every reset and step, and what they mean.
INFO_KEYS: dict[str, str] = {
    "task": "the task's instruction text",
    "task_id": "a stable id of the task; pass it back as reset(options={'task_id': ...})",
    "task_type": "the task's category, the key skill banks use (explicit, never parsed from text)",
    "admissible_actions": "list[str] of actions the env accepts now (empty where the space is open)",
    "won": "bool, the task was completed successfully",
    "score": "float in [0, 1], the benchmark's task score",
    "action_valid": "bool, the last action was well formed and accepted (True after reset)",
    "step": "int, actions taken so far in this episode",
}

TASK_OPTIONS = ("task_id", "task_index")

MAX_OBSERVATION_CHARS = 1 << 20
MAX_ACTION_CHARS = 1 << 16


class TextSpace(spaces.Text):
    """A `gymnasium.spaces.Text` that holds any Python string up to `max_length` characters.

    Gymnasium's `Text` only contains strings over a fixed character set; benchmark text (product
    pages, Wikipedia passages, model output) is arbitrary Unicode. Samples are drawn from the
    printable ASCII characters.
    """

    def __init__(self, max_length: int, *, min_length: int = 0, seed: int | None = None) -> None:
        super().__init__(max_length, min_length=min_length, charset=string.printable, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"TextSpace({self.min_length}, {self.max_length})"


@dataclass
class TaskStart:
    """What a subclass's `_start` returns: the first observation and the task's description."""

    observation: str
    task: str
    task_type: str
    admissible_actions: list[str] = field(default_factory=list)


class NoDemonstration(Exception):
    """The expert has no grounded demonstration of the current task (the SFT stage skips the task)."""


@dataclass(frozen=True)
class ExpertStep:
    """The expert's next action in the current state, and a short thought (<= 30 tokens) that explains it."""

    action: str
    thought: str


@dataclass
class Transition:
    """What a subclass's `_act` returns for one action."""

    observation: str
    reward: float
    terminated: bool
    won: bool
    score: float
    action_valid: bool
    admissible_actions: list[str] = field(default_factory=list)


NOT_TEXT = "Invalid action: it is not valid text"
"""What an env answers to an action that cannot be encoded as UTF-8 (a lone surrogate)."""
EPISODE_OVER = "The episode is over; reset() starts another."
"""What an env answers to a step after its episode terminated."""


class TextEnv(gym.Env[str, str]):
    """Base class of the text benchmarks: string observations and actions, task selection, info.

    Subclasses set `splits`, declare their tasks with `set_tasks` and implement `_start` and `_act`.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}
    splits: tuple[str, ...] = ("train", "test")
    #: The env's default skill bank: a bundled bank name or a path (see `sdar_envs.wrappers`).
    skill_bank: str | None = None
    #: How the agent is asked to answer and how its answer is read (`sdar_envs.answers`).
    prompt_template: PromptTemplate = GENERIC

    @classmethod
    def same_tasks_in_every_split(cls, kwargs: dict[str, Any]) -> str:
        """Why the env made with `kwargs` plays the same tasks whatever its split ("" when its splits differ).

        The trainer refuses to validate on such an env: its held-out figures would be training ones.
        """
        return ""

    def __init__(self, split: str = "train", render_mode: str | None = None) -> None:
        if split not in self.splits:
            raise ValueError(
                f"{type(self).__name__}: unknown split {split!r}; expected one of {list(self.splits)}."
            )
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"{type(self).__name__}: render_mode={render_mode!r} is not supported; "
                f"use one of {self.metadata['render_modes']} or None."
            )
        self.split = split
        self.render_mode = render_mode
        self.observation_space = TextSpace(MAX_OBSERVATION_CHARS)
        self.action_space = TextSpace(MAX_ACTION_CHARS)
        self._task_ids: list[str] = []
        self._task_types: list[str] = []
        self._task_index: int | None = None
        self._task: TaskStart | None = None
        self._steps = 0
        self._won = False
        self._score = 0.0
        self._ended: tuple[bool, bool] | None = None
        self._last_observation, self._last_admissible = "", []
        self._transcript: list[str] = []

    # ------------------------------------------------------------------ subclass interface
    def set_tasks(self, task_ids: Sequence[str], task_types: Sequence[str]) -> None:
        """Declare the split's tasks: unique ids in a fixed order, and each one's task type.

        A subclass calls this in `__init__` (or overrides `task_ids` / `task_types` instead).
        """
        if len(task_ids) != len(task_types):
            raise ValueError(f"{type(self).__name__}: {len(task_ids)} task ids but {len(task_types)} task types.")
        if len(set(task_ids)) != len(task_ids):
            raise ValueError(f"{type(self).__name__}: task ids must be unique within a split.")
        self._task_ids, self._task_types = list(task_ids), list(task_types)
        self.__dict__.pop("_id_to_index", None)

    @property
    def task_ids(self) -> Sequence[str]:
        """The ids of the split's tasks, in a fixed order (`task_index` indexes this list)."""
        return self._task_ids

    @property
    def task_types(self) -> Sequence[str]:
        """The task type of each task in `task_ids`, in the same order."""
        return self._task_types

    @abstractmethod
    def _start(self, index: int) -> TaskStart:
        """Start task number `index` from its initial state."""

    @abstractmethod
    def _act(self, action: str) -> Transition:
        """Apply one action of the current episode. Never raises on a bad action."""

    def expert_step(self) -> ExpertStep | None:
        """The expert's next action and the thought behind it, in the current state; None: no expert.

        Raises `NoDemonstration` where the expert cannot win this task from what the episode shows.

        Thoughts are short, true to the state, and phrased a few ways, chosen by `thought_rng` (a
        function of the task and the step: the same episode gives the same demonstration).
        """
        return None

    def thought_rng(self) -> random.Random:
        """The RNG that picks a thought's phrasing: seeded by the task id and the step, nothing else."""
        return random.Random(zlib.crc32(f"{self.current_task_id}|{self._steps}".encode()))

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        index = self._select_task(options)
        self._task_index = index
        self._task = self._start(index)
        self._steps, self._won, self._score = 0, False, 0.0
        self._ended: tuple[bool, bool] | None = None  # (terminated, truncated) once the episode has ended
        self._last_observation, self._last_admissible = self._task.observation, self._task.admissible_actions
        self._transcript = [self._task.observation]
        info = self._info(self._task.admissible_actions, action_valid=True)
        return self._task.observation, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._task is None:
            raise RuntimeError(f"{type(self).__name__}.step() called before reset().")
        if not isinstance(action, str):
            raise TypeError(
                f"{type(self).__name__}.step() takes the action as a str, got {type(action).__name__}: "
                f"{action!r}."
            )
        if self._ended is not None:  # nothing more to earn: reward 0, the action invalid, the counter stopped
            info = self._info([], action_valid=False)
            return (f"{EPISODE_OVER}\n\n{self._last_observation}", 0.0, *self._ended, info)
        try:
            action.encode("utf-8")
        except UnicodeEncodeError as err:  # a lone surrogate: no engine, server or index can take it
            outcome = Transition(f"{NOT_TEXT} ({err.reason} at character {err.start})\n\n{self._last_observation}",
                                 0.0, False, self._won, self._score, False, list(self._last_admissible))
        else:
            outcome = self._act(action)
        self._steps += 1
        self._won = self._won or outcome.won
        self._score = outcome.score
        if not outcome.observation.startswith(NOT_TEXT):  # the state it reports back to, for the next such answer
            self._last_observation, self._last_admissible = outcome.observation, outcome.admissible_actions
        self._transcript += [f"> {action}", outcome.observation]
        if outcome.terminated:
            self._ended = (True, False)
        info = self._info(outcome.admissible_actions, action_valid=outcome.action_valid)
        return outcome.observation, float(outcome.reward), outcome.terminated, False, info

    def render(self) -> str | None:
        if self.render_mode is None:
            gym.logger.warn(
                f"{type(self).__name__}.render() was called without a render_mode; "
                "make the env with render_mode='ansi'."
            )
            return None
        return "\n".join(self._transcript)

    # ------------------------------------------------------------------ helpers
    @property
    def num_tasks(self) -> int:
        return len(self.task_ids)

    @property
    def current_task_id(self) -> str | None:
        return None if self._task_index is None else self.task_ids[self._task_index]

    def _select_task(self, options: dict[str, Any] | None) -> int:
        n = self.num_tasks
        if n == 0:
            raise RuntimeError(f"{type(self).__name__}(split={self.split!r}) holds no tasks.")
        options = dict(options or {})
        unknown = sorted(set(options) - set(TASK_OPTIONS))
        if unknown:
            raise ValueError(
                f"{type(self).__name__}.reset(): unknown option(s) {unknown}; "
                f"the options are {list(TASK_OPTIONS)}."
            )
        if "task_id" in options and "task_index" in options:
            raise ValueError("reset(options=...) takes 'task_id' or 'task_index', not both.")
        if "task_id" in options:
            return self._index_of(options["task_id"])
        if "task_index" in options:
            index = options["task_index"]
            if isinstance(index, bool) or not isinstance(index, int) or not -n <= index < n:
                raise ValueError(
                    f"reset(options={{'task_index': {index!r}}}): expected an int in [0, {n}) "
                    f"for split {self.split!r}."
                )
            return index % n
        return int(self.np_random.integers(n))

    def _index_of(self, task_id: str) -> int:
        if not hasattr(self, "_id_to_index"):
            self._id_to_index = {tid: i for i, tid in enumerate(self.task_ids)}
        try:
            return self._id_to_index[task_id]
        except (KeyError, TypeError):
            raise ValueError(
                f"reset(options={{'task_id': {task_id!r}}}): no such task in split {self.split!r} "
                f"({self.num_tasks} tasks; env.unwrapped.task_ids lists them)."
            ) from None

    def _info(self, admissible: list[str], *, action_valid: bool) -> dict[str, Any]:
        task = self._task
        assert task is not None and self._task_index is not None
        return {
            "task": task.task,
            "task_id": self.task_ids[self._task_index],
            "task_type": task.task_type,
            "admissible_actions": list(admissible),
            "won": self._won,
            "score": float(self._score),
            "action_valid": bool(action_valid),
            "step": self._steps,
        }
