"""Watermarks: exact round trips through metadata for every type, and tampering refused."""

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
import sqlalchemy as sa

from copyjob_dagster.config import CopyJob
from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs, latest_watermark
from copyjob_dagster.defs.metadata import WATERMARK, WATERMARK_TYPE, watermark_from_metadata
from copyjob_dagster.engine.watermark import Watermark, parse, watermark_kind
from copyjob_dagster.errors import SchemaError, WatermarkError

ROUND_TRIPS = [
    ("integer", 2**63 - 1, "9223372036854775807"),
    ("integer", 2**53 + 1, "9007199254740993"),  # not representable as a float
    ("decimal", Decimal("12345678901234567890.123456789"), "12345678901234567890.123456789"),
    ("decimal", Decimal("19.990"), "19.990"),  # the scale is kept
    ("date", date(1, 1, 1), "0001-01-01"),
    ("timestamp", datetime(2024, 3, 1, 12, 0, 0, 123456), "2024-03-01 12:00:00.123456"),
    (
        "timestamp_tz",
        datetime(2024, 3, 1, 14, 0, 0, 1, tzinfo=timezone(timedelta(hours=2))),
        "2024-03-01 12:00:00.000001+00:00",  # kept in UTC
    ),
    ("string", "Zoë's 🎁 order", "Zoë's 🎁 order"),
]


@pytest.mark.parametrize(
    ("kind", "value", "text"), ROUND_TRIPS, ids=[r[0] + "-" + r[2][:12] for r in ROUND_TRIPS]
)
def test_watermark_round_trips_exactly_through_metadata(kind: str, value: Any, text: str) -> None:
    watermark = Watermark.of(kind, value, 3, "3:abc")
    assert watermark.text == text
    metadata = {
        WATERMARK: dg.MetadataValue.text(watermark.text),
        WATERMARK_TYPE: dg.MetadataValue.text(watermark.kind),
        "copyjob/watermark_rows_at_value": dg.MetadataValue.int(3),
        "copyjob/watermark_fingerprint": dg.MetadataValue.text("3:abc"),
    }
    restored = watermark_from_metadata(metadata)
    assert restored == watermark
    assert restored.value == value and type(restored.value) is type(value)


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("integer", "1; DROP TABLE events; --"),
        ("integer", "1.5"),
        ("decimal", "NaN"),
        ("decimal", "Infinity"),
        ("date", "2024-02-30"),
        ("timestamp", "2024-03-01 12:00:00+00:00"),  # aware text for a naive column
        ("timestamp_tz", "2024-03-01 12:00:00"),  # naive text for an aware column
        ("float", "1.0"),
    ],
    ids=[
        "sql-text",
        "fraction-for-integer",
        "nan",
        "infinity",
        "bad-date",
        "aware-for-naive",
        "naive-for-aware",
        "unknown-type",
    ],
)
def test_tampered_watermark_is_refused(kind: str, text: str) -> None:
    with pytest.raises(WatermarkError, match="watermark"):
        parse(kind, text)


@pytest.mark.parametrize(
    "arrow_type", [pa.float64(), pa.bool_(), pa.binary()], ids=["float", "boolean", "binary"]
)
def test_columns_that_cannot_order_exactly_are_refused(arrow_type: pa.DataType) -> None:
    with pytest.raises(SchemaError, match="cannot serve as a watermark"):
        watermark_kind(pa.field("cursor", arrow_type))


def test_json_column_is_refused_as_watermark() -> None:
    field = pa.field("cursor", pa.string(), metadata={b"copyjob.logical": b"json"})
    with pytest.raises(SchemaError, match="do not order"):
        watermark_kind(field)


