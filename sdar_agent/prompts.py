"""Prompt templates, one per env, looked up by env id.

Every turn is one fresh user message (the reference layout): the task, how many steps were taken,
the last k (observation, action) turns, the current observation, the admissible actions, and the
instruction to reason in `<think>` and answer in `<action>`. A template also names the parser of
the model's answer, so an env with another answer form (Search-QA's `<search>` / `<answer>`)
brings both without touching the trainer: `register_template(env_id, template)`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sdar_agent.parsing import ParsedAction, parse_search_answer, parse_think_action

logger = logging.getLogger(__name__)

THINK_ACTION_INSTRUCTION = (
    "First reason about what to do next inside <think> </think>. Then write exactly one action "
    "from the admissible actions inside <action> </action>."
)


@dataclass(frozen=True)
class PromptTemplate:
    """One env's prompt: its intro, the answer instruction, and the parser of answers."""

    name: str
    intro: str
    """Who the agent is and where; formatted with nothing."""
    instruction: str = THINK_ACTION_INSTRUCTION
    parse: Callable[[str], ParsedAction] = parse_think_action
    answer: str = "<think>{thought}</think>\n<action>{action}</action>"
    """The answer format, filled with a demonstration's thought and env action (`format_answer`)."""
    answer_ends: tuple[str, ...] = ("</action>",)
    """Closing tags after which `parse` reads nothing more: generation may stop at them."""

    def format_answer(self, thought: str, action: str) -> str:
        """A well-formed answer in this template's format: what SFT teaches and `parse` reads back."""
        return self.answer.format(thought=thought, action=action)

    def render(
        self,
        task: str,
        observation: str,
        admissible: Sequence[str],
        history: Sequence[tuple[str, str]],
        step: int,
        skills: str = "",
    ) -> str:
        """The user message for one turn; `history` holds the last k (observation, action) pairs.

        `skills` (retrieved advice, for a teacher or a Skill-GRPO student) goes right after the task.
        """
        parts = [self.intro, f"Your task: {task}"]
        if skills:
            parts.append(f"Skills that may help with this task:\n{skills}")
        if step > 0:
            parts.append(f"You have taken {step} step(s) so far.")
        if history:
            first = step - len(history) + 1
            lines = [f"Step {first + i}: observation: {obs.strip()}\nStep {first + i}: your action: {act}"
                     for i, (obs, act) in enumerate(history)]
            parts.append(f"The last {len(history)} step(s):\n" + "\n".join(lines))
        parts.append(f"Current observation (step {step + 1}):\n{observation.strip()}")
        if admissible:
            parts.append("Admissible actions:\n" + "\n".join(f"- {a}" for a in admissible))
        parts.append(self.instruction)
        return "\n\n".join(parts)


TEMPLATES: dict[str, PromptTemplate] = {
    "alfworld": PromptTemplate(
        "alfworld",
        "You are an agent in a text-based household simulator (ALFWorld). You move between "
        "receptacles and use objects by typing commands.",
    ),
    "webshop": PromptTemplate(
        "webshop",
        "You are an agent shopping on WebShop, an online store. Find the product that fits the "
        "instruction, choose the options it asks for, and buy it. Pages are shown as their visible "
        "texts separated by [SEP].",
        "First reason about what to do next inside <think> </think>. Then write exactly one action "
        "inside <action> </action>: search[your keywords] when search[<query>] is admissible, or "
        "one of the admissible click[...] actions.",
    ),
    "searchqa": PromptTemplate(
        "searchqa",
        "You answer questions with the help of a search engine over an encyclopedia. Each search "
        "returns the top passages inside <information> </information>.",
        "First reason inside <think> </think>. Then either search, writing <search> your query "
        "</search>, or, when you know the answer, give it inside <answer> </answer> with no "
        "explanation, for example <answer> Paris </answer>.",
        parse=parse_search_answer,
        answer="<think>{thought}</think>\n{action}",  # the env's action is already <search>/<answer>
        answer_ends=("</search>", "</answer>"),
    ),
    "generic": PromptTemplate(
        "generic",
        "You are an agent acting in a text environment by typing actions.",
    ),
}
ENV_TEMPLATES: dict[str, str] = {
    "sdar/ALFWorld-v0": "alfworld",
    "sdar/WebShop-v0": "webshop",
    "sdar/SearchQA-v0": "searchqa",
    "examples/GuessNumber-v0": "generic",
}


def register_template(env_id: str, template: PromptTemplate) -> None:
    """Make `template` the default for `env_id` (and selectable by its name)."""
    TEMPLATES[template.name] = template
    ENV_TEMPLATES[env_id] = template.name


def template_for(env_id: str, name: str = "auto") -> PromptTemplate:
    """The template `name`, or with `auto` the one registered for `env_id` (else `generic`)."""
    if name == "auto":
        name = ENV_TEMPLATES.get(env_id.split(":")[-1], "generic")
    if name not in TEMPLATES:
        raise ValueError(f"rollout.template={name!r}: expected 'auto' or one of {sorted(TEMPLATES)}.")
    return TEMPLATES[name]


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
