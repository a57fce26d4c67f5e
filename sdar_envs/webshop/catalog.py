"""WebShop's products and goals: the real data files, or the embedded catalog; fixed splits.

Real data (a directory the user names, `data_dir=`):

- products: WebShop's raw `items_shuffle*.json` (a JSON list), or the engine's processed form as
  a JSON-lines file of `{"id", "contents", "product"}` rows (the Lucene-index form, e.g.
  `products_1k_from_lucene_index.jsonl`);
- `items_ins_v2*.json`: `{asin: {"attributes", "instruction", "instruction_attributes"}}`,
  the products' attributes and the synthetic instructions;
- `items_human_ins.json` (optional): `{asin: [{"instruction", "instruction_attributes",
  "instruction_options"}, ...]}`, the human instructions.

Goals are built the original way: human goals when `items_human_ins.json` is there (and
`human_goals=True`), else synthetic goals, one per option combination of each product that has a
synthetic instruction. A goal's price bound is the larger of two draws from the next four
multiples of $10 above the product's price. The goal list is shuffled once with seed 233 and
split test = [0, 500), valid = [500, 1500), train = the rest (for fewer than 2000 goals the same
1 : 2 : rest proportions); never reshuffled, so env workers all see the same splits.
"""

from __future__ import annotations

import itertools
import logging
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from sdar_envs.datafiles import iter_json_lines, read_json, require

log = logging.getLogger(__name__)
_NOTED: set[Path] = set()  # data folders whose human_goals.json was already reported

SPLITS = ("train", "valid", "test")
SPLIT_SEED = 233
PRICE_STEPS = [10.0 * i for i in range(1, 100)]


class CatalogError(ValueError):
    """A WebShop data file is missing, corrupt, or not in a known layout."""


@dataclass
class Product:
    """One product as the site shows it and the reward reads it."""

    asin: str
    title: str
    description: str
    bullet_points: list[str]
    pricing: list[float]
    price: float  # the one price this product sells at (drawn once in its pricing range)
    rating: str
    reviews: list[dict[str, Any]]
    attributes: list[str]
    options: dict[str, list[str]]  # option group -> lowercased values, in page order
    category: str  # the top-level category: the task type
    query: str
    product_category: str  # "A › B › C" path

    @property
    def price_text(self) -> str:
        """`$12.99`, or `$12.99 to $19.99` for a price range."""
        return " to ".join(f"${p:.2f}" for p in self.pricing[:2])

    @cached_property
    def search_text(self) -> str:
        """What BM25 indexes: title, description, first bullet point and option values."""
        options = " ".join(v for values in self.options.values() for v in values)
        first_bullet = self.bullet_points[0] if self.bullet_points else ""
        return " ".join([self.title, self.description, first_bullet, options]).lower()

    def as_dict(self) -> dict[str, Any]:
        """The product in WebShop's own key names (what `reward.purchase_reward` reads)."""
        return {
            "asin": self.asin, "Title": self.title, "Description": self.description,
            "BulletPoints": self.bullet_points, "Attributes": self.attributes, "query": self.query,
            "product_category": self.product_category, "category": self.category,
        }  # fmt: skip


@dataclass
class Goal:
    """A shopping instruction and what the reward compares the purchase with."""

    goal_id: str
    asin: str
    instruction: str
    attributes: list[str]
    goal_options: dict[str, str] | list[str]
    price_upper: float
    category: str
    query: str
    product_category: str
    name: str  # the goal product's title (the type reward's noun overlap)
    weight: float = 1.0

    @property
    def option_values(self) -> list[str]:
        """The wanted option values, whatever form the goal keeps them in."""
        opts = self.goal_options
        return list(opts.values()) if isinstance(opts, Mapping) else list(opts)

    def as_dict(self) -> dict[str, Any]:
        """The goal as `reward.purchase_reward` and the JSON API read it."""
        return {
            "goal_id": self.goal_id, "asin": self.asin, "instruction": self.instruction,
            "attributes": self.attributes, "goal_options": self.goal_options,
            "price_upper": self.price_upper, "category": self.category, "query": self.query,
            "product_category": self.product_category, "name": self.name,
        }  # fmt: skip