def test_tampered_watermark_in_the_instance_fails_the_run_and_changes_nothing(
    tmp_path: Path, shop_db: Path
) -> None:
    job = CopyJob.model_validate(
        {
            "name": "tamper",
            "mode": "incremental",
            "source": {"url": f"sqlite:///{shop_db}"},
            "destination": {"url": f"sqlite:///{tmp_path / 'dest.sqlite'}"},
            "tables": [{"name": "orders", "incremental_column": "id"}],
        }
    )
    key = dg.AssetKey(["tamper", "orders"])
    assets = [*build_source_specs([job]), *build_copy_assets([job])]
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                key, metadata={WATERMARK: "0 OR 1=1", WATERMARK_TYPE: "integer"}
            )
        )
        result = dg.materialize(assets, instance=instance, raise_on_error=False)
        assert not result.success
        failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
        assert "'0 OR 1=1' is not a valid integer" in failure.description
    assert not (tmp_path / "dest.sqlite").exists() or not sa.inspect(
        sa.create_engine(f"sqlite:///{tmp_path / 'dest.sqlite'}")
    ).has_table("orders")


CURSOR_TYPES = [
    ("bigint", "BIGINT", [2**53 + 1, 2**53 + 2], 2**53 + 3, "9007199254740995"),
    (
        "numeric",
        "NUMERIC(30, 6)",
        [Decimal("1.000001"), Decimal("1.000002")],
        Decimal("1.000003"),
        "1.000003",
    ),
    ("date", "DATE", [date(2024, 1, 1), date(2024, 1, 2)], date(2024, 1, 3), "2024-01-03"),
    (
        "timestamp",
        "TIMESTAMP",
        [datetime(2024, 1, 1, 0, 0, 0, 1), datetime(2024, 1, 1, 0, 0, 0, 2)],
        datetime(2024, 1, 1, 0, 0, 0, 3),
        "2024-01-01 00:00:00.000003",
    ),
    (
        "timestamptz",
        "TIMESTAMPTZ",
        [datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC)],
        datetime(2024, 1, 1, 1, 0, 0, 2, tzinfo=timezone(timedelta(hours=1))),
        "2024-01-01 00:00:00.000002+00:00",
    ),
    ("text", "TEXT", ["a", "b"], "c", "c"),
]


@pytest.mark.parametrize(
    ("name", "sql_type", "first", "later", "expected"),
    CURSOR_TYPES,
    ids=[c[0] for c in CURSOR_TYPES],
)
def test_postgres_cursor_types_copy_only_new_rows(
    pg_server: str,
    pg_schema: str,
    tmp_path: Path,
    name: str,
    sql_type: str,
    first: list[Any],
    later: Any,
    expected: str,
) -> None:
    engine = sa.create_engine(pg_server)
    table = sa.Table(
        "events",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("cursor", sa.types.NullType()),
        schema=pg_schema,
    )
    with engine.begin() as conn:
        conn.execute(
            sa.text(f'CREATE TABLE {pg_schema}.events (id int PRIMARY KEY, "cursor" {sql_type})')
        )
        conn.execute(sa.insert(table), [{"id": i, "cursor": v} for i, v in enumerate(first)])
    job = CopyJob.model_validate(
        {
            "name": "types",
            "mode": "incremental",
            "source": {"url": pg_server, "schema": pg_schema},
            "destination": {"url": str(tmp_path / "lake")},
            "tables": [{"name": "events", "incremental_column": "cursor"}],
        }
    )
    assets = [*build_source_specs([job]), *build_copy_assets([job])]
    key = dg.AssetKey(["types", "events"])
    with dg.instance_for_test() as instance:
        dg.materialize(assets, instance=instance)
        with engine.begin() as conn:
            conn.execute(sa.insert(table), [{"id": 10, "cursor": later}])
        dg.materialize(assets, instance=instance)
        event = instance.get_latest_materialization_event(key).asset_materialization
        assert event.metadata["copyjob/rows_read"].value == 1
        assert event.metadata[WATERMARK].value == expected
        assert latest_watermark(instance, key).value == later
    engine.dispose()
