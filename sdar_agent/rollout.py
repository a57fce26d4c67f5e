"""Multi-turn rollouts: G copies of each task, batched generation for every active env at once.

Each turn of each trajectory becomes one `Sample` (prompt ids, response ids, group, trajectory,
step, reward, validity). Envs that finish drop out of the batch; a slot whose env fails is dropped
with its whole trajectory (see `workers.EnvPool`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from sdar_agent.prompts import PromptTemplate, chat_ids
from sdar_agent.skills import PRIVILEGED_PREFIX, SkillUse
from sdar_agent.workers import EnvPool, Failure

logger = logging.getLogger(__name__)


@dataclass
class Sample:
    """One turn of one trajectory: what the policy saw and said, and what came of it."""

    prompt_ids: list[int]
    response_ids: list[int]
    group: int  # GRPO group: the rollouts of one task in this batch
    traj: int  # trajectory id, unique within the batch
    step: int
    reward: float  # the env's reward for this step, times win_reward
    valid: bool  # the response followed the <think>/<action> format
    task_id: str
    task_type: str
    task: str = ""
    score: float = 0.0  # the trajectory's return minus the invalid-action penalty (set at the end)
    teacher_prompt_ids: list[int] | None = None  # the same turn's prompt with the skills (SDAR family)


@dataclass
class Episode:
    """One finished trajectory's summary (for metrics and UCB feedback)."""

    traj: int
    group: int
    task_id: str
    task_type: str
    won: bool
    ret: float
    length: int
    valid_turns: int
    admissible_turns: int
    skill_ids: tuple[str, ...] = ()
    skill_type: str | None = None  # the bank's task type the skills were chosen for
    score: float = 0.0  # the env's task score at the end (info["score"], e.g. WebShop's reward)


@dataclass
class RolloutBatch:
    """Everything one `collect` call produced, with its timings."""

    samples: list[Sample]
    episodes: list[Episode]
    dropped: int = 0
    generated_tokens: int = 0
    generation_s: float = 0.0
    env_s: float = 0.0
    prompt_tokens: int = 0


@dataclass
class Sampling:
    """Generation settings for one `collect` call."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    greedy: bool = False


class HFGenerator:
    """Batched `transformers` generation: left padding, KV cache, length-sorted chunks."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int) -> None:
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size

    @torch.no_grad()
    def __call__(self, prompts: Sequence[list[int]], sampling: Sampling) -> list[list[int]]:
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[list[int]] = [[] for _ in prompts]
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                for i, ids in zip(chunk, self._generate([prompts[i] for i in chunk], sampling), strict=True):
                    out[i] = ids
        finally:
            self.model.train(was_training)
        return out

    def _generate(self, prompts: list[list[int]], sampling: Sampling) -> list[list[int]]:
        pad = self.tokenizer.pad_token_id
        width = max(len(p) for p in prompts)
        device = next(self.model.parameters()).device
        input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, p in enumerate(prompts):
            input_ids[row, width - len(p) :] = torch.tensor(p)
            attention[row, width - len(p) :] = 1
        kwargs: dict[str, Any] = {"max_new_tokens": sampling.max_new_tokens, "use_cache": True, "pad_token_id": pad}
        if sampling.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p,
                          top_k=sampling.top_k or None)
        output = self.model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs)
        responses = output[:, width:].tolist()  # (B, T)
        eos = set(_eos_ids(self.model, self.tokenizer))
        return [_cut_at_eos(r, eos, pad) for r in responses]


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids = model.generation_config.eos_token_id if model.generation_config is not None else None
    ids = ids if isinstance(ids, list) else [ids] if ids is not None else []
    return [*ids, tokenizer.eos_token_id]


def _cut_at_eos(tokens: list[int], eos: set[int], pad: int) -> list[int]:
    """The response up to and including its first end-of-sequence token (padding removed)."""
    for j, t in enumerate(tokens):
        if t in eos:
            return tokens[: j + 1]
    while tokens and tokens[-1] == pad:
        tokens = tokens[:-1]
    return tokens


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
    skills: Any = None  # the Retrieval for this trajectory