@dataclass
class Catalog:
    """Products, goals and the fixed goal splits of one WebShop instance."""

    name: str
    products: list[Product]
    goals: list[Goal]
    contents: dict[str, str] = field(default_factory=dict)  # asin -> indexed text, when given
    split_bounds: tuple[int, int] = (500, 1500)

    def __post_init__(self) -> None:
        self.by_asin = {p.asin: p for p in self.products}
        self.goal_by_id = {g.goal_id: g for g in self.goals}
        if len(self.goal_by_id) != len(self.goals):
            raise CatalogError(f"catalog {self.name!r}: duplicate goal ids.")
        n = len(self.goals)
        if n < 2000:
            self.split_bounds = (n // 6, n // 2)

    def split(self, name: str) -> list[Goal]:
        """The goals of split `name` (`train`, `valid` or `test`)."""
        test_end, valid_end = self.split_bounds
        ranges = {"test": (0, test_end), "valid": (test_end, valid_end), "train": (valid_end, len(self.goals))}
        if name not in ranges:
            raise ValueError(f"unknown WebShop split {name!r}; expected one of {list(SPLITS)}.")
        start, end = ranges[name]
        return self.goals[start:end]

    def documents(self) -> list[dict[str, str]]:
        """The search index's documents: `{"id": asin, "contents": text}`."""
        return [{"id": p.asin, "contents": self.contents.get(p.asin) or p.search_text} for p in self.products]


# ---------------------------------------------------------------------------- product parsing
def _parse_pricing(value: Any) -> list[float]:
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, list):
        prices = [float(v) for v in value if isinstance(v, (int, float))]
    elif isinstance(value, str):
        prices = []
        for part in value.split("$")[1:]:
            digits = re.sub(r"[^\d.]", "", part)
            try:
                prices.append(float(digits))
            except ValueError:
                continue
    else:
        prices = []
    return prices[:2] or [100.0]


def _parse_options(product: Mapping[str, Any]) -> dict[str, list[str]]:
    processed = product.get("options")
    if isinstance(processed, Mapping) and processed:
        return {str(k).lower(): [str(v).lower() for v in vals] for k, vals in processed.items() if vals}
    options: dict[str, list[str]] = {}
    raw = product.get("customization_options") or {}
    if isinstance(raw, Mapping):
        for group, contents in raw.items():
            if not contents:
                continue
            values = [str(c.get("value", "")).strip().replace("/", " | ").lower() for c in contents]
            options[str(group).lower()] = [v for v in values if v]
    return options


def _parse_reviews(product: Mapping[str, Any]) -> list[dict[str, Any]]:
    reviews = []
    for r in product.get("Reviews") or []:
        if isinstance(r, Mapping):
            reviews.append({
                "title": str(r.get("title", "")), "score": r.get("score", r.get("stars", "")),
                "body": str(r.get("body", r.get("review", ""))),
            })  # fmt: skip
    return reviews


def product_from_record(
    record: Mapping[str, Any], attributes: Mapping[str, Any], price: float | None = None
) -> Product:
    """A `Product` from a raw (`items_shuffle`) or processed (engine) product record."""
    asin = str(record["asin"])
    bullets = record.get("BulletPoints", record.get("small_description", []))
    if isinstance(bullets, str):
        bullets = [bullets]
    pricing = _parse_pricing(record.get("pricing"))
    attrs = record.get("Attributes")
    if asin in attributes and attributes[asin].get("attributes") is not None:
        attrs = attributes[asin]["attributes"]
    rating = record.get("Rating", record.get("average_rating", "")) or "N.A."
    return Product(
        asin=asin,
        title=str(record.get("Title") or record.get("name") or ""),
        description=str(record.get("Description") or record.get("full_description") or ""),
        bullet_points=[str(b) for b in bullets or []],
        pricing=pricing,
        price=pricing[0] if price is None else price,
        rating=str(rating),
        reviews=_parse_reviews(record),
        attributes=[str(a) for a in (attrs or []) if a != "DUMMY_ATTR"],
        options=_parse_options(record),
        category=str(record.get("category") or "other").lower(),
        query=str(record.get("query") or "").lower().strip(),
        product_category=str(record.get("product_category") or ""),
    )


def draw_prices(products: Sequence[Product], rng: random.Random) -> None:
    """Fix each product's selling price: its one price, or a uniform draw in its price range."""
    for p in products:
        low, high = p.pricing[0], p.pricing[-1]
        p.price = round(rng.uniform(low, high), 2) if high > low else low


