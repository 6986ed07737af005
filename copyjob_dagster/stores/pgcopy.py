"""PostgreSQL to PostgreSQL: the source's binary COPY bytes stream straight into the destination.

No value is decoded on the way: the source runs `COPY (SELECT ...) TO STDOUT (FORMAT binary)`
inside the reader's own snapshot transaction, and the destination takes the same bytes with
`COPY table (columns) FROM STDIN (FORMAT binary)`. Column selection is the SELECT list, renames
are the COPY's column list. Binary COPY is exact only between identical column types, so the
passthrough is used only when every column's type is the same on both sides
(`same_column_types`); otherwise the engine takes the Arrow path.

The source is read through libpq's own `get_copy_data` (psycopg's `pq` layer), which hands one
row per message: psycopg's `Copy.read()` costs about 2.5x the raw `psql | psql` pipe for that
reason, the loop below about 1.0-1.1x, the same as asyncpg's chunked reads, without a second
driver, a second connection or an exported snapshot. Each message is one row, so chunks carry
exact row counts for progress; the final count is COPY's own.
"""

import logging
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa
import sqlalchemy as sa
from psycopg import pq, sql
from sqlalchemy.dialects import postgresql

from copyjob_dagster.stores import pgadbc, pgcsv
from copyjob_dagster.stores.base import KeyRange, Window
from copyjob_dagster.stores.read_ahead import read_ahead
from copyjob_dagster.stores.sql_reader import SqlTableReader

CHUNK_BYTES = 1 << 20  # bytes handed to the destination at a time: memory stays flat
# Binary COPY's end marker is a message of its own, not a row; the header goes out with the
# first row, or with the end marker when there is no row.
_TRAILER = b"\xff\xff"
_ENDS = {_TRAILER, b"PGCOPY\n\xff\r\n\x00" + bytes(8) + _TRAILER}
_END_SIZES = {len(end) for end in _ENDS}
_DIALECT = postgresql.dialect()
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CopyChunk:
    """COPY bytes holding `num_rows` whole rows: binary (the first chunk also holds the header),
    or CSV from `csv_chunks`."""

    data: bytes
    num_rows: int


@dataclass(frozen=True)
class BinaryCopy:
    """Chunks of a binary COPY, and the destination columns they fill, in order."""

    chunks: Iterable[CopyChunk]
    columns: tuple[str, ...]


def same_column_types(source: sa.Table, source_columns: list[str], targets: list[Any]) -> bool:
    """Whether each source column has exactly the type of its destination column.

    Types are compared as PostgreSQL spells them (`NUMERIC(12, 2)`, `TIMESTAMP WITH TIME ZONE`),
    so a length, precision, scale or time zone that differs sends the copy down the Arrow path,
    which converts values one by one. Unbounded VARCHAR and TEXT share one binary form.
    """
    if len(source_columns) != len(targets):
        return False
    for name, target in zip(source_columns, targets, strict=True):
        spelled = _spelling(source.c[name].type)
        if spelled is None or spelled != _spelling(target):
            return False
    return True


def _spelling(column_type: Any) -> str | None:
    if column_type is None:
        return None
    try:
        spelled = column_type.compile(dialect=_DIALECT)
    except sa.exc.CompileError:
        return None
    return "TEXT" if spelled == "VARCHAR" else spelled


def _one_value(window: Window | None) -> bool:
    """A window of one value: the rows at a watermark, read for its fingerprint. A few rows as
    a rule, which the driver's read would cost a server session of its own to fetch (most of a
    no-op incremental table's time); this reader's own connection reads them."""
    return window is not None and window.one_value


