"""The retail catalog's vocabulary: a 3-level category taxonomy and the words used in item text.

Data only. Each department has a median price, a margin range, the words its descriptions use
(each word later gets a latent vector near its department's, so description words carry signal
about an item's latent vector) and its level-2 / level-3 categories. A level-3 name doubles as the
product noun in titles ("Trail" under ``Footwear>Running`` -> "Trail Running Shoe").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Department:
    name: str
    median_price: float
    margin: tuple[float, float]
    noun: str  # generic product noun appended to titles
    words: tuple[str, ...]
    subcategories: dict[str, tuple[str, ...]]


DEPARTMENTS: tuple[Department, ...] = (
    Department(
        "Footwear", 75.0, (0.25, 0.45), "Shoe",
        ("cushioned", "breathable", "waterproof", "grippy", "lightweight", "leather", "suede", "insole",
         "outsole", "lace", "ankle", "arch", "stride", "mesh", "heel"),
        {"Running": ("Trail", "Road", "Racing"), "Casual": ("Sneakers", "Loafers", "Slip-ons"),
         "Boots": ("Hiking", "Chelsea", "Winter"), "Sandals": ("Sport", "Flip-flops", "Slides")},
    ),
    Department(
        "Apparel", 40.0, (0.35, 0.6), "Garment",
        ("cotton", "linen", "wool", "stretch", "tailored", "relaxed", "knit", "denim", "collar",
         "sleeve", "seam", "fabric", "fleece", "pocket", "hem"),
        {"Tops": ("T-shirts", "Shirts", "Sweaters"), "Bottoms": ("Jeans", "Chinos", "Shorts"),
         "Outerwear": ("Jackets", "Coats", "Raincoats"), "Activewear": ("Leggings", "Hoodies", "Tanks")},
    ),
    Department(
        "Electronics", 220.0, (0.05, 0.2), "Device",
        ("wireless", "bluetooth", "battery", "charging", "display", "processor", "resolution", "bass",
         "noise-cancelling", "storage", "pixel", "usb-c", "firmware", "sensor", "speaker"),
        {"Audio": ("Headphones", "Earbuds", "Speakers"), "Computing": ("Laptops", "Tablets", "Monitors"),
         "Phones": ("Smartphones", "Cases", "Chargers"), "Cameras": ("Mirrorless", "Action", "Lenses")},
    ),
    Department(
        "Home & Kitchen", 55.0, (0.2, 0.45), "Item",
        ("stainless", "nonstick", "ceramic", "dishwasher-safe", "oven", "blender", "kettle", "cookware",
         "cotton", "pillow", "duvet", "storage", "countertop", "utensil", "brew"),
        {"Cookware": ("Pans", "Pots", "Bakeware"), "Appliances": ("Blenders", "Kettles", "Coffee"),
         "Bedding": ("Duvets", "Pillows", "Sheets"), "Storage": ("Boxes", "Shelves", "Jars")},
    ),
    Department(
        "Beauty", 22.0, (0.4, 0.65), "Product",
        ("hydrating", "serum", "fragrance", "vegan", "spf", "moisturiser", "scent", "matte", "glow",
         "cleanser", "vitamin", "skin", "hair", "cruelty-free", "lash"),
        {"Skincare": ("Serums", "Moisturisers", "Cleansers"), "Makeup": ("Lipstick", "Mascara", "Foundation"),
         "Haircare": ("Shampoo", "Conditioner", "Styling"), "Fragrance": ("Perfume", "Cologne", "Mist")},
    ),
    Department(
        "Sports & Outdoors", 60.0, (0.2, 0.4), "Gear",
        ("camping", "hiking", "tent", "yoga", "dumbbell", "cycling", "helmet", "trail", "workout",
         "insulated", "outdoor", "fitness", "climbing", "paddle", "compass"),
        {"Camping": ("Tents", "Sleeping-bags", "Stoves"), "Fitness": ("Weights", "Mats", "Bands"),
         "Cycling": ("Helmets", "Lights", "Bottles"), "Water": ("Paddles", "Wetsuits", "Goggles")},
    ),
    Department(
        "Toys & Games", 28.0, (0.3, 0.5), "Toy",
        ("puzzle", "board", "kids", "building", "bricks", "plush", "creative", "educational", "family",
         "strategy", "cards", "dice", "colourful", "imaginative", "ages"),
        {"Games": ("Board-games", "Card-games", "Puzzles"), "Construction": ("Bricks", "Magnetic", "Kits"),
         "Plush": ("Bears", "Animals", "Dolls"), "Outdoor-play": ("Balls", "Kites", "Water-toys")},
    ),
    Department(
        "Garden & DIY", 45.0, (0.2, 0.4), "Tool",
        ("cordless", "drill", "garden", "soil", "seeds", "hose", "pruning", "paint", "brush", "hammer",
         "toolkit", "planter", "lawn", "watering", "screwdriver"),
        {"Power-tools": ("Drills", "Saws", "Sanders"), "Gardening": ("Planters", "Hoses", "Pruners"),
         "Paint": ("Brushes", "Rollers", "Paints"), "Hand-tools": ("Hammers", "Screwdrivers", "Wrenches")},
    ),
)

# Words any item may use; their latent vectors are random, so they carry item-level signal only.
GENERAL_WORDS: tuple[str, ...] = (
    "classic", "modern", "durable", "compact", "premium", "everyday", "versatile", "elegant", "bold",
    "minimal", "vintage", "sleek", "rugged", "soft", "bright", "natural", "eco", "handmade", "portable",
    "essential", "signature", "limited", "deluxe", "smart", "cosy", "sturdy", "refined", "vibrant",
    "recycled", "organic",
)

BRAND_SYLLABLES: tuple[str, ...] = (
    "no", "ra", "vel", "ka", "zen", "tor", "li", "mar", "qu", "sta", "bri", "lu", "fen", "dor", "ix",
    "ae", "sol", "mo", "tri", "van", "el", "ko", "ny", "pha",
)

COUNTRIES: tuple[str, ...] = ("US", "GB", "DE", "FR", "ES")
AGE_BANDS: tuple[str, ...] = ("18-24", "25-34", "35-49", "50+")