def _price_bound(price: float, rng: random.Random) -> tuple[float, str]:
    steps = [p for p in PRICE_STEPS if p > price][:4]
    if len(steps) < 2:
        return 1_000_000.0, ""
    upper = max(rng.sample(steps, 2))
    return upper, f", and price lower than {upper:.2f} dollars"


def _goal(product: Product, n: int, instruction: str, attributes: list[str], options: Any, upper: float) -> Goal:
    return Goal(
        goal_id=f"{product.asin}:{n}", asin=product.asin, instruction=instruction, attributes=attributes,
        goal_options=options, price_upper=upper, category=product.category, query=product.query,
        product_category=product.product_category, name=product.title,
    )  # fmt: skip


def synthetic_goals(
    products: Sequence[Product], instructions: Mapping[str, Mapping[str, Any]], rng: random.Random,
    max_per_product: int | None = None,
) -> list[Goal]:  # fmt: skip
    """One goal per option combination of each product with a synthetic instruction."""
    goals: list[Goal] = []
    for product in products:
        info = instructions.get(product.asin) or {}
        text, attributes = info.get("instruction"), info.get("instruction_attributes")
        if not text or not attributes:
            continue
        upper, price_text = _price_bound(product.price, rng)
        names = sorted(product.options)
        combos = list(itertools.product(*(product.options[n] for n in names)))
        if max_per_product is not None and len(combos) > max_per_product:
            combos = rng.sample(combos, max_per_product)
        for n, combo in enumerate(combos):
            chosen = dict(zip(names, combo, strict=True))
            option_text = ", and ".join(f"{k}: {v}" for k, v in chosen.items())
            option_text = f" with {option_text}" if option_text else ""
            goals.append(_goal(product, n, f"{text}{option_text}{price_text}", list(attributes), chosen, upper))
    return goals


def human_goals(
    products: Sequence[Product], human: Mapping[str, Sequence[Mapping[str, Any]]], rng: random.Random
) -> list[Goal]:
    """One goal per human instruction that names at least one attribute."""
    goals: list[Goal] = []
    for product in products:
        for n, item in enumerate(human.get(product.asin) or []):
            attributes = list(item.get("instruction_attributes") or [])
            if not attributes:
                continue
            upper, price_text = _price_bound(product.price, rng)
            text = str(item["instruction"]).strip().strip(".") + price_text
            goals.append(_goal(product, n, text, attributes, list(item.get("instruction_options") or []), upper))
    return goals


def weigh_and_shuffle(goals: list[Goal]) -> list[Goal]:
    """Give each goal WebShop's rarity weight and shuffle the list once with seed 233."""
    counts: dict[str, int] = defaultdict(int)
    for goal in goals:
        for a in goal.attributes:
            counts[a] += 1
    for goal in goals:
        goal.weight = sum(1.0 / counts[a] for a in goal.attributes) / len(goal.attributes)
    shuffled = list(goals)
    random.Random(SPLIT_SEED).shuffle(shuffled)
    return shuffled


# ---------------------------------------------------------------------------- real data
HUMAN_GOALS_HINT = (
    "WebShop's items_human_ins.json maps each product's asin to its human instructions; a JSON list (the "
    "shape of human_goals.json, instructions without products) cannot be used as goals"
)


def _read_products(data_dir: Path) -> tuple[list[Mapping[str, Any]], dict[str, str]]:
    """The product records (each checked for an `asin`) and any indexed contents."""
    raw_files = sorted(data_dir.glob("items_shuffle*.json"))
    if raw_files:
        records = read_json(raw_files[0], list, CatalogError, "products (WebShop's items_shuffle)")
        for i, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise CatalogError(f"{raw_files[0]}, product #{i}: expected a product object, found "
                                   f"{type(record).__name__}.")
            _check_asin(record, f"{raw_files[0]}, product #{i}")
        return records, {}
    jsonl_files = sorted(data_dir.glob("*.jsonl"))
    if not jsonl_files:
        raise CatalogError(
            f"No WebShop products in {data_dir}: expected items_shuffle*.json (WebShop's raw products) "
            "or a JSON-lines file of {'id', 'contents', 'product'} rows (the engine's processed form)."
        )
    records, contents = [], {}
    for number, row in iter_json_lines(jsonl_files[0], CatalogError, "{'id', 'contents', 'product'}"):
        where = f"{jsonl_files[0]}, line {number}"
        product = require(row, "product", Mapping, where, CatalogError, "the product record")
        _check_asin(product, f"{where}: product")
        records.append(product)
        if row.get("contents"):
            contents[str(product["asin"])] = str(row["contents"])
    return records, contents