class PostgresTableReader(SqlTableReader):
    """A PostgreSQL snapshot reader that can also hand over its rows as binary COPY bytes."""

    def batches(
        self,
        columns: list[str],
        batch_rows: int,
        window: Window | None = None,
        part: KeyRange | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Rows as Arrow batches parsed from binary COPY by ADBC's driver (`pgadbc`), else
        from COPY's CSV by Arrow where that is exact, else through the generic row path."""
        description = self._store.describe(self._table.name)
        schema = pa.schema([description.schema.field(name) for name in columns])
        native = (
            None
            if _one_value(window)
            else self._native_batches(columns, schema, batch_rows, window, part)
        )
        if native is not None:
            # The driver's stream fails inside the destination's writing (as an OSError that
            # the destination would take for its own): name the source here.
            with self._store.translated_errors(f"reading table {self._table.name!r}"):
                yield from self.streaming(read_ahead(native))
            return
        if not pgcsv.reads_exactly(schema):
            yield from super().batches(columns, batch_rows, window, part)
            return
        statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(
            self._select(columns, window, part)
        )
        chunks = (chunk.data for chunk in self._copy_out(statement, batch_rows, text=True))
        yield from read_ahead(pgcsv.csv_batches(chunks, schema, batch_rows))

    def _native_batches(
        self,
        columns: list[str],
        schema: pa.Schema,
        batch_rows: int,
        window: Window | None,
        part: KeyRange | None,
    ) -> Iterator[pa.RecordBatch] | None:
        """The driver's batches, read in this reader's snapshot; None where it cannot read
        the columns exactly (said at DEBUG), before any row is read."""
        chosen: pgadbc.Plan | Iterator[pa.RecordBatch] | str = pgadbc.plan(self._table, schema)
        if isinstance(chosen, pgadbc.Plan):
            driver = self._conn.connection.driver_connection
            query = self._select(columns, window, part, chosen.select_list()).as_string(driver)
            target = self._store.adbc_uri()  # type: ignore[attr-defined]
            chosen = pgadbc.read(target, self.export_snapshot(), query, chosen, batch_rows)
        if isinstance(chosen, str):
            log.debug("table %r: read by COPY's CSV, not natively: %s", self._table.name, chosen)
            return None
        return chosen

    def binary_chunks(
        self, columns: list[str], batch_rows: int, window: Window | None = None
    ) -> Iterator[CopyChunk]:
        """The selected rows as binary COPY chunks of at most `batch_rows` rows (or about
        CHUNK_BYTES bytes), read in this reader's snapshot transaction."""
        statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT binary)").format(
            self._select(columns, window)
        )
        return self._copy_out(statement, batch_rows, text=False)

    def csv_chunks(self, selected: sql.Composable, batch_rows: int) -> Iterator[CopyChunk]:
        """The whole table's rows of the SELECT list `selected` as UTF-8 CSV chunks, read in
        this reader's snapshot: NULL the bare word NULL, a text that is the word quoted (see
        `pgmysql`)."""
        statement = sql.SQL(
            "COPY ({}) TO STDOUT (FORMAT csv, NULL 'NULL', ENCODING 'UTF8')"
        ).format(self._select([], None, None, selected))
        return self._copy_out(statement, batch_rows, text=True)

    def settings(self, names: list[str]) -> list[str | None]:
        """This reader's transaction's values of the custom settings `names` (None where
        unset): what a COPY's expressions counted there (see `pgmysql`)."""
        query = sa.select(*(sa.func.current_setting(name, sa.true()) for name in names))
        return list(self._conn.execute(query).one())

    def _copy_out(
        self, statement: sql.Composable, batch_rows: int, text: bool
    ) -> Iterator[CopyChunk]:
        return self.streaming(self._copy_chunks(statement, batch_rows, text))

    def _copy_chunks(
        self, statement: sql.Composable, batch_rows: int, text: bool
    ) -> Generator[CopyChunk, None, None]:
        """Closed early, psycopg's `Copy` cancels the COPY and drains what is in flight."""
        driver = self._conn.connection.driver_connection
        cursor = driver.cursor()
        with cursor, cursor.copy(statement):
            pgconn = driver.pgconn
            buffer, rows, total = bytearray(), 0, 0
            while True:
                size, data = pgconn.get_copy_data(0)  # blocks until a row has arrived
                if size < 0:
                    break
                if size >= CHUNK_BYTES and buffer:  # a row of megabytes gets a chunk of its own
                    yield CopyChunk(bytes(buffer), rows)
                    total += rows
                    buffer, rows = bytearray(), 0
                if text or size not in _END_SIZES or bytes(data) not in _ENDS:
                    rows += 1
                if buffer or size < CHUNK_BYTES:
                    buffer += data
                    if rows < batch_rows and len(buffer) < CHUNK_BYTES:
                        continue
                    chunk, buffer = bytes(buffer), bytearray()
                else:
                    chunk = bytes(data)  # a row of megabytes: one copy of it, not two
                del data  # libpq's copy of the row, freed before the chunk is parsed
                yield CopyChunk(chunk, rows)
                total += rows
                rows = 0
            copied = _copy_result(pgconn)
            if buffer:
                yield CopyChunk(bytes(buffer), rows)
                total += rows
        if copied != total:
            raise psycopg.DataError(f"COPY reported {copied} rows but sent {total}")

    def export_snapshot(self) -> str:
        """This reader's snapshot, for other connections to read it (`SET TRANSACTION
        SNAPSHOT`) while this transaction lasts."""
        return str(self._conn.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one())

    def _select(
        self,
        columns: list[str],
        window: Window | None,
        part: KeyRange | None = None,
        selected: sql.Composable | None = None,
    ) -> sql.Composable:
        """The SELECT of the COPY (of `selected`, or of the columns themselves). COPY cannot
        take bind parameters, so the window's bounds are quoted by
        psycopg's own literal adaptation (`sql.Literal`, typed like a bound value:
        `'2024-01-01 00:00:00+00:00'::timestamptz`), never pasted into the text by hand."""
        table = self._table
        name = sql.Identifier(*(part for part in (table.schema, table.name) if part))
        if selected is None:
            selected = sql.SQL(", ").join(map(sql.Identifier, columns))
        query = sql.SQL("SELECT {} FROM {}").format(selected, name)
        conditions = [] if part is None else _range_conditions(part)
        if window is not None:
            cursor = sql.Identifier(window.column)
            conditions.append(sql.SQL("{} IS NOT NULL").format(cursor))
            if window.low is not None:
                compare = sql.SQL(">=" if window.low_inclusive else ">")
                conditions.append(
                    sql.SQL("{} {} {}").format(cursor, compare, sql.Literal(window.low))
                )
            if window.high is not None:
                conditions.append(sql.SQL("{} <= {}").format(cursor, sql.Literal(window.high)))
        if not conditions:
            return query
        return sql.SQL("{} WHERE {}").format(query, sql.SQL(" AND ").join(conditions))


