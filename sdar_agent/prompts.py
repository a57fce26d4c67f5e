"""Each turn's prompt: the env's template laid out as one chat message, within a token budget.

Every turn is one fresh user message (the reference layout): the task, how many steps were taken,
the last k (observation, action) turns, the current observation, the admissible actions, and the
instruction to reason in `<think>` and answer in `<action>`. The env class declares its template
and answer parser (`TextEnv.prompt_template`, `sdar_envs.answers`), so an env with another answer
form (Search-QA's `<search>` / `<answer>`) brings both without touching the trainer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import sdar_envs
from sdar_agent.workers import env_class
from sdar_envs.answers import GENERIC, PromptTemplate

logger = logging.getLogger(__name__)

TEMPLATES: dict[str, PromptTemplate] = {GENERIC.name: GENERIC}
"""Templates selectable by name (`rollout.template=<name>`) besides the registered envs' own."""


def register_template(template: PromptTemplate) -> None:
    """Make `template` selectable by its name (`rollout.template=<name>`)."""
    TEMPLATES[template.name] = template


def template_for(env_id: str, name: str = "auto") -> PromptTemplate:
    """The template `name`, or with `auto` the one `env_id`'s class declares (else the generic one).

    A name is one registered with `register_template` or the template of a registered sdar env.
    """
    if name == "auto":
        return getattr(env_class(env_id), "prompt_template", GENERIC)
    if name in TEMPLATES:
        return TEMPLATES[name]
    envs = {t.name: t for t in (getattr(env_class(e), "prompt_template", GENERIC) for e in sdar_envs.ENV_IDS)}
    if name not in envs:
        raise ValueError(f"rollout.template={name!r}: expected 'auto' or one of {sorted({*TEMPLATES, *envs})}.")
    return envs[name]


PRIVILEGED_PREFIX = "[Privileged Skill Information]\n{skills}\n\n"


def chat_ids(tokenizer: Any, user_message: str) -> list[int]:
    """Token ids of a one-message chat, ready for generation."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": user_message}], tokenize=False, add_generation_prompt=True
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def privileged_prefix_ids(tokenizer: Any, skills: str) -> list[int]:
    """The reference SDAR code's teacher context: raw text put before the chat-formatted prompt."""
    return tokenizer(PRIVILEGED_PREFIX.format(skills=skills), add_special_tokens=False)["input_ids"]


_warned_truncation = False


def turn_prompt_ids(tokenizer: Any, template: PromptTemplate, task: str, observation: str, admissible: Sequence[str],
                    history: Sequence[tuple[str, str]], step: int, history_length: int, max_tokens: int,
                    skills: str = "") -> list[int]:
    """One turn's prompt ids: the last `history_length` turns of `history`, fewer when too long.

    Older history is left out first; a prompt still over `max_tokens` keeps its last tokens (with
    one warning per process). Rollouts, teachers and SFT all build prompts here.
    """
    global _warned_truncation
    keep = min(history_length, len(history))
    while True:
        shown = history[len(history) - keep :] if keep else []
        ids = chat_ids(tokenizer, template.render(task, observation, admissible, shown, step, skills=skills))
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


def teacher_prompt_ids(tokenizer: Any, template: PromptTemplate, task: str, observation: str, admissible: Sequence[str],
                       history: Sequence[tuple[str, str]], step: int, history_length: int, max_tokens: int,
                       skills: str, placement: str, student_prompt: list[int]) -> list[int]:
    """The same turn's prompt with `skills` for the teacher: before the chat (`prefix`) or in the message.

    In the message the budget grows by the skills' length, so the teacher sees the student's history.
    """
    if not skills:
        return student_prompt
    if placement == "prefix":
        return privileged_prefix_ids(tokenizer, skills) + student_prompt
    extra = len(tokenizer(skills, add_special_tokens=False)["input_ids"]) + 16
    return turn_prompt_ids(tokenizer, template, task, observation, admissible, history, step, history_length,
                           max_tokens + extra, skills=skills)
