"""The grounded Search-QA expert: answer spans, question entities, and plans on a hand-made corpus."""

from __future__ import annotations

import re

import pytest

from sdar_envs.searchqa.data import Question
from sdar_envs.searchqa.expert import PLANNING_SEARCHES, answer_span, plan, question_entities
from sdar_envs.searchqa.retriever import Passage

CORPUS = [
    Passage("1", '"Jaws (film)"', "Jaws is a 1975 thriller film directed by Steven Spielberg.", 0.0),
    Passage("2", '"Steven Spielberg"', "Steven Spielberg (born December 18, 1946) is an American director.", 0.0),
    Passage("3", '"Great white shark"', "The great white shark is a large shark found in coastal waters.", 0.0),
    Passage("4", '"Amity Island"', "Amity Island is a fictional island in a novel by Peter Benchley.", 0.0),
]


class Searcher:
    """Word-overlap retrieval over CORPUS, the best passage only; records the queries it was asked."""

    def __init__(self):
        self.queries: list[str] = []

    def __call__(self, query: str) -> list[Passage]:
        self.queries.append(query)
        words = set(re.findall(r"\w+", query.lower())) - {"the", "a", "is", "of", "who", "what", "when", "in", "was"}
        def score(p: Passage) -> int:  # a word of the title counts twice
            return 2 * len(words & set(re.findall(r"\w+", p.title.lower()))) + len(
                words & set(re.findall(r"\w+", p.text.lower())))

        scored = [(score(p), p) for p in CORPUS]
        return [p for score, p in sorted(scored, key=lambda sp: -sp[0]) if score][:1]


def question(text: str, *answers: str, hops: tuple[str, ...] = ()) -> Question:
    return Question("q1", text, answers, "hotpotqa", hops)


@pytest.mark.parametrize("text, golden, span", [
    ("Steven Spielberg (born December 18, 1946) is", ["1946"], "1946"),
    ("Shithaend Laewoustus (1893–1985) was a painter", ["1893"], "1893"),  # inside a dash-joined range
    ("the philosopher Jean-Paul Sartre wrote", ["Jean-Paul Sartre"], "Jean-Paul Sartre"),
    ("It was built by Gustave Eiffel's company.", ["gustave eiffel's"], "Gustave Eiffel's"),  # as the text writes it
    ("The Beatles were a band.", ["beatles"], "Beatles"),  # the shortest span that matches
    ("It cost 1,843 dollars.", ["1843"], "1,843"),
    ("Paris is large.", ["London", "paris"], "Paris"),  # any golden answer
    ("Parisian cafes", ["Paris"], None),  # whole words only
    ("nothing here", ["Paris"], None),
    ("anything", ["the"], None),  # an answer that normalises away is never found
])
def test_answer_span(text, golden, span):
    assert answer_span(text, golden) == span


def test_question_entities_are_titles_and_capitalised_phrases():
    assert question_entities('Who wrote the novel "Amity Island" that Steven Spielberg filmed?') == [
        "Amity Island", "Steven Spielberg"]
    assert question_entities("What year was the director of Jaws born?") == ["Jaws"]
    assert question_entities("how many legs does a spider have") == []


def test_a_single_hop_question_is_shown_with_one_search_of_itself():
    search = Searcher()
    found = plan(question("Who directed the film Jaws in 1975?", "Steven Spielberg"), search)
    assert found.searches == ("Who directed the film Jaws in 1975?",)
    assert (found.answer, found.title, found.doc, found.bridge) == ("Steven Spielberg", "Jaws (film)", 1, "")


def test_a_multi_hop_question_follows_the_bridge_found_in_the_first_passage():
    search = Searcher()
    found = plan(question("What year was the man who made Jaws born?", "1946"), search)
    # the question and its entity "Jaws" retrieve Jaws (film), which names no year but names the
    # director: the bridge
    assert found.searches == ("What year was the man who made Jaws born?", "Steven Spielberg")
    assert (found.answer, found.title, found.bridge) == ("1946", "Steven Spielberg", "Steven Spielberg")
    assert all(q in search.queries for q in found.searches)  # every shown search was really made


def test_recorded_hops_come_first():
    search = Searcher()
    found = plan(question("When was he born?", "1946", hops=("Jaws film", "Steven Spielberg")), search)
    assert found.searches == ("Jaws film", "Steven Spielberg") and found.bridge == ""
    assert search.queries[:2] == ["Jaws film", "Steven Spielberg"]


def test_no_demonstration_when_no_passage_within_the_budget_holds_a_golden_answer():
    search = Searcher()
    assert plan(question("Who wrote the novel that Jaws is based on?", "Peter Benchley's wife"), search) is None
    assert len(set(search.queries)) <= PLANNING_SEARCHES
    # the bridge needs a second search: with a budget of one there is no demonstration
    assert plan(question("What year was the man who made Jaws born?", "1946"), Searcher(), budget=1) is None
    assert plan(question("Which shark is large?", "Peter Benchley"), Searcher()) is None  # in no retrieved passage
