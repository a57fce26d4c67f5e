"""Skill banks: structured advice per task type, the privileged context of SDAR's teacher.

    from skillbank import SkillBank
    bank = SkillBank.load("alfworld")                    # a bundled bank, a file, or an SDAR folder
    got = bank.retrieve("pick_heat_then_place_in_recep", task="put a hot apple in fridge.",
                        strategy="ucb", k=4)
    got.ids, got.text                                    # chosen skill ids and their prompt text
    bank.feedback(got.ids, reward=1.0, task_type=got.task_type)

    selector = SkillSelector("alfworld", strategy="ucb", k=4)   # one setting, per-episode use
    shown = selector.retrieve("pick_heat_then_place_in_recep", "put a hot apple in fridge.")
    selector.feedback(shown, score=1.0)                  # the episode's task score, in [0, 1]

The file format and its validation are in `skillbank.schema`; the importers for SkillRL banks and
SDAR skill folders in `skillbank.formats`; the strategies (keyword, full, random, ucb) and the
rendering in `skillbank.retrieval`; the per-episode hook that the Gymnasium wrapper and the trainer
share in `skillbank.selector`.
"""

from skillbank.bank import SkillBank, bundled_banks
from skillbank.retrieval import STRATEGIES, Retrieval
from skillbank.schema import Skill, SkillBankError
from skillbank.selector import SkillSelector

__all__ = ["SkillBank", "SkillSelector", "SkillBankError", "Skill", "Retrieval", "STRATEGIES", "bundled_banks"]
