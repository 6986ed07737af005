"""MySQL and MariaDB: sessions pinned to UTC, snapshot reads, and table swaps by RENAME TABLE.

MySQL commits DDL implicitly, so a full copy loads a staging table and swaps it in with one
atomic `RENAME TABLE`; a staging table that a killed process left behind is dropped on the
next run of the same table.
"""

from collections.abc import Iterable
from typing import Any

import pyarrow as pa
from sqlalchemy.engine import Connection

from copyjob_dagster.stores.sql import SqlStore

CONNECT_TIMEOUT_SECONDS = 10


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
