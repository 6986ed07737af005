"""PostgreSQL: sessions pinned to UTC, snapshot reads, and COPY for writing."""

import contextlib
import itertools
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import adbc_driver_manager
import psycopg
import pyarrow as pa
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import URL, Connection, make_url

from copyjob_dagster.stores import (
    identifiers,
    locking,
    pgadbc,
    pgcopy,
    pgcsv,
    pgmysql,
    snapshots,
)
from copyjob_dagster.stores.capabilities import Capabilities
from copyjob_dagster.stores.identifiers import NameRules
from copyjob_dagster.stores.locking import lock_key, wait_for
from copyjob_dagster.stores.open_transactions import (
    COPYJOB_APPLICATION,
    OpenTransactions,
    postgres_open_transactions,
    read_open_transactions,
)
from copyjob_dagster.stores.pg_apply import UPDATED_FILLFACTOR
from copyjob_dagster.stores.pg_changes import PostgresChangeStream
from copyjob_dagster.stores.pgcopy import BinaryCopy, PostgresTableReader
from copyjob_dagster.stores.sql import SqlStore
from copyjob_dagster.stores.sql_writing import database_timestamps

EXACT_COUNT_BELOW = 1_000_000  # rows; smaller tables are counted exactly
# Whether a session holds a bigint advisory lock of this database (pg_locks shows its key's high
# and low 32 bits as classid and objid, objsubid 1).
_HELD_BY = sa.text(
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND pid = :session AND objsubid = 1 "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND ((classid::bigint << 32) | objid::bigint) = :key)"
)


def _lock_number(*parts: str | None) -> int:
    return int.from_bytes(lock_key(*parts)[:8], "big", signed=True)


