"""The one type ladder: a database column to an Arrow field, and an Arrow field to a column type.

Both directions keep the data: integers keep their width, decimals their precision and scale,
timestamps their time zone and microseconds. Where Arrow has no type (unbounded NUMERIC, JSON,
UUID, PostgreSQL's INTERVAL) the value travels as text tagged with its logical type, so the
destination can recreate it.
"""

import logging

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.types import TypeEngine

from copyjob_dagster.errors import SchemaError
from copyjob_dagster.stores.base import LOGICAL_TYPE, STRING_LENGTH, logical_type, string_length

log = logging.getLogger(__name__)

UTC = "UTC"
MAX_DECIMAL128_PRECISION = 38
MAX_DECIMAL256_PRECISION = 76
MYSQL_MAX_DECIMAL_PRECISION = 65
MYSQL_MAX_VARCHAR = 16_383  # utf8mb4: 65,535 bytes a row / 4 bytes a character
MYSQL_KEY_VARCHAR = 255
# Binary, so that 'a' and 'A' stay distinct keys; the MySQL store replaces it with the server's
# NO PAD binary collation, so that 'x' and 'x ' do too.
MYSQL_KEY_COLLATION = "utf8mb4_bin"


def _tagged(logical: str, length: int | None = None) -> tuple[pa.DataType, dict[bytes, bytes]]:
    metadata = {LOGICAL_TYPE: logical.encode()}
    if length:
        metadata[STRING_LENGTH] = str(length).encode()
    return pa.string(), metadata


def arrow_field(name: str, column_type: TypeEngine, nullable: bool, dialect: str) -> pa.Field:
    """The Arrow field that holds a column of `column_type` read through `dialect` exactly."""
    known = _arrow_type(column_type, dialect)
    if known is None:
        log.warning("column %r has type %s, which copyjob copies as text", name, column_type)
        known = pa.string(), None
    arrow_type, metadata = known
    return pa.field(name, arrow_type, nullable=nullable, metadata=metadata or None)


def needs_text_cast(column_type: TypeEngine, dialect: str) -> bool:
    """Columns read as their text form: JSON keeps its exact text, an interval its months and
    days (psycopg counts a month as 30 days), unknown types degrade."""
    return (
        isinstance(column_type, sa.JSON | postgresql.INTERVAL)
        or _arrow_type(column_type, dialect) is None
    )


def _arrow_type(
    t: TypeEngine, dialect: str
) -> tuple[pa.DataType, dict[bytes, bytes] | None] | None:
    # Order matters: MySQL's BOOLEAN is TINYINT(1), so booleans come before integers; Float
    # subclasses Numeric, and BigInteger/SmallInteger subclass Integer.
    if isinstance(t, sa.Boolean) or (isinstance(t, mysql.TINYINT) and t.display_width == 1):
        return pa.bool_(), None
    if isinstance(t, sa.Integer | mysql.YEAR):
        return _integer_type(t, dialect), None
    if isinstance(t, sa.Float):
        single = isinstance(t, sa.REAL | mysql.FLOAT) and dialect != "sqlite"
        return (pa.float32() if single else pa.float64()), None
    if isinstance(t, sa.Numeric):
        return _decimal_type(t)
    if isinstance(t, sa.DateTime):
        aware = bool(getattr(t, "timezone", False)) or isinstance(t, mysql.TIMESTAMP)
        return pa.timestamp("us", tz=UTC if aware else None), None
    if isinstance(t, sa.Date):
        return pa.date32(), None
    if isinstance(t, mysql.TIME):
        return pa.duration("us"), None  # a signed span of up to 838 hours, not a time of day
    if isinstance(t, sa.Time) and not getattr(t, "timezone", False):
        return pa.time64("us"), None
    if isinstance(t, postgresql.INTERVAL):
        return _tagged("interval")  # months, days and microseconds: no Arrow type Parquet holds
    if isinstance(t, sa.Interval):
        return pa.duration("us"), None
    if isinstance(t, sa.Uuid):
        return _tagged("uuid")
    if isinstance(t, sa.JSON):
        return _tagged("jsonb" if isinstance(t, postgresql.JSONB) else "json")
    if isinstance(t, sa.String):
        length = t.length if not isinstance(t, sa.Enum | mysql.SET) else None  # SET: 'a,b,c'
        return pa.string(), ({STRING_LENGTH: str(length).encode()} if length else None)
    if isinstance(t, _BINARY_TYPES):
        return pa.binary(), None
    return None


_BINARY_TYPES = (
    sa.LargeBinary,
    sa.BINARY,
    sa.VARBINARY,
    mysql.TINYBLOB,
    mysql.MEDIUMBLOB,
    mysql.LONGBLOB,  # MySQL's BLOBs other than BLOB itself are not LargeBinary
)


def _integer_type(t: sa.Integer, dialect: str) -> pa.DataType:
    if dialect == "sqlite":
        return pa.int64()  # every SQLite INTEGER is 64-bit, whatever its declared name
    unsigned = bool(getattr(t, "unsigned", False))
    if isinstance(t, sa.BigInteger):
        return pa.uint64() if unsigned else pa.int64()
    if isinstance(t, mysql.TINYINT):
        return pa.uint8() if unsigned else pa.int8()
    if isinstance(t, sa.SmallInteger):
        return pa.uint16() if unsigned else pa.int16()
    if isinstance(t, mysql.YEAR):
        return pa.int16()
    if isinstance(t, mysql.MEDIUMINT):
        return pa.int32()
    return pa.uint32() if unsigned else pa.int32()


