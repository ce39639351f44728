"""The synthetic shop's fixed catalogue, and what the generator's modules share.

The catalogue (``<category>-<nnn>`` product ids, list prices, popularity) does not
depend on the seed, so rules files can name its products. Also here: shop-time units
(milliseconds) and :func:`mix`, the seed mixer every random stream is derived from.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import accumulate

SEC_MS = 1_000
MIN_MS = 60 * SEC_MS
HOUR_MS = 60 * MIN_MS
DAY_MS = 24 * HOUR_MS
NEVER = 1 << 62


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    category: str
    price: float


# category -> (number of products, min price, max price)
CATEGORY_SPECS: dict[str, tuple[int, float, float]] = {
    "coffee": (12, 6.0, 32.0),
    "tea": (10, 4.0, 25.0),
    "pet_food": (12, 12.0, 70.0),
    "diapers": (8, 15.0, 45.0),
    "cleaning": (10, 3.0, 20.0),
    "snacks": (15, 1.5, 9.0),
    "beauty": (20, 8.0, 90.0),
    "apparel": (40, 15.0, 180.0),
    "shoes": (20, 40.0, 220.0),
    "electronics": (30, 20.0, 1200.0),
    "home": (30, 10.0, 400.0),
    "books": (40, 6.0, 45.0),
    "toys": (25, 8.0, 120.0),
    "sports": (20, 12.0, 300.0),
}

#: Typical replenishment interval (days) of the consumable categories; a
#: replenisher's own interval is this times a per-user factor in [0.85, 1.15],
#: and each cycle adds another +-15 % of jitter.
CONSUMABLE_DAYS: dict[str, float] = {
    "coffee": 14.0,
    "tea": 21.0,
    "pet_food": 30.0,
    "diapers": 10.0,
    "cleaning": 45.0,
}

SEARCH_TERMS: dict[str, tuple[str, ...]] = {
    "coffee": ("espresso beans", "decaf", "cold brew", "arabica 1kg"),
    "tea": ("green tea", "oolong", "earl grey", "matcha"),
    "pet_food": ("cat food", "dog food grain free", "puppy food", "cat litter"),
    "diapers": ("diapers size 4", "baby wipes", "pull ups"),
    "cleaning": ("dish soap", "laundry pods", "sponges"),
    "snacks": ("protein bar", "dark chocolate", "trail mix"),
    "beauty": ("moisturizer", "sunscreen spf 50", "shampoo"),
    "apparel": ("rain jacket", "linen shirt", "wool socks", "jeans"),
    "shoes": ("running shoes", "sneakers white", "hiking boots"),
    "electronics": ("usb-c charger", "noise cancelling headphones", "4k monitor"),
    "home": ("desk lamp", "bath towels", "cast iron pan"),
    "books": ("fantasy trilogy", "cookbook", "python programming"),
    "toys": ("lego", "puzzle 1000", "board game"),
    "sports": ("yoga mat", "dumbbells", "bike helmet"),
}


def _build_catalog() -> tuple[Product, ...]:
    rng = random.Random("nudge-catalog-v1")
    products: list[Product] = []
    for category, (count, low, high) in CATEGORY_SPECS.items():
        for k in range(1, count + 1):
            # log-uniform prices, rounded to a shop-like .x9 ending
            price = low * (high / low) ** rng.random()
            price = max(0.99, round(price, 1) - 0.01)
            products.append(Product(f"{category}-{k:03d}", category, round(price, 2)))
    return tuple(products)


#: The fixed product catalogue (``<category>-<nnn>`` ids).
CATALOG: tuple[Product, ...] = _build_catalog()
CATEGORIES: tuple[str, ...] = tuple(CATEGORY_SPECS)
BY_CATEGORY: dict[str, tuple[Product, ...]] = {
    c: tuple(p for p in CATALOG if p.category == c) for c in CATEGORIES
}
# Zipf-like popularity inside a category: the k-th product is 1/k as popular.
CUM_WEIGHTS: dict[str, tuple[float, ...]] = {
    c: tuple(accumulate(1.0 / k for k in range(1, len(ps) + 1))) for c, ps in BY_CATEGORY.items()
}
CONSUMABLES: tuple[str, ...] = tuple(CONSUMABLE_DAYS)


def mix(seed: int, user: int, n: int) -> int:
    """A well-spread 64-bit seed for (seed, user, n): splitmix64 finaliser rounds."""
    mask = (1 << 64) - 1
    z = (seed * 0x9E3779B97F4A7C15 + user * 0xBF58476D1CE4E5B9 + n * 0x94D049BB133111EB) & mask
    for _ in range(2):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
    return z
