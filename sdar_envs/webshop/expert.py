"""Scripted WebShop experts: they know the goal product and buy it with the goal's options.

`oracle_plan` is the ceiling for the env (every generated goal and 200 of 200 real test goals score
1.0) and what tests, benchmarks and examples play: search the product's title, page to it in the
results, click the goal's option values, Buy Now.

`demonstration_step` is the demonstrator of the SFT stage, one state-aware step at a time, with a
thought: it searches the instruction's own key words (what a student can copy: no opener, no
option or price clause), opens the first result on the page that fully meets the goal (the goal
product, or another product with every asked attribute and option within the budget: WebShop's
score is 1.0 for either), pages on, and only when the results miss one searches the goal product's
full name; then it clicks each option the instruction asks for, in the instruction's order, and
buys. Its choices are ones a student can learn from the page: the first fitting result is most
often the top one (docs/benchmarks.md, "Experts"), where the goal product itself seldom is. Its
thoughts name what the prompt shows: the result's place on the page, its id and its name, each
option as the instruction writes it (`size: 6 feet`) and the option the page says was clicked
last.
"""

from __future__ import annotations

import re
from typing import Any

from rapidfuzz import fuzz

from sdar_envs.webshop.reward import purchase_reward

MAX_PAGES = 5
_CLICKED = re.compile(r"^You have clicked (.+)\.$")  # the item page's note on the last option clicked
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
_PRICE_CLAUSE = re.compile(r",?\s*and price lower than [\d.,]+ dollars\.?", re.I)
_OPTION_CLAUSE = re.compile(r"\s+with\s+(?:[\w-]+\s){0,2}[\w-]+:\s.*$", re.I | re.S)  # " with color: red, and ..."
_OPENERS = re.compile(r"^(i am looking for|i'm looking for|i need|i want to buy|i want|find me|get me|buy me|"
                      r"looking for|i would like to buy|i would like|show me|search for|"
                      r"(can|could) you (please )?(find|get)( me)?|please find)\s+(an?\s+|some\s+|the\s+)?", re.I)


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
    """The words of an instruction worth searching: no opener ("i need a"), no option or price clause."""
    text = _PRICE_CLAUSE.sub("", instruction.strip())
    text = _OPENERS.sub("", _OPTION_CLAUSE.sub("", text)).strip(" .,")
    return " ".join(text.split()[:max_words])


def exact_option_clicks(goal: Any, product: Any) -> dict[str, str] | None:
    """The product's option group -> value for each goal option, or None unless it offers every one by name.

    (WebShop's reward matches options fuzzily, so "40 count" passes for "20 count"; a demonstrator
    must not teach that.)
    """
    chosen: dict[str, str] = {}
    for value in goal.option_values:
        group = option_group(product, value)
        if group is None:
            return None
        chosen[group] = value
    return chosen


def option_group(product: Any, value: str) -> str | None:
    """The product's option group that offers `value` (None when none does)."""
    return next((g for g, values in product.options.items() if value in values), None)


def meets_goal(goal: Any, product: Any) -> bool:
    """Buying `product` with the goal's options scores 1.0: the goal product, or one as good."""
    if product.asin == goal.asin:
        return True
    chosen = exact_option_clicks(goal, product)
    return (
        chosen is not None and purchase_reward(product.as_dict(), goal.as_dict(), product.price, chosen).reward >= 1.0
    )


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
        fits = next((n for n, asin in enumerate(shown) if meets_goal(goal, shop.product(asin))), None)
        if fits is not None:
            name = shop.product(shown[fits]).title.split(",")[0]
            place = f"The {ORDINALS[fits]} result" if fits < len(ORDINALS) else "This result"
            return (
                f"click[{shown[fits].lower()}]",
                pick([f"{place}, {shown[fits]} ({name}), fits the instruction; I open it.",
                      f"{place} fits: {shown[fits]}, {name}. I open it."]),
            )
        if session.page_number < min(shop.num_pages(session), MAX_PAGES):
            return "click[next >]", pick(["Nothing here fits; I look at the next page.",
                                          "Not on this page; next page."])
        return "click[back to search]", pick(["None of these results fits; I go back to search again."])
    if session.page == "sub":
        return "click[< prev]", "I go back to the product page."
    if session.page == "item" and not meets_goal(goal, shop.product(session.asin)):
        return "click[< prev]", "This is not the product I need; back to the results."
    if session.page == "item":
        return _option_or_buy(goal, shop.product(session.asin), session, pick)
    raise LookupError(f"no demonstration step on the {session.page!r} page")


def _option_or_buy(goal: Any, product: Any, session: Any, pick: Any) -> tuple[str, str]:
    """On the product page: the next option the instruction asks for, in its order, then Buy Now.

    The thought names the option as the instruction writes it (`size: 6 feet`) and the option the
    page says was clicked last, so a student can read both off its prompt: what it chose, what is next.
    """
    clicked = _CLICKED.match(session.message or "")
    last = clicked.group(1) if clicked else ""
    wanted = goal_option_values(goal, product)
    for value in wanted:
        if value not in session.options.values():
            group = option_group(product, value)
            if not last:
                return f"click[{value}]", pick([f"The instruction asks for {group}: {value}; I choose it.",
                                                f"I select {group}: {value}, as asked."])
            return f"click[{value}]", pick([f"I have clicked {last}; next the instruction asks for {group}: {value}.",
                                            f"After {last}, the instruction asks for {group}: {value}; I choose it."])
    if not wanted:
        return "click[buy now]", "The product fits and the instruction asks for no option; I buy it."
    if not last:
        return "click[buy now]", "Every option the instruction asks for is chosen; I buy it."
    return "click[buy now]", pick([f"I have clicked {last}, the last option asked; I buy it.",
                                   f"{last} was the last option asked; everything fits, so I buy it."])


def oracle_plan(shop: Any, goal: Any, product: Any) -> list[str]:
    """Search for the goal product's title, page to it, pick the goal's options and buy."""
    actions = [f"search[{product.title}]"]
    results = shop.search_engine.search(product.title)
    if goal.asin not in results:
        raise LookupError(f"the goal product {goal.asin} is not in the top results for its own title")
    actions += ["click[next >]"] * (results.index(goal.asin) // 10)
    actions.append(f"click[{goal.asin.lower()}]")
    return actions + [f"click[{value}]" for value in goal_option_values(goal, product)] + ["click[buy now]"]