def _range_conditions(part: KeyRange) -> list[sql.Composable]:
    """`stores.ranges.range_conditions` for COPY, whose bounds psycopg quotes as typed literals."""
    column = sql.Identifier(part.column)
    inside = []
    if part.low is not None:
        inside.append(sql.SQL("{} >= {}").format(column, sql.Literal(part.low)))
    if part.high is not None:
        inside.append(sql.SQL("{} < {}").format(column, sql.Literal(part.high)))
    if not inside:
        return [] if part.nulls else [sql.SQL("{} IS NOT NULL").format(column)]
    condition = sql.SQL("({})").format(sql.SQL(" AND ").join(inside))
    if part.nulls:
        condition = sql.SQL("({} IS NULL OR {})").format(column, condition)
    return [condition]


def _copy_result(pgconn: Any) -> int:
    """COPY's final result: its row count, or the error that ended it."""
    result, last = None, pgconn.get_result()
    while last is not None:
        result, last = last, pgconn.get_result()
    if result is None or result.status != pq.ExecStatus.COMMAND_OK:
        if result is None:
            raise psycopg.OperationalError(pgconn.get_error_message().decode(errors="replace"))
        raise psycopg.errors.error_from_result(result)
    return result.command_tuples or 0


def write_binary(driver: Any, target: sql.Composable, stream: BinaryCopy) -> int:
    """Write the chunks with COPY FROM STDIN (FORMAT binary); return the rows COPY took."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
        target, sql.SQL(", ").join(map(sql.Identifier, stream.columns))
    )
    cursor = driver.cursor()
    with cursor:
        with cursor.copy(statement) as copy:
            for chunk in stream.chunks:
                copy.write(chunk.data)
        return cursor.pgresult.command_tuples if cursor.pgresult is not None else 0
