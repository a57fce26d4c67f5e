"""Scripted WebShop experts: they know the goal product and buy it with the goal's options.

`oracle_plan` is the ceiling for the env (every generated goal and 200 of 200 real test goals score
1.0) and what tests, benchmarks and examples play: search the product's title, page to it in the
results, click the goal's option values, Buy Now.

`demonstration_step` is the demonstrator of the SFT stage, one state-aware step at a time, with a
thought: it searches the instruction's own key words (what a student can copy), opens the goal
product when a results page shows it, pages on, and only when the results miss the product searches
its full name; then it clicks each option the instruction asks for and buys.
"""

from __future__ import annotations

import re
from typing import Any

from rapidfuzz import fuzz

MAX_PAGES = 5
_PRICE_CLAUSE = re.compile(r",?\s*and price lower than [\d.,]+ dollars\.?", re.I)
_OPENERS = re.compile(r"^(i am looking for|i'm looking for|i need|i want|find me|get me|buy me|looking for|"
                      r"i would like|show me|search for|(can|could) you (please )?(find|get)( me)?|please find)"
                      r"\s+(an?\s+|some\s+|the\s+)?", re.I)


def goal_option_values(goal: Any, product: Any) -> list[str]:
    """The product's option values the goal asks for (exactly, or the closest to a human goal's wording)."""
    values = [v for vals in product.options.values() for v in vals]
    chosen = []
    for wanted in goal.option_values:
        if wanted in values:  # the goal names the value exactly (synthetic goals always do)
            chosen.append(wanted)
        elif values:  # a human goal's wording: the closest value
            chosen.append(max(values, key=lambda v: fuzz.token_set_ratio(v, wanted)))
    return chosen


def instruction_keywords(instruction: str, max_words: int = 12) -> str:
    """The words of an instruction worth searching: no opener ("i need a"), no price clause."""
    text = _OPENERS.sub("", _PRICE_CLAUSE.sub("", instruction.strip())).strip(" .")
    return " ".join(text.split()[:max_words])


def demonstration_step(shop: Any, session: Any, queries: list[str], rng: Any) -> tuple[str, str]:
    """The demonstrator's next (action, thought) on the session's current page (see the module docstring)."""
    goal = session.goal
    product = shop.product(goal.asin)
    pick = rng.choice
    if session.page == "search":
        if not queries:
            return (f"search[{instruction_keywords(goal.instruction)}]",
                    pick(["I search for the key words of the instruction.",
                          "First I search with the instruction's words."]))
        return (f"search[{product.title}]",
                pick(["Those results missed it; I search for the product's full name.",
                      "I search again, this time with the product's name."]))
    if session.page == "results":
        shown = shop.page_results(session)
        if goal.asin in shown:
            name = " ".join(product.title.split()[:6])
            return (f"click[{goal.asin.lower()}]", pick([f"{name} matches the instruction; I open it.",
                                                        f"This one fits: {name}. I open it."]))
        if session.page_number < min(shop.num_pages(session), MAX_PAGES):
            return "click[next >]", pick(["Nothing here fits; I look at the next page.",
                                          "Not on this page; next page."])
        return "click[back to search]", pick(["None of these results fits; I go back to search again."])
    if session.page == "sub":
        return "click[< prev]", "I go back to the product page."
    if session.page == "item" and session.asin != goal.asin:
        return "click[< prev]", "This is not the product I need; back to the results."
    if session.page == "item":
        for value in goal_option_values(goal, product):
            if value not in session.options.values():
                return (f"click[{value}]", pick([f"The instruction asks for {value}; I choose it.",
                                                 f"I select {value}, as asked."]))
        return "click[buy now]", pick(["The product and its options match; I buy it.", "Everything fits, so I buy it."])
    raise LookupError(f"no demonstration step on the {session.page!r} page")


def oracle_plan(shop: Any, goal: Any, product: Any) -> list[str]:
    """Search for the goal product's title, page to it, pick the goal's options and buy."""
    actions = [f"search[{product.title}]"]
    results = shop.search_engine.search(product.title)
    if goal.asin not in results:
        raise LookupError(f"the goal product {goal.asin} is not in the top results for its own title")
    actions += ["click[next >]"] * (results.index(goal.asin) // 10)
    actions.append(f"click[{goal.asin.lower()}]")
    return actions + [f"click[{value}]" for value in goal_option_values(goal, product)] + ["click[buy now]"]
