"""The type zoo: one table of edge values per source family, and how to read a copy back.

Each source holds five rows: minimums, maximums, two rows of odd values, and a row of NULLs.
A column's `values` are what the source holds, as Python values; `kind` tells the comparison
what the values are, so that a destination's known limits can be applied per kind.
"""

import math
import re
import struct
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from deltalake import DeltaTable
from sqlalchemy.dialects import mysql, postgresql

from copyjob_dagster.config import CopyJob, StoreConfig
from copyjob_dagster.engine import copy_table
from copyjob_dagster.errors import DestinationError, SchemaError
from copyjob_dagster.stores import open_destination

UTC = UTC
ROWS = 5
NAN, INF = float("nan"), float("inf")

EMOJI = "😀 👍🏽 👩‍👩‍👧 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 中文 العربية ‮RTL‬ e\u0301"
LONG_TEXT = "ab€😀\n" * 20_000  # 100,000 characters, a quarter of them outside the BMP
ESCAPES = "tab\tnewline\nreturn\rbackslash\\ \\N quote' dquote\" comma, semicolon;"


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    ddl: str | pa.DataType  # the column's type in the source's DDL, or its Arrow type
    values: tuple[Any, ...]


def d(text: str) -> Decimal:
    return Decimal(text)


def aware(*parts: int, tz: timezone = UTC) -> datetime:
    return datetime(*parts, tzinfo=tz)


INT16 = (-32768, 32767, 0, -1, None)
INT32 = (-(2**31), 2**31 - 1, 0, 1, None)
INT64 = (-(2**63), 2**63 - 1, 0, 2**53 + 1, None)
DEC38 = (
    d("-9999999999999999999999999999.9999999999"),
    d("9999999999999999999999999999.9999999999"),
    d("0.0000000001"),
    d("-1234567890123456789.0123456789"),
    None,
)
DEC12 = (d("-9999999999.99"), d("9999999999.99"), d("0.01"), d("0.00"), None)
FLOAT32 = (-3.4028234663852886e38, 3.4028234663852886e38, 1.401298464324817e-45, 0.1, None)
FLOAT64 = (-1.7976931348623157e308, 1.7976931348623157e308, 5e-324, 0.1, None)
FLOAT_SPECIAL = (NAN, INF, -INF, 1.5, None)
TEXT = ("", EMOJI, LONG_TEXT, ESCAPES, None)
VARCHAR20 = ("a", "ä", "a ", "😀" * 20, None)
BOOLEAN = (True, False, True, False, None)
DATES = (date(1, 1, 1), date(9999, 12, 31), date(1970, 1, 1), date(2000, 2, 29), None)
TIMESTAMPS = (
    datetime(1, 1, 1),
    datetime(9999, 12, 31, 23, 59, 59, 999999),
    datetime(1970, 1, 1, 0, 0, 0, 1),
    datetime(2024, 2, 29, 12, 34, 56, 789012),
    None,
)
AWARE_TIMESTAMPS = (
    aware(1, 1, 1),
    aware(9999, 12, 31, 23, 59, 59, 999999),
    aware(2024, 3, 31, 2, 30, 0, 1, tz=timezone(timedelta(hours=5, minutes=30))),
    aware(1969, 12, 31, 23, 59, 59, 999999),
    None,
)
TIMES = (time(0), time(23, 59, 59, 999999), time(12, 0, 0, 1), time(1, 2, 3), None)
BINARY = (b"", bytes(range(256)), b"\x00", b"\\N\t\n\r", None)
UUIDS = (
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "123e4567-e89b-12d3-a456-426614174000",
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    None,
)
# JSON text exactly as written (json keeps it), the JSON null literal, and SQL NULL.
JSON_TEXT = ('{"b": 1,  "a": [1, 2.50, "😀"]}', "[]", "null", '"text"', None)
# jsonb's own canonical text: keys ordered, one space after ':' and ','.
JSONB_TEXT = ('{"a": [1, 2.50, "😀"], "b": 1}', "[]", "null", '"text"', None)
# PostgreSQL intervals as PostgreSQL prints them with IntervalStyle iso_8601: months and days
# are kept apart from the time part (1 mon is not 30 days).
INTERVALS = ("P1Y2M3DT4H5M6.000007S", "P-178000000Y", "PT0.000001S", "P-1DT2H", None)

