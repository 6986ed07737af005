"""SQLite: real transactions, so that snapshots and table swaps are atomic.

Python's sqlite3 module opens transactions only before data changes, and never before a
SELECT. SQLAlchemy's documented recipe takes transaction control from it: every SQLAlchemy
transaction becomes an explicit BEGIN, so a read sees one snapshot and a full copy's CREATE,
INSERT, DROP and RENAME commit together.
"""

import decimal
import functools
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Dialect, make_url
from sqlalchemy.exc import SAWarning
from sqlalchemy.types import NullType, TypeDecorator, TypeEngine

from copyjob_dagster.stores import identifiers, sqlite_writer
from copyjob_dagster.stores.base import logical_type
from copyjob_dagster.stores.capabilities import Capabilities
from copyjob_dagster.stores.identifiers import NameRules
from copyjob_dagster.stores.locking import file_lock, lock_key
from copyjob_dagster.stores.sql import Role, SqlStore, Timeouts
from copyjob_dagster.stores.sql_writing import database_timestamps
from copyjob_dagster.stores.sqlite_reader import SQLiteTableReader
from copyjob_dagster.stores.types import MAX_DECIMAL256_PRECISION

BUSY_TIMEOUT_SECONDS = 30  # how long a writer of a SQLite file waits for another


class SQLiteStore(SqlStore):
    """A SQLite database file."""

    capabilities = Capabilities(case_insensitive_names=True)

    def __init__(
        self, url: str, schema: str | None, role: Role, timeouts: Timeouts | None = None
    ) -> None:
        super().__init__(_read_only(url) if role == "source" else url, schema, role, timeouts)
        self.display_url = url  # a SQLite URL holds no password; show it as the user wrote it
        event.listen(self.engine, "connect", _take_transaction_control)
        event.listen(self.engine, "begin", _begin_writing if role == "destination" else _begin)
        event.listen(self.engine, "checkin", _writable)
        # SQLite has no DECIMAL type: SQLAlchemy converts through float and says so each time.
        warnings.filterwarnings(
            "ignore", message=".*does \\*not\\* support Decimal", category=SAWarning
        )

    @classmethod
    def created_by_opening(cls, url: str) -> bool:
        database = make_url(url).database
        return database not in (None, "", ":memory:") and not Path(database).exists()

    @property
    def name_rules(self) -> NameRules:
        return identifiers.SQLITE

    @contextmanager
    def lock(self, table: str, timeout_seconds: float) -> Iterator[None]:
        """A lock file beside the database file; the kernel releases it with the process."""
        database = Path(self.engine.url.database or "memory")
        lock_file = database.with_name(
            f".{database.name}.{lock_key(self._schema, table).hex()[:16]}.copyjob-lock"
        )
        with file_lock(lock_file, timeout_seconds, f"table {self.location(table)!r}"):
            yield

    def engine_options(self) -> dict[str, Any]:
        return {**super().engine_options(), "connect_args": {"timeout": BUSY_TIMEOUT_SECONDS}}

    def begin_snapshot(self, conn: Connection) -> None:
        conn.exec_driver_sql("PRAGMA query_only = ON")
        # The first read of the file starts the snapshot (SELECT 1 reads none): from here the
        # connection holds its SHARED lock, or its WAL read mark, until the transaction ends.
        conn.exec_driver_sql("SELECT count(*) FROM sqlite_schema").scalar()

    def table_reader(self, conn: Connection, table: sa.Table) -> SQLiteTableReader:
        return SQLiteTableReader(self, conn, table)

    def write_batches(
        self, conn: Connection, table: sa.Table, batches: Iterable[pa.RecordBatch]
    ) -> int:
        def generic(batch: pa.RecordBatch) -> None:
            conn.execute(self.insert_statement(table), database_timestamps(batch).to_pylist())

        return sqlite_writer.insert_batches(
            conn, table, self.qualified(table.name), self.quote, self.bind_type, batches, generic
        )

    def bind_type(self, column_type: TypeEngine) -> TypeEngine:
        if _is_decimal(column_type):
            return _DecimalAsText()
        return super().bind_type(column_type)

    def select_expression(self, column: sa.Column) -> sa.ColumnElement[Any]:
        if isinstance(column.type, sa.Integer):
            # An INTEGER column keeps a REAL with a fraction (2.5) as it is, and Arrow would cut
            # it to 2. Selected as its text instead, it fits no integer: the copy stops, naming
            # the column, rather than change the value.
            real = sa.func.typeof(column) == "real"
            return sa.case((real, sa.cast(column, sa.Text)), else_=column).label(column.name)
        if _is_decimal(column.type):
            # The stored INTEGER or REAL itself: SQLAlchemy would format it through a float
            # with a fixed number of places, losing big integers and tiny fractions.
            return sa.type_coerce(column, NullType()).label(column.name)
        return super().select_expression(column)

    def stored_value(self, column: sa.Column) -> sa.ColumnElement[Any]:
        if _is_decimal(column.type):
            # A NUMERIC(12, 2) keeps 3.001 as written; SQLAlchemy would hand it over as 3.00,
            # and a window ending at 3.00 would leave that row out of every run.
            return sa.type_coerce(column, _StoredDecimal())
        return column

    def converter(self, field: pa.Field) -> Callable[[Any], Any] | None:
        if pa.types.is_decimal(field.type):
            return functools.partial(_decimal, scale=field.type.scale)
        if logical_type(field) == "decimal":
            return _decimal_text
        return super().converter(field)


def _is_decimal(column_type: TypeEngine) -> bool:
    return isinstance(column_type, sa.Numeric) and not isinstance(column_type, sa.Float)


class _StoredDecimal(TypeDecorator[Decimal]):
    """A NUMERIC value read as stored, not rounded to the column's scale."""

    impl = NullType
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return _decimal(value, None)


class _DecimalAsText(TypeDecorator[Decimal]):
    """A decimal bound as its text, so that NUMERIC affinity keeps an integer of up to 64 bits
    exactly (SQLAlchemy's Numeric binds a float)."""

    impl = sa.String
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else str(value)


def _decimal(value: float | str | None, scale: int | None) -> Decimal | None:
    """A NUMERIC value as stored: a REAL by its shortest repr, rounded to the column's scale."""
    if value is None:
        return None
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if scale is not None and number.is_finite() and number.as_tuple().exponent < -scale:
        return number.quantize(Decimal(1).scaleb(-scale), context=_WIDE)
    return number


def _decimal_text(value: float | str | None) -> str | None:
    number = _decimal(value, None)
    return None if number is None else format(number, "f")


_WIDE = decimal.Context(prec=MAX_DECIMAL256_PRECISION)


def _take_transaction_control(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None


def _begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


def _begin_writing(conn: Connection) -> None:
    """A destination's transactions take the file's write lock as they begin: writers of one
    file (tables of a run copied at once, other runs) then wait for each other, up to
    BUSY_TIMEOUT_SECONDS each. A deferred BEGIN would read first and then fail at once with
    "database is locked" when another writer went ahead (SQLite does not wait on a lock it
    could only get by deadlocking)."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _writable(dbapi_connection: Any, _record: Any) -> None:
    """A snapshot's PRAGMA query_only must not follow its connection back into the pool."""
    if dbapi_connection is not None:
        dbapi_connection.execute("PRAGMA query_only = OFF")


def _read_only(url: str) -> str:
    """Open a source file read-only: never created when missing, never written."""
    parsed = make_url(url)
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return url
    return parsed.set(
        database=f"file:{database}", query={"mode": "ro", "uri": "true"}
    ).render_as_string(hide_password=False)
