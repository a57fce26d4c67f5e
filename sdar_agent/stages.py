"""The stages of a run, and where each step's samples come from.

A `Stage` says everything that differs between the RL stage and the SFT warm start: its folder,
its algorithm and learning rate, the temperature its log-probs are taken at, when it validates, and
its `SampleSource`: rollouts of the policy (`Rollouts`) or the env expert's demonstrations
(`Demonstrations`). The trainer runs either the same way:

    batch = source.next_batch(trainer)      # samples, their scores, and the step's episode metrics
    trainer.update(batch.samples, batch.scores)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from sdar_agent.advantages import trajectory_returns, turn_rewards, turn_scores
from sdar_agent.config import RolloutConfig, TrainConfig
from sdar_agent.objective import ALGORITHMS, Algorithm
from sdar_agent.rollout import RolloutBatch, RolloutSettings, Sample, collect
from sdar_agent.sharding import full_weights
from sdar_agent.tracking import episode_summary
from sdar_agent.workers import EnvPool

logger = logging.getLogger(__name__)


@dataclass
class StepBatch:
    """One step's training samples, the score of each (what advantages are computed from), and metrics."""

    samples: list[Sample]
    scores: torch.Tensor  # (N,) float64
    metrics: dict[str, float] = field(default_factory=dict)


class SampleSource(Protocol):
    """Where a stage's samples come from, step by step."""

    steps: int
    """How many steps the stage runs."""

    def next_batch(self, trainer: Any) -> StepBatch:
        """The samples of the trainer's next step (`trainer.state.step`), scored, with their metrics."""

    def bar_figures(self, metrics: dict[str, float]) -> dict[str, str]:
        """The few figures the progress bar shows after a step."""

    def close(self) -> None:
        """Stop what the source started (env workers)."""


@dataclass(frozen=True)
class Stage:
    """What one stage of a run is: where it writes, what it optimises, and where its samples come from."""

    name: str  # "rl" | "sft": the progress bar's and the log's name for it
    folder: str  # under the run folder ("" is the run folder itself)
    algorithm: Callable[[TrainConfig], Algorithm]
    lr: Callable[[TrainConfig], float]
    temperature: Callable[[TrainConfig], float]
    """The temperature of every log-prob pass: the rollouts' sampling temperature for RL; 1 for SFT,
    which fits the demonstrations' text itself."""
    uses_skills: Callable[[TrainConfig], bool]
    """Whether the stage's samples retrieve skills (the teacher's prompt, or the student's)."""
    source: Callable[[Any], SampleSource]
    validate_first: bool
    """Validate before the first step as well (what the stage buys: before and after)."""
    validate_periodically: bool
    """Validate every `val_every` steps (else only after the last step)."""

    def run_dir(self, cfg: TrainConfig) -> Path:
        return cfg.run_dir / self.folder if self.folder else cfg.run_dir


# ------------------------------------------------------------------------------ RL: rollouts
class Rollouts:
    """RL's samples: each step draws `tasks_per_step` train tasks and plays `group_size` rollouts of each."""

    def __init__(self, trainer: Any) -> None:
        cfg = trainer.cfg
        self.tasks_per_rank = cfg.rollout.tasks_per_step // trainer.acc.num_processes
        self.pool = EnvPool.from_config(cfg.env, cfg.env.split, self.tasks_per_rank * cfg.rollout.group_size)
        self.task_ids = list(self.pool.call("task_ids"))
        self.steps = cfg.steps

    def next_batch(self, trainer: Any) -> StepBatch:
        cfg, acc = trainer.cfg, trainer.acc
        rank = acc.process_index
        chosen = trainer.state.task_rng.choice(len(self.task_ids), size=cfg.rollout.tasks_per_step,
                                               replace=len(self.task_ids) < cfg.rollout.tasks_per_step)
        mine = chosen[rank * self.tasks_per_rank : (rank + 1) * self.tasks_per_rank]
        settings = RolloutSettings.from_config(cfg, trainer.template)
        skills = trainer.skill_use(trainer.algorithm.skills_in_student, "teacher" in trainer.needs)
        start = time.perf_counter()
        with full_weights(trainer.model, acc):
            batch = collect(trainer.agent, self.pool, [self.task_ids[i] for i in mine], cfg.rollout.group_size,
                            settings, traj_offset=rank * self.pool.n, group_offset=rank * self.tasks_per_rank,
                            skills=skills)
        rollout_s = time.perf_counter() - start
        if trainer.skills is not None:  # every process applies every episode's feedback: one shared UCB state
            from accelerate.utils import gather_object

            for shown, score in gather_object([(e.skills, e.score) for e in batch.episodes if e.skills is not None]):
                trainer.skills.feedback(shown, score)
        rewards, scores = score_turns(batch.samples, cfg.rollout)
        metrics = episode_metrics(batch, rewards)
        metrics.update({"perf/rollout_s": rollout_s, "perf/generation_s": batch.generation_s, "perf/env_s": batch.env_s,
                        "perf/generation_tokens_per_s": batch.generated_tokens / max(batch.generation_s, 1e-9)})
        return StepBatch(batch.samples, scores, metrics)

    def bar_figures(self, metrics: dict[str, float]) -> dict[str, str]:
        shown = {"success": f"{metrics.get('episode/success_rate', 0):.2f}",
                 "pg_loss": f"{metrics.get('actor/pg_loss', 0):.3f}"}
        if "sdar/loss" in metrics:
            shown.update(sdar_loss=f"{metrics['sdar/loss']:.3f}", gate=f"{metrics['sdar/gate_mean']:.2f}")
        return shown

    def close(self) -> None:
        self.pool.close()