POSTGRES_ZOO = (
    Column("i16", "int", "smallint", INT16),
    Column("i32", "int", "integer", INT32),
    Column("i64", "int", "bigint", INT64),
    Column("d38", "decimal", "numeric(38,10)", DEC38),
    Column("d12", "decimal", "numeric(12,2)", DEC12),
    Column(
        "num",
        "decimal",
        "numeric",
        (
            d("-123456789012345678901234567890.123456789012345678901234567890"),
            d("123456789012345678901234567890.123456789012345678901234567890"),
            d("1E-30"),
            d("0"),
            None,
        ),
    ),
    Column("f32", "float32", "real", FLOAT32),
    Column("f64", "float64", "double precision", FLOAT64),
    Column("fsp", "float64", "double precision", FLOAT_SPECIAL),
    Column("txt", "text", "text", TEXT),
    Column("vc", "text", "varchar(20)", VARCHAR20),
    Column("flag", "bool", "boolean", BOOLEAN),
    Column("day", "date", "date", DATES),
    Column("ts", "timestamp", "timestamp", TIMESTAMPS),
    Column("tsz", "timestamptz", "timestamptz", AWARE_TIMESTAMPS),
    Column("tod", "time", "time", TIMES),
    Column("bin", "binary", "bytea", BINARY),
    Column("uid", "uuid", "uuid", UUIDS),
    Column("js", "json", "json", JSON_TEXT),
    Column("jsb", "json", "jsonb", JSONB_TEXT),
    Column("iv", "interval", "interval", INTERVALS),
)

MARIADB_ZOO = (
    Column("i8", "int", "tinyint", (-128, 127, 0, 1, None)),
    Column("u8", "int", "tinyint unsigned", (0, 255, 1, 2, None)),
    Column("i16", "int", "smallint", INT16),
    Column("i24", "int", "mediumint", (-8388608, 8388607, 0, 1, None)),
    Column("u24", "int", "mediumint unsigned", (0, 16777215, 1, 2, None)),
    Column("i32", "int", "int", INT32),
    Column("u32", "int", "int unsigned", (0, 2**32 - 1, 1, 2, None)),
    Column("i64", "int", "bigint", INT64),
    Column("u64", "uint64", "bigint unsigned", (0, 2**64 - 1, 2**63, 2**53 + 1, None)),
    Column("yr", "int", "year", (1901, 2155, 0, 2000, None)),
    Column("d38", "decimal", "decimal(38,10)", DEC38),
    Column("d12", "decimal", "decimal(12,2)", DEC12),
    Column(
        "d65",
        "decimal",
        "decimal(65,30)",
        (
            d("-99999999999999999999999999999999999.999999999999999999999999999999"),
            d("99999999999999999999999999999999999.999999999999999999999999999999"),
            d("1E-30"),
            d("0"),
            None,
        ),
    ),
    # MariaDB cannot store NaN or infinity in FLOAT or DOUBLE.
    Column("f32", "float32", "float", FLOAT32),
    Column("f64", "float64", "double", FLOAT64),
    Column("txt", "text", "longtext", TEXT),
    Column("vc", "text", "varchar(20)", VARCHAR20),
    Column("flag", "bool", "boolean", BOOLEAN),
    Column("day", "date", "date", DATES),
    Column("ts", "timestamp", "datetime(6)", TIMESTAMPS),
    # TIMESTAMP is stored as UTC and spans 1970-01-01 00:00:01 to 2038-01-19 03:14:07.
    Column(
        "tsz",
        "timestamptz",
        "timestamp(6) null",
        (
            aware(1970, 1, 1, 0, 0, 1),
            aware(2038, 1, 19, 3, 14, 7, 999999),
            aware(2024, 3, 31, 2, 30, 0, 1, tz=timezone(timedelta(hours=5, minutes=30))),
            aware(2000, 2, 29, 23, 59, 59, 999999),
            None,
        ),
    ),
    # TIME is a signed duration of up to 838 hours, not a time of day.
    Column(
        "tod",
        "duration",
        "time(6)",
        (
            -timedelta(hours=838, minutes=59, seconds=59, microseconds=999999),
            timedelta(hours=838, minutes=59, seconds=59, microseconds=999999),
            timedelta(microseconds=1),
            timedelta(hours=23, minutes=59, seconds=59, microseconds=999999),
            None,
        ),
    ),
    Column("bin", "binary", "longblob", BINARY),
    Column("vb", "binary", "varbinary(300)", BINARY),
    Column("uid", "uuid", "uuid", UUIDS),
    # MariaDB's JSON is LONGTEXT with a json_valid check: the text is kept as written.
    Column("js", "text", "json", JSON_TEXT),
    Column("en", "text", "enum('a','b','😀')", ("a", "b", "😀", "a", None)),
)