class PostgresStore(SqlStore):
    """PostgreSQL through psycopg 3."""

    capabilities = Capabilities(
        split_reads=True,
        byte_format="postgresql-binary-copy",
        spells_text=(pgmysql.LOAD_DATA_CSV,),
        open_transactions=True,
        change_stream=True,
    )
    # COPY runs on psycopg's own cursor, and reads on ADBC's driver: SQLAlchemy wraps neither.
    driver_errors = (*SqlStore.driver_errors, psycopg.Error, adbc_driver_manager.Error)
    # Session settings come with the connection (`engine_options`); the copy lock is unlocked
    # before its connection goes back (`lock`).
    shares_engine = True
    describes_as_created = True  # checked for the common types: tests/test_table_costs.py

    @classmethod
    def engine_url(cls, url: str) -> str | URL:
        """A bare `postgresql://` opened with psycopg 3, whatever SQLAlchemy maps the name to
        (copyjob maps it to psycopg2 for dagster-postgres: copyjob_dagster/__init__.py)."""
        parsed = make_url(url)
        if parsed.drivername != "postgresql":
            return url
        return parsed.set(drivername="postgresql+psycopg")

    def engine_options(self) -> dict[str, Any]:
        # ISO 8601 intervals read back the same whatever the reader's IntervalStyle; ISO dates
        # are what Arrow parses from COPY's CSV.
        # The shortest exact text of a float (PostgreSQL 12's default, which a server's
        # settings may change): `pgmysql` loads floats as COPY writes them.
        options = (
            "-c TimeZone=UTC -c IntervalStyle=iso_8601 -c DateStyle=ISO -c extra_float_digits=1"
        )
        if self.timeouts.statement is not None:
            options += f" -c statement_timeout={max(1, round(self.timeouts.statement * 1000))}"
        return {
            **super().engine_options(),
            "connect_args": {
                "connect_timeout": self.timeouts.connect,
                "application_name": COPYJOB_APPLICATION,
                "options": options,
            },
        }

    def adbc_uri(self) -> str:
        """The URI that ADBC's driver connects with: the engine's, same session settings."""
        return pgadbc.uri(self.engine.url, self.engine_options()["connect_args"])

    @property
    def name_rules(self) -> NameRules:
        return identifiers.POSTGRESQL

    @contextmanager
    def lock(self, table: str, timeout_seconds: float) -> Iterator[None]:
        """A session advisory lock on a connection of its own: the server drops it with the
        session, so a killed process releases it (see `locking` for a session that ends)."""
        key = _lock_number("copyjob", self._schema, table)
        with self.translated_errors(f"locking table {table!r}"), self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")

            def acquire() -> bool:
                query = sa.text("SELECT pg_try_advisory_lock(:key)")
                return bool(conn.execute(query, {"key": key}).scalar())

            wait_for(acquire, timeout_seconds, f"table {self.location(table)!r}")
            session = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            try:
                with locking.holding(f"{self.display_url} {key}", session):
                    yield
            finally:
                try:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                except self.driver_errors:
                    # A closed session holds nothing; one that may still hold the lock is
                    # closed, not handed to the next table (`engines`).
                    with contextlib.suppress(*self.driver_errors):
                        conn.invalidate()

    @contextmanager
    def writing(self, table: str) -> Iterator[Connection]:
        """The transaction takes the table's write lock (until it ends), then checks that the
        session that took the copy lock in this context holds it still."""
        key = _lock_number("copyjob", self._schema, table)
        with self.engine.begin() as conn:
            write_key = _lock_number("copyjob-write", self._schema, table)
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": write_key})
            session = locking.held_by(f"{self.display_url} {key}")
            if (
                session is not None
                and not conn.execute(_HELD_BY, {"key": key, "session": session}).scalar_one()
            ):
                raise locking.lost(f"destination {self.display_url}, table {table!r}")
            yield conn

    def _reflected(self, table: str) -> sa.Table:
        """The table's columns and primary key, as SQLAlchemy's reflection gives them, from two
        catalog queries: a whole reflection also asks for foreign keys, indexes, unique and check
        constraints, comments and options (eight queries, each compiled anew by a new engine),
        which nothing here reads; it was a third of a small `mode: cdc` run."""
        with self.engine.connect() as conn:
            inspector = sa.inspect(conn)
            columns = inspector.get_columns(table, schema=self._schema)
            key = inspector.get_pk_constraint(table, schema=self._schema)
        return sa.Table(
            table,
            sa.MetaData(),
            *(_reflected_column(c) for c in columns),
            sa.PrimaryKeyConstraint(*key["constrained_columns"], name=key.get("name")),
            schema=self._schema,
        )

    def estimate_rows(self, table: str) -> int:
        """The planner's estimate (`pg_class.reltuples`, kept by ANALYZE and autovacuum) for big
        tables, where COUNT(*) would scan them; an exact count below that, and for tables never
        analyzed (-1)."""
        reflected = self.reflect(table)
        if reflected is None:
            self.describe(table)  # raises the "not found" error
        with self.translated_errors(f"estimating rows of {table!r}"), self.engine.connect() as conn:
            estimate = conn.execute(
                sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:name)"),
                {"name": self._identifier(table).as_string()},
            ).scalar()
        if estimate is not None and estimate >= EXACT_COUNT_BELOW:
            return int(estimate)
        return super().estimate_rows(table)

    def change_stream(self, table: str, name: str) -> "PostgresChangeStream":
        """The table's logical replication slot and publication, both named `name`."""
        return PostgresChangeStream(self, table, name)

    def begin_snapshot(self, conn: Connection) -> None:
        conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)

    def open_transactions(self) -> OpenTransactions:
        """The floor under late commits, read before a snapshot (see `open_transactions`)."""
        return read_open_transactions(self, postgres_open_transactions)

    def table_reader(self, conn: Connection, table: sa.Table) -> PostgresTableReader:
        return PostgresTableReader(self, conn, table)

    def spell(
        self, text_format: str, table: str, columns: list[str], fields: list[pa.Field]
    ) -> pgmysql.Spelling | str:
        """How the server spells `columns` (read as `fields`) in `text_format`, one of
        `capabilities.spells_text`; else why it cannot, exactly."""
        reflected = self.reflect(table)
        if text_format != pgmysql.LOAD_DATA_CSV or reflected is None:
            return f"no {text_format} spelling of table {table!r}"
        return pgmysql.spelling(reflected, columns, fields)

    def open_split(self, table: str, parts: int) -> AbstractContextManager[snapshots.Readers]:
        """Readers of one exported snapshot (see `snapshots`)."""
        return snapshots.postgres_split(self, table, parts)

    def load_for_updates(
        self, conn: Connection, table: sa.Table, batches: Iterable[pa.RecordBatch]
    ) -> int:
        """Pages filled to `UPDATED_FILLFACTOR` percent, so that an update by key can write the
        row's new version on its page with no new index entry (a HOT update); then ANALYZE,
        which `pg_apply` reads the table's size from."""
        qualified = self.qualified(table.name)
        conn.exec_driver_sql(f"ALTER TABLE {qualified} SET (fillfactor = {UPDATED_FILLFACTOR})")
        rows = self.write_batches(conn, table, batches)
        conn.exec_driver_sql(f"ANALYZE {qualified}")
        return rows

    def rename(self, conn: Connection, old: str, new: str) -> None:
        super().rename(conn, old, new)
        # The primary key's index keeps the staging table's name unless it is renamed too.
        constraint = conn.execute(
            sa.text(
                "SELECT conname FROM pg_constraint "
                "WHERE conrelid = to_regclass(:table) AND contype = 'p'"
            ),
            {"table": self._identifier(new).as_string()},
        ).scalar()
        if constraint is not None:
            conn.exec_driver_sql(
                f"ALTER TABLE {self.qualified(new)} RENAME CONSTRAINT {self.quote(constraint)} "
                f"TO {self.quote(self.constraint_name(new))}"
            )

    def rekey(
        self, conn: Connection, target: sa.Table, key: tuple[str, ...], schema: pa.Schema
    ) -> None:
        """One ALTER TABLE: the new key's columns become NOT NULL with it."""
        conn.exec_driver_sql(
            f"ALTER TABLE {self.qualified(target.name)} "
            f"DROP CONSTRAINT {self.quote(target.primary_key.name)}, "
            f"ADD CONSTRAINT {self.quote(self.constraint_name(target.name))} "
            f"PRIMARY KEY ({', '.join(map(self.quote, key))})"
        )

    def _identifier(self, table: str) -> sql.Identifier:
        """`schema.table` quoted by psycopg, for SQL and values that SQLAlchemy does not
        compile (its quoting doubles `%` for its own placeholders)."""
        return sql.Identifier(*(part for part in (self._schema, table) if part))

    def write_batches(
        self, conn: Connection, table: sa.Table, batches: Iterable[pa.RecordBatch] | BinaryCopy
    ) -> int:
        if isinstance(batches, BinaryCopy):
            return pgcopy.write_binary(
                conn.connection.driver_connection, _table_identifier(table), batches
            )
        batches = map(database_timestamps, batches)
        first = next(batches, None)
        if first is None:
            return 0
        batches = itertools.chain([first], batches)
        if pgcsv.writes_exactly(first.schema):
            return self._copy_csv(conn, table, first.schema.names, batches)
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            _table_identifier(table), sql.SQL(", ").join(map(sql.Identifier, table.c.keys()))
        )
        rows = 0
        cursor = conn.connection.driver_connection.cursor()
        with cursor, cursor.copy(statement) as copy:
            for batch in batches:
                for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
                    copy.write_row(row)
                rows += batch.num_rows
        return rows

    def _copy_csv(
        self,
        conn: Connection,
        table: sa.Table,
        columns: list[str],
        batches: Iterable[pa.RecordBatch],
    ) -> int:
        """COPY from CSV that Arrow writes: no value goes through Python (see `pgcsv`)."""
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
            _table_identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        rows = 0
        cursor = conn.connection.driver_connection.cursor()
        with cursor, cursor.copy(statement) as copy:
            for batch in batches:
                copy.write(pgcsv.csv_bytes(batch))
                rows += batch.num_rows
        return rows


def _reflected_column(column: Any) -> sa.Column:
    """A column as `Inspector.reflect_table` makes it from `get_columns`' description."""
    arguments: list[Any] = []
    if column.get("default") is not None:
        arguments.append(sa.DefaultClause(sa.text(column["default"])))
    if "computed" in column:
        arguments.append(sa.Computed(**column["computed"]))
    if "identity" in column:
        arguments.append(sa.Identity(**column["identity"]))
    return sa.Column(
        column["name"],
        column["type"],
        *arguments,
        nullable=column["nullable"],
        autoincrement=column.get("autoincrement", "auto"),
        comment=column.get("comment"),
    )


def _table_identifier(table: sa.Table) -> sql.Identifier:
    """`table` quoted by psycopg, in its own schema (the store's, or `pg_temp`)."""
    return sql.Identifier(*(part for part in (table.schema, table.name) if part))
