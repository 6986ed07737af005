"""Arrow batches reach PostgreSQL as CSV that Arrow writes: every edge value must come back."""

import math
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

from copyjob_dagster.config import StoreConfig
from copyjob_dagster.stores import open_destination, open_source, pgcsv
from copyjob_dagster.stores.base import Window
from copyjob_dagster.stores.sql_reader import SqlTableReader

NAN, INF = float("nan"), float("inf")
EDGES = pa.table(
    {
        "id": pa.array([1, 2, 3, 4, 5], pa.int64()),
        "text": ["", "\\.", 'a "quoted",\nline\r\n\\N \\ back', "😀 ünï", None],
        "lone": ["\\.", "", None, ",", '"'],
        "blob": pa.array([b"", bytes(range(256)), b"\\N\t\n\r", None, b"\x00"], pa.binary()),
        "f64": [NAN, INF, -INF, -0.0, 0.1 + 0.2],
        "f32": pa.array([1.1, None, 3.4028235e38, -1e-45, 0.0], pa.float32()),
        "dec": pa.array(
            [Decimal("-12345.67"), Decimal("0.00"), None, Decimal("99999999.99"), Decimal("1")],
            pa.decimal128(10, 2),
        ),
        "i8": pa.array([-128, 127, None, 0, 1], pa.int8()),
        "u64": pa.array([2**64 - 1, 0, None, 1, 2**53 + 1], pa.uint64()),
        "flag": [True, False, None, True, False],
        "at": pa.array(
            [datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999), None] * 1
            + [datetime(2024, 2, 29, 12), datetime(1970, 1, 1)],
            pa.timestamp("us"),
        ),
        "at_tz": pa.array(
            [datetime(2024, 6, 30, 23, 59, 59, 999999, tzinfo=UTC), None] * 2
            + [datetime(1900, 1, 1, tzinfo=UTC)],
            pa.timestamp("us", "UTC"),
        ),
        "day": pa.array([date(1, 1, 1), date(9999, 12, 31), None, date(2000, 2, 29), None]),
        "clock": pa.array([time(0), time(23, 59, 59, 999999), None, time(12), None]),
    }
)


@pytest.fixture
def store(pg_server: str, pg_schema: str) -> Any:
    destination = open_destination(StoreConfig(url=pg_server, schema=pg_schema))
    yield destination
    destination.close()


@pytest.fixture
def csv_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows of each batch written as CSV (empty: the row-by-row path was taken)."""
    written: list[int] = []
    original = pgcsv.csv_bytes

    def spy(batch: pa.RecordBatch) -> bytes:
        written.append(batch.num_rows)
        return original(batch)

    monkeypatch.setattr(pgcsv, "csv_bytes", spy)
    return written


def _read(store: Any, table: str) -> dict[str, list[Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT * FROM {store.qualified(table)} ORDER BY id")).all()
        return {name: [row[i] for row in rows] for i, name in enumerate(rows[0]._fields)}


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(actual, float) and math.isnan(actual)
    if isinstance(expected, float) and expected == 0 and actual == 0:
        return math.copysign(1, expected) == math.copysign(1, actual)
    return expected == actual and type(expected) is type(actual)


def test_every_edge_value_survives_the_csv_path(store: Any, csv_batches: list[int]) -> None:
    rows = store.replace("edges", EDGES.schema, ("id",), EDGES.to_batches(max_chunksize=2))
    assert (rows, csv_batches) == (5, [2, 2, 1])
    actual = _read(store, "edges")
    expected = EDGES.to_pydict()
    expected["u64"] = [None if v is None else Decimal(v) for v in expected["u64"]]
    expected["blob"] = [None if v is None else bytes(v) for v in expected["blob"]]
    actual["blob"] = [None if v is None else bytes(v) for v in actual["blob"]]
    for values in (expected, actual):  # psycopg reads REAL as the shortest text's double
        values["f32"] = [None if v is None else float(np.float32(v)) for v in values["f32"]]
    for name, values in expected.items():
        problems = [(e, a) for e, a in zip(values, actual[name], strict=True) if not _same(e, a)]
        assert problems == [], name


def test_a_type_csv_cannot_spell_exactly_takes_the_row_path(
    store: Any, csv_batches: list[int]
) -> None:
    spans = pa.table({"id": [1, 2], "span": pa.array([timedelta(days=-1, microseconds=1), None])})
    assert store.replace("spans", spans.schema, ("id",), spans.to_batches()) == 2
    assert csv_batches == []
    with store.engine.connect() as conn:
        query = f"SELECT extract(epoch FROM span) FROM {store.qualified('spans')} ORDER BY id"
        assert conn.execute(sa.text(query)).scalars().all() == [Decimal("-86399.999999"), None]


READ_EDGES = """
CREATE TABLE {table} (
    id bigint PRIMARY KEY, t text, v varchar(5), c char(3), f double precision, r real,
    n numeric(12, 2), u numeric, b boolean, d date, ts timestamp, tz timestamptz, j jsonb,
    g uuid, i interval, s smallint
);
INSERT INTO {table} VALUES
    (1, '', '', 'a', 'NaN', 'Infinity', -12345.67, 'NaN', true, '0001-01-01',
     '0001-01-01 00:00:00', '1900-01-01 00:00:00+00', '{{"a": [1, "two", null]}}',
     '00000000-0000-0000-0000-000000000001', '1 mon 2 days 03:04:05.000006', -32768),
    (2, E'\\\\.', 'x,y', NULL, '-Infinity', '-0', 0.01, '123456789012345678901234567890.5',
     false, '9999-12-31', '9999-12-31 23:59:59.999999', '2024-06-30 23:59:59.999999+05',
     '"text"', NULL, '-1 days', 32767),
    (3, E'line\\nbreak "quoted", back\\\\slash\\ttab', NULL, 'abc', 0.1, 1.1, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (4, NULL, '😀', '', 1e-300, 1e-45, 0, 0, true, '2000-02-29', '2000-02-29 12:00:00.5',
     '1970-01-01 00:00:00+00', 'null', 'ffffffff-ffff-ffff-ffff-ffffffffffff', 'PT0S', 0);
"""


def test_csv_reads_give_the_row_paths_batches(pg_server: str, pg_schema: str) -> None:
    source = open_source(StoreConfig(url=pg_server, schema=pg_schema))
    try:
        with source.engine.begin() as conn:
            conn.exec_driver_sql(READ_EDGES.format(table=source.qualified("edges")))
        columns = source.describe("edges").column_names
        with source.open_reader("edges") as reader:
            assert pgcsv.reads_exactly(source.describe("edges").schema)
            through_csv = pa.Table.from_batches(list(reader.batches(columns, 3)))
            by_rows = pa.Table.from_batches(list(SqlTableReader.batches(reader, columns, 3)))
            window = Window("id", 1, False, 3)
            csv_window = pa.Table.from_batches(list(reader.batches(columns, 3, window)))
            assert list(reader.batches(columns, 3, Window("id", 4))) == []  # no row, no batch
    finally:
        source.close()
    assert through_csv.schema == by_rows.schema
    assert through_csv.to_pylist() == by_rows.to_pylist() or _nan_equal(through_csv, by_rows)
    assert csv_window.column("id").to_pylist() == [2, 3]


def _nan_equal(left: pa.Table, right: pa.Table) -> bool:
    return all(
        all(
            _same(a, b)
            for a, b in zip(left[name].to_pylist(), right[name].to_pylist(), strict=True)
        )
        for name in left.column_names
    )
