"""The Search-QA demonstrator: searches that retrieve a passage holding a gold answer, then that answer.

The expert is privileged (it knows the golden answers and may query the retriever before it acts),
but what it shows a student is grounded: every search it makes is one a student could make from
what it has seen, its answer is a span of a passage the episode retrieved, written as the passage
writes it, and its thoughts name only that passage. `plan` looks for such a demonstration within a
search budget, trying in turn

1. the searches a generated question records (`hops`);
2. the question itself;
3. the question's entities (capitalised phrases and quoted titles), one search each;
4. a bridge: the question, then an entity that a passage it retrieved names and the question does
   not (multi-hop questions, whose answer sits in the passage of that entity).

The first of these whose results hold a gold answer is the demonstration; when none does, the
question has no grounded demonstration (`plan` returns None and the env's expert raises
`NoDemonstration`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from sdar_envs.searchqa.data import Question
from sdar_envs.searchqa.retriever import Passage
from sdar_envs.searchqa.scoring import exact_match, normalize_answer

#: Searches one demonstration may make (the env's four turns leave one for the answer).
SEARCH_BUDGET = 3
#: Searches the planner may make privately for one question before it gives up.
PLANNING_SEARCHES = 12

_WORD = re.compile(r"[^\s\-–—/()\[\]]+")
_EDGE = " ,.;:!?()[]\"'“”‘’"
_QUESTION_WORDS = {"who", "what", "when", "where", "which", "whose", "whom", "why", "how", "is", "are", "was",
                   "were", "did", "does", "do", "in", "on", "the", "a", "an", "name", "of", "for", "and", "to"}
_ENTITY = re.compile(r"[A-Z0-9][\w'’.&-]*(?:\s+(?:(?:of|the|de|la|von|van|and|for|in)\s+)*[A-Z0-9][\w'’.&-]*)*")
_QUOTED = re.compile(r"[\"“]([^\"”]{2,80})[\"”]")


@dataclass(frozen=True)
class Plan:
    """A grounded demonstration: its searches, then the answer found in one passage of the last one."""

    searches: tuple[str, ...]
    answer: str  # as the passage writes it
    title: str  # the passage's title, without its quotes
    doc: int  # its rank among the last search's results, from 1
    bridge: str = ""  # the entity of an earlier passage that the last search followed, if any


def answer_span(text: str, golden: Sequence[str]) -> str | None:
    """The words of `text` that match a golden answer after Search-R1's normalisation, as `text` writes them.

    Words split at spaces, dashes, slashes and brackets, so "(1893–1985)" holds "1893"; a span may
    cover several words, so "Jean-Paul Sartre" is found whole.

    >>> answer_span("It was built by Gustave Eiffel's company in 1889.", ["gustave eiffel's"])
    "Gustave Eiffel's"
    """
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    for answer in golden:
        target = normalize_answer(answer)
        if not target:
            continue
        longest = 2 * len(target.split()) + 2  # words a span of the answer can cover ("Jean-Paul" is two)
        spans = [text[start:end].strip(_EDGE) for i, (start, _) in enumerate(words) for _, end in words[i:i + longest]]
        matches = [span for span in spans if normalize_answer(span) == target and exact_match(span, golden)]
        if matches:
            return min(matches, key=len)  # "Beatles" rather than "the Beatles"
    return None


def question_entities(question: str) -> list[str]:
    """Quoted titles and capitalised phrases of a question (or a passage), in order, question words aside."""
    found = [m.group(1).strip() for m in _QUOTED.finditer(question)]
    for match in _ENTITY.finditer(question):
        words = match.group().rstrip(".,;:?!'’").split()
        while words and words[0].lower() in _QUESTION_WORDS:
            words = words[1:]
        if words:
            found.append(" ".join(words))
    unique: list[str] = []
    for entity in found:
        if entity and entity.lower() != question.lower() and entity not in unique:
            unique.append(entity)
    return unique


def _title(passage: Passage) -> str:
    return passage.title.strip().strip("\"“”").strip()


def _found(passages: Sequence[Passage], golden: Sequence[str]) -> tuple[int, Passage, str] | None:
    for rank, passage in enumerate(passages, 1):
        span = answer_span(passage.text, golden) or answer_span(_title(passage), golden)
        if span:
            return rank, passage, span
    return None


Chain = tuple[tuple[str, ...], str]  # searches, and the bridge entity the last one follows ("" for none)


def _chains(question: Question, look: Callable[[str], Sequence[Passage] | None]) -> Iterator[Chain]:
    """The search chains `plan` tries, in order."""
    if question.hops:
        yield tuple(question.hops), ""
    yield (question.question,), ""
    for entity in question_entities(question.question):
        yield (entity,), ""
    asked = question.question.lower()
    for passage in look(question.question) or ():
        for entity in question_entities(passage.text):
            if entity.lower() not in asked:
                yield (question.question, entity), entity


def plan(question: Question, search: Callable[[str], Sequence[Passage]],
         budget: int = SEARCH_BUDGET) -> Plan | None:
    """The grounded demonstration of `question` (see the module's docstring), or None within `budget` searches."""
    results: dict[str, Sequence[Passage]] = {}

    def look(query: str) -> Sequence[Passage] | None:
        if query not in results:
            if len(results) >= PLANNING_SEARCHES:
                return None
            results[query] = search(query)
        return results[query]

    for chain, bridge in _chains(question, look):
        for depth, query in enumerate(chain[:budget], 1):
            passages = look(query)
            if passages is None:
                return None  # the planning budget is spent
            if hit := _found(passages, question.golden_answers):
                rank, passage, span = hit
                return Plan(chain[:depth], span, _title(passage), rank, bridge if depth > 1 else "")
    return None


def coverage(env) -> dict[str, float]:
    """Play the expert on every question of a `SearchQAEnv` (unwrapped): how many it can show, how, how well.

    Returns the questions, the share with a grounded demonstration, searches per demonstration and
    the exact match of the demonstrations' answers (1.0 by construction: a check, not a result).
    """
    from sdar_envs.core import NoDemonstration

    shown = searches = won = 0
    for index in range(env.num_tasks):
        env.reset(options={"task_index": index})
        try:
            while True:
                step = env.expert_step()
                _, _, terminated, _, info = env.step(step.action)
                if terminated:
                    break
        except NoDemonstration:
            continue
        shown += 1
        searches += len(env._searched)
        won += bool(info["won"])
    n = env.num_tasks
    return {"questions": float(n), "grounded": shown / n, "searches": searches / shown if shown else 0.0,
            "em": won / shown if shown else 0.0}


def main(argv: list[str] | None = None) -> int:
    """`python -m sdar_envs.searchqa.expert [--questions FILE --corpus FILE] [--split S]`: one table row."""
    import argparse

    import gymnasium as gym

    import sdar_envs  # noqa: F401 - registers the envs

    parser = argparse.ArgumentParser(prog="python -m sdar_envs.searchqa.expert",
                                     description="How many questions the Search-QA expert can demonstrate grounded.")
    parser.add_argument("--questions", help="a question file (default: the embedded set)")
    parser.add_argument("--corpus", help="its wiki-18 JSON-lines corpus")
    parser.add_argument("--split", default="train", help="the embedded set's split (default: train)")
    args = parser.parse_args(argv)
    kwargs = {"questions": args.questions, "corpus": args.corpus} if args.questions else {"split": args.split}
    env = gym.make("sdar/SearchQA-v0", **kwargs)
    try:
        row = coverage(env.unwrapped)
    finally:
        env.close()
    name = args.questions or f"embedded {args.split}"
    print("| questions | n | with a grounded demonstration | searches per demonstration | EM of the demonstrations |")
    print("|---|---|---|---|---|")
    print(f"| {name} | {row['questions']:.0f} | {row['grounded']:.0%} | {row['searches']:.2f} | {row['em']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
