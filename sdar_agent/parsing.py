"""From the model's text to the env's action: the reference projection rules.

A response is valid when it reasons inside `<think>...</think>` and then gives its action inside
`<action>...</action>`; the action is the text of the first `<action>` block, lower-cased and
stripped. An invalid response still sends something to the env (the action it named if any, else
the response's last line), so the episode goes on; the trainer subtracts the invalid-action
penalty from that step's score.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ACTION = re.compile(r"<action>(.*?)</action>", re.S | re.I)
_THINK = re.compile(r"<think>(.*?)</think>", re.S | re.I)
MAX_FALLBACK_CHARS = 200


@dataclass(frozen=True)
class ParsedAction:
    """The env action parsed from a response, and whether the response was well formed."""

    action: str  # what the env receives
    valid: bool
    reason: str  # why it is invalid ("" when valid)


def parse_think_action(text: str) -> ParsedAction:
    """`<think>reasoning</think><action>command</action>` -> the command, lower-cased."""
    action_match = _ACTION.search(text)
    think_match = _THINK.search(text)
    if action_match is None:
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        fallback = lines[-1][:MAX_FALLBACK_CHARS].lower() if lines else ""
        return ParsedAction(fallback, False, "no <action>...</action> block")
    action = " ".join(action_match.group(1).split()).lower()
    if not action:
        return ParsedAction("", False, "empty <action> block")
    if think_match is None or think_match.start() > action_match.start():
        return ParsedAction(action, False, "no <think>...</think> before the action")
    return ParsedAction(action, True, "")


def parse_search_answer(text: str) -> ParsedAction:
    """Search-R1's answer form: `<think>...</think>` then `<search>q</search>` or `<answer>a</answer>`.

    The env receives the first complete tag (read by the env's own parser,
    `sdar_envs.searchqa.protocol.parse_action`) in its tag form; only the model's own response is
    parsed, so the prompt's example answer can never count.
    """
    from sdar_envs.searchqa.protocol import parse_action

    found = parse_action(text, brackets=False)
    think = _THINK.search(text)
    if found is None:
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        return ParsedAction(lines[-1][:MAX_FALLBACK_CHARS] if lines else "", False, "no <search> or <answer> block")
    if not found.argument:
        return ParsedAction(found.tagged, False, f"empty <{found.kind}> block")
    if think is None or think.start() > found.start:
        return ParsedAction(found.tagged, False, "no <think>...</think> before the action")
    return ParsedAction(found.tagged, True, "")