def _decimal_type(t: sa.Numeric) -> tuple[pa.DataType, dict[bytes, bytes] | None]:
    precision, scale = t.precision, t.scale or 0
    if precision is None:
        return _tagged("decimal")  # unbounded NUMERIC: any number of digits, kept as text
    if precision <= MAX_DECIMAL128_PRECISION:
        return pa.decimal128(precision, scale), None
    if precision <= MAX_DECIMAL256_PRECISION:
        return pa.decimal256(precision, scale), None
    return _tagged("decimal")


def column_type(field: pa.Field, dialect: str, is_key: bool = False) -> TypeEngine:
    """The destination column type for an Arrow field on `dialect` (postgresql, mysql, ...)."""
    t = field.type
    if pa.types.is_dictionary(t):  # pandas categoricals: the column holds the values
        return column_type(field.with_type(t.value_type), dialect, is_key)
    logical = logical_type(field)
    if logical is not None:
        return _logical_column_type(logical, dialect, is_key)
    if pa.types.is_boolean(t):
        return sa.Boolean()
    if pa.types.is_integer(t):
        return _integer_column_type(t, dialect)
    if pa.types.is_float32(t) or pa.types.is_float16(t):
        return mysql.FLOAT() if dialect == "mysql" else sa.REAL()
    if pa.types.is_float64(t):
        return sa.Double()
    if pa.types.is_decimal(t):
        if dialect == "mysql" and t.precision > MYSQL_MAX_DECIMAL_PRECISION:
            raise SchemaError(
                f"column {field.name!r}: DECIMAL({t.precision}, {t.scale}) is wider than "
                f"MySQL/MariaDB allows ({MYSQL_MAX_DECIMAL_PRECISION} digits)"
            )
        return sa.Numeric(t.precision, t.scale)
    if pa.types.is_timestamp(t):
        if dialect == "mysql":
            return mysql.DATETIME(fsp=6)  # aware values are stored as UTC
        return sa.DateTime(timezone=t.tz is not None)
    if pa.types.is_date(t):
        return sa.Date()
    if pa.types.is_time(t):
        return mysql.TIME(fsp=6) if dialect == "mysql" else sa.Time()
    if pa.types.is_duration(t):
        if dialect == "postgresql":
            return postgresql.INTERVAL()
        if dialect == "mysql":
            return mysql.TIME(fsp=6)
        raise SchemaError(f"column {field.name!r}: {dialect} has no interval type to copy it into")
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return _text_column_type(string_length(field), dialect, is_key)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return mysql.LONGBLOB() if dialect == "mysql" else sa.LargeBinary()
    raise SchemaError(f"column {field.name!r}: no {dialect} column type holds Arrow type {t}")


def _integer_column_type(t: pa.DataType, dialect: str) -> TypeEngine:
    if dialect == "mysql":
        unsigned = pa.types.is_unsigned_integer(t)
        by_width = {8: mysql.TINYINT, 16: mysql.SMALLINT, 32: mysql.INTEGER, 64: mysql.BIGINT}
        return by_width[t.bit_width](unsigned=unsigned)
    # Elsewhere integers are signed: an unsigned type takes the next wider signed one.
    width = t.bit_width * 2 if pa.types.is_unsigned_integer(t) else t.bit_width
    if width > 64:
        return sa.Numeric(20, 0)
    return {8: sa.SmallInteger, 16: sa.SmallInteger, 32: sa.Integer, 64: sa.BigInteger}[width]()


def _text_column_type(length: int | None, dialect: str, is_key: bool) -> TypeEngine:
    if dialect != "mysql":
        return sa.String(length) if length else sa.Text()
    # MySQL cannot index LONGTEXT; keys get a VARCHAR with a binary collation.
    if is_key:
        return mysql.VARCHAR(min(length or MYSQL_KEY_VARCHAR, 768), collation=MYSQL_KEY_COLLATION)
    if length and length <= MYSQL_MAX_VARCHAR:
        return mysql.VARCHAR(length)
    return mysql.LONGTEXT()


def _logical_column_type(logical: str, dialect: str, is_key: bool) -> TypeEngine:
    if logical == "decimal":
        if dialect == "mysql":
            return mysql.DECIMAL(MYSQL_MAX_DECIMAL_PRECISION, 30)
        return sa.Numeric()
    if logical == "interval" and dialect == "postgresql":
        return postgresql.INTERVAL()
    if logical == "uuid":
        return postgresql.UUID(as_uuid=False) if dialect == "postgresql" else sa.String(36)
    if logical in ("json", "jsonb"):
        if dialect == "postgresql":
            return postgresql.JSONB() if logical == "jsonb" else postgresql.JSON()
        if dialect == "mysql":
            return mysql.JSON()
        return sa.JSON()
    return _text_column_type(None, dialect, is_key)


def csv_spells_exactly(arrow_type: pa.DataType) -> bool:
    """Whether Arrow's CSV writer spells values of `arrow_type` in a form that PostgreSQL's COPY
    and MySQL's LOAD DATA read back exactly (binary columns are hex-encoded first)."""
    t = arrow_type
    return (
        pa.types.is_boolean(t)
        or pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_decimal(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_date32(t)
        or pa.types.is_null(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or (pa.types.is_time64(t) and t.unit == "us")
    )