SQLITE_ZOO = (
    # Every SQLite integer is 64-bit whatever its declared name.
    Column("i16", "int", "SMALLINT", INT16),
    Column("i64", "int", "BIGINT", INT64),
    # NUMERIC affinity keeps an integer that fits 64 bits as INTEGER and anything else as a
    # REAL (a double); these values are what such a file holds exactly.
    Column(
        "d38",
        "decimal",
        "NUMERIC(38,10)",
        (d("-99999.9999999999"), d("12345.6789012345"), d("0.0000000001"), d("0.1"), None),
    ),
    Column(
        "d12",
        "decimal",
        "NUMERIC(12,2)",
        (d("-9999999999.99"), d("9999999999.99"), d("0.01"), d("0.5"), None),
    ),
    Column(
        "big",
        "decimal",
        "NUMERIC(19,0)",
        (d("-999999999999999999"), d("1234567890123456789"), d("9007199254740993"), d("0"), None),
    ),
    Column("num", "decimal", "NUMERIC", (d("0.1"), d("1E-30"), d("123456789"), d("1.5E+20"), None)),
    Column("f64", "float64", "REAL", FLOAT64),
    # SQLite stores NaN as NULL, so the special row holds only the infinities.
    Column("fsp", "float64", "DOUBLE", (INF, -INF, -0.0, 1.5, None)),
    Column("txt", "text", "TEXT", TEXT),
    Column("vc", "text", "VARCHAR(20)", VARCHAR20),
    Column("flag", "bool", "BOOLEAN", BOOLEAN),
    Column("day", "date", "DATE", DATES),
    Column("ts", "timestamp", "DATETIME", TIMESTAMPS),
    Column("tod", "time", "TIME", TIMES),
    Column("bin", "binary", "BLOB", BINARY),
    Column("js", "json", "JSON", JSON_TEXT),
)

PARQUET_ZOO = (
    Column("i8", "int", pa.int8(), (-128, 127, 0, 1, None)),
    Column("u8", "int", pa.uint8(), (0, 255, 1, 2, None)),
    Column("i16", "int", pa.int16(), INT16),
    Column("u16", "int", pa.uint16(), (0, 65535, 1, 2, None)),
    Column("i32", "int", pa.int32(), INT32),
    Column("u32", "int", pa.uint32(), (0, 2**32 - 1, 1, 2, None)),
    Column("i64", "int", pa.int64(), INT64),
    Column("u64", "uint64", pa.uint64(), (0, 2**64 - 1, 2**63, 2**53 + 1, None)),
    Column("d38", "decimal", pa.decimal128(38, 10), DEC38),
    Column(
        "d50",
        "decimal",
        pa.decimal256(50, 20),
        (
            d("-999999999999999999999999999999.99999999999999999999"),
            d("999999999999999999999999999999.99999999999999999999"),
            d("0.00000000000000000001"),
            d("0"),
            None,
        ),
    ),
    Column("f32", "float32", pa.float32(), FLOAT32),
    Column("f64", "float64", pa.float64(), FLOAT64),
    Column("fsp", "float64", pa.float64(), FLOAT_SPECIAL),
    Column("txt", "text", pa.string(), TEXT),
    Column("ltxt", "text", pa.large_string(), TEXT),
    Column("cat", "text", pa.dictionary(pa.int32(), pa.string()), ("a", "😀", "a", "", None)),
    Column("flag", "bool", pa.bool_(), BOOLEAN),
    Column("day", "date", pa.date32(), DATES),
    Column("ts", "timestamp", pa.timestamp("us"), TIMESTAMPS),
    Column("tsz", "timestamptz", pa.timestamp("us", tz="UTC"), AWARE_TIMESTAMPS),
    # A zone other than UTC: every destination must keep the instant.
    Column(
        "tsk",
        "timestamptz",
        pa.timestamp("us", tz="Asia/Kolkata"),
        (
            aware(1900, 1, 1, 0, 0),
            aware(2024, 3, 31, 2, 30, 0, 1),
            aware(2024, 10, 27, 1, 30),
            aware(1970, 1, 1),
            None,
        ),
    ),
    Column(
        "tsn",
        "timestamp_ns",
        pa.timestamp("ns"),
        (
            pd.Timestamp("1677-09-22"),
            pd.Timestamp("2262-04-11"),
            pd.Timestamp("1970-01-01 00:00:00.000001999"),
            pd.Timestamp("2024-02-29 12:34:56.789012001"),
            None,
        ),
    ),
    Column("tod", "time", pa.time64("us"), TIMES),
    Column("bin", "binary", pa.binary(), BINARY),
    Column("lbin", "binary", pa.large_binary(), BINARY),
    Column(
        "dur",
        "duration",
        pa.duration("us"),
        (
            -timedelta(hours=838, minutes=59, seconds=59),
            timedelta(hours=838, minutes=59, seconds=59, microseconds=999999),
            timedelta(microseconds=1),
            timedelta(0),
            None,
        ),
    ),
)

