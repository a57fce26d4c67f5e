"""Search-R1's action protocol: the one parser of `search` / `answer` actions, for the env and its answers.

An action is `<search> query </search>` / `<answer> text </answer>` (Search-R1's tags) or, for
people and scripts, `search[query]` / `answer[text]`. The first complete action in a text counts,
so a whole model response can be passed as the action.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sdar_envs.answers import THINK, ParsedAction, last_line

REMINDER = (
    "Invalid action: nothing to do. To search, write <search> your query </search> (or search[query]); "
    "to answer, write <answer> your answer </answer> (or answer[text])."
)
MAX_QUERY_CHARS = 1000
_TAGS = re.compile(r"<(search|answer)>(.*?)</\1>", re.IGNORECASE | re.DOTALL)
_TAGS_OR_BRACKETS = re.compile(r"<(search|answer)>(.*?)</\1>|\b(search|answer)\[(.*?)\]", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class SearchAction:
    """One parsed action: its kind, its argument (stripped) and where it starts in the text."""

    kind: str  # "search" | "answer"
    argument: str
    start: int

    @property
    def tagged(self) -> str:
        """The action in Search-R1's tag form, whitespace squeezed: `<search> q </search>`."""
        return f"<{self.kind}> {' '.join(self.argument.split())} </{self.kind}>"


def parse_action(text: str, brackets: bool = True) -> SearchAction | None:
    """The first `search` / `answer` action in `text`, or None; `brackets=False` reads only the tags."""
    match = (_TAGS_OR_BRACKETS if brackets else _TAGS).search(text)
    if match is None:
        return None
    tag = match.group(1) is not None
    kind = (match.group(1) if tag else match.group(3)).lower()
    argument = (match.group(2) if tag else match.group(4)).strip()
    return SearchAction(kind, argument, match.start())


def parse_search_answer(text: str) -> ParsedAction:
    """Search-R1's answer form: `<think>...</think>` then `<search>q</search>` or `<answer>a</answer>`.

    The env receives the first complete tag (`parse_action`) in its tag form; only the model's own
    response is parsed, so the prompt's example answer can never count.
    """
    found = parse_action(text, brackets=False)
    think = THINK.search(text)
    if found is None:
        return ParsedAction(last_line(text), False, "no <search> or <answer> block")
    if not found.argument:
        return ParsedAction(found.tagged, False, f"empty <{found.kind}> block")
    if think is None or think.start() > found.start:
        return ParsedAction(found.tagged, False, "no <think>...</think> before the action")
    return ParsedAction(found.tagged, True, "")
