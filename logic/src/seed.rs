//! A deterministic demo catalog: the same `n` products every time, spread over twenty
//! categories with plausible names, descriptions, prices and stock. Seeding inserts what is
//! missing and never touches existing rows, so running it twice changes nothing.

use sqlx::PgPool;

struct CategorySpec {
    name: &'static str,
    code: &'static str,
    nouns: &'static [&'static str],
    /// Price range in cents.
    price: (i64, i64),
}

const CATEGORIES: &[CategorySpec] = &[
    CategorySpec {
        name: "Kitchen",
        code: "KIT",
        nouns: &[
            "Chef's Knife",
            "Cutting Board",
            "Saucepan",
            "Colander",
            "Whisk",
            "Dutch Oven",
        ],
        price: (599, 18999),
    },
    CategorySpec {
        name: "Coffee & Tea",
        code: "COF",
        nouns: &[
            "Pour-Over Dripper",
            "French Press",
            "Tea Kettle",
            "Burr Grinder",
            "Espresso Cup Set",
            "Loose Leaf Tin",
        ],
        price: (899, 24999),
    },
    CategorySpec {
        name: "Garden",
        code: "GAR",
        nouns: &[
            "Trowel",
            "Pruning Shears",
            "Watering Can",
            "Raised Bed Kit",
            "Hose Reel",
            "Seed Tray",
        ],
        price: (499, 15999),
    },
    CategorySpec {
        name: "Outdoor",
        code: "OUT",
        nouns: &[
            "Camping Lantern",
            "Trail Backpack",
            "Folding Chair",
            "Sleeping Bag",
            "Water Filter",
            "Dome Tent",
        ],
        price: (1499, 39999),
    },
    CategorySpec {
        name: "Books",
        code: "BOO",
        nouns: &[
            "Field Guide",
            "Cookbook",
            "Atlas",
            "Notebook",
            "Sketchbook",
            "Travel Journal",
        ],
        price: (699, 5999),
    },
    CategorySpec {
        name: "Stationery",
        code: "STA",
        nouns: &[
            "Fountain Pen",
            "Pencil Set",
            "Desk Organizer",
            "Ink Bottle",
            "Paper Pad",
            "Letter Opener",
        ],
        price: (299, 8999),
    },
    CategorySpec {
        name: "Audio",
        code: "AUD",
        nouns: &[
            "Headphones",
            "Bookshelf Speaker",
            "Turntable",
            "Earbuds",
            "Radio",
            "Amplifier",
        ],
        price: (1999, 59999),
    },
    CategorySpec {
        name: "Computing",
        code: "COM",
        nouns: &[
            "Mechanical Keyboard",
            "Wireless Mouse",
            "USB-C Hub",
            "Laptop Stand",
            "Monitor Arm",
            "Webcam",
        ],
        price: (1499, 29999),
    },
    CategorySpec {
        name: "Home Office",
        code: "HOF",
        nouns: &[
            "Desk Lamp",
            "Task Chair",
            "Cable Tray",
            "Footrest",
            "Whiteboard",
            "Standing Desk Mat",
        ],
        price: (1299, 49999),
    },
    CategorySpec {
        name: "Lighting",
        code: "LIG",
        nouns: &[
            "Pendant Light",
            "Floor Lamp",
            "String Lights",
            "Wall Sconce",
            "Night Light",
            "LED Bulb Pack",
        ],
        price: (799, 27999),
    },
    CategorySpec {
        name: "Bedding",
        code: "BED",
        nouns: &[
            "Duvet Cover",
            "Pillow",
            "Fitted Sheet",
            "Weighted Blanket",
            "Mattress Topper",
            "Throw",
        ],
        price: (1499, 21999),
    },
    CategorySpec {
        name: "Bath",
        code: "BAT",
        nouns: &[
            "Bath Towel",
            "Shower Caddy",
            "Bath Mat",
            "Soap Dish",
            "Robe",
            "Toothbrush Holder",
        ],
        price: (399, 9999),
    },
    CategorySpec {
        name: "Fitness",
        code: "FIT",
        nouns: &[
            "Yoga Mat",
            "Kettlebell",
            "Resistance Bands",
            "Jump Rope",
            "Foam Roller",
            "Dumbbell Pair",
        ],
        price: (699, 19999),
    },
    CategorySpec {
        name: "Cycling",
        code: "CYC",
        nouns: &[
            "Bike Light",
            "Helmet",
            "Floor Pump",
            "Saddle Bag",
            "Water Bottle Cage",
            "Chain Lube",
        ],
        price: (599, 17999),
    },
    CategorySpec {
        name: "Toys",
        code: "TOY",
        nouns: &[
            "Building Blocks",
            "Puzzle",
            "Kite",
            "Wooden Train",
            "Plush Bear",
            "Marble Run",
        ],
        price: (499, 8999),
    },
    CategorySpec {
        name: "Games",
        code: "GAM",
        nouns: &[
            "Board Game",
            "Card Deck",
            "Chess Set",
            "Dice Set",
            "Party Game",
            "Strategy Game",
        ],
        price: (599, 9999),
    },
    CategorySpec {
        name: "Pets",
        code: "PET",
        nouns: &[
            "Dog Leash",
            "Cat Tree",
            "Pet Bed",
            "Feeding Bowl",
            "Chew Toy",
            "Grooming Brush",
        ],
        price: (399, 14999),
    },
    CategorySpec {
        name: "Tools",
        code: "TOO",
        nouns: &[
            "Screwdriver Set",
            "Cordless Drill",
            "Tape Measure",
            "Spirit Level",
            "Socket Wrench",
            "Utility Knife",
        ],
        price: (499, 24999),
    },
    CategorySpec {
        name: "Travel",
        code: "TRA",
        nouns: &[
            "Carry-On Case",
            "Packing Cubes",
            "Neck Pillow",
            "Passport Wallet",
            "Luggage Tag",
            "Travel Adapter",
        ],
        price: (699, 34999),
    },
    CategorySpec {
        name: "Pantry",
        code: "PAN",
        nouns: &[
            "Olive Oil",
            "Sea Salt",
            "Honey Jar",
            "Spice Rack",
            "Pasta Sampler",
            "Hot Sauce Trio",
        ],
        price: (349, 4999),
    },
];

