"""The SFT warm start's data: the env expert's episodes turned into demonstrations.

    python -m sdar_agent.sft demo                       # only the warm start of a preset (its `sft:` section)
    python -m sdar_agent.train demo                     # the warm start, then RL from it (when `sft.episodes` > 0)

`collect_demonstrations` plays `sft.episodes` episodes of the train split with the env's expert
(`env.unwrapped.expert_step()`: an action and a short thought) and turns every turn into a sample
exactly as a rollout would: the same template, history window and (for Skill-GRPO) skills in the
prompt; the response is the template's answer format with the expert's thought and action, ended
by the chat template's end-of-turn token. The loss is on those response tokens only (the `sft`
term of `objective.py`). Training runs on the RL trainer's loop (`Trainer(cfg, stages.SFT)`:
the same accelerate loop, checkpoints, resume, metrics, curves and progress bar) in
`runs/<name>/sft/`, validates before and after on the RL stage's held-out tasks with its sampling,
and writes `runs/<name>/sft/final/`, an HF model folder usable as `model.name=`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from sdar_agent.config import ConfigError, TrainConfig
from sdar_agent.prompts import PromptTemplate, chat_ids, teacher_prompt_ids, turn_prompt_ids
from sdar_agent.rollout import Sample
from sdar_agent.workers import make_env
from sdar_envs.core import NoDemonstration
from skillbank import SkillSelector

log = logging.getLogger(__name__)


def answer_ids(tokenizer: Any, answer: str, eos_ids: set[int]) -> list[int]:
    """The answer's token ids as the chat template writes an assistant turn, up to its end-of-turn token.

    (Special tokens separate the turns, so the user message does not change them: a short one is used.)
    """
    user = "Answer."
    prompt = chat_ids(tokenizer, user)
    full = tokenizer.apply_chat_template([{"role": "user", "content": user},
                                          {"role": "assistant", "content": answer}], tokenize=False)
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    if ids[: len(prompt)] == prompt and any(t in eos_ids for t in ids[len(prompt):]):
        response = ids[len(prompt):]
        end = next(i for i, t in enumerate(response) if t in eos_ids)
        return response[: end + 1]
    # a template that rewrites earlier turns: the answer's own tokens and the end-of-sequence token
    return tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def collect_demonstrations(cfg: TrainConfig, tokenizer: Any, template: PromptTemplate, eos_ids: set[int],
                           skills: SkillSelector | None = None,
                           teacher: SkillSelector | None = None) -> tuple[list[Sample], dict[str, float]]:
    """Expert episodes on `cfg.env.split` as turn samples, and their summary (episodes, wins, turns).

    Episodes are drawn with `cfg.seed` from `cfg.env.split` (the train split for SFT), so the same
    config gives the same demonstrations. Only won episodes are kept; episodes whose task the
    expert cannot show grounded (`NoDemonstration`) are skipped and counted. `skills` go into the
    student's prompt (Skill-GRPO's warm start); with `teacher`, each sample also holds the
    teacher's prompt with that selector's skills (placed as `skills.placement` says).
    """
    env = make_env(cfg.env.id, {**cfg.env.kwargs, "split": cfg.env.split}, demo_turns(cfg))
    try:
        task_ids = list(env.unwrapped.task_ids)
        rng = np.random.default_rng(cfg.seed)
        n = cfg.sft.episodes
        chosen = rng.choice(len(task_ids), size=n, replace=n > len(task_ids))
        samples: list[Sample] = []
        wins = skipped = 0
        for traj, index in enumerate(chosen):
            try:
                episode = _demonstrate(env, task_ids[int(index)], traj, cfg, tokenizer, template, eos_ids, skills,
                                       rng, teacher)
            except NoDemonstration:
                skipped += 1
                continue
            if episode:
                wins += 1
                samples += episode
    finally:
        env.close()
    if skipped:
        log.info("sft: %d of %d episodes skipped: the expert of %s has no grounded demonstration of their task.",
                 skipped, n, cfg.env.id)
    if not samples:
        raise RuntimeError(f"the expert of {cfg.env.id} won none of {n} episodes ({skipped} skipped: no grounded "
                           "demonstration): no demonstrations to learn from.")
    summary = {"sft/episodes": float(n), "sft/expert_success_rate": wins / n, "sft/samples": float(len(samples)),
               "sft/skipped_episodes": float(skipped)}
    return samples, summary


def demo_turns(cfg: TrainConfig) -> int:
    """The turn limit of a demonstration episode: `sft.max_turns`, else `env.max_turns`."""
    return cfg.sft.max_turns or cfg.env.max_turns


def _demonstrate(env: Any, task_id: str, traj: int, cfg: TrainConfig, tokenizer: Any, template: PromptTemplate,
                 eos_ids: set[int], skills: SkillSelector | None, rng: np.random.Generator,
                 teacher: SkillSelector | None = None) -> list[Sample]:
    """One expert episode as samples (empty when the expert did not win it).

    With `sft.noise` > 0 some turns play a wrong action instead (a random admissible one, or the
    previous action again): no sample is made of those turns, and the expert's next turns show
    the way back, so the student also sees states off the expert's path.
    """
    observation, info = env.reset(seed=cfg.seed + traj, options={"task_id": task_id})
    task, task_type, admissible = info["task"], info["task_type"], info["admissible_actions"]
    shown = skills.retrieve(task_type, task).text if skills is not None else ""
    teacher_skills = teacher.retrieve(task_type, task).text if teacher is not None else ""
    history: list[tuple[str, str]] = []
    samples: list[Sample] = []
    for step in range(demo_turns(cfg)):
        expert = env.unwrapped.expert_step()
        if expert is None:
            raise ConfigError(f"{cfg.env.id} has no expert (expert_step() returned None): set sft.episodes=0.")
        if step > 0 and cfg.sft.noise > 0 and rng.random() < cfg.sft.noise:
            wrong = [a for a in (*admissible, history[-1][1]) if a != expert.action] if history else []
            if wrong:
                action = wrong[int(rng.integers(len(wrong)))]
                history.append((observation, action))
                observation, _, terminated, truncated, info = env.step(action)
                admissible = info["admissible_actions"]
                if terminated or truncated:
                    break
                continue
        answer = template.format_answer(expert.thought, expert.action)
        parsed = template.parse(answer)
        if not parsed.valid:
            raise RuntimeError(f"template {template.name!r} does not read back its own answer {answer!r}: "
                               f"{parsed.reason}.")
        r = cfg.rollout
        prompt = turn_prompt_ids(tokenizer, template, task, observation, admissible, history, step,
                                 r.history_length, r.max_prompt_tokens, skills=shown)
        teacher_prompt = None
        if teacher is not None:
            teacher_prompt = teacher_prompt_ids(tokenizer, template, task, observation, admissible, history, step,
                                                r.history_length, r.max_prompt_tokens, teacher_skills,
                                                cfg.skills.placement, prompt)
        response = answer_ids(tokenizer, answer, eos_ids)
        samples.append(Sample(prompt, response, group=traj, traj=traj, step=step, task_id=task_id,
                              task_type=task_type, valid=True, teacher_prompt_ids=teacher_prompt))
        history.append((observation, parsed.action))
        observation, _, terminated, truncated, info = env.step(parsed.action)
        admissible = info["admissible_actions"]
        if terminated or truncated:
            break
    return samples if info["won"] else []


if __name__ == "__main__":
    from sdar_agent.cli import sft_main

    raise SystemExit(sft_main())
