"""PostgreSQL: sessions pinned to UTC, snapshot reads, and COPY for writing."""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from copyjob_dagster.stores.locking import lock_key, wait_for
from copyjob_dagster.stores.sql import SqlStore, database_timestamps

CONNECT_TIMEOUT_SECONDS = 10


class PostgresStore(SqlStore):
    """PostgreSQL through psycopg 3."""

    # COPY runs on psycopg's own cursor, whose errors SQLAlchemy does not wrap.
    driver_errors = (*SqlStore.driver_errors, psycopg.Error)

    def engine_options(self) -> dict[str, Any]:
        return {
            **super().engine_options(),
            "connect_args": {
                "connect_timeout": CONNECT_TIMEOUT_SECONDS,
                "application_name": "copyjob",
                # ISO 8601 intervals read back the same whatever the reader's IntervalStyle.
                "options": "-c TimeZone=UTC -c IntervalStyle=iso_8601",
            },
        }

    @contextmanager
    def lock(self, table: str, timeout_seconds: float) -> Iterator[None]:
        """A session advisory lock on a connection of its own: the server drops it with the
        session, so a killed process releases it."""
        key = int.from_bytes(lock_key("copyjob", self._schema, table)[:8], "big", signed=True)
        with self.translated_errors(f"locking table {table!r}"), self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")

            def acquire() -> bool:
                query = sa.text("SELECT pg_try_advisory_lock(:key)")
                return bool(conn.execute(query, {"key": key}).scalar())

            wait_for(acquire, timeout_seconds, f"table {self.location(table)!r}")
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})

    def begin_snapshot(self, conn: Connection) -> None:
        conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)

    def rename(self, conn: Connection, old: str, new: str) -> None:
        super().rename(conn, old, new)
        # The primary key's index keeps the staging table's name unless it is renamed too.
        preparer = self.engine.dialect.identifier_preparer
        renamed = sa.Table(new, sa.MetaData(), schema=self._schema)
        constraint = preparer.quote(f"{old}_pkey")
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_constraint WHERE conname = :name AND contype = 'p'"),
            {"name": f"{old}_pkey"},
        ).first()
        if exists:
            conn.exec_driver_sql(
                f"ALTER TABLE {preparer.format_table(renamed)} RENAME CONSTRAINT {constraint} "
                f"TO {preparer.quote(self._constraint_name(new))}"
            )

    def _constraint_name(self, table: str) -> str:
        name = f"{table}_pkey"
        return name if len(name) <= 63 else self.staging_name(table, "pkey")

    def write_batches(
        self, conn: Connection, table: sa.Table, batches: Iterable[pa.RecordBatch]
    ) -> int:
        preparer = self.engine.dialect.identifier_preparer
        column_list = ", ".join(preparer.quote(c.name) for c in table.columns)
        statement = f"COPY {preparer.format_table(table)} ({column_list}) FROM STDIN"
        rows = 0
        cursor = conn.connection.driver_connection.cursor()
        with cursor, cursor.copy(statement) as copy:
            for batch in map(database_timestamps, batches):
                for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
                    copy.write_row(row)
                rows += batch.num_rows
        return rows
