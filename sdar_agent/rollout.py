"""Multi-turn rollouts: G copies of each task, batched generation for every active env at once.

Each turn of each trajectory becomes one `Sample` (prompt ids, response ids, group, trajectory,
step) with what the env said of it: its raw reward, whether it won the episode, whether the
response was well formed. Scoring those turns for training (`win_reward`, the reward mode, the
invalid-action penalty) happens afterwards, in `advantages.turn_scores`. Envs that finish drop
out of the batch; a slot whose env fails is dropped with its whole trajectory (see
`workers.EnvPool`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sdar_agent.generation import Generator, Sampling
from sdar_agent.prompts import PromptTemplate, teacher_prompt_ids, turn_prompt_ids
from sdar_agent.workers import EnvPool, Failure
from skillbank import Retrieval, SkillSelector

logger = logging.getLogger(__name__)


@dataclass
class Sample:
    """One turn of one trajectory: what the policy saw and said, and what the env made of it."""

    prompt_ids: list[int]
    response_ids: list[int]
    group: int  # GRPO group: the rollouts of one task in this batch
    traj: int  # trajectory id, unique within the batch
    step: int
    task_id: str
    task_type: str
    valid: bool  # the response followed the template's answer format
    env_reward: float = 0.0  # the env's raw reward for this step
    won: bool = False  # this step won the episode
    teacher_prompt_ids: list[int] | None = None  # the same turn's prompt with the skills (SDAR family)


@dataclass
class Episode:
    """One finished trajectory's summary (for metrics and skill feedback)."""

    traj: int
    group: int
    task_id: str
    task_type: str
    won: bool
    score: float  # the env's final task score (info["score"]: 1.0 won in ALFWorld, WebShop's reward, F1)
    length: int
    valid_turns: int
    admissible_turns: int
    skills: Retrieval | None = None  # what the trajectory was shown, for the selector's feedback


@dataclass
class RolloutBatch:
    """Everything one `collect` call produced, with its timings."""

    samples: list[Sample]
    episodes: list[Episode]
    dropped: int = 0
    generated_tokens: int = 0
    generation_s: float = 0.0
    env_s: float = 0.0


@dataclass(frozen=True)
class SkillUse:
    """How a rollout uses skills: who sees them and where they go."""

    selector: SkillSelector
    in_student: bool  # Skill-GRPO: the student's own prompt holds the skills
    for_teacher: bool  # SDAR family: build the teacher's prompt too
    placement: str  # "user_message" | "prefix"


def skill_selector(cfg: Any, tokenizer: Any) -> SkillSelector:
    """The run's skill selector: `skills.bank` (else the env's own bank), strategy, k and token budget."""
    from sdar_agent.workers import env_class

    s = cfg.skills
    return SkillSelector(s.bank or env_class(cfg.env.id).skill_bank, s.strategy, s.k or None, s.budget_tokens,
                         lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]), cfg.seed, s.ucb_c)


@dataclass
class _Trajectory:
    slot: int
    group: int
    task_id: str
    task_type: str = ""
    task: str = ""
    observation: str = ""
    admissible: list[str] = field(default_factory=list)
    history: list[tuple[str, str]] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    alive: bool = True
    dropped: bool = False
    won: bool = False
    score: float = 0.0
    admissible_turns: int = 0
    skills: Retrieval | None = None


@dataclass(frozen=True)
class Agent:
    """What plays a turn: a generation backend, its tokenizer, and the env's prompt template."""

    generate: Generator
    tokenizer: Any
    template: PromptTemplate


@dataclass(frozen=True)
class RolloutSettings:
    """How episodes are played: sampling, the turn limit, and how each turn's prompt is built."""

    sampling: Sampling
    max_turns: int
    history_length: int  # past (observation, action) turns shown in the prompt
    max_prompt_tokens: int

    @classmethod
    def from_config(cls, cfg: Any, template: PromptTemplate, temperature: float | None = None) -> RolloutSettings:
        """A `TrainConfig`'s rollout settings; `temperature` overrides the sampling's (0 = greedy: validation)."""
        return cls(Sampling.from_config(cfg.rollout, temperature, template.answer_ends), cfg.env.max_turns,
                   cfg.rollout.history_length, cfg.rollout.max_prompt_tokens)


