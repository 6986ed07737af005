"""The type ladder, rung by rung: database column types to Arrow, and Arrow to column types."""

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.types import NullType, TypeEngine

from copyjob_dagster.errors import SchemaError
from copyjob_dagster.stores.base import LOGICAL_TYPE, STRING_LENGTH
from copyjob_dagster.stores.types import arrow_field, column_type, needs_text_cast

DIALECTS = {
    "postgresql": postgresql.dialect(),
    "mysql": mysql.dialect(),
    "sqlite": sqlite.dialect(),
}


def tagged(logical: str) -> tuple[pa.DataType, dict[bytes, bytes]]:
    return pa.string(), {LOGICAL_TYPE: logical.encode()}


TO_ARROW = [
    # (column type, dialect, Arrow type, field metadata)
    pytest.param(sa.Boolean(), "postgresql", pa.bool_(), None, id="boolean"),
    pytest.param(mysql.TINYINT(display_width=1), "mysql", pa.bool_(), None, id="mysql-tinyint1"),
    pytest.param(mysql.TINYINT(), "mysql", pa.int8(), None, id="mysql-tinyint"),
    pytest.param(mysql.TINYINT(unsigned=True), "mysql", pa.uint8(), None, id="mysql-tinyint-u"),
    pytest.param(mysql.SMALLINT(unsigned=True), "mysql", pa.uint16(), None, id="mysql-smallint-u"),
    pytest.param(mysql.MEDIUMINT(), "mysql", pa.int32(), None, id="mysql-mediumint"),
    pytest.param(mysql.MEDIUMINT(unsigned=True), "mysql", pa.int32(), None, id="mysql-mediumint-u"),
    pytest.param(mysql.INTEGER(unsigned=True), "mysql", pa.uint32(), None, id="mysql-int-u"),
    pytest.param(mysql.BIGINT(unsigned=True), "mysql", pa.uint64(), None, id="mysql-bigint-u"),
    pytest.param(mysql.YEAR(), "mysql", pa.int16(), None, id="mysql-year"),
    pytest.param(sa.SmallInteger(), "postgresql", pa.int16(), None, id="smallint"),
    pytest.param(sa.Integer(), "postgresql", pa.int32(), None, id="integer"),
    pytest.param(sa.BigInteger(), "postgresql", pa.int64(), None, id="bigint"),
    pytest.param(sa.SmallInteger(), "sqlite", pa.int64(), None, id="sqlite-smallint-is-64-bit"),
    pytest.param(sa.REAL(), "postgresql", pa.float32(), None, id="real"),
    pytest.param(sa.REAL(), "sqlite", pa.float64(), None, id="sqlite-real-is-double"),
    pytest.param(mysql.FLOAT(), "mysql", pa.float32(), None, id="mysql-float"),
    pytest.param(mysql.DOUBLE(), "mysql", pa.float64(), None, id="mysql-double"),
    pytest.param(sa.Double(), "postgresql", pa.float64(), None, id="double"),
    pytest.param(sa.Numeric(12, 2), "postgresql", pa.decimal128(12, 2), None, id="numeric-12-2"),
    pytest.param(sa.Numeric(38, 10), "postgresql", pa.decimal128(38, 10), None, id="numeric-38"),
    pytest.param(sa.Numeric(39, 5), "postgresql", pa.decimal256(39, 5), None, id="numeric-39"),
    pytest.param(sa.Numeric(76, 0), "postgresql", pa.decimal256(76, 0), None, id="numeric-76"),
    pytest.param(sa.Numeric(100, 2), "postgresql", *tagged("decimal"), id="numeric-100"),
    pytest.param(sa.Numeric(), "postgresql", *tagged("decimal"), id="numeric-unbounded"),
    pytest.param(sa.DateTime(), "postgresql", pa.timestamp("us"), None, id="timestamp"),
    pytest.param(
        sa.DateTime(timezone=True), "postgresql", pa.timestamp("us", "UTC"), None, id="timestamptz"
    ),
    pytest.param(mysql.TIMESTAMP(), "mysql", pa.timestamp("us", "UTC"), None, id="mysql-timestamp"),
    pytest.param(mysql.DATETIME(fsp=6), "mysql", pa.timestamp("us"), None, id="mysql-datetime"),
    pytest.param(sa.Date(), "postgresql", pa.date32(), None, id="date"),
    pytest.param(sa.Time(), "postgresql", pa.time64("us"), None, id="time"),
    pytest.param(postgresql.TIME(timezone=True), "postgresql", pa.string(), None, id="timetz-text"),
    pytest.param(mysql.TIME(fsp=6), "mysql", pa.duration("us"), None, id="mysql-time-duration"),
    pytest.param(postgresql.INTERVAL(), "postgresql", *tagged("interval"), id="pg-interval"),
    pytest.param(sa.Interval(), "sqlite", pa.duration("us"), None, id="interval-emulated"),
    pytest.param(sa.Uuid(), "postgresql", *tagged("uuid"), id="uuid"),
    pytest.param(postgresql.UUID(), "postgresql", *tagged("uuid"), id="pg-uuid"),
    pytest.param(sa.JSON(), "sqlite", *tagged("json"), id="json"),
    pytest.param(postgresql.JSON(), "postgresql", *tagged("json"), id="pg-json"),
    pytest.param(postgresql.JSONB(), "postgresql", *tagged("jsonb"), id="pg-jsonb"),
    pytest.param(mysql.JSON(), "mysql", *tagged("json"), id="mysql-json"),
    pytest.param(sa.String(20), "postgresql", pa.string(), {STRING_LENGTH: b"20"}, id="varchar"),
    pytest.param(sa.Text(), "postgresql", pa.string(), None, id="text"),
    pytest.param(sa.Enum("a", "b"), "postgresql", pa.string(), None, id="enum"),
    pytest.param(sa.LargeBinary(), "postgresql", pa.binary(), None, id="bytea"),
    pytest.param(sa.VARBINARY(10), "mysql", pa.binary(), None, id="varbinary"),
    pytest.param(sa.BINARY(16), "mysql", pa.binary(), None, id="binary"),
    pytest.param(mysql.TINYBLOB(), "mysql", pa.binary(), None, id="mysql-tinyblob"),
    pytest.param(mysql.MEDIUMBLOB(), "mysql", pa.binary(), None, id="mysql-mediumblob"),
    pytest.param(mysql.LONGBLOB(), "mysql", pa.binary(), None, id="mysql-longblob"),
    pytest.param(postgresql.INET(), "postgresql", pa.string(), None, id="unknown-inet-text"),
    pytest.param(NullType(), "postgresql", pa.string(), None, id="unreflected-text"),
]


