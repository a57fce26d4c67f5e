"""A scripted WebShop expert: it knows the goal product and buys it with the goal's options.

It is the ceiling for the env (every generated goal and 200 of 200 real test goals score 1.0) and
what tests, benchmarks and examples play: search the product's title, page to it in the results,
click the goal's option values, Buy Now.
"""

from __future__ import annotations

from typing import Any

from rapidfuzz import fuzz


def oracle_plan(shop: Any, goal: Any, product: Any) -> list[str]:
    """Search for the goal product's title, page to it, pick the goal's options and buy."""
    actions = [f"search[{product.title}]"]
    results = shop.search_engine.search(product.title)
    if goal.asin not in results:
        raise LookupError(f"the goal product {goal.asin} is not in the top results for its own title")
    actions += ["click[next >]"] * (results.index(goal.asin) // 10)
    actions.append(f"click[{goal.asin.lower()}]")
    values = [v for vals in product.options.values() for v in vals]
    for wanted in goal.option_values:
        if wanted in values:  # the goal names the value exactly (synthetic goals always do)
            actions.append(f"click[{wanted}]")
        elif values:  # a human goal's wording: the closest value
            actions.append(f"click[{max(values, key=lambda v: fuzz.token_set_ratio(v, wanted))}]")
    return actions + ["click[buy now]"]
