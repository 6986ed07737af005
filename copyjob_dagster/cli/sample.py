"""The sample "shop" source: a SQLite database of customers, products, orders and order items.

The data is generated from a fixed seed, so every machine gets the same rows. Types are the
ones a real application database has: integer keys, exact decimals, timestamps to the
microsecond, booleans, JSON, nullable text.
"""

import json
import random
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

CUSTOMERS = 20_000
PRODUCTS = 2_000
ORDERS = 100_000
ORDER_ITEMS = 250_000
SEED = 20261125
EPOCH = datetime(2024, 1, 1)
COUNTRIES = ["DE", "FR", "NL", "US", "GB", "JP", "BR", "IN", "ZA", "SE"]
STATUSES = ["placed", "paid", "shipped", "delivered", "returned"]

metadata = sa.MetaData()
customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(255), nullable=False, unique=True),
    sa.Column("full_name", sa.Text, nullable=False),
    sa.Column("country", sa.String(2), nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)
products = sa.Table(
    "products",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sku", sa.String(32), nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("price", sa.Numeric(10, 2), nullable=False),
    sa.Column("weight_kg", sa.Float),
    sa.Column("attributes", sa.JSON),
)
orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("total", sa.Numeric(12, 2), nullable=False),
    sa.Column("ordered_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("note", sa.Text),
)
order_items = sa.Table(
    "order_items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id"), nullable=False),
    sa.Column("product_id", sa.Integer, sa.ForeignKey("products.id"), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("unit_price", sa.Numeric(10, 2), nullable=False),
    sa.Column("discount", sa.Float, nullable=False),
)


def _timestamp(value: datetime) -> str:
    """SQLAlchemy's storage format for DATETIME in SQLite, so the rows read back exactly."""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def create_shop(path: Path, scale: float = 1.0) -> dict[str, int]:
    """Create (or re-create) the shop database at `path`; return rows per table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    engine = sa.create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    engine.dispose()

    rng = random.Random(SEED)
    counts = {
        "customers": max(1, int(CUSTOMERS * scale)),
        "products": max(1, int(PRODUCTS * scale)),
        "orders": max(1, int(ORDERS * scale)),
        "order_items": max(1, int(ORDER_ITEMS * scale)),
    }
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?)",
            (
                (
                    i,
                    f"customer{i}@example.com",
                    f"Customer {i} {rng.choice(['Müller', 'Dubois', 'Tanaka', 'Silva', 'Smith'])}",
                    rng.choice(COUNTRIES),
                    rng.random() > 0.1,
                    _timestamp(EPOCH + timedelta(seconds=rng.randrange(0, 60_000_000))),
                )
                for i in range(1, counts["customers"] + 1)
            ),
        )
        prices = [f"{rng.randrange(99, 99_999) / 100:.2f}" for _ in range(counts["products"])]
        db.executemany(
            "INSERT INTO products VALUES (?, ?, ?, ?, ?, ?)",
            (
                (
                    i,
                    f"SKU-{i:06d}",
                    f"Product {i}",
                    prices[i - 1],
                    round(rng.uniform(0.05, 30), 3) if rng.random() > 0.05 else None,
                    json.dumps(
                        {"color": rng.choice(["red", "blue", "green"]), "size": rng.randrange(1, 5)}
                    ),
                )
                for i in range(1, counts["products"] + 1)
            ),
        )
        db.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?)",
            (_order(rng, i, counts["customers"]) for i in range(1, counts["orders"] + 1)),
        )
        db.executemany(
            "INSERT INTO order_items VALUES (?, ?, ?, ?, ?, ?)",
            (
                (
                    i,
                    rng.randrange(1, counts["orders"] + 1),
                    (product := rng.randrange(1, counts["products"] + 1)),
                    rng.randrange(1, 10),
                    prices[product - 1],
                    rng.choice([0.0, 0.0, 0.05, 0.1]),
                )
                for i in range(1, counts["order_items"] + 1)
            ),
        )
    return counts


def _order(rng: random.Random, order_id: int, customer_count: int) -> tuple[object, ...]:
    ordered = EPOCH + timedelta(
        seconds=order_id * 600 + rng.randrange(0, 600), microseconds=rng.randrange(1_000_000)
    )
    updated = ordered + timedelta(
        hours=rng.randrange(0, 240), microseconds=rng.randrange(1_000_000)
    )
    return (
        order_id,
        rng.randrange(1, customer_count + 1),
        rng.choice(STATUSES),
        f"{rng.randrange(100, 500_000) / 100:.2f}",
        _timestamp(ordered),
        _timestamp(updated),
        rng.choice([None, None, None, "gift wrap", "leave at the door", "🎁 birthday"]),
    )