def score_turns(samples: list[Sample], rollout: RolloutConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's training reward r_t and score (its trajectory's return minus its penalty)."""
    trajs = torch.tensor([s.traj for s in samples], dtype=torch.long)
    rewards = turn_rewards(torch.tensor([s.env_reward for s in samples], dtype=torch.float64),
                           torch.tensor([s.won for s in samples]), win_reward=rollout.win_reward, reward=rollout.reward)
    scores = turn_scores(rewards, torch.tensor([s.valid for s in samples]), trajs,
                         invalid_penalty=rollout.invalid_action_penalty)
    return rewards, scores


def episode_metrics(batch: RolloutBatch, rewards: torch.Tensor) -> dict[str, float]:
    """`episode/` and `rollout/` figures of one step's rollouts, over all processes' episodes."""
    from accelerate.utils import gather_object

    trajs = torch.tensor([s.traj for s in batch.samples], dtype=torch.long)
    returns = dict(zip(trajs.tolist(), trajectory_returns(rewards, trajs).tolist(), strict=True))
    episodes = gather_object(batch.episodes)
    episode_returns = gather_object([returns[e.traj] for e in batch.episodes])
    metrics: dict[str, float] = {"episode/dropped": float(sum(gather_object([batch.dropped])))}
    metrics.update({f"episode/{k}": v for k, v in episode_summary(episodes).items()})
    if episode_returns:
        metrics["episode/return"] = float(np.mean(episode_returns))
    if batch.samples:
        metrics["rollout/response_tokens"] = float(np.mean([len(s.response_ids) for s in batch.samples]))
        metrics["rollout/prompt_tokens"] = float(np.mean([len(s.prompt_ids) for s in batch.samples]))
    return metrics


# ------------------------------------------------------------------------------ SFT: demonstrations
class Demonstrations:
    """The SFT warm start's samples: the env expert's turns, in mini-batches of `sft.batch_size`, `sft.epochs` times."""

    def __init__(self, trainer: Any) -> None:
        from sdar_agent.sft import collect_demonstrations

        cfg = trainer.cfg
        eos = set(trainer.generator.eos_ids())
        self.demos, self.summary = collect_demonstrations(cfg, trainer.tokenizer, trainer.template, eos,
                                                          trainer.skills)
        if trainer.acc.is_main_process:  # every process plays the same episodes; one says so
            won = round(self.summary["sft/expert_success_rate"] * self.summary["sft/episodes"])
            logger.info("collected %d expert turns from %d won of %d episodes", len(self.demos), won,
                             int(self.summary["sft/episodes"]))
        rng = np.random.default_rng(cfg.seed)
        self.order = np.concatenate([rng.permutation(len(self.demos)) for _ in range(cfg.sft.epochs)])
        self.batch_size = cfg.sft.batch_size
        self.steps = math.ceil(len(self.order) / self.batch_size)

    def next_batch(self, trainer: Any) -> StepBatch:
        step, size = trainer.state.step, self.batch_size
        rank, world = trainer.acc.process_index, trainer.acc.num_processes
        chosen = self.order[step * size : (step + 1) * size]
        samples = [self.demos[i] for i in chosen[rank::world]]
        first = dict(self.summary) if step == 0 else {}  # the demonstrations' figures, once
        return StepBatch(samples, torch.zeros(len(samples), dtype=torch.float64), first)

    def bar_figures(self, metrics: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{metrics.get('sft/loss', 0):.3f}"}

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------ the two stages
RL = Stage(
    "rl", "", algorithm=lambda cfg: ALGORITHMS[cfg.algo.name], lr=lambda cfg: cfg.algo.lr,
    temperature=lambda cfg: cfg.rollout.temperature,
    uses_skills=lambda cfg: ALGORITHMS[cfg.algo.name].uses_skills(cfg.algo),
    source=Rollouts, validate_first=False, validate_periodically=True,
)
SFT = Stage(
    "sft", "sft", algorithm=lambda cfg: ALGORITHMS["sft"], lr=lambda cfg: cfg.sft.lr, temperature=lambda cfg: 1.0,
    # the warm start shows the student the skills exactly when its RL stage will (Skill-GRPO)
    uses_skills=lambda cfg: ALGORITHMS[cfg.algo.name].skills_in_student,
    source=Demonstrations, validate_first=True, validate_periodically=False,
)
