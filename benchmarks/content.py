"""A checksum of a copy's content: the same number for the same rows, whatever their order
and whatever types a way chose for them (numeric or double, boolean or integer, DATETIME or
timestamptz, text or LONGTEXT).

Each row becomes one canonical text, its ten columns joined by `|`: integers as written,
`amount` in cents, `score` in millionths (rounded), timestamps in microseconds since 1970
(UTC for the aware column), `order_date` in days since 1970, `paid` as 0/1 (also when a way
stored it as the text 'true'/'false'), NULL as `\\N`.
The checksum is the sum over rows of the first 15 hex digits of the text's MD5, as a number:
order-independent, and computed inside PostgreSQL and MariaDB, or over Arrow batches of
Parquet files, so every destination is read the same way. The expected value is computed on
the source table the same way.
"""

import hashlib
import sqlite3
from contextlib import closing
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from psycopg import sql

NULL = "\\N"
COLUMNS = ["id", "customer_id", "amount", "status", "note", "created_at", "updated_at", "paid",
           "order_date", "score"]  # fmt: skip

_PG_ROW = """concat_ws('|', id::bigint::text, customer_id::bigint::text,
  round(amount::numeric * 100)::bigint::text, status::text, coalesce(note::text, E'\\\\N'),
  (extract(epoch FROM created_at) * 1000000)::bigint::text,
  (extract(epoch FROM updated_at) * 1000000)::bigint::text,
  CASE WHEN paid::text IN ('1', 't', 'true') THEN '1'
       WHEN paid::text IN ('0', 'f', 'false') THEN '0' ELSE paid::text END,
  (order_date::date - date '1970-01-01')::text,
  round(score::float8 * 1000000)::bigint::text)"""
PG_CHECKSUM = (
    "SELECT count(*), coalesce(sum(('x' || lpad(substr(md5(" + _PG_ROW + "), 1, 15), 16, '0'))"
    "::bit(64)::bigint::numeric), 0)::text FROM {}.{}"
)

_MY_ROW = """CONCAT_WS('|', CAST(id AS SIGNED), CAST(customer_id AS SIGNED),
  CAST(ROUND(amount * 100) AS SIGNED), status, COALESCE(note, '\\\\N'),
  TIMESTAMPDIFF(MICROSECOND, '1970-01-01', created_at),
  TIMESTAMPDIFF(MICROSECOND, '1970-01-01', updated_at),
  CASE WHEN CAST(paid AS CHAR) IN ('1', 't', 'true') THEN '1'
       WHEN CAST(paid AS CHAR) IN ('0', 'f', 'false') THEN '0' ELSE CAST(paid AS CHAR) END,
  DATEDIFF(order_date, '1970-01-01'),
  CAST(ROUND(score * 1000000) AS SIGNED))"""
MY_CHECKSUM = (
    "SELECT COUNT(*), CAST(COALESCE(SUM(CAST(CONV(SUBSTR(MD5(" + _MY_ROW + "), 1, 15), 16, 10)"
    " AS UNSIGNED)), 0) AS CHAR) FROM `{}`.`{}`"
)


def pg(conn, schema: str, table: str) -> tuple[int, str]:
    """(rows, checksum) of a PostgreSQL table, computed by the server."""
    query = sql.SQL(PG_CHECKSUM).format(sql.Identifier(schema), sql.Identifier(table))
    rows, total = conn.execute(query).fetchone()
    return rows, total


def mariadb(conn, database: str, table: str) -> tuple[int, str]:
    """(rows, checksum) of a MariaDB table, computed by the server (session in UTC)."""
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute(MY_CHECKSUM.format(database, table))
        rows, total = cur.fetchone()
    return int(rows), str(total)


def parquet(files: list[Path]) -> tuple[int, str]:
    """(rows, checksum) of Parquet files, over their Arrow batches (columns by name; a way's
    extra columns, such as dlt's, are not read)."""
    rows, total = 0, 0
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=100_000, columns=COLUMNS):
            texts = _canonical(batch)
            rows += len(texts)
            for text in texts.to_pylist():
                total += int(hashlib.md5(text.encode()).hexdigest()[:15], 16)
    return rows, str(total)


def sqlite(path: Path, table: str) -> tuple[int, str]:
    """(rows, checksum) of a SQLite table, over Arrow batches of its values (NUMERIC and
    DOUBLE as REAL, timestamps and dates as the text they are stored as)."""
    rows, total = 0, 0
    select = (
        "SELECT id, customer_id, CAST(amount AS REAL), status, note, created_at, updated_at,"
        f' paid, order_date, CAST(score AS REAL) FROM "{table}"'
    )
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        cursor = conn.execute(select)
        while chunk := cursor.fetchmany(100_000):
            arrays = [pa.array(values) for values in zip(*chunk, strict=True)]
            texts = _canonical(pa.RecordBatch.from_arrays(arrays, names=COLUMNS))
            rows += len(texts)
            for text in texts.to_pylist():
                total += int(hashlib.md5(text.encode()).hexdigest()[:15], 16)
    return rows, str(total)


def _canonical(batch: pa.RecordBatch) -> pa.Array:
    col = batch.column
    parts = [
        _integer(col("id")),
        _integer(col("customer_id")),
        _scaled(col("amount"), 100),
        pc.cast(col("status"), pa.string()),
        pc.fill_null(pc.cast(col("note"), pa.string()), NULL),
        _micros(col("created_at")),
        _micros(col("updated_at")),
        _boolean(col("paid")),
        _days(col("order_date")),
        _scaled(col("score"), 1_000_000),
    ]
    return pc.binary_join_element_wise(*parts, "|")


def _integer(values: pa.Array) -> pa.Array:
    return pc.cast(pc.cast(values, pa.int64()), pa.string())


def _boolean(values: pa.Array) -> pa.Array:
    """0/1; a way that stored booleans as text ('true'/'false', as Sling does in MariaDB)
    holds the same values."""
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return pc.if_else(pc.is_in(values, pa.array(["1", "t", "true"])), "1", "0")
    return _integer(pc.cast(values, pa.int8()))


def _scaled(values: pa.Array, factor: int) -> pa.Array:
    as_float = pc.cast(values, pa.float64())
    return _integer(pc.round(pc.multiply(as_float, float(factor))))


def _micros(values: pa.Array) -> pa.Array:
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        values = pc.cast(values, pa.timestamp("us"))
    if values.type.tz is not None:
        values = pc.cast(values, pa.timestamp("us", "UTC"))
    return _integer(pc.cast(values, pa.timestamp("us", values.type.tz)).cast(pa.int64()))


def _days(values: pa.Array) -> pa.Array:
    if not pa.types.is_date32(values.type):
        values = pc.cast(values, pa.date32())
    return _integer(pc.cast(values, pa.int32()))
