"""PostgreSQL's NOT NULL columns of a fixed width reach ADBC's driver as one binary field a row
(stores/pgpacked.py): fewer fields for the driver to parse, and the same values to the bit."""

import math
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from copyjob_dagster.config import StoreConfig
from copyjob_dagster.errors import SchemaError
from copyjob_dagster.stores import open_source
from copyjob_dagster.stores.sql_reader import SqlTableReader

COLUMNS = {  # NOT NULL, every type packed, each with its extremes and odd values
    "i2": ("smallint", ["-32768", "32767", "0", "-1"]),
    "i4": ("integer", ["-2147483648", "2147483647", "1", "-7"]),
    "i8": ("bigint", ["-9223372036854775808", "9223372036854775807", "0", "42"]),
    "f4": ("real", ["-0", "NaN", "3.4028235e38", "1.4e-45"]),
    "f8": ("double precision", ["-0", "NaN", "-Infinity", "0.1"]),
    "b": ("boolean", ["true", "false", "false", "true"]),
    "d": ("date", ["0001-01-01", "9999-12-31", "2000-01-01", "1969-12-31"]),
    "t": ("time", ["00:00:00", "23:59:59.999999", "12:00:00.000001", "00:00:00.5"]),
    "ts": (
        "timestamp",
        [
            "0001-01-01 00:00:00",
            "9999-12-31 23:59:59.999999",
            "1999-12-31 23:59:59.999999",
            "2000-01-01 00:00:00.000001",
        ],
    ),
    "tz": (
        "timestamptz",
        [
            "0001-01-01 00:00:00+00",
            "9999-12-31 23:59:59.999999+00",
            "1970-01-01 00:00:00+00",
            "2020-02-29 12:00:00-08",
        ],
    ),
    "n": ("numeric(12, 2)", ["-9999999999.99", "9999999999.99", "0.01", "-0.10"]),
}


@pytest.fixture
def source(pg_source: Any) -> Any:
    return pg_source


def _fields(batches: list[pa.RecordBatch]) -> list[int]:
    """How many fields a row each batch of the driver had."""
    return [batch.num_columns for batch in batches]


def _bits(value: Any) -> Any:
    """Floats by their bits (NaN == NaN, -0.0 != 0.0); every other value itself."""
    return struct.pack("<d", value) if isinstance(value, float) else value


def test_not_null_fixed_width_columns_come_as_one_field_with_the_same_bits(
    source: Any, driver_batches: list[pa.RecordBatch]
) -> None:
    ddl = ", ".join(f"{name} {kind} NOT NULL" for name, (kind, _) in COLUMNS.items())
    with source.engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE {source.qualified('p')} (id int, {ddl}, note text, maybe bigint)"
        )
        for row in range(4):
            values = ", ".join(f"'{v[row]}'::{kind}" for kind, v in COLUMNS.values())
            note = "NULL" if row == 1 else f"'row {row}'"
            conn.exec_driver_sql(
                f"INSERT INTO {source.qualified('p')} VALUES ({row}, {values}, {note}, NULL)"
            )
    columns = source.describe("p").column_names
    with source.open_reader("p") as reader:
        by_driver = pa.Table.from_batches(list(reader.batches(columns, 3))).sort_by("id")
        by_rows = pa.Table.from_batches(list(SqlTableReader.batches(reader, columns, 10)))
    # id, note and maybe are nullable: fields of their own; the 11 others one field.
    assert _fields(driver_batches) == [1 + 3]
    assert by_driver.schema == by_rows.schema
    expected = by_rows.sort_by("id").to_pylist()
    assert [{k: _bits(v) for k, v in r.items()} for r in by_driver.to_pylist()] == [
        {k: _bits(v) for k, v in r.items()} for r in expected
    ]
    f8 = by_driver.column("f8").to_pylist()
    assert math.copysign(1, f8[0]) == -1 and math.isnan(f8[1]) and f8[2] == -math.inf


