"""SDAR's premise, measured: does the policy with skills in its prompt (the teacher) know more than without?

SDAR distils from the policy with privileged skills in its prompt; that can only help where the
skills make it a better policy than the student. Two measurements on held-out states:

- `teacher_gap`: on the env expert's turns of a held-out split, the log-probability the teacher
  and the student give the expert's answer, token by token: the mean gap
  log pi_teacher(y_t) - log pi_student(y_t), the share of tokens where the teacher is ahead, and the
  mean gap per answer (summed over its tokens). A premise that holds shows a positive gap.
- `skills_in_prompt_success`: the policy's held-out success with the skills in its own prompt
  against without (Skill-GRPO's two validations), on the same panel.

`examples/teacher_premise.py` runs both for a preset and a checkpoint.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

from sdar_agent.config import TrainConfig
from sdar_agent.logprobs import Passes, pack
from sdar_agent.rollout import Agent, Sample, SkillUse


def gap_statistics(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor]) -> dict[str, float]:
    """The teacher's advantage over the student on the same answers: per-answer (T,) log-prob rows, paired."""
    if len(student) != len(teacher) or any(s.shape != t.shape for s, t in zip(student, teacher, strict=True)):
        raise ValueError("student and teacher rows must pair up, one (T,) row per answer of the same length")
    gaps = [t.double() - s.double() for s, t in zip(student, teacher, strict=True)]
    tokens = torch.cat(gaps) if gaps else torch.zeros(0, dtype=torch.float64)
    n = max(tokens.numel(), 1)
    return {"answers": float(len(gaps)), "tokens": float(tokens.numel()),
            "teacher_gap_mean": float(tokens.sum() / n), "positive_share": float((tokens > 0).sum() / n),
            "answer_gap_mean": float(sum(g.sum() for g in gaps) / max(len(gaps), 1))}


@torch.no_grad()
def answer_logprobs(passes: Passes, model: Any, prompts: Sequence[list[int]], responses: Sequence[list[int]],
                    pad_id: int, rows: int = 4) -> list[torch.Tensor]:
    """Each answer's per-token log-probs (T,) under `model` after its prompt, `rows` answers a forward."""
    out: list[torch.Tensor] = []
    for start in range(0, len(prompts), rows):
        batch = pack(list(prompts[start : start + rows]), list(responses[start : start + rows]), pad_id)
        logp = passes.logprobs(model, batch).logp.cpu()
        out += [logp[r, logp.shape[1] - len(resp) :] for r, resp in enumerate(responses[start : start + rows])]
    return out


def expert_states(cfg: TrainConfig, tokenizer: Any, template: Any, eos_ids: set[int], selector: Any, split: str,
                  episodes: int) -> list[Sample]:
    """The expert's turns of `episodes` episodes of `split`, each with the student's and the teacher's prompt."""
    from sdar_agent.sft import collect_demonstrations

    held_out = copy.deepcopy(cfg)
    held_out.env.split, held_out.sft.episodes, held_out.sft.noise = split, episodes, 0.0
    samples, _ = collect_demonstrations(held_out, tokenizer, template, eos_ids, teacher=selector)
    return samples


def teacher_gap(passes: Passes, model: Any, samples: Sequence[Sample], pad_id: int) -> dict[str, float]:
    """`gap_statistics` of the teacher (`teacher_prompt_ids`) over the student (`prompt_ids`) on the answers."""
    responses = [s.response_ids for s in samples]
    student = answer_logprobs(passes, model, [s.prompt_ids for s in samples], responses, pad_id)
    teacher = answer_logprobs(passes, model, [s.teacher_prompt_ids or s.prompt_ids for s in samples], responses,
                              pad_id)
    return gap_statistics(student, teacher)


def skills_in_prompt_success(agent: Agent, cfg: TrainConfig, selector: Any, split: str, tasks: int) -> dict[str, Any]:
    """Held-out success of `agent` with the skills in its own prompt and without, on one panel (reports of each)."""
    from sdar_agent.evaluate import evaluate_policy, evaluation_report, evaluation_tasks
    from sdar_agent.rollout import RolloutSettings
    from sdar_agent.workers import EnvPool

    settings = RolloutSettings.from_config(cfg, agent.template, cfg.val_temperature)
    samples = cfg.eval.samples
    pool = EnvPool.from_config(cfg.env, split, max(min(tasks, 16), samples))
    try:
        panel = evaluation_tasks(list(pool.call("task_ids")), tasks)
        reports = {}
        with_skills = SkillUse(selector, in_student=True, for_teacher=False, placement="user_message")
        for name, skills in (("without_skills", None), ("with_skills", with_skills)):
            torch.manual_seed(cfg.seed)
            episodes = evaluate_policy(agent, pool, settings, tasks, skills=skills, samples=samples)
            reports[name] = evaluation_report(episodes, panel, samples)
    finally:
        pool.close()
    return reports
