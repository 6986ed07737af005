"""SQLite: real transactions, so that snapshots and table swaps are atomic.

Python's sqlite3 module opens transactions only before data changes, and never before a
SELECT. SQLAlchemy's documented recipe takes transaction control from it: every SQLAlchemy
transaction becomes an explicit BEGIN, so a read sees one snapshot and a full copy's CREATE,
INSERT, DROP and RENAME commit together.
"""

import warnings
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SAWarning

from copyjob_dagster.stores.sql import Role, SqlStore

BUSY_TIMEOUT_SECONDS = 30


class SQLiteStore(SqlStore):
    """A SQLite database file."""

    def __init__(self, url: str, schema: str | None, role: Role) -> None:
        super().__init__(url, schema, role)
        event.listen(self.engine, "connect", _take_transaction_control)
        event.listen(self.engine, "begin", _begin)
        # SQLite has no DECIMAL type: SQLAlchemy converts through float and says so each time.
        warnings.filterwarnings("ignore", message=".*does \\*not\\* support Decimal", category=SAWarning)

    def engine_options(self) -> dict[str, Any]:
        return {**super().engine_options(), "connect_args": {"timeout": BUSY_TIMEOUT_SECONDS}}

    def begin_snapshot(self, conn: Connection) -> None:
        conn.exec_driver_sql("PRAGMA query_only = ON")
        conn.execute(sa.select(sa.literal(1)))  # opens the transaction: the snapshot starts


def _take_transaction_control(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None


def _begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")
