"""MySQL and MariaDB: sessions pinned to UTC, snapshot reads, and table swaps by RENAME TABLE.

MySQL commits DDL implicitly, so a full copy loads a staging table and swaps it in with one
atomic `RENAME TABLE`; a staging table that a killed process left behind is dropped on the
next run of the same table.
"""

import contextlib
import functools
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection
from sqlalchemy.types import NullType, TypeEngine

from copyjob_dagster.errors import DestinationError
from copyjob_dagster.stores import identifiers, locking, mysqlload, snapshots, types
from copyjob_dagster.stores.binlog import BinlogChangeStream
from copyjob_dagster.stores.capabilities import Capabilities
from copyjob_dagster.stores.identifiers import NameRules
from copyjob_dagster.stores.innodb_trx import mysql_open_transactions
from copyjob_dagster.stores.locking import lock_key, wait_for
from copyjob_dagster.stores.open_transactions import OpenTransactions, read_open_transactions
from copyjob_dagster.stores.pgmysql import LOAD_DATA_CSV, TextCopy
from copyjob_dagster.stores.sql import Role, SqlStore, Timeouts

# Binary and NO PAD: 'a' and 'A', and 'x' and 'x ', are distinct keys (MariaDB's utf8mb4_bin
# is PAD SPACE: it compares 'x' and 'x ' as equal). MariaDB's first, then MySQL 8's.
DISTINCT_KEY_COLLATIONS = ("utf8mb4_nopad_bin", "utf8mb4_0900_bin")

EXACT_COUNT_BELOW = 1_000_000  # rows; smaller tables are counted exactly
WRITE_LOCK_SECONDS = 600  # another run's write transaction holds the table at most this long
log = logging.getLogger(__name__)


