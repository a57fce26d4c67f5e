"""How an env asks an agent for its answer and reads it back: its prompt template and answer parser.

An env class declares its `prompt_template` (`TextEnv.prompt_template`, the generic one unless it
says otherwise), as it declares its `skill_bank`: who the agent is, the answer instruction, the
answer's format and the parser that turns a model's text into the env's action. The trainer
(`sdar_agent.prompts`) only lays the turn out and reads the template from the env's class, so an
env defined in any package trains with its own answer format.

The default format is the reference's (verl-agent's projection): reason inside
`<think>...</think>`, then give the action inside `<action>...</action>`; the action is the text of
the first `<action>` block, lower-cased and stripped. An invalid answer still sends something to
the env (the action it named if any, else the answer's last line), so the episode goes on; the
trainer subtracts the invalid-action penalty from that step's score.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

_ACTION = re.compile(r"<action>(.*?)</action>", re.S | re.I)
THINK = re.compile(r"<think>(.*?)</think>", re.S | re.I)
MAX_FALLBACK_CHARS = 200
THINK_ACTION_INSTRUCTION = (
    "First reason about what to do next inside <think> </think>. Then write exactly one action "
    "from the admissible actions inside <action> </action>."
)


@dataclass(frozen=True)
class ParsedAction:
    """The env action parsed from a response, and whether the response was well formed."""

    action: str  # what the env receives
    valid: bool
    reason: str  # why it is invalid ("" when valid)


def last_line(text: str) -> str:
    """The last non-empty line of `text`, cut to `MAX_FALLBACK_CHARS`: what an answer without an action sends."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:MAX_FALLBACK_CHARS] if lines else ""


def parse_think_action(text: str) -> ParsedAction:
    """`<think>reasoning</think><action>command</action>` -> the command, lower-cased."""
    action_match = _ACTION.search(text)
    think_match = THINK.search(text)
    if action_match is None:
        return ParsedAction(last_line(text).lower(), False, "no <action>...</action> block")
    action = " ".join(action_match.group(1).split()).lower()
    if not action:
        return ParsedAction("", False, "empty <action> block")
    if think_match is None or think_match.start() > action_match.start():
        return ParsedAction(action, False, "no <think>...</think> before the action")
    return ParsedAction(action, True, "")


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


GENERIC = PromptTemplate("generic", "You are an agent acting in a text environment by typing actions.")
"""The template of an env that declares none."""