ZOOS = {
    "postgresql": POSTGRES_ZOO,
    "mariadb": MARIADB_ZOO,
    "sqlite": SQLITE_ZOO,
    "parquet": PARQUET_ZOO,
}


# -- creating the source tables ----------------------------------------------------------------


def create_database_zoo(engine: sa.Engine, schema: str | None, columns: tuple[Column, ...]) -> None:
    """CREATE TABLE zoo from the columns' own DDL, then insert the rows through the driver."""
    preparer = engine.dialect.identifier_preparer
    table = preparer.quote(schema) + ".zoo" if schema else "zoo"
    definitions = ", ".join(f"{preparer.quote(c.name)} {c.ddl}" for c in columns)
    names = ", ".join(["id", *(preparer.quote(c.name) for c in columns)])
    marker = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    placeholders = ", ".join([marker] * (len(columns) + 1))
    to_driver = _TO_DRIVER.get(engine.dialect.name, _as_is)
    rows = [tuple([row + 1, *(to_driver(c.values[row]) for c in columns)]) for row in range(ROWS)]
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {table} (id integer PRIMARY KEY, {definitions})")
        conn.exec_driver_sql(f"INSERT INTO {table} ({names}) VALUES ({placeholders})", rows)


def _to_sqlite(value: Any) -> Any:
    """The storage SQLite files written by other programs commonly use."""
    if isinstance(value, Decimal):
        return str(value)  # NUMERIC affinity decides: INTEGER when it fits, else REAL
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime):
        return value.isoformat(" ")
    if isinstance(value, date | time):
        return value.isoformat()
    return value


