"""Several connections reading one snapshot of a table: the parts of a split copy.

PostgreSQL exports the first reader's snapshot (`pg_export_snapshot()`) and every other reader
imports it (`SET TRANSACTION SNAPSHOT`) as the first statement of its REPEATABLE READ
transaction: all of them see exactly the rows the first one sees, for as long as its
transaction lasts, which is the whole copy.

MySQL and MariaDB cannot export a snapshot. For one table the same is had the way mydumper has
it for a whole server: while a helper session holds `LOCK TABLES t READ`, no transaction can
change t (taking the lock waits for transactions that did to end), so the consistent snapshots
that every reader starts in that moment all see the same t. The lock is held only while they
start (milliseconds; writers of t wait that long), needs the LOCK TABLES privilege, and gives up
after LOCK_WAIT_SECONDS when a long transaction keeps writing t.
"""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from psycopg import sql
from sqlalchemy.engine import Connection

from copyjob_dagster.stores.pgcopy import PostgresTableReader
from copyjob_dagster.stores.sql import SqlStore
from copyjob_dagster.stores.sql_reader import SqlTableReader

LOCK_WAIT_SECONDS = 60

Readers = tuple[SqlTableReader, list[SqlTableReader]]


@contextmanager
def postgres_split(store: SqlStore, table: str, parts: int) -> Iterator[Readers]:
    with store.open_reader(table) as main, ExitStack() as stack:
        assert isinstance(main, PostgresTableReader)
        snapshot = sql.SQL("SET TRANSACTION SNAPSHOT {}").format(
            sql.Literal(main.export_snapshot())
        )

        def start(conn: Connection) -> None:
            store.begin_snapshot(conn)
            conn.exec_driver_sql(snapshot.as_string(conn.connection.driver_connection))

        others = [stack.enter_context(store.open_reader(table, start)) for _ in range(parts - 1)]
        yield main, others


@contextmanager
def mysql_split(store: SqlStore, table: str, parts: int) -> Iterator[Readers]:
    with ExitStack() as stack:
        with (
            store.translated_errors(f"locking table {table!r} while its parts' snapshots start"),
            store.engine.connect() as lock,
        ):
            lock.exec_driver_sql(f"SET SESSION lock_wait_timeout = {LOCK_WAIT_SECONDS}")
            lock.exec_driver_sql(f"LOCK TABLES {store.qualified(table)} READ")
            try:
                main = stack.enter_context(store.open_reader(table))
                others = [stack.enter_context(store.open_reader(table)) for _ in range(parts - 1)]
            finally:
                lock.exec_driver_sql("UNLOCK TABLES")
        yield main, others
