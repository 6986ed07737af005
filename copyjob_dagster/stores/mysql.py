"""MySQL and MariaDB: sessions pinned to UTC, snapshot reads, and table swaps by RENAME TABLE.

MySQL commits DDL implicitly, so a full copy loads a staging table and swaps it in with one
atomic `RENAME TABLE`; a staging table that a killed process left behind is dropped on the
next run of the same table.
"""

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection
from sqlalchemy.types import NullType

from copyjob_dagster.stores.locking import lock_key, wait_for
from copyjob_dagster.stores.sql import SqlStore

CONNECT_TIMEOUT_SECONDS = 10

log = logging.getLogger(__name__)


class MySQLStore(SqlStore):
    """MySQL/MariaDB through PyMySQL."""

    transactional_ddl = False

    def engine_options(self) -> dict[str, Any]:
        return {
            **super().engine_options(),
            "connect_args": {
                "connect_timeout": CONNECT_TIMEOUT_SECONDS,
                "charset": "utf8mb4",
                "init_command": "SET time_zone = '+00:00'",
            },
        }

    def select_expression(self, column: sa.Column) -> sa.ColumnElement[Any]:
        if isinstance(column.type, mysql.FLOAT):
            # MySQL prints a FLOAT with six significant digits; as a DOUBLE it is exact.
            return sa.cast(column, sa.Double()).label(column.name)
        if isinstance(column.type, mysql.TIME):
            # The driver's timedelta; SQLAlchemy would make it a time of day.
            return sa.type_coerce(column, NullType()).label(column.name)
        return super().select_expression(column)

    def table_options(self) -> dict[str, str]:
        return {"mysql_charset": "utf8mb4"}  # whatever the server's default, emoji fit

    def write_batches(
        self, conn: Connection, table: sa.Table, batches: Iterable[pa.RecordBatch]
    ) -> int:
        return super().write_batches(conn, table, (_finite_floats(b) for b in batches))

    @contextmanager
    def lock(self, table: str, timeout_seconds: float) -> Iterator[None]:
        """GET_LOCK on a connection of its own: the server drops it with the session."""
        name = "copyjob:" + lock_key(self.engine.url.database, self._schema, table).hex()[:48]
        with self.translated_errors(f"locking table {table!r}"), self.engine.connect() as conn:

            def acquire() -> bool:
                query = sa.text("SELECT GET_LOCK(:name, 0)")
                return conn.execute(query, {"name": name}).scalar() == 1

            wait_for(acquire, timeout_seconds, f"table {self.location(table)!r}")
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": name})

    def begin_snapshot(self, conn: Connection) -> None:
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")

    def replace(
        self,
        table: str,
        schema: pa.Schema,
        primary_key: tuple[str, ...],
        batches: Iterable[pa.RecordBatch],
    ) -> int:
        stage = self.staging_name(table)
        retired = self.staging_name(table, "old")
        with self.translated_errors(f"writing table {table!r}"):
            with self.engine.begin() as conn:
                self.drop_if_exists(conn, stage)
                self.drop_if_exists(conn, retired)
                staged = self.create_table(conn, stage, schema, primary_key)
            try:
                with self.engine.begin() as conn:
                    rows = self.write_batches(conn, staged, batches)
                with self.engine.begin() as conn:
                    self._swap(conn, stage, table, retired)
                    self.drop_if_exists(conn, retired)
            finally:
                with self.engine.begin() as conn:
                    self.drop_if_exists(conn, stage)
        self._tables.pop(table, None)
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
            self.drop_if_exists(conn, stage)
            staged = self.create_table(conn, stage, schema, ())
        try:
            with self.engine.begin() as conn:
                rows = self.write_batches(conn, staged, batches)
            with self.engine.begin() as conn:
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

    def _swap(self, conn: Connection, stage: str, table: str, retired: str) -> None:
        """One RENAME TABLE statement: readers see the old table or the new one, never none."""
        names = [self._qualified(stage), self._qualified(table), self._qualified(retired)]
        if self.reflect_exists(conn, table):
            conn.exec_driver_sql(f"RENAME TABLE {names[1]} TO {names[2]}, {names[0]} TO {names[1]}")
        else:
            conn.exec_driver_sql(f"RENAME TABLE {names[0]} TO {names[1]}")

    def reflect_exists(self, conn: Connection, table: str) -> bool:
        return conn.dialect.has_table(conn, table, schema=self._schema)

    def _qualified(self, table: str) -> str:
        preparer = self.engine.dialect.identifier_preparer
        name = preparer.quote(table)
        return f"{preparer.quote_schema(self._schema)}.{name}" if self._schema else name


def _finite_floats(batch: pa.RecordBatch) -> pa.RecordBatch:
    """NaN and infinities as NULL, with a warning: MySQL's FLOAT and DOUBLE cannot hold them."""
    columns = []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        if pa.types.is_floating(column.type):
            finite = pc.is_finite(column)
            dropped = pc.sum(pc.invert(finite)).as_py()
            if dropped:
                log.warning(
                    "column %r: %d NaN or infinite values written as NULL (MySQL has none)",
                    field.name,
                    dropped,
                )
                column = pc.if_else(finite, column, pa.scalar(None, column.type))
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)