def _to_mariadb(value: Any) -> Any:
    """Aware values as UTC wall time: the session's time zone is UTC."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _as_is(value: Any) -> Any:
    return value


_TO_DRIVER = {"sqlite": _to_sqlite, "mysql": _to_mariadb}


def write_parquet_zoo(folder: Path, columns: tuple[Column, ...]) -> None:
    arrays = [pa.array(range(1, ROWS + 1), pa.int32())]
    for c in columns:
        if pa.types.is_dictionary(c.ddl):
            arrays.append(pa.array(c.values, pa.string()).dictionary_encode())
        else:
            arrays.append(pa.array(c.values, c.ddl))
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table(arrays, names=["id", *(c.name for c in columns)])
    pq.write_table(table, folder / "zoo.parquet", row_group_size=2)


# -- reading a destination back ----------------------------------------------------------------


def read_database(engine: sa.Engine, schema: str | None, table: str) -> dict[str, list[Any]]:
    """Every column of `table` ordered by id, read with the driver's plain conversions.

    JSON and intervals are read as text, their exact form (psycopg reads a month as 30 days).
    """
    reflected = sa.Table(table, sa.MetaData(), autoload_with=engine, schema=schema)
    selected = [_readable(c, engine.dialect.name) for c in reflected.columns]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*selected).order_by(reflected.c.id)).all()
    return {c.name: [row[i] for row in rows] for i, c in enumerate(reflected.columns)}


def _readable(column: sa.Column, dialect: str) -> sa.ColumnElement[Any]:
    if isinstance(column.type, sa.JSON | postgresql.INTERVAL):
        return sa.cast(column, sa.Text())
    if isinstance(column.type, mysql.FLOAT):
        return sa.cast(column, sa.Double())  # MySQL prints a FLOAT with six digits
    if isinstance(column.type, sa.Float):
        return sa.type_coerce(column, sa.Double())  # MySQL's DOUBLE would return a Decimal
    if isinstance(column.type, mysql.TIME):
        return sa.type_coerce(column, sa.types.NullType())  # a timedelta, not a time of day
    if (
        dialect == "sqlite"
        and isinstance(column.type, sa.Numeric)
        and not isinstance(column.type, sa.Float)
    ):
        return sa.type_coerce(column, sa.types.NullType())  # the stored INTEGER or REAL
    return column


def read_parquet(path: Path) -> dict[str, list[Any]]:
    return pq.read_table(path).sort_by("id").to_pydict()


# -- comparing ---------------------------------------------------------------------------------


def canonical(kind: str, value: Any) -> Any:
    """The form two equal values of `kind` share whatever driver returned them."""
    if value is None:
        return None
    if kind == "float32":
        return struct.unpack("f", struct.pack("f", value))[0]
    if kind == "binary":
        return bytes(value)
    if kind == "uuid":
        return str(uuid.UUID(str(value)))
    if kind == "duration" and isinstance(value, str):
        return _iso_duration(value)
    if kind == "decimal" and isinstance(value, str):
        return Decimal(value)  # unbounded NUMERIC travels, and lands in Parquet, as its text
    return value


_ISO_DURATION = re.compile(
    r"P(?:(?P<days>-?\d+)D)?(?:T(?:(?P<hours>-?\d+)H)?(?:(?P<minutes>-?\d+)M)?"
    r"(?:(?P<seconds>-?[\d.]+)S)?)?"
)


_ISO_UNITS = ("days", "hours", "minutes", "seconds")


def _iso_duration(text: str) -> timedelta:
    """A PostgreSQL interval without months, as it prints with IntervalStyle iso_8601."""
    match = _ISO_DURATION.fullmatch(text)
    assert match is not None, text
    days, hours, minutes, seconds = (Decimal(match[unit] or 0) for unit in _ISO_UNITS)
    return timedelta(
        days=int(days), hours=int(hours), minutes=int(minutes), microseconds=int(seconds * 10**6)
    )


def same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, float) and isinstance(actual, float) and math.isnan(expected):
        return math.isnan(actual)
    if isinstance(expected, datetime) and isinstance(actual, datetime):
        return (expected.tzinfo is None) == (actual.tzinfo is None) and expected == actual
    return expected == actual


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def _nan_as_null(value: float) -> float | None:
    return None if math.isnan(value) else value


def _finite_or_null(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _since_midnight(value: time) -> timedelta:
    return datetime.combine(date.min, value) - datetime.min


def _microseconds(value: pd.Timestamp) -> datetime:
    return value.floor("us").to_pydatetime()


def _sqlite_number(value: Decimal | int) -> int | float:
    """What NUMERIC affinity stores: an integer that fits 64 bits as is, anything else a double."""
    if value == int(value) and -(2**63) <= value < 2**63:
        return int(value)
    return float(value)


# The only values that do not arrive exactly: (destination, kind) -> what the destination holds
# instead, applied to the source's value before it is compared.
LIMITS: dict[tuple[str, str], Callable[[Any], Any]] = {
    # SQLite has no decimal type: NUMERIC affinity keeps integers of up to 64 bits exactly and
    # makes anything else a double (15 to 17 significant digits).
    ("sqlite", "decimal"): _sqlite_number,
    # Unsigned 64-bit integers go to NUMERIC(20, 0), so those above 2**63 - 1 become doubles.
    ("sqlite", "uint64"): _sqlite_number,
    # SQLite stores NaN as NULL; the infinities survive.
    ("sqlite", "float32"): _nan_as_null,
    ("sqlite", "float64"): _nan_as_null,
    # SQLite has no time zones: aware values arrive as naive UTC.
    ("sqlite", "timestamptz"): _naive_utc,
    # Database timestamps hold microseconds: nanoseconds are cut off.
    ("sqlite", "timestamp_ns"): _microseconds,
    ("postgresql", "timestamp_ns"): _microseconds,
    ("mariadb", "timestamp_ns"): _microseconds,
    # MariaDB's FLOAT and DOUBLE cannot hold NaN or infinity: they arrive as NULL.
    ("mariadb", "float32"): _finite_or_null,
    ("mariadb", "float64"): _finite_or_null,
    # MariaDB's TIME is a duration: a time of day reads back as the time since midnight.
    ("mariadb", "time"): _since_midnight,
    # MariaDB's DATETIME has no time zone (TIMESTAMP ends in 2038): aware values arrive as UTC.
    ("mariadb", "timestamptz"): _naive_utc,
    # Delta timestamps hold microseconds: nanoseconds are cut off.
    ("delta", "timestamp_ns"): _microseconds,
}

# Columns a destination has no type for; the copy refuses them (see test_refused_types).
LEFT_OUT: dict[tuple[str, str], set[str]] = {
    ("mariadb", "sqlite"): {"tod"},  # MariaDB's TIME is a duration: SQLite has no such type
    ("parquet", "sqlite"): {"dur"},
    # Delta has no time of day nor duration, and decimals of at most 38 digits.
    ("postgresql", "delta"): {"tod"},
    ("mariadb", "delta"): {"tod", "d65"},
    ("sqlite", "delta"): {"tod"},
    ("parquet", "delta"): {"tod", "dur", "d50"},
}


def expected_value(column: Column, row: int, destination: str) -> Any:
    value = canonical(column.kind, column.values[row])
    limit = LIMITS.get((destination, column.kind))
    return limit(value) if limit is not None and value is not None else value


def mismatches(columns: list[Column], copied: dict[str, list[Any]], destination: str) -> list[str]:
    found = []
    for column in columns:
        for row in range(ROWS):
            expected = expected_value(column, row, destination)
            actual = canonical(column.kind, copied[column.name][row])
            if not same(expected, actual):
                found.append(f"{column.name} row {row + 1}: {_short(expected)} != {_short(actual)}")
    return found


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} chars)"


# -- stores ------------------------------------------------------------------------------------

FAMILIES = ("sqlite", "postgresql", "mariadb", "parquet")
PAIRS = [pytest.param(s, d, id=f"{s}-to-{d}") for s in FAMILIES for d in (*FAMILIES, "delta")]


@dataclass
class Store:
    """One family's store for a test: its job config, and a way to create and read tables."""

    family: str
    config: dict[str, str]
    engine: sa.Engine | None

    @property
    def schema(self) -> str | None:
        return self.config.get("schema")

    def create_zoo(self) -> None:
        if self.engine is None:
            write_parquet_zoo(Path(self.config["url"]), ZOOS[self.family])
        else:
            create_database_zoo(self.engine, self.schema, ZOOS[self.family])

    def read(self, table: str) -> dict[str, list[Any]]:
        if self.family == "delta":
            return DeltaTable(str(self.folder / table)).to_pyarrow_table().sort_by("id").to_pydict()
        if self.engine is None:
            return read_parquet(Path(self.config["url"]) / f"{table}.parquet")
        return read_database(self.engine, self.schema, table)

    def column_types(self, table: str) -> dict[str, str]:
        """Each column's reflected type, as SQLAlchemy names it."""
        assert self.engine is not None
        columns = sa.inspect(self.engine).get_columns(table, schema=self.schema)
        return {c["name"]: str(c["type"].compile(dialect=self.engine.dialect)) for c in columns}

    @property
    def folder(self) -> Path:
        return Path(self.config["url"].removeprefix("delta:///"))

    def tables(self) -> list[str]:
        if self.engine is None:
            return sorted(p.name for p in self.folder.iterdir()) if self.folder.exists() else []
        return sorted(sa.inspect(self.engine).get_table_names(schema=self.schema))


