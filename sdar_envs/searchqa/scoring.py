"""Search-R1's answer scoring: exact match after normalisation (the reward) and token F1.

Normalisation: lowercase, drop punctuation, drop the articles a / an / the, squeeze whitespace.
Only the model's own answer is scored, never text of the prompt (Search-R1's extractor counted
the prompt's example `<answer>` tag, so it needed two tags in the response: ANCHORS.md).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """`"The  Eiffel Tower!"` -> `"eiffel tower"`."""
    text = text.lower().translate(_PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, golden: Iterable[str]) -> bool:
    """Whether the normalised prediction equals any normalised golden answer."""
    predicted = normalize_answer(prediction)
    return any(predicted == normalize_answer(g) for g in golden)


def token_f1(prediction: str, golden: Iterable[str]) -> float:
    """The best token-level F1 of the prediction against the golden answers (normalised)."""
    predicted = normalize_answer(prediction).split()
    best = 0.0
    for answer in golden:
        wanted = normalize_answer(answer).split()
        common = sum((Counter(predicted) & Counter(wanted)).values())
        if common:
            precision, recall = common / len(predicted), common / len(wanted)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best