def collect(
    agent: Agent,
    pool: EnvPool,
    task_ids: Sequence[str],
    group_size: int,
    settings: RolloutSettings,
    *,
    traj_offset: int = 0,
    group_offset: int = 0,
    skills: SkillUse | None = None,
    on_finished: Callable[[int], None] | None = None,
) -> RolloutBatch:
    """Play `group_size` rollouts of each task; return every turn as a Sample.

    With `skills`, each trajectory gets skills retrieved for its task at reset: in the student's
    prompt (Skill-GRPO) and/or in a teacher prompt stored with each sample (SDAR family).
    `on_finished(n)` hears, after every turn, how many more episodes have ended (a progress line).
    """
    tokenizer, template = agent.tokenizer, agent.template
    max_tokens, history_length = settings.max_prompt_tokens, settings.history_length
    n = len(task_ids) * group_size
    if n > pool.n:
        raise ValueError(f"{n} rollouts need {n} env slots; the pool has {pool.n}.")
    trajs = [_Trajectory(i, group_offset + i // group_size, task_ids[i // group_size]) for i in range(n)]
    batch = RolloutBatch([], [])
    start = time.perf_counter()
    resets = pool.reset_all({t.slot: {"options": {"task_id": t.task_id}} for t in trajs})
    batch.env_s += time.perf_counter() - start
    for t in trajs:
        _absorb_reset(t, resets[t.slot])
        if skills is not None and t.alive:
            t.skills = skills.selector.retrieve(t.task_type, t.task)
    student_skills = skills is not None and skills.in_student
    if on_finished is not None:
        on_finished(sum(not t.alive for t in trajs))  # envs that failed to reset

    for turn in range(settings.max_turns):
        active = [t for t in trajs if t.alive]
        if not active:
            break
        prompts = [_prompt(tokenizer, template, t, turn, history_length, max_tokens,
                           t.skills.text if student_skills and t.skills else "") for t in active]
        start = time.perf_counter()
        responses = agent.generate(prompts, settings.sampling)
        batch.generation_s += time.perf_counter() - start
        batch.generated_tokens += sum(len(r) for r in responses)
        texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
        parsed = [template.parse(text) for text in texts]
        start = time.perf_counter()
        results = pool.step_all({t.slot: p.action for t, p in zip(active, parsed, strict=True)})
        batch.env_s += time.perf_counter() - start
        for t, prompt, response, p in zip(active, prompts, responses, parsed, strict=True):
            teacher = None
            if skills is not None and skills.for_teacher and not isinstance(results[t.slot], Failure):
                teacher = _teacher_prompt(tokenizer, template, t, turn, history_length, max_tokens,
                                          skills.placement, prompt)
            sample = Sample(prompt, response, t.group, traj_offset + t.slot, turn, t.task_id, t.task_type, p.valid,
                            teacher_prompt_ids=teacher)
            _advance(t, results[t.slot], sample, p.action)
        if on_finished is not None:
            on_finished(sum(not t.alive for t in active))

    if on_finished is not None:
        on_finished(sum(t.alive for t in trajs))  # the turn limit ends the rest
    _finish(batch, trajs, traj_offset)
    return batch


def _finish(batch: RolloutBatch, trajs: list[_Trajectory], traj_offset: int) -> None:
    """Keep every finished trajectory's samples and summarise its episode."""
    for t in trajs:
        if t.dropped or not t.samples:
            batch.dropped += 1
            continue
        batch.samples += t.samples
        batch.episodes.append(Episode(traj_offset + t.slot, t.group, t.task_id, t.task_type, t.won, t.score,
                                      len(t.samples), sum(s.valid for s in t.samples), t.admissible_turns, t.skills))
    if batch.dropped:
        logger.warning("dropped %d of %d trajectories whose env failed", batch.dropped, len(trajs))


def _advance(t: _Trajectory, result: Any, sample: Sample, action: str) -> None:
    """Record one turn's sample and move the trajectory to the env's answer (or drop it)."""
    if isinstance(result, Failure):
        t.alive, t.dropped = False, True
        return
    obs, reward, terminated, truncated, info = result
    won = bool(info.get("won", False))
    sample.env_reward, sample.won = float(reward), won and not t.won
    t.score = float(info.get("score", t.score))
    t.samples.append(sample)
    t.admissible_turns += bool(info.get("action_valid", True))
    t.history.append((t.observation, action))
    t.observation, t.admissible = obs, list(info.get("admissible_actions", []))
    t.won = won
    t.alive = not (terminated or truncated)


def _absorb_reset(t: _Trajectory, result: Any) -> None:
    if isinstance(result, Failure):
        t.alive, t.dropped = False, True
        return
    obs, info = result
    t.observation, t.task, t.task_type = obs, info.get("task", ""), info.get("task_type", "")
    t.admissible = list(info.get("admissible_actions", []))


def _prompt(tokenizer: Any, template: PromptTemplate, t: _Trajectory, step: int, history_length: int,
            max_tokens: int, skills: str = "") -> list[int]:
    return turn_prompt_ids(tokenizer, template, t.task, t.observation, t.admissible, t.history, step,
                           history_length, max_tokens, skills=skills)


def _teacher_prompt(tokenizer: Any, template: PromptTemplate, t: _Trajectory, step: int, history_length: int,
                    max_tokens: int, placement: str, student_prompt: list[int]) -> list[int]:
    """The same turn's prompt with the trajectory's skills, for the teacher (called before `t` moves on)."""
    return teacher_prompt_ids(tokenizer, template, t.task, t.observation, t.admissible, t.history, step,
                              history_length, max_tokens, t.skills.text if t.skills is not None else "", placement,
                              student_prompt)