def open_store(family: str, role: str, request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if family == "sqlite":
        url = f"sqlite:///{tmp_path / f'{role}.sqlite'}"
        return Store(family, {"url": url}, _disposed(request, sa.create_engine(url)))
    if family == "postgresql":
        url = request.getfixturevalue("pg_server")
        engine = sa.create_engine(url, connect_args={"options": PG_SESSION})
        config = {"url": url, "schema": request.getfixturevalue("pg_schema")}
        return Store(family, config, _disposed(request, engine))
    if family == "mariadb":
        url = request.getfixturevalue("mysql_url")
        engine = sa.create_engine(url, connect_args=MARIADB_SESSION)
        return Store(family, {"url": url}, _disposed(request, engine))
    if family == "delta":
        return Store(family, {"url": f"delta:///{tmp_path / f'{role}_delta'}"}, None)
    return Store(family, {"url": str(tmp_path / f"{role}_folder")}, None)


PG_SESSION = "-c TimeZone=UTC -c IntervalStyle=iso_8601"
MARIADB_SESSION = {"charset": "utf8mb4", "init_command": "SET time_zone = '+00:00'"}


def _disposed(request: pytest.FixtureRequest, engine: sa.Engine) -> sa.Engine:
    request.addfinalizer(engine.dispose)
    return engine


def copy_job(source: Store, destination: Store, columns: list[str], **table: Any) -> CopyJob:
    return CopyJob.model_validate(
        {
            "name": "zoo",
            "source": source.config,
            "destination": destination.config,
            "batch_rows": 2,
            "tables": [{"name": "zoo", "to": "zoo_copy", "columns": ["id", *columns], **table}],
        }
    )


# -- tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("source_family", "destination_family"), PAIRS)
def test_every_value_survives_the_copy(
    source_family: str, destination_family: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    source = open_store(source_family, "source", request, tmp_path)
    destination = open_store(destination_family, "destination", request, tmp_path)
    source.create_zoo()
    left_out = LEFT_OUT.get((source_family, destination_family), set())
    columns = [c for c in ZOOS[source_family] if c.name not in left_out]
    job = copy_job(source, destination, [c.name for c in columns])

    result = copy_table(job, job.tables[0])

    assert (result.rows_read, result.rows_written) == (ROWS, ROWS)
    copied = destination.read("zoo_copy")
    assert copied["id"] == list(range(1, ROWS + 1))
    assert mismatches(columns, copied, destination_family) == []


@pytest.mark.parametrize(
    ("source_family", "destination_family", "column"),
    [
        pytest.param("mariadb", "sqlite", "tod", id="mariadb-time-to-sqlite"),
        pytest.param("parquet", "sqlite", "dur", id="parquet-duration-to-sqlite"),
    ],
)
def test_refused_types_name_their_column(
    source_family: str,
    destination_family: str,
    column: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    source = open_store(source_family, "source", request, tmp_path)
    destination = open_store(destination_family, "destination", request, tmp_path)
    source.create_zoo()
    job = copy_job(source, destination, [column])

    with pytest.raises(SchemaError, match=f"column '{column}': sqlite has no interval type"):
        copy_table(job, job.tables[0])

    assert "zoo_copy" not in destination.tables()


@pytest.mark.parametrize(
    ("column", "problem"),
    [
        pytest.param("tod", "delta has no time-of-day or interval type", id="time-of-day"),
        pytest.param("dur", "delta has no time-of-day or interval type", id="duration"),
        pytest.param("d50", "delta holds decimals of up to 38 digits", id="decimal-50"),
    ],
)
def test_types_delta_cannot_hold_stop_the_copy_naming_the_column(
    column: str, problem: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    source = open_store("parquet", "source", request, tmp_path)
    destination = open_store("delta", "destination", request, tmp_path)
    source.create_zoo()
    job = copy_job(source, destination, ["tsk", column])

    with pytest.raises(SchemaError, match=f"column '{column}': {problem}"):
        copy_table(job, job.tables[0])

    assert destination.tables() == []


# Column types a copy within one family does not keep, and what it makes of them.
TYPE_CHANGES: dict[str, dict[str, str]] = {
    "postgresql": {},
    "mariadb": {
        "mediumint": "INTEGER(11)",  # Arrow has no 24-bit integer
        "mediumint unsigned": "INTEGER(11)",
        "year": "SMALLINT(6)",
        "timestamp(6) null": "DATETIME(6)",  # TIMESTAMP ends in 2038; values are kept as UTC
        "varbinary(300)": "LONGBLOB",  # binary lengths are not carried
        "uuid": "VARCHAR(36)",  # MySQL has no UUID type
        "json": "LONGTEXT",  # MariaDB reports its JSON as LONGTEXT; the json_valid check goes
        "enum('a','b','😀')": "LONGTEXT",  # an enum's values travel as text
    },
    "sqlite": {"SMALLINT": "BIGINT", "REAL": "DOUBLE"},  # every SQLite number is 64-bit
}


@pytest.mark.parametrize("family", ["postgresql", "mariadb", "sqlite"])
def test_a_copy_within_a_family_keeps_column_types(
    family: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    source = open_store(family, "source", request, tmp_path)
    destination = open_store(family, "destination", request, tmp_path)
    source.create_zoo()
    job = copy_job(source, destination, [c.name for c in ZOOS[family]])

    copy_table(job, job.tables[0])

    created, copied = source.column_types("zoo"), destination.column_types("zoo_copy")
    changes = TYPE_CHANGES[family]
    expected = {
        c.name: changes.get(c.ddl, created[c.name]) for c in ZOOS[family] if isinstance(c.ddl, str)
    }
    assert {name: copied[name] for name in expected} == expected


# -- replacing a table -------------------------------------------------------------------------

ITEMS = pa.table({"id": [1, 2, 3, 4, 5], "name": ["a", "b", "c", "d", "e"]})
NEW_ITEMS = pa.table({"id": [10, 20], "name": ["x", None], "note": ["new column", "😀"]})


def leftovers(store: Store) -> list[str]:
    """Staging tables and temporary files a write left behind."""
    return [t for t in store.tables() if t.startswith("_copyjob_") or t.endswith(".tmp")]


def leave_stale_staging(store: Store, table: str) -> None:
    """What a process killed in the middle of a copy leaves behind."""
    if store.engine is None:
        Path(store.config["url"], f"{table}.parquet.tmp").write_bytes(b"half a file")
        return
    stale = sa.Table(f"_copyjob_stage_{table}", sa.MetaData(), sa.Column("x", sa.Integer))
    stale.schema = store.schema
    stale.create(store.engine)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_full_copy_replaces_the_destination_table(
    family: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    source = open_store("parquet", "source", request, tmp_path)
    destination = open_store(family, "destination", request, tmp_path)
    Path(source.config["url"]).mkdir()
    job = CopyJob.model_validate(
        {
            "name": "items",
            "source": source.config,
            "destination": destination.config,
            "tables": [{"name": "items"}],
        }
    )
    pq.write_table(ITEMS, Path(source.config["url"], "items.parquet"))
    assert copy_table(job, job.tables[0]).rows_written == ITEMS.num_rows
    pq.write_table(NEW_ITEMS, Path(source.config["url"], "items.parquet"))
    leave_stale_staging(destination, "items")

    result = copy_table(job, job.tables[0])

    assert result.rows_written == NEW_ITEMS.num_rows
    assert destination.read("items") == NEW_ITEMS.to_pydict()
    assert leftovers(destination) == []


def _failing_after_first_batch(table: pa.Table) -> Iterator[pa.RecordBatch]:
    yield table.to_batches()[0]
    raise RuntimeError("the source went away")


@pytest.mark.parametrize("family", FAMILIES)
def test_a_failed_copy_leaves_the_previous_table_and_no_staging(
    family: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = open_store(family, "destination", request, tmp_path)
    destination = open_destination(StoreConfig.model_validate(store.config))
    try:
        destination.replace("items", ITEMS.schema, ("id",), ITEMS.to_batches())
        with pytest.raises(RuntimeError, match="the source went away"):
            destination.replace(
                "items", NEW_ITEMS.schema, ("id",), _failing_after_first_batch(NEW_ITEMS)
            )
    finally:
        destination.close()

    assert store.read("items") == ITEMS.to_pydict()
    assert leftovers(store) == []


# -- store behaviours the zoo relies on --------------------------------------------------------


def test_mariadb_tables_hold_emoji_whatever_the_database_charset(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    destination = open_store("mariadb", "destination", request, tmp_path)
    with destination.engine.begin() as conn:
        conn.exec_driver_sql("ALTER DATABASE CHARACTER SET latin1")  # an old server's default
    store = open_destination(StoreConfig.model_validate(destination.config))
    texts = pa.table({"id": [1, 2], "t": [EMOJI, LONG_TEXT]})
    try:
        store.replace("texts", texts.schema, ("id",), texts.to_batches())
    finally:
        store.close()

    assert destination.read("texts") == texts.to_pydict()


def test_a_text_postgresql_cannot_hold_fails_with_a_destination_error(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    destination = open_store("postgresql", "destination", request, tmp_path)
    store = open_destination(StoreConfig.model_validate(destination.config))
    texts = pa.table({"id": [1], "t": ["NUL \x00 inside"]})
    try:
        with pytest.raises(DestinationError, match="cannot contain NUL"):
            store.replace("texts", texts.schema, (), texts.to_batches())
    finally:
        store.close()

    assert leftovers(destination) == []


def test_a_sqlite_store_that_has_read_can_still_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'both.sqlite'}"
    store = open_destination(StoreConfig(url=url))
    try:
        store.replace("items", ITEMS.schema, ("id",), ITEMS.to_batches())
        with store.open_reader("items") as reader:
            assert sum(b.num_rows for b in reader.batches(["id"], 2)) == ITEMS.num_rows

        assert store.replace("again", ITEMS.schema, ("id",), ITEMS.to_batches()) == ITEMS.num_rows
    finally:
        store.close()