def _check_asin(record: Mapping[str, Any], where: str) -> None:
    if not isinstance(record.get("asin"), (str, int)) or isinstance(record.get("asin"), bool):
        raise CatalogError(f"{where}: needs an 'asin' string (keys: {sorted(record)[:8]}).")


def _read_instructions(path: Path) -> dict[str, Mapping[str, Any]]:
    """`items_ins_v2*.json`: asin -> {"instruction", "instruction_attributes", ...} (synthetic goals)."""
    data = read_json(path, dict, CatalogError, "asin -> {'instruction', 'instruction_attributes'}")
    for asin, info in data.items():
        if not isinstance(info, Mapping):
            raise CatalogError(f"{path}[{asin!r}]: expected an object with 'instruction' and "
                               f"'instruction_attributes', found {type(info).__name__}.")
        attributes = info.get("instruction_attributes", [])
        if not (isinstance(attributes, list) and all(isinstance(a, str) for a in attributes)):
            raise CatalogError(f"{path}[{asin!r}]['instruction_attributes']: expected a list of strings.")
    return data


def _read_human_goals(path: Path) -> dict[str, list[Mapping[str, Any]]]:
    """`items_human_ins.json`: asin -> [{"instruction", "instruction_attributes", "instruction_options"}]."""
    try:
        data = read_json(path, dict, CatalogError, "asin -> list of human instructions")
    except CatalogError as err:
        raise CatalogError(f"{err} ({HUMAN_GOALS_HINT}).") from None
    for asin, items in data.items():
        where = f"{path}[{asin!r}]"
        if not isinstance(items, list):
            raise CatalogError(f"{where}: expected a list of instruction objects, found {type(items).__name__}.")
        for n, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise CatalogError(f"{where}[{n}]: expected an instruction object, found {type(item).__name__}.")
            require(item, "instruction", str, f"{where}[{n}]", CatalogError, "the human instruction")
            for key in ("instruction_attributes", "instruction_options"):
                if not isinstance(item.get(key, []), list):
                    raise CatalogError(f"{where}[{n}][{key!r}]: expected a list of strings.")
    return data


def _note_unused_human_goals(data_dir: Path, used: str) -> None:
    """Say once per folder that its `human_goals.json` (instructions that name no product) is not read."""
    listed = data_dir / "human_goals.json"
    if listed.is_file() and data_dir.resolve() not in _NOTED:
        _NOTED.add(data_dir.resolve())
        log.warning("%s is not used: it lists instructions without their products, so no goal can be scored "
                    "from it; the goals are %s (%s).", listed, used, HUMAN_GOALS_HINT)


def load_real(data_dir: str | Path, *, human: bool = True, num_products: int | None = None) -> Catalog:
    """A `Catalog` from WebShop's own files in `data_dir` (see the module docstring)."""
    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise CatalogError(f"WebShop data_dir {data_dir} is not a directory.")
    records, contents = _read_products(data_dir)
    ins_files = sorted(data_dir.glob("items_ins_v2*.json"))
    instructions = _read_instructions(ins_files[0]) if ins_files else {}
    human_file = data_dir / "items_human_ins.json"
    human_ins = _read_human_goals(human_file) if human and human_file.exists() else None
    _note_unused_human_goals(data_dir, "human goals from items_human_ins.json" if human_ins is not None
                             else "synthetic goals from items_ins_v2*.json")
    products, seen = [], set()
    for record in records[:num_products] if num_products else records:
        asin = str(record["asin"])
        if asin == "nan" or len(asin) > 10 or asin in seen:
            continue
        seen.add(asin)
        products.append(product_from_record(record, instructions))
    rng = random.Random(SPLIT_SEED)
    draw_prices(products, rng)
    goals = (
        human_goals(products, human_ins, rng) if human_ins is not None else synthetic_goals(products, instructions, rng)
    )
    if not goals:
        raise CatalogError(f"{data_dir}: no goals could be built (no instructions with attributes found).")
    return Catalog(name=f"real-{data_dir.name}", products=products, goals=weigh_and_shuffle(goals), contents=contents)


def categories(goals: Iterable[Goal]) -> list[str]:
    """The sorted product categories (task types) of some goals."""
    return sorted({g.category for g in goals})