@pytest.mark.parametrize(
    ("ddl", "value", "problem"),
    [
        ("timestamp", "infinity", "outside the years 1 to 9999"),
        ("timestamptz", "-infinity", "outside the years 1 to 9999"),
        ("date", "infinity", "outside the years 1 to 9999"),
        ("date", "0044-03-15 BC", "outside the years 1 to 9999"),
        ("time", "24:00:00", "is 24:00:00"),
    ],
)
def test_packed_values_with_no_exact_arrow_value_are_refused_naming_the_column(
    source: Any, driver_batches: list[pa.RecordBatch], ddl: str, value: str, problem: str
) -> None:
    with source.engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE {source.qualified('edge')} (id int NOT NULL, v {ddl} NOT NULL)"
        )
        conn.execute(
            sa.text(f"INSERT INTO {source.qualified('edge')} VALUES (1, CAST(:v AS {ddl}))"),
            {"v": value},
        )
    refused = pytest.raises(SchemaError, match=f"column 'v': .*{re.escape(problem)}")
    with refused, source.open_reader("edge") as reader:
        list(reader.batches(["id", "v"], 10))
    assert _fields(driver_batches) == [1]  # both columns in the packed field


@contextmanager
def _searching(pg_server: str, pg_schema: str, search_path: str) -> Iterator[Any]:
    """A source store whose sessions look up names along `search_path`."""
    url = sa.engine.make_url(pg_server).update_query_dict(
        {"options": f"-c search_path={search_path}"}
    )
    store = open_source(
        StoreConfig(url=url.render_as_string(hide_password=False), schema=pg_schema)
    )
    try:
        yield store
    finally:
        store.close()


def test_a_search_path_with_pg_catalog_after_a_schema_of_operators_packs_the_same(
    pg_server: str, pg_schema: str, driver_batches: list[pa.RecordBatch]
) -> None:
    """A search_path may name pg_catalog after another schema, whose `||` for two byteas
    would then be the one the packed field's concatenation calls: it would hand the columns'
    bytes over in another order, of the same length, and swap their values silently."""
    with _searching(pg_server, pg_schema, f"{pg_schema},pg_catalog") as store:
        with store.engine.begin() as conn:
            conn.exec_driver_sql(
                f"CREATE FUNCTION {pg_schema}.swapped(bytea, bytea) RETURNS bytea "
                f"LANGUAGE sql IMMUTABLE AS 'SELECT pg_catalog.byteacat($2, $1)'"
            )
            conn.exec_driver_sql(
                f"CREATE OPERATOR {pg_schema}.|| "
                f"(LEFTARG = bytea, RIGHTARG = bytea, FUNCTION = {pg_schema}.swapped)"
            )
            conn.exec_driver_sql(
                f"CREATE TABLE {store.qualified('two')} (a int NOT NULL, b int NOT NULL)"
            )
            conn.exec_driver_sql(f"INSERT INTO {store.qualified('two')} VALUES (1, 2)")
        with store.open_reader("two") as reader:
            read = pa.Table.from_batches(list(reader.batches(["a", "b"], 10))).to_pylist()
    assert _fields(driver_batches) == [1]  # both columns in the packed field
    assert read == [{"a": 1, "b": 2}]


def test_a_schema_on_the_search_path_with_its_own_numeric_times_integer_scales_the_same(
    pg_server: str, pg_schema: str, driver_batches: list[pa.RecordBatch]
) -> None:
    """pg_catalog has no `*` of a numeric and an integer (it casts the integer): one in any
    schema of the search_path, even after pg_catalog, matches exactly and would be the one
    that scales a NUMERIC(p <= 18, s) to the bigint of its smallest unit."""
    with _searching(pg_server, pg_schema, f"{pg_schema}") as store:
        with store.engine.begin() as conn:
            conn.exec_driver_sql(
                f"CREATE FUNCTION {pg_schema}.times(numeric, integer) RETURNS numeric "
                f"LANGUAGE sql IMMUTABLE AS 'SELECT 7'"
            )
            conn.exec_driver_sql(
                f"CREATE OPERATOR {pg_schema}.* "
                f"(LEFTARG = numeric, RIGHTARG = integer, FUNCTION = {pg_schema}.times)"
            )
            conn.exec_driver_sql(
                f"CREATE TABLE {store.qualified('money')} "
                f"(id int NOT NULL, n numeric(12, 2) NOT NULL, m numeric(10, 3))"
            )
            conn.exec_driver_sql(f"INSERT INTO {store.qualified('money')} VALUES (1, 12.34, 5)")
        with store.open_reader("money") as reader:
            read = pa.Table.from_batches(list(reader.batches(["id", "n", "m"], 10)))
    assert _fields(driver_batches) == [2]  # id and n packed, m a field of its own
    assert read.to_pylist() == [{"id": 1, "n": Decimal("12.34"), "m": Decimal("5.000")}]
