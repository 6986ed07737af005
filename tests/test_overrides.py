"""Watermark values typed by a person are parsed against the column's kind, or refused clearly."""

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from copyjob_dagster.config import TableConfig
from copyjob_dagster.engine.overrides import Backfill, parse_value, typed_watermark
from copyjob_dagster.errors import WatermarkError

TABLE = TableConfig(name="orders", incremental_column="updated_at")


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        ("integer", "1500", 1500),
        ("integer", str(2**63 - 1), 2**63 - 1),
        ("decimal", "19.990", Decimal("19.990")),
        ("date", "2024-03-01", date(2024, 3, 1)),
        ("timestamp", "2024-03-01 12:00:00.000001", datetime(2024, 3, 1, 12, 0, 0, 1)),
        ("timestamp_tz", "2024-03-01T13:00:00+01:00", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("string", "B-0042", "B-0042"),
    ],
    ids=lambda item: str(item)[:24],
)
def test_values_of_each_kind_parse_exactly(kind: Any, text: str, value: Any) -> None:
    assert parse_value("shop", TABLE, kind, text, "watermark") == value
    assert typed_watermark("shop", TABLE, kind, text).value == value


@pytest.mark.parametrize(
    ("kind", "text", "form"),
    [
        ("integer", "15.5", "a whole number"),
        ("decimal", "NaN", "a decimal number"),
        ("date", "2024-02-30", "a date"),
        ("timestamp", "2024-03-01 12:00:00+00:00", "a timestamp without time zone"),
        ("timestamp_tz", "2024-03-01 12:00:00", "a timestamp with its time zone"),
    ],
)
def test_values_that_do_not_fit_the_column_are_refused(kind: Any, text: str, form: str) -> None:
    with pytest.raises(WatermarkError) as refused:
        parse_value("shop", TABLE, kind, text, "from")
    assert str(refused.value).startswith(
        f"job 'shop', table 'orders': from {text!r} is not a value of column 'updated_at', "
        f"which holds {kind} values: give {form}"
    )


def test_a_backfill_window_must_hold_something() -> None:
    assert Backfill("2024-01-01", "2024-01-31").bounds("shop", TABLE, "date") == (
        date(2024, 1, 1),
        date(2024, 1, 31),
    )
    with pytest.raises(WatermarkError, match=r"'from' \(10\) must be below its 'to' \(10\)"):
        Backfill("10", "10").bounds("shop", TABLE, "integer")