class MySQLStore(SqlStore):
    """MySQL/MariaDB through PyMySQL."""

    capabilities = Capabilities(
        split_reads=True,
        loads_text=LOAD_DATA_CSV,
        open_transactions=True,
        change_stream=True,
        binlog=True,
    )
    transactional_ddl = False

    def __init__(
        self, url: str, schema: str | None, role: Role, timeouts: Timeouts | None = None
    ) -> None:
        super().__init__(url, schema, role, timeouts)
        self._local_infile: bool | None = None
        event.listen(self.engine, "connect", self._session_timeouts)

    def engine_options(self) -> dict[str, Any]:
        return {
            **super().engine_options(),
            "connect_args": {
                "connect_timeout": self.timeouts.connect,
                # PyMySQL's connect_timeout covers the TCP connection only: these bound the
                # handshake with a server that accepts and never answers.
                "read_timeout": self.timeouts.connect,
                "write_timeout": self.timeouts.connect,
                "charset": "utf8mb4",
                "init_command": "SET time_zone = '+00:00'",
                # LOAD DATA LOCAL INFILE (see `mysqlload`), used when the server allows it.
                "local_infile": True,
            },
        }

    def _session_timeouts(self, dbapi_connection: Any, _record: Any) -> None:
        """Once logged in: the statement timeout, and a socket timeout only past it."""
        statement = self.timeouts.statement
        if statement is not None:
            if "MariaDB" in dbapi_connection.get_server_info():
                setting, value = "max_statement_time", statement
            else:  # MySQL limits SELECTs only, in milliseconds
                setting, value = "max_execution_time", max(1, round(statement * 1000))
            with dbapi_connection.cursor() as cursor:
                cursor.execute(f"SET SESSION {setting} = %s", (value,))
        # PyMySQL has no public setter for the timeouts of an open connection.
        socket_timeout = None if statement is None else statement + self.timeouts.connect
        dbapi_connection._read_timeout = socket_timeout
        dbapi_connection._write_timeout = socket_timeout

    @property
    def name_rules(self) -> NameRules:
        return identifiers.MYSQL

    def reflection_listeners(self) -> list[tuple[str, Callable[..., None]]]:
        return [("column_reflect", _unescape_column_name)]

    def column_type(self, field: pa.Field, is_key: bool = False) -> TypeEngine:
        column_type = super().column_type(field, is_key)
        if getattr(column_type, "collation", None) == types.MYSQL_KEY_COLLATION:
            return mysql.VARCHAR(column_type.length, collation=self.key_collation)
        return column_type

    @functools.cached_property
    def key_collation(self) -> str:
        """The server's binary NO PAD collation, for text key columns."""
        query = sa.text(
            "SELECT COLLATION_NAME FROM information_schema.COLLATIONS "
            "WHERE COLLATION_NAME IN :names"
        ).bindparams(sa.bindparam("names", expanding=True))
        with self.translated_errors("looking up collations"), self.engine.connect() as conn:
            available = set(conn.execute(query, {"names": DISTINCT_KEY_COLLATIONS}).scalars())
        for collation in DISTINCT_KEY_COLLATIONS:
            if collation in available:
                return collation
        raise DestinationError(
            f"destination {self.display_url}: the server has no binary NO PAD collation "
            f"({', '.join(DISTINCT_KEY_COLLATIONS)}), so distinct text keys such as 'x' and "
            f"'x ' would become one; copy tables with text keys to MariaDB 10.2+ or MySQL 8+"
        )

    def select_expression(self, column: sa.Column) -> sa.ColumnElement[Any]:
        if isinstance(column.type, mysql.FLOAT):
            # MySQL prints a FLOAT with six significant digits; as a DOUBLE it is exact.
            return sa.cast(column, sa.Double()).label(column.name)
        if isinstance(column.type, mysql.SET):
            # PyMySQL makes a SET a Python set (no order); as text: 'a,c', in defined order.
            return sa.cast(column, sa.CHAR).label(column.name)
        if isinstance(column.type, mysql.TIME):
            # The driver's timedelta; SQLAlchemy would make it a time of day.
            return sa.type_coerce(column, NullType()).label(column.name)
        return super().select_expression(column)

    def table_options(self) -> dict[str, str]:
        return {"mysql_charset": "utf8mb4"}  # whatever the server's default, emoji fit

    def write_batches(
        self, conn: Connection, table: sa.Table, batches: Iterable[pa.RecordBatch] | TextCopy
    ) -> int:
        return self._write(conn, table, batches)[0]

    def _write(
        self, conn: Connection, table: sa.Table, batches: Iterable[pa.RecordBatch] | TextCopy
    ) -> tuple[int, bool]:
        """The rows written; whether the server counted them (LOAD DATA's, held to those sent)."""
        target = self.qualified(table.name)
        if isinstance(batches, TextCopy):
            return mysqlload.load_text(conn, target, self.quote, batches), True
        finite = (mysqlload.finite_floats(b) for b in batches)
        first = next(finite, None)
        if first is None:
            return 0, True
        rows = itertools.chain([first], finite)
        if mysqlload.loads_exactly(first.schema) and self._loads_local_files(conn):
            return mysqlload.load(conn, target, self.quote, first.schema, rows), True
        return super().write_batches(conn, table, rows), False

    def takes_text(self, text_format: str) -> bool:
        """Whether it loads `text_format` now: the server takes LOAD DATA LOCAL INFILE."""
        if text_format != self.capabilities.loads_text:
            return False
        with self.translated_errors("reading local_infile"), self.engine.connect() as conn:
            return self._loads_local_files(conn)

    def _loads_local_files(self, conn: Connection) -> bool:
        """Whether the server takes LOAD DATA LOCAL INFILE; warns once when it does not."""
        if self._local_infile is None:
            self._local_infile = bool(conn.exec_driver_sql("SELECT @@GLOBAL.local_infile").scalar())
            if not self._local_infile:
                log.warning(
                    "destination %s: the server's local_infile is OFF, so rows are written with "
                    "INSERT statements, several times slower than LOAD DATA LOCAL INFILE",
                    self.display_url,
                )
        return self._local_infile

    @contextmanager
    def lock(self, table: str, timeout_seconds: float) -> Iterator[None]:
        """GET_LOCK on a connection of its own: the server drops it with the session (see
        `locking` for a session that ends)."""
        name = self._lock_name("copyjob", table)
        with self.translated_errors(f"locking table {table!r}"), self.engine.connect() as conn:

            def acquire() -> bool:
                query = sa.text("SELECT GET_LOCK(:name, 0)")
                return conn.execute(query, {"name": name}).scalar() == 1

            wait_for(acquire, timeout_seconds, f"table {self.location(table)!r}")
            session = conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar_one()
            try:
                with locking.holding(f"{self.display_url} {name}", session):
                    yield
            finally:
                with contextlib.suppress(*self.driver_errors):  # a closed session holds nothing
                    conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": name})

    @contextmanager
    def writing(self, table: str) -> Iterator[Connection]:
        """The writing connection takes the table's write lock (GET_LOCK is a session's, so
        it is released once the transaction ends), then checks in the transaction that the
        session that took the copy lock in this context holds it still."""
        name, write_name = self._lock_name("copyjob", table), self._lock_name("write", table)
        with self.engine.connect() as conn:
            try:
                with conn.begin():
                    taken = conn.execute(
                        sa.text("SELECT GET_LOCK(:name, :seconds)"),
                        {"name": write_name, "seconds": WRITE_LOCK_SECONDS},
                    ).scalar()
                    if taken != 1:
                        raise DestinationError(
                            f"destination {self.display_url}, table {table!r}: another run's "
                            f"write held the table for {WRITE_LOCK_SECONDS} s; nothing written"
                        )
                    session = locking.held_by(f"{self.display_url} {name}")
                    holder = sa.text("SELECT IS_USED_LOCK(:name)")
                    if session is not None and (
                        conn.execute(holder, {"name": name}).scalar() != session
                    ):
                        raise locking.lost(f"destination {self.display_url}, table {table!r}")
                    yield conn
            finally:
                with contextlib.suppress(*self.driver_errors):  # a closed session holds nothing
                    conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": write_name})
                    conn.rollback()

    def _lock_name(self, purpose: str, table: str) -> str:
        """A server-wide lock name for one table of this database (64 characters at most)."""
        return f"{purpose}:" + lock_key(self.engine.url.database, self._schema, table).hex()[:48]

    def estimate_rows(self, table: str) -> int:
        """InnoDB's estimate (`information_schema.TABLES.TABLE_ROWS`) for big tables, where
        COUNT(*) would scan them (a split's `parts: auto` asks before copying); an exact count
        below EXACT_COUNT_BELOW."""
        query = sa.text(
            "SELECT TABLE_ROWS FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :table"
        )
        with self.translated_errors(f"estimating rows of {table!r}"), self.engine.connect() as conn:
            estimate = conn.execute(query, {"schema": self._schema, "table": table}).scalar()
        if estimate is not None and estimate >= EXACT_COUNT_BELOW:
            return int(estimate)
        return super().estimate_rows(table)

    def begin_snapshot(self, conn: Connection) -> None:
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")

    def open_transactions(self) -> OpenTransactions:
        """The floor under late commits, read before a snapshot (see `open_transactions`)."""
        return read_open_transactions(self, mysql_open_transactions)

    def change_stream(self, table: str, name: str) -> BinlogChangeStream:
        """The table's changes in the binlog (`name` names nothing at the server)."""
        return BinlogChangeStream(self, table, name)

    def open_split(self, table: str, parts: int) -> AbstractContextManager[snapshots.Readers]:
        """Readers of one moment of the table, taken under a brief read lock (see `snapshots`)."""
        return snapshots.mysql_split(self, table, parts)

    def replace(
        self,
        table: str,
        schema: pa.Schema,
        primary_key: tuple[str, ...],
        batches: Iterable[pa.RecordBatch],
        *,
        updated_by_key: bool = False,
    ) -> int:
        self.check_names(table, schema.names)
        self.replaced_rows = None
        stage = self.staging_name(table)
        retired = self.staging_name(table, "old")
        with self.translated_errors(f"writing table {table!r}"):
            with self.engine.begin() as conn:
                self.drop_if_exists(conn, stage)
                self.drop_if_exists(conn, retired)
                staged = self.create_table(conn, stage, schema, primary_key)
            try:
                with self.engine.begin() as conn:
                    rows, counted = self._write(conn, staged, batches)
                with self.writing(table) as conn:
                    self._swap(conn, stage, table, retired)
                    self.drop_if_exists(conn, retired)
            finally:
                with self.engine.begin() as conn:
                    self.drop_if_exists(conn, stage)
        self.forget(table)
        self.replaced_rows = rows if counted else None
        return rows

    def merge(
        self,
        target: sa.Table,
        schema: pa.Schema,
        primary_key: tuple[str, ...],
        batches: Iterable[pa.RecordBatch],
    ) -> int:
        """Load a staging table (DDL commits here), then upsert it in one transaction."""
        stage = self.staging_name(target.name, "merge")
        with self.engine.begin() as conn:
            self._refuse_merging_collations(conn, target, primary_key)
            self.drop_if_exists(conn, stage)
            staged = self.create_table(conn, stage, schema, ())
        try:
            with self.engine.begin() as conn:
                rows = self.write_batches(conn, staged, batches)
            with self.writing(target.name) as conn:
                conn.execute(self.upsert_statement(target, staged, primary_key))
        finally:
            with self.engine.begin() as conn:
                self.drop_if_exists(conn, stage)
        return rows

    def upsert_statement(
        self, target: sa.Table, staged: sa.Table, primary_key: tuple[str, ...]
    ) -> sa.Executable:
        columns = [c.name for c in staged.columns]
        insert = mysql.insert(target).from_select(columns, sa.select(*staged.columns))
        updates = {name: insert.inserted[name] for name in columns if name not in primary_key}
        key = primary_key[0]
        return insert.on_duplicate_key_update(updates or {key: insert.inserted[key]})

    def same_values(
        self, a: sa.Table, b: sa.Table, columns: tuple[str, ...]
    ) -> list[sa.ColumnElement[bool]]:
        """Equal under the columns' collation (which an index serves) and as bytes: collations
        such as utf8mb4_general_ci take 'a' for 'A', and PAD SPACE ones 'x' for 'x '."""
        text = [n for n in columns if isinstance(a.c[n].type, sa.String)]
        return [
            *super().same_values(a, b, columns),
            *(sa.cast(a.c[n], sa.LargeBinary) == sa.cast(b.c[n], sa.LargeBinary) for n in text),
        ]

    def rekey(
        self, conn: Connection, target: sa.Table, key: tuple[str, ...], schema: pa.Schema
    ) -> None:
        """New key columns become NOT NULL, with the key collation; one ALTER TABLE."""
        kept = {column.name for column in target.primary_key.columns}
        modified = [
            f"MODIFY COLUMN {self.quote(name)} "
            f"{self.column_type(schema.field(name), is_key=True).compile(dialect=conn.dialect)} "
            f"NOT NULL"
            for name in key
            if name not in kept
        ]
        conn.exec_driver_sql(
            f"ALTER TABLE {self.qualified(target.name)} DROP PRIMARY KEY, "
            + "".join(f"{change}, " for change in modified)
            + f"ADD PRIMARY KEY ({', '.join(map(self.quote, key))})"
        )

    def _refuse_merging_collations(
        self, conn: Connection, target: sa.Table, primary_key: tuple[str, ...]
    ) -> None:
        """Refuse to merge by key columns whose collation takes distinct keys for one (a table
        made by an older copyjob, or by hand, with a case-insensitive or PAD SPACE collation)."""
        query = sa.text(
            "SELECT COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :table "
            "AND COLUMN_NAME IN :columns"
        ).bindparams(sa.bindparam("columns", expanding=True))
        rows = conn.execute(
            query, {"schema": self._schema, "table": target.name, "columns": list(primary_key)}
        )
        merging = [
            f"{column!r} ({collation})"
            for column, collation in rows
            if collation is not None and not _keeps_keys_distinct(collation)
        ]
        if merging:
            raise DestinationError(
                f"destination {self.display_url}: table {target.name!r} has key column(s) "
                f"{', '.join(merging)} whose collation takes distinct keys such as 'a' and 'A', "
                f"or 'x' and 'x ', for one; merging could lose rows. Run a full refresh, which "
                f"re-creates the table with {self.key_collation}"
            )

    def _swap(self, conn: Connection, stage: str, table: str, retired: str) -> None:
        """One RENAME TABLE statement: readers see the old table or the new one, never none."""
        names = [self.qualified(stage), self.qualified(table), self.qualified(retired)]
        if self.reflect_exists(conn, table):
            conn.exec_driver_sql(f"RENAME TABLE {names[1]} TO {names[2]}, {names[0]} TO {names[1]}")
        else:
            conn.exec_driver_sql(f"RENAME TABLE {names[0]} TO {names[1]}")

    def reflect_exists(self, conn: Connection, table: str) -> bool:
        return conn.dialect.has_table(conn, table, schema=self._schema)


def _keeps_keys_distinct(collation: str) -> bool:
    return collation == "binary" or collation.endswith(("_nopad_bin", "_0900_bin"))


def _unescape_column_name(_inspector: Any, _table: sa.Table, column_info: dict[str, Any]) -> None:
    """SQLAlchemy reads MySQL's column names from SHOW CREATE TABLE and keeps a backtick in a
    name doubled, as that statement quotes it; the column is named with one."""
    column_info["name"] = column_info["name"].replace("``", "`")
