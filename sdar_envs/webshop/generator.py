"""The embedded WebShop catalog: products and goals generated deterministically, offline.

Shape (`generate_catalog()` with the defaults): the five top-level categories of WebShop's real
data (beauty, electronics, fashion, garden, grocery), 6 product types each, 30 products per
type: 900 products, each with a brand, 3-5 attributes, one to three option groups (size, color,
flavor, count, ...; 2-6 values each), a price or price range, a description, 4-6 bullet points,
a rating and 0-3 reviews. Products of one type share most of their vocabulary and differ in a few
attributes, options and price, so search, option choice and every reward term matter.
Goals are built the original synthetic way (`catalog.synthetic_goals`): two or three of the
product's attributes, one option combination (at most 3 per product) and a price bound:
about 2,500 goals, split test 500 / valid 1000 / train the rest.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sdar_envs.webshop.catalog import SPLIT_SEED, Catalog, Product, draw_prices, synthetic_goals, weigh_and_shuffle

PRODUCTS_PER_TYPE = 30
GOALS_PER_PRODUCT = 3


@dataclass(frozen=True)
class ProductType:
    """A kind of product: its words, attributes, option groups and price range."""

    noun: str  # what the product is ("shampoo"); also the search query
    path: str  # category path under the top level
    attributes: tuple[str, ...]
    options: tuple[tuple[str, tuple[str, ...]], ...]
    price: tuple[float, float]
    uses: tuple[str, ...]


COLORS = ("black", "white", "navy blue", "heather grey", "burgundy", "olive green", "blush pink", "beige")
SIZES = ("x-small", "small", "medium", "large", "x-large", "xx-large")

TYPES: dict[str, tuple[ProductType, ...]] = {
    "beauty": (
        ProductType(
            "shampoo",
            "Hair Care › Shampoo & Conditioner › Shampoos",
            (
                "sulfate free",
                "paraben free",
                "argan oil",
                "dry hair",
                "color treated",
                "tea tree",
                "natural ingredients",
            ),
            (
                ("size", ("8 fl oz", "12 fl oz", "16 fl oz", "32 fl oz")),
                ("scent", ("coconut", "lavender", "unscented", "citrus")),
            ),
            (6, 38),
            ("daily washing", "thin hair"),
        ),
        ProductType(
            "face moisturizer",
            "Skin Care › Face › Moisturizers",
            ("hyaluronic acid", "sensitive skin", "fragrance free", "spf 30", "anti aging", "oil free", "vitamin c"),
            (("size", ("1.7 oz", "3.4 oz")), ("item package quantity", ("1", "2", "3"))),
            (9, 65),
            ("dry skin", "night care"),
        ),
        ProductType(
            "lipstick",
            "Makeup › Lips › Lipstick",
            ("long lasting", "cruelty free", "matte finish", "vegan", "high pigment", "moisturizing"),
            (("color", ("ruby red", "nude", "berry", "coral", "rose pink", "plum")),),
            (5, 30),
            ("everyday wear", "parties"),
        ),
        ProductType(
            "deodorant",
            "Personal Care › Deodorants & Antiperspirants › Deodorant",
            ("aluminum free", "sensitive skin", "natural ingredients", "long lasting", "baking soda free"),
            (
                ("scent", ("bright citrus", "lavender", "cedar", "unscented")),
                ("size", ("2.5 ounce", "3 ounce (pack of 1)", "3 ounce (pack of 2)")),
            ),
            (5, 24),
            ("gym", "everyday use"),
        ),
        ProductType(
            "makeup brush set",
            "Tools & Accessories › Makeup Brushes & Tools › Brush Sets",
            ("synthetic bristles", "cruelty free", "travel case", "easy clean", "high quality"),
            (
                ("color", ("rose gold", "black", "white", "champagne")),
                ("pieces", ("10 pieces", "14 pieces", "18 pieces")),
            ),
            (8, 45),
            ("foundation", "eyeshadow"),
        ),
        ProductType(
            "nail polish",
            "Foot, Hand & Nail Care › Nail Art & Polish › Nail Polish",
            ("quick dry", "non toxic", "long lasting", "gel effect", "vegan"),
            (("color", ("cherry red", "pastel pink", "navy", "glitter silver", "mint", "black")),),
            (4, 20),
            ("manicure", "pedicure"),
        ),
    ),
    "electronics": (
        ProductType(
            "wireless earbuds",
            "Headphones, Earbuds & Accessories › Earbuds",
            (
                "noise cancelling",
                "bluetooth 5.3",
                "water resistant",
                "long battery life",
                "fast charging",
                "built-in microphone",
            ),
            (("color", ("black", "white", "navy blue", "pink")),),
            (18, 160),
            ("running", "phone calls"),
        ),
        ProductType(
            "phone case",
            "Cell Phones & Accessories › Cases, Holsters & Sleeves › Basic Cases",
            ("shockproof", "slim fit", "wireless charging compatible", "military grade", "clear back", "kickstand"),
            (
                ("color", ("black", "clear", "blue", "purple", "green")),
                ("phone model", ("iphone 14", "iphone 15", "galaxy s23", "pixel 8")),
            ),
            (7, 35),
            ("drops", "daily carry"),
        ),
        ProductType(
            "usb c charger",
            "Accessories & Supplies › Chargers & Adapters › Wall Chargers",
            ("fast charging", "foldable plug", "gan technology", "dual port", "compact design", "overheat protection"),
            (("wattage", ("20w", "30w", "65w", "100w")), ("color", ("white", "black"))),
            (10, 60),
            ("laptops", "travel"),
        ),
        ProductType(
            "hdmi cable",
            "Accessories & Supplies › Audio & Video Accessories › Cables",
            ("4k", "high speed", "braided", "gold plated", "8k", "ethernet"),
            (("size", ("3 feet", "6 feet", "10 feet", "15 feet")), ("item package quantity", ("1", "2"))),
            (6, 30),
            ("monitors", "game consoles"),
        ),
        ProductType(
            "bluetooth speaker",
            "Portable Audio & Video › Portable Bluetooth Speakers",
            ("waterproof", "portable", "long battery life", "stereo sound", "built-in microphone", "rugged"),
            (("color", ("black", "blue", "red", "camo green")),),
            (20, 180),
            ("camping", "the beach"),
        ),
        ProductType(
            "wireless mouse",
            "Computers & Accessories › Keyboards, Mice & Accessories › Mice",
            ("ergonomic", "silent click", "rechargeable", "usb receiver", "adjustable dpi", "bluetooth"),
            (("color", ("black", "grey", "white", "rose gold")),),
            (8, 70),
            ("office work", "laptops"),
        ),
    ),
    "fashion": (
        ProductType(
            "running shoes",
            "Men › Shoes › Athletic › Running",
            ("lightweight", "breathable mesh", "non slip", "arch support", "rubber sole", "memory foam"),
            (("size", ("7", "8", "9", "10", "11", "12")), ("color", ("black", "white", "grey", "blue"))),
            (30, 140),
            ("jogging", "the gym"),
        ),
        ProductType(
            "t-shirt",
            "Women › Clothing › Tops, Tees & Blouses › T-Shirts",
            ("cotton", "short sleeve", "crew neck", "machine wash", "relaxed fit", "moisture wicking"),
            (("size", SIZES), ("color", COLORS)),
            (8, 35),
            ("summer", "casual wear"),
        ),
        ProductType(
            "jeans",
            "Men › Clothing › Jeans",
            ("slim fit", "stretch denim", "button closure", "machine wash", "straight leg", "high waist"),
            (
                ("size", ("28w x 30l", "30w x 30l", "32w x 32l", "34w x 32l", "36w x 34l")),
                ("color", ("dark wash", "light wash", "black")),
            ),
            (25, 90),
            ("work", "weekends"),
        ),
        ProductType(
            "hoodie",
            "Men › Clothing › Fashion Hoodies & Sweatshirts",
            ("fleece lined", "pullover", "kangaroo pocket", "long sleeve", "machine wash", "drawstring"),
            (("size", SIZES), ("color", COLORS)),
            (18, 70),
            ("cold weather", "lounging"),
        ),
        ProductType(
            "sandals",
            "Women › Shoes › Sandals › Flat Sandals",
            ("open toe", "ankle strap", "arch support", "non slip", "leather", "lightweight"),
            (("size", ("6", "7", "8", "9", "10")), ("color", ("tan", "black", "white", "gold"))),
            (15, 80),
            ("the beach", "summer"),
        ),
        ProductType(
            "winter jacket",
            "Women › Clothing › Coats, Jackets & Vests › Down & Down Alternative",
            ("water resistant", "hooded", "zipper closure", "warm lining", "windproof", "packable"),
            (("size", SIZES[1:]), ("color", ("black", "navy blue", "olive green", "burgundy"))),
            (40, 210),
            ("snow", "hiking"),
        ),
    ),
    "garden": (
        ProductType(
            "coffee table",
            "Furniture › Living Room Furniture › Tables › Coffee Tables",
            ("solid wood", "storage shelf", "easy assembly", "mid century", "lift top", "metal frame"),
            (("color", ("walnut", "espresso", "white", "rustic brown")),),
            (60, 320),
            ("living rooms", "small spaces"),
        ),
        ProductType(
            "throw pillow covers",
            "Home Décor Products › Decorative Pillows, Inserts & Covers › Throw Pillow Covers",
            ("velvet", "hidden zipper", "machine washable", "soft", "double sided", "decorative"),
            (
                ("size", ("16 x 16 inch", "18 x 18 inch", "20 x 20 inch")),
                ("color", ("navy blue", "mustard yellow", "grey", "blush pink", "emerald green")),
            ),
            (9, 35),
            ("sofas", "bedrooms"),
        ),
        ProductType(
            "led desk lamp",
            "Lighting & Ceiling Fans › Lamps & Shades › Desk Lamps",
            ("dimmable", "usb charging port", "eye caring", "touch control", "adjustable arm", "energy efficient"),
            (("color", ("black", "white", "silver")),),
            (15, 80),
            ("reading", "home offices"),
        ),
        ProductType(
            "bath towel set",
            "Bath › Towels › Bath Towels",
            ("100% cotton", "quick dry", "highly absorbent", "machine washable", "soft", "hotel quality"),
            (
                ("color", ("white", "grey", "navy blue", "sage green", "beige")),
                ("item package quantity", ("4", "6", "8")),
            ),
            (20, 90),
            ("bathrooms", "guest rooms"),
        ),
        ProductType(
            "office chair",
            "Furniture › Home Office Furniture › Home Office Chairs › Desk Chairs",
            ("lumbar support", "adjustable height", "breathable mesh", "padded armrests", "swivel", "easy assembly"),
            (("color", ("black", "grey", "white", "blue")),),
            (70, 350),
            ("long work days", "home offices"),
        ),
        ProductType(
            "shower curtain",
            "Bath › Bathroom Accessories › Shower Curtains",
            ("waterproof", "mildew resistant", "machine washable", "heavy duty", "hooks included", "quick dry"),
            (
                ("size", ("72 x 72 inch", "72 x 84 inch", "36 x 72 inch")),
                ("color", ("white", "grey", "blue", "botanical print")),
            ),
            (10, 40),
            ("bathrooms", "bathtubs"),
        ),
    ),
    "grocery": (
        ProductType(
            "green tea",
            "Beverages › Coffee, Tea & Cocoa › Tea › Green Tea",
            ("organic", "caffeine free", "non gmo", "individually wrapped", "gluten free", "low calorie"),
            (
                ("flavor", ("jasmine", "matcha", "lemon ginger", "mint", "original")),
                ("count", ("20 count", "40 count", "100 count")),
            ),
            (4, 28),
            ("afternoons", "relaxing"),
        ),
        ProductType(
            "protein bar",
            "Snack Foods › Bars › Protein Bars",
            ("gluten free", "high protein", "low sugar", "keto friendly", "non gmo", "plant based"),
            (
                ("flavor", ("chocolate chip", "peanut butter", "cookies and cream", "salted caramel")),
                ("count", ("12 count", "24 count")),
            ),
            (12, 48),
            ("snacks", "workouts"),
        ),
        ProductType(
            "coffee beans",
            "Beverages › Coffee, Tea & Cocoa › Coffee › Whole Coffee Beans",
            ("medium roast", "dark roast", "organic", "fair trade", "single origin", "low acid"),
            (("size", ("12 ounce", "2 pound", "5 pound")),),
            (9, 60),
            ("espresso", "drip coffee"),
        ),
        ProductType(
            "mixed nuts",
            "Snack Foods › Nuts & Seeds › Mixed Nuts",
            ("unsalted", "roasted", "non gmo", "gluten free", "resealable bag", "high protein"),
            (
                ("size", ("1 pound", "2.5 pound", "3 pound")),
                ("flavor", ("lightly salted", "honey roasted", "unsalted")),
            ),
            (8, 36),
            ("road trips", "snacking"),
        ),
        ProductType(
            "olive oil",
            "Pantry Staples › Cooking & Baking › Oils › Olive Oils",
            ("extra virgin", "cold pressed", "organic", "non gmo", "first cold pressed", "glass bottle"),
            (("size", ("16.9 fl oz", "25.3 fl oz", "33.8 fl oz")),),
            (9, 45),
            ("salads", "cooking"),
        ),
        ProductType(
            "gummy candy",
            "Snack Foods › Candy & Chocolate › Gummy Candy",
            ("vegan", "gluten free", "fat free", "individually wrapped", "natural flavors", "sugar free"),
            (("flavor", ("sour", "tropical", "cherry", "assorted fruit")), ("size", ("5 ounce", "2 pound", "5 pound"))),
            (3, 25),
            ("parties", "movie nights"),
        ),
    ),
}

TOP_LEVEL = {
    "beauty": "Beauty & Personal Care", "electronics": "Electronics", "fashion": "Clothing, Shoes & Jewelry",
    "garden": "Home & Kitchen", "grocery": "Grocery & Gourmet Food",
}  # fmt: skip

BRANDS = (
    "Aurora", "Brightwell", "Cedarline", "Dovetail", "Everpeak", "Fernhill", "Goldcrest", "Harbor & Co",
    "Ironwood", "Juniper", "Kestrel", "Lumina", "Maplecraft", "Northfield", "Oakmont", "Pinegrove",
    "Quillon", "Riverstone", "Silverleaf", "Tidewater", "Upland", "Verdant", "Willowby", "Zephyr",
)  # fmt: skip

STYLE_WORDS = ("Premium", "Classic", "Essential", "Pro", "Everyday", "Signature", "Ultra", "Deluxe")

INSTRUCTION_FORMS = (
    "i am looking for {attrs} {noun}",
    "i need a {noun} that is {attrs}",
    "find me {attrs} {noun}",
    "i want to buy {noun} with {attrs}",
    "can you find {attrs} {noun} for {use}",
)

REVIEW_LINES = (
    ("Does what it says", 5, "Works exactly as described and arrived quickly."),
    ("Good value", 4, "Nice quality for the price, would buy again."),
    ("Just okay", 3, "It is fine, but not as nice as the photos."),
    ("Disappointed", 2, "The {noun} did not hold up after a few weeks."),
    ("Love it", 5, "My second {noun} from this brand and still impressed."),
)


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _product(rng: random.Random, category: str, kind: ProductType, number: int) -> tuple[Product, dict]:
    brand = rng.choice(BRANDS)
    attributes = rng.sample(kind.attributes, rng.randint(3, min(5, len(kind.attributes))))
    options = {}
    for group, values in kind.options:
        k = rng.randint(2, len(values)) if len(values) > 2 else len(values)
        options[group] = [v for v in values if v in set(rng.sample(values, k))]
    low = round(rng.uniform(*kind.price), 2)
    pricing = [low] if rng.random() < 0.7 else [low, round(low * rng.uniform(1.1, 1.6), 2)]
    headline = [a.title() for a in attributes[:2]]
    title = f"{brand} {rng.choice(STYLE_WORDS)} {kind.noun.title()}, {headline[0]}, {headline[1]}"
    if rng.random() < 0.5:
        title += f" - for {rng.choice(kind.uses).title()}"
    description = (
        f"The {brand} {kind.noun} is made for {rng.choice(kind.uses)}. "
        f"It is {_join(attributes[1:])}, and it comes from a brand that has been making {kind.noun} "
        f"products for {rng.randint(2, 30)} years."
    )
    bullets = [f"{a.upper()}: this {kind.noun} is {a}, tested for {rng.choice(kind.uses)}" for a in attributes[:3]]
    bullets += [
        f"WHAT YOU GET: {brand} {kind.noun} and a {rng.randint(30, 365)}-day guarantee",
        f"GREAT FOR {rng.choice(kind.uses).upper()}: simple to use, every day",
    ]
    reviews = []
    for title_, score, body in rng.sample(REVIEW_LINES, rng.randint(0, 3)):
        reviews.append({"title": title_, "score": score, "body": body.format(noun=kind.noun)})
    rating = f"{rng.uniform(3.0, 5.0):.1f}" if reviews else "N.A."
    asin = f"E{category[:2].upper()}{number:07d}"
    product = Product(
        asin=asin, title=title, description=description, bullet_points=bullets, pricing=pricing, price=low,
        rating=rating, reviews=reviews, attributes=attributes, options=options, category=category,
        query=kind.noun, product_category=f"{TOP_LEVEL[category]} › {kind.path}",
    )  # fmt: skip
    wanted = rng.sample(attributes, rng.randint(2, min(3, len(attributes))))
    form = rng.choice(INSTRUCTION_FORMS)
    text = form.format(attrs=_join(wanted), noun=kind.noun, use=rng.choice(kind.uses))
    return product, {"instruction": text, "instruction_attributes": wanted}


def generate_catalog(seed: int = 0, products_per_type: int = PRODUCTS_PER_TYPE) -> Catalog:
    """The embedded catalog (see the module docstring); the same for the same arguments."""
    rng = random.Random(seed)
    products, instructions = [], {}
    number = 0
    for category in sorted(TYPES):
        for kind in TYPES[category]:
            for _ in range(products_per_type):
                product, instruction = _product(rng, category, kind, number)
                products.append(product)
                instructions[product.asin] = instruction
                number += 1
    goal_rng = random.Random(SPLIT_SEED)
    draw_prices(products, goal_rng)
    goals = synthetic_goals(products, instructions, goal_rng, max_per_product=GOALS_PER_PRODUCT)
    return Catalog(name=f"embedded-{seed}-{products_per_type}", products=products, goals=weigh_and_shuffle(goals))