@pytest.mark.parametrize(("column", "dialect", "arrow_type", "metadata"), TO_ARROW)
def test_column_to_arrow(
    column: TypeEngine, dialect: str, arrow_type: pa.DataType, metadata: dict | None
) -> None:
    field = arrow_field("c", column, True, dialect)

    assert (field.type, field.metadata) == (arrow_type, metadata)


@pytest.mark.parametrize(
    ("column", "read_as_text"),
    [
        pytest.param(sa.JSON(), True, id="json-keeps-its-text"),
        pytest.param(postgresql.INTERVAL(), True, id="interval-keeps-months"),
        pytest.param(postgresql.INET(), True, id="unknown"),
        pytest.param(sa.Uuid(), False, id="uuid"),
        pytest.param(sa.Numeric(), False, id="unbounded-numeric"),
        pytest.param(sa.Integer(), False, id="integer"),
    ],
)
def test_columns_read_as_text(column: TypeEngine, read_as_text: bool) -> None:
    assert needs_text_cast(column, "postgresql") is read_as_text


def field(arrow_type: pa.DataType, **metadata: str) -> pa.Field:
    tags = {f"copyjob.{k}".encode(): v.encode() for k, v in metadata.items()}
    return pa.field("c", arrow_type, metadata=tags or None)