const ADJECTIVES: &[&str] = &[
    "Classic",
    "Compact",
    "Deluxe",
    "Everyday",
    "Nordic",
    "Rustic",
    "Modern",
    "Heritage",
    "Urban",
    "Alpine",
    "Coastal",
    "Studio",
    "Essential",
    "Premium",
    "Vintage",
    "Trail",
];
const MATERIALS: &[&str] = &[
    "Oak",
    "Walnut",
    "Steel",
    "Copper",
    "Linen",
    "Cotton",
    "Ceramic",
    "Bamboo",
    "Wool",
    "Cast Iron",
    "Glass",
    "Leather",
    "Recycled",
    "Slate",
    "Brass",
    "Canvas",
];
const QUALITIES: &[&str] = &[
    "built to last for years",
    "designed for small spaces",
    "easy to clean and store",
    "made from responsibly sourced materials",
    "a favourite of our customers",
    "tested for daily use",
    "with a two-year warranty",
    "light enough to take anywhere",
];

/// SplitMix64: a tiny generator whose output never changes across library versions, which
/// a reproducible catalog needs.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// One product of the demo catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedProduct {
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub price_cents: i64,
    pub stock: i32,
}

/// The `i`-th product of the catalog (0-based); the same for the same `i`, always.
pub fn product(i: u64) -> SeedProduct {
    let spec = &CATEGORIES[(i % CATEGORIES.len() as u64) as usize];
    let mut rng = SplitMix(i.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5354_5241_5441);
    let adjective = rng.pick(ADJECTIVES);
    let material = rng.pick(MATERIALS);
    let noun = rng.pick(spec.nouns);
    let quality = rng.pick(QUALITIES);
    let (lo, hi) = spec.price;
    // Prices end in 99 cents, as shops like them.
    let dollars = (lo / 100) + rng.below(((hi - lo) / 100).max(1) as u64) as i64;
    let price_cents = dollars * 100 + 99;
    // Mostly in stock, some low, a few sold out.
    let stock = match rng.below(20) {
        0 => 0,
        1..=3 => 1 + rng.below(5) as i32,
        _ => 10 + rng.below(490) as i32,
    };
    SeedProduct {
        sku: format!("{}-{:05}", spec.code, i / CATEGORIES.len() as u64 + 1),
        name: format!("{adjective} {material} {noun}"),
        description: format!(
            "A {} {} from our {} range, {quality}.",
            material.to_lowercase(),
            noun.to_lowercase(),
            spec.name.to_lowercase()
        ),
        category: spec.name.to_owned(),
        price_cents,
        stock,
    }
}

/// Inserts the first `n` catalog products that are not there yet; returns how many were new.
pub async fn seed(pool: &PgPool, n: u64) -> sqlx::Result<u64> {
    let mut inserted = 0;
    let mut start = 0;
    while start < n {
        let end = (start + 1000).min(n);
        let batch: Vec<SeedProduct> = (start..end).map(product).collect();
        let col = |f: fn(&SeedProduct) -> String| batch.iter().map(f).collect::<Vec<_>>();
        inserted += sqlx::query(
            "INSERT INTO products (sku, name, description, category, price_cents, stock) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::int[]) \
             ON CONFLICT (sku) DO NOTHING",
        )
        .bind(col(|p| p.sku.clone()))
        .bind(col(|p| p.name.clone()))
        .bind(col(|p| p.description.clone()))
        .bind(col(|p| p.category.clone()))
        .bind(batch.iter().map(|p| p.price_cents).collect::<Vec<_>>())
        .bind(batch.iter().map(|p| p.stock).collect::<Vec<_>>())
        .execute(pool)
        .await?
        .rows_affected();
        start = end;
    }
    Ok(inserted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_valid() {
        for i in 0..2000 {
            let a = product(i);
            assert_eq!(a, product(i));
            assert!(a.price_cents > 0);
            assert!(a.stock >= 0);
            assert!(a.sku.len() <= 64);
        }
        let skus: std::collections::HashSet<_> = (0..10_000).map(|i| product(i).sku).collect();
        assert_eq!(skus.len(), 10_000, "skus are unique");
        let categories: std::collections::HashSet<_> =
            (0..100).map(|i| product(i).category).collect();
        assert_eq!(categories.len(), 20);
    }
}
