"""A test env with its own answer format, registered on import: `tests.integration.own_format_env:test/Own-v0`.

Its answers are read by its own parser (any text is a valid answer; its first word is the move), so
a random model's rollouts count as valid only if the trainer reads them with this env's template.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from sdar_envs.answers import ParsedAction, PromptTemplate
from sdar_envs.core import TaskStart, TextEnv, Transition

INTRO = "You play the own-format test game."


def parse_move(text: str) -> ParsedAction:
    words = text.split()
    return ParsedAction(words[0].lower() if words else "pass", True, "")


class OwnFormatEnv(TextEnv):
    """Two tasks; every move is accepted; the move `win` wins."""

    splits = ("train", "test")
    prompt_template = PromptTemplate("own-format", INTRO, "Answer with one word: your move.", parse=parse_move,
                                     answer="{action}", answer_ends=())

    def __init__(self, split: str = "train", render_mode: str | None = None) -> None:
        super().__init__(split=split, render_mode=render_mode)
        self.set_tasks(["a", "b"], ["plain", "plain"])

    def _start(self, index):
        return TaskStart("Make a move.", "make a move", "plain", [])

    def _act(self, action):
        won = action == "win"
        return Transition("Moved.", float(won), won, won, float(won), True, [])


if "test/Own-v0" not in registry:
    register(id="test/Own-v0", entry_point="tests.integration.own_format_env:OwnFormatEnv", max_episode_steps=3)