TO_COLUMN = [
    # (Arrow field, dialect, the column's DDL)
    pytest.param(field(pa.bool_()), "postgresql", "BOOLEAN", id="boolean"),
    pytest.param(field(pa.bool_()), "mysql", "BOOL", id="mysql-boolean"),
    pytest.param(field(pa.int8()), "postgresql", "SMALLINT", id="int8"),
    pytest.param(field(pa.int8()), "mysql", "TINYINT", id="mysql-int8"),
    pytest.param(field(pa.uint8()), "postgresql", "SMALLINT", id="uint8"),
    pytest.param(field(pa.uint8()), "mysql", "TINYINT UNSIGNED", id="mysql-uint8"),
    pytest.param(field(pa.uint16()), "postgresql", "INTEGER", id="uint16"),
    pytest.param(field(pa.uint32()), "postgresql", "BIGINT", id="uint32"),
    pytest.param(field(pa.uint32()), "mysql", "INTEGER UNSIGNED", id="mysql-uint32"),
    pytest.param(field(pa.uint64()), "postgresql", "NUMERIC(20, 0)", id="uint64"),
    pytest.param(field(pa.uint64()), "mysql", "BIGINT UNSIGNED", id="mysql-uint64"),
    pytest.param(field(pa.int64()), "sqlite", "BIGINT", id="sqlite-int64"),
    pytest.param(field(pa.float32()), "postgresql", "REAL", id="float32"),
    pytest.param(field(pa.float32()), "mysql", "FLOAT", id="mysql-float32"),
    pytest.param(field(pa.float64()), "postgresql", "DOUBLE PRECISION", id="float64"),
    pytest.param(field(pa.float64()), "mysql", "DOUBLE", id="mysql-float64"),
    pytest.param(field(pa.decimal128(38, 10)), "postgresql", "NUMERIC(38, 10)", id="decimal"),
    pytest.param(field(pa.decimal256(65, 30)), "mysql", "NUMERIC(65, 30)", id="mysql-decimal"),
    pytest.param(field(pa.timestamp("us")), "postgresql", "TIMESTAMP WITHOUT TIME ZONE", id="ts"),
    pytest.param(
        field(pa.timestamp("ms", "Asia/Kolkata")),
        "postgresql",
        "TIMESTAMP WITH TIME ZONE",
        id="timestamptz",
    ),
    pytest.param(field(pa.timestamp("us", "UTC")), "mysql", "DATETIME(6)", id="mysql-aware-ts"),
    pytest.param(field(pa.date32()), "sqlite", "DATE", id="date"),
    pytest.param(field(pa.time64("us")), "mysql", "TIME(6)", id="mysql-time"),
    pytest.param(field(pa.duration("us")), "postgresql", "INTERVAL", id="duration"),
    pytest.param(field(pa.duration("us")), "mysql", "TIME(6)", id="mysql-duration"),
    pytest.param(field(pa.string(), length="20"), "postgresql", "VARCHAR(20)", id="varchar"),
    pytest.param(field(pa.string()), "postgresql", "TEXT", id="text"),
    pytest.param(field(pa.large_string()), "mysql", "LONGTEXT", id="mysql-text"),
    pytest.param(field(pa.string(), length="20"), "mysql", "VARCHAR(20)", id="mysql-varchar"),
    pytest.param(field(pa.string(), length="20000"), "mysql", "LONGTEXT", id="mysql-long-varchar"),
    pytest.param(
        field(pa.dictionary(pa.int32(), pa.string())), "postgresql", "TEXT", id="dictionary"
    ),
    pytest.param(field(pa.null()), "postgresql", "TEXT", id="null"),
    pytest.param(field(pa.binary()), "postgresql", "BYTEA", id="binary"),
    pytest.param(field(pa.large_binary()), "mysql", "LONGBLOB", id="mysql-binary"),
    pytest.param(field(pa.string(), logical="decimal"), "postgresql", "NUMERIC", id="tag-decimal"),
    pytest.param(
        field(pa.string(), logical="decimal"), "mysql", "DECIMAL(65, 30)", id="mysql-tag-decimal"
    ),
    pytest.param(field(pa.string(), logical="uuid"), "postgresql", "UUID", id="tag-uuid"),
    pytest.param(field(pa.string(), logical="uuid"), "mysql", "VARCHAR(36)", id="mysql-tag-uuid"),
    pytest.param(field(pa.string(), logical="json"), "postgresql", "JSON", id="tag-json"),
    pytest.param(field(pa.string(), logical="jsonb"), "postgresql", "JSONB", id="tag-jsonb"),
    pytest.param(field(pa.string(), logical="jsonb"), "mysql", "JSON", id="mysql-tag-jsonb"),
    pytest.param(field(pa.string(), logical="json"), "sqlite", "JSON", id="sqlite-tag-json"),
    pytest.param(
        field(pa.string(), logical="interval"), "postgresql", "INTERVAL", id="tag-interval"
    ),
    pytest.param(
        field(pa.string(), logical="interval"), "sqlite", "TEXT", id="sqlite-tag-interval"
    ),
]


@pytest.mark.parametrize(("arrow", "dialect", "ddl"), TO_COLUMN)
def test_arrow_to_column(arrow: pa.Field, dialect: str, ddl: str) -> None:
    assert column_type(arrow, dialect).compile(dialect=DIALECTS[dialect]) == ddl


def test_a_mysql_key_column_is_an_indexable_case_sensitive_varchar() -> None:
    key = column_type(field(pa.string()), "mysql", is_key=True)

    assert key.compile(dialect=DIALECTS["mysql"]) == "VARCHAR(255) COLLATE utf8mb4_bin"


@pytest.mark.parametrize(
    ("arrow", "dialect", "message"),
    [
        pytest.param(
            field(pa.decimal256(66, 2)), "mysql", "wider than MySQL/MariaDB", id="mysql-decimal-66"
        ),
        pytest.param(
            field(pa.duration("us")), "sqlite", "sqlite has no interval type", id="sqlite-duration"
        ),
        pytest.param(
            field(pa.list_(pa.int32())), "postgresql", "no postgresql column type", id="list"
        ),
    ],
)
def test_arrow_types_without_a_column_type_are_refused(
    arrow: pa.Field, dialect: str, message: str
) -> None:
    with pytest.raises(SchemaError, match=f"column 'c': .*{message}"):
        column_type(arrow, dialect)