def collect(
    generate: Callable[[Sequence[list[int]], Sampling], list[list[int]]],
    tokenizer: Any,
    pool: EnvPool,
    template: PromptTemplate,
    task_ids: Sequence[str],
    group_size: int,
    sampling: Sampling,
    *,
    max_turns: int,
    history_length: int,
    max_prompt_tokens: int,
    win_reward: float,
    invalid_penalty: float,
    reward: str = "env",
    traj_offset: int = 0,
    group_offset: int = 0,
    skills: SkillUse | None = None,
) -> RolloutBatch:
    """Play `group_size` rollouts of each task; return every turn as a Sample.

    With `skills`, each trajectory gets skills retrieved for its task at reset: in the student's
    prompt (Skill-GRPO) and/or in a teacher prompt stored with each sample (SDAR family).
    `reward="env"` scores a turn with the env's reward times `win_reward`; `"won"` gives
    `win_reward` on the turn that wins the episode and nothing else (verl-agent's WebShop reward).
    """
    if reward not in ("env", "won"):
        raise ValueError(f"reward={reward!r}: expected 'env' or 'won'.")
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
            t.skills = skills.context.retrieve(t.task_type, t.task)

    for turn in range(max_turns):
        active = [t for t in trajs if t.alive]
        if not active:
            break
        student_skills = skills is not None and skills.in_student
        prompts = [_prompt_ids(tokenizer, template, t, turn, history_length, max_prompt_tokens,
                               skills=t.skills.text if student_skills else "") for t in active]
        start = time.perf_counter()
        responses = generate(prompts, sampling)
        batch.generation_s += time.perf_counter() - start
        batch.generated_tokens += sum(len(r) for r in responses)
        batch.prompt_tokens += sum(len(p) for p in prompts)
        texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
        parsed = [template.parse(text) for text in texts]
        start = time.perf_counter()
        results = pool.step_all({t.slot: p.action for t, p in zip(active, parsed, strict=True)})
        batch.env_s += time.perf_counter() - start
        for t, prompt, response, p in zip(active, prompts, responses, parsed, strict=True):
            teacher = None
            if skills is not None and skills.for_teacher and not isinstance(results[t.slot], Failure):
                teacher = _teacher_prompt_ids(tokenizer, template, t, turn, history_length, max_prompt_tokens,
                                              skills.placement, prompt)
            sample = Sample(prompt, response, t.group, traj_offset + t.slot, turn, 0.0, p.valid, t.task_id,
                            t.task_type, t.task, teacher_prompt_ids=teacher)
            _advance(t, results[t.slot], sample, p.action, win_reward, reward == "won")

    _finish(batch, trajs, traj_offset, invalid_penalty)
    return batch


def _finish(batch: RolloutBatch, trajs: list[_Trajectory], traj_offset: int, invalid_penalty: float) -> None:
    """Score every sample with its trajectory's return and summarise each finished episode."""
    for t in trajs:
        if t.dropped or not t.samples:
            batch.dropped += 1
            continue
        ret = sum(s.reward for s in t.samples)
        for s in t.samples:
            s.score = ret - (0.0 if s.valid else invalid_penalty)
        batch.samples += t.samples
        shown = (tuple(t.skills.ids), t.skills.task_type) if t.skills is not None else ((), None)
        batch.episodes.append(Episode(traj_offset + t.slot, t.group, t.task_id, t.task_type, t.won, ret,
                                      len(t.samples), sum(s.valid for s in t.samples), t.admissible_turns, *shown,
                                      score=t.score))
    if batch.dropped:
        logger.warning("dropped %d of %d trajectories whose env failed", batch.dropped, len(trajs))


def _advance(t: _Trajectory, result: Any, sample: Sample, action: str, win_reward: float, won_only: bool) -> None:
    """Record one turn's sample and move the trajectory to the env's answer (or drop it)."""
    if isinstance(result, Failure):
        t.alive, t.dropped = False, True
        return
    obs, reward, terminated, truncated, info = result
    won_now = bool(info.get("won", False)) and not t.won
    sample.reward = win_reward * (float(won_now) if won_only else float(reward))
    t.score = float(info.get("score", t.score))
    t.samples.append(sample)
    t.admissible_turns += bool(info.get("action_valid", True))
    t.history.append((t.observation, action))
    t.observation, t.admissible = obs, list(info.get("admissible_actions", []))
    t.won = bool(info.get("won", False))
    t.alive = not (terminated or truncated)


def _absorb_reset(t: _Trajectory, result: Any) -> None:
    if isinstance(result, Failure):
        t.alive, t.dropped = False, True
        return
    obs, info = result
    t.observation, t.task, t.task_type = obs, info.get("task", ""), info.get("task_type", "")
    t.admissible = list(info.get("admissible_actions", []))


_warned_truncation = False


def _teacher_prompt_ids(tokenizer: Any, template: PromptTemplate, t: _Trajectory, step: int, history_length: int,
                        max_tokens: int, placement: str, student_prompt: list[int]) -> list[int]:
    """The same turn's prompt with the trajectory's skills, for the teacher (called before `t` moves on)."""
    text = t.skills.text if t.skills is not None else ""
    if not text:
        return student_prompt
    if placement == "prefix":
        return tokenizer(PRIVILEGED_PREFIX.format(skills=text), add_special_tokens=False)["input_ids"] + student_prompt
    extra = len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 16  # the same history as the student
    return _prompt_ids(tokenizer, template, t, step, history_length, max_tokens + extra, skills=text)


def _prompt_ids(tokenizer: Any, template: PromptTemplate, t: _Trajectory, step: int, history_length: int,
                max_tokens: int, skills: str = "") -> list[int]:
    """The turn's prompt ids; older history is left out first when the prompt is too long."""
    global _warned_truncation
    keep = min(history_length, len(t.history))
    while True:
        history = t.history[len(t.history) - keep :] if keep else []
        message = template.render(t.task, t.observation, t.admissible, history, step, skills=skills)
        ids = chat_ids(tokenizer, message)
        if len(ids) <= max_tokens or keep == 0:
            break
        keep -= 1
    if len(ids) > max_tokens:
        if not _warned_truncation:
            logger.warning("a prompt of %d tokens exceeds rollout.max_prompt_tokens=%d; keeping its last tokens",
                           len(ids), max_tokens)
            _warned_truncation = True
        ids = ids[-max_tokens:]
    return ids
