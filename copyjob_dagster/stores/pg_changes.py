"""PostgreSQL's change stream: a logical replication slot and a publication per copied table.

The slot is created on a replication connection with `EXPORT_SNAPSHOT`: its consistent point
is the position the changes start from, and the snapshot it exports (imported by the copy's
reader with `SET TRANSACTION SNAPSHOT` while the replication connection stays open) sees
exactly the transactions committed before that point. So the first copy plus the changes after
the point hold every row once.

Changes are read with `pg_logical_slot_peek_binary_changes` (and decoded a fetch at a time by
`pgoutput_batch`), which never consumes: a run that dies reads the same changes again. The
slot moves (`pg_replication_slot_advance`) only when the
caller says so, after the destination committed and the position was recorded. Peeking up to
an LSN returns whole transactions: `pgoutput` sends a transaction's changes when its commit is
decoded, and every record that starts before the LSN is decoded.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import Connection

from copyjob_dagster.errors import SourceError
from copyjob_dagster.stores import pgoutput
from copyjob_dagster.stores.base import logical_type

if TYPE_CHECKING:
    from copyjob_dagster.stores.postgres import PostgresStore

PEEK = (
    "SELECT data FROM pg_logical_slot_peek_binary_changes(%(slot)s, %(upto)s::pg_lsn, NULL, "
    "'proto_version', '1', 'publication_names', %(publication)s)"
)
FETCH_MESSAGES = 10_000  # a round trip each; the caller holds 20,000 at a time anyway
# The change messages (Insert, Update, Delete, Truncate) among those peeked, and how many.
_WAITING = sa.text(
    "SELECT count(*) FILTER (WHERE get_byte(data, 0) IN (73, 85, 68, 84)), count(*) "
    "FROM pg_logical_slot_peek_binary_changes(:slot, CAST(:upto AS pg_lsn), "
    "CAST(:limit AS int), 'proto_version', '1', 'publication_names', :publication)"
)
WAITING_PEEK = 64
_SLOT = sa.text(
    "SELECT confirmed_flush_lsn::text, restart_lsn::text, active_pid, "
    "(pg_current_wal_lsn() - restart_lsn)::bigint FROM pg_replication_slots "
    "WHERE slot_name = :slot AND database = current_database()"
)
_ADVANCE = sa.text(
    "SELECT pg_replication_slot_advance(slot_name, CAST(:lsn AS pg_lsn)) "
    "FROM pg_replication_slots WHERE slot_name = :slot AND database = current_database() "
    "AND confirmed_flush_lsn < CAST(:lsn AS pg_lsn)"
)


@dataclass(frozen=True)
class SlotState:
    """Where a slot stands: the position confirmed, and the WAL it keeps from removal."""

    confirmed: int
    retained_bytes: int
    active: bool


class PostgresChangeStream:
    """One table's slot and publication (both named `name`) at a PostgreSQL source."""

    def __init__(self, store: "PostgresStore", table: str, name: str) -> None:
        self.store, self.table, self.name = store, table, name
        self._where = f"source {store.display_url}, table {table!r}"

    # -- set-up ---------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """What the server, the role or the table lacks for change capture, each with its fix."""
        found = []
        with (
            self.store.translated_errors("checking change capture"),
            self.store.engine.connect() as conn,
        ):
            level = conn.exec_driver_sql("SHOW wal_level").scalar_one()
            role, can = conn.execute(
                sa.text(
                    "SELECT rolname, rolreplication OR rolsuper FROM pg_roles "
                    "WHERE rolname = current_user"
                )
            ).one()
            identity = conn.execute(
                sa.text(
                    "SELECT c.relreplident, EXISTS (SELECT 1 FROM pg_index i WHERE "
                    "i.indrelid = c.oid AND i.indisprimary) FROM pg_class c "
                    "WHERE c.oid = to_regclass(:name)"
                ),
                {"name": self.qualified_text},
            ).first()
        if level != "logical":
            found.append(
                f"wal_level is {level!r}: set wal_level = logical in the server's configuration "
                f"(ALTER SYSTEM SET wal_level = logical) and restart the server"
            )
        if not can:
            found.append(
                f"role {role!r} lacks the REPLICATION attribute: ALTER ROLE {role} REPLICATION"
            )
        if identity is not None:
            replident, has_key = identity
            if replident == "n" or (replident == "d" and not has_key):
                found.append(
                    "the table has no primary key or replica identity, so its updates and "
                    "deletes cannot be told apart: add a primary key, or ALTER TABLE "
                    f"{self.qualified_text} REPLICA IDENTITY FULL (and name primary_key: in the "
                    "job)"
                )
        return found

    def check(self) -> None:
        problems = self.problems()
        if problems:
            raise SourceError(f"{self._where}: mode: cdc: " + "; ".join(problems))

    @property
    def qualified_text(self) -> str:
        return self.store._identifier(self.table).as_string()

    def _ensure_publication(self, conn: Connection) -> None:
        exists, has_table = conn.execute(
            sa.text(
                "SELECT count(*) > 0, bool_or(r.prrelid = to_regclass(:table)) "
                "FROM pg_publication p LEFT JOIN pg_publication_rel r ON r.prpubid = p.oid "
                "WHERE p.pubname = :name"
            ),
            {"name": self.name, "table": self.qualified_text},
        ).one()
        if exists and has_table:
            return
        # A publication left by an older copy of another source table is pointed at this one.
        verb = (
            "ALTER PUBLICATION {} SET TABLE {}" if exists else "CREATE PUBLICATION {} FOR TABLE {}"
        )
        statement = sql.SQL(verb).format(
            sql.Identifier(self.name), self.store._identifier(self.table)
        )
        text = statement.as_string()
        try:
            conn.exec_driver_sql(text)
        except sa.exc.DBAPIError as exc:
            raise SourceError(
                f"{self._where}: cannot create publication {self.name!r} "
                f"({str(exc.orig).splitlines()[0]}); have the table's owner run: {text}"
            ) from None

    # -- the slot -------------------------------------------------------------------------

    @contextmanager
    def start(self) -> Iterator[tuple[int, Callable[[Connection], None]]]:
        """Create the slot anew (dropping an old one) and yield its consistent point and a
        reader start that imports its snapshot (valid while this context lasts)."""
        self.drop(publication=False)
        with (
            self.store.translated_errors("creating a publication"),
            self.store.engine.begin() as conn,
        ):
            self._ensure_publication(conn)
        with self._replication_connection() as replication:
            result = replication.pgconn.exec_(
                f'CREATE_REPLICATION_SLOT "{self.name}" LOGICAL pgoutput EXPORT_SNAPSHOT'.encode()
            )
            if result.status != psycopg.pq.ExecStatus.TUPLES_OK:
                message = (result.error_message or b"").decode(errors="replace").strip()
                raise SourceError(f"{self._where}: cannot create slot {self.name!r}: {message}")
            point = pgoutput.lsn_value(result.get_value(0, 1).decode())
            snapshot = result.get_value(0, 2).decode()

            def begin(conn: Connection) -> None:
                self.store.begin_snapshot(conn)
                conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")

            yield point, begin

    @contextmanager
    def _replication_connection(self) -> Iterator[psycopg.Connection]:
        url = self.store.engine.url
        options = self.store.engine_options()["connect_args"]
        params = {
            "host": url.host,
            "port": url.port,
            "user": url.username,
            "password": url.password,
            "dbname": url.database,
            **{k: v for k, v in url.query.items() if isinstance(v, str)},
            **options,
            "replication": "database",
        }
        try:
            conn = psycopg.connect(
                autocommit=True, **{k: v for k, v in params.items() if v is not None}
            )
        except psycopg.Error as exc:
            raise SourceError(
                f"{self._where}: cannot open a replication connection "
                f"({self.store._scrub(exc)}); the role needs the REPLICATION attribute and "
                f"pg_hba.conf must allow it"
            ) from None
        try:
            yield conn
        finally:
            conn.close()

    def state(self) -> SlotState | None:
        """The slot's state, or None when there is no slot."""
        with self.store.translated_errors("reading the slot"), self.store.engine.connect() as conn:
            row = conn.execute(_SLOT, {"slot": self.name}).first()
        if row is None:
            return None
        return SlotState(pgoutput.lsn_value(row[0]), int(row[3] or 0), row[2] is not None)

    def current(self) -> int:
        """The position that a run reads up to: the WAL flushed now."""
        with self.store.engine.connect() as conn:
            text = conn.exec_driver_sql("SELECT pg_current_wal_flush_lsn()::text").scalar_one()
        return pgoutput.lsn_value(text)

    def messages(self, upto: int) -> Iterator[bytes]:
        """The messages of the transactions after the slot's position, committed before
        `upto`, as bytes (see `pgoutput_batch`), streamed with a server-side cursor in
        binary, `FETCH_MESSAGES` at a time (nothing is consumed)."""
        with self.store.translated_errors("reading changes"), self.store.engine.connect() as conn:
            driver = conn.connection.driver_connection
            with driver.cursor(name="copyjob_changes", binary=True) as cursor:
                cursor.execute(
                    PEEK,
                    {"slot": self.name, "upto": pgoutput.lsn_text(upto), "publication": self.name},
                )
                while rows := cursor.fetchmany(FETCH_MESSAGES):
                    for (data,) in rows:
                        yield data

    def waiting(self) -> tuple[int, str]:
        """Changes waiting in the slot (a lower bound: 0 means none; 1 without a slot, which a
        run creates), and the WAL position they were looked for at; nothing is consumed. A
        slot at the current WAL has none; else the first transactions are peeked
        (`WAITING_PEEK` messages at most). Only if those are all empty transactions (before
        PostgreSQL 15, pgoutput sends Begin and Commit for transactions of other tables too)
        is the slot peeked up to the WAL."""
        with (
            self.store.translated_errors("looking for changes"),
            self.store.engine.connect() as conn,
        ):
            at = conn.exec_driver_sql("SELECT pg_current_wal_lsn()::text").scalar_one()
            state = conn.execute(_SLOT, {"slot": self.name}).first()
            if state is None:
                return 1, at  # no slot yet (or any more): a run starts with a snapshot
            if pgoutput.lsn_value(state[0]) >= pgoutput.lsn_value(at):
                return 0, at
            named = {"slot": self.name, "publication": self.name}
            found, seen = conn.execute(
                _WAITING, {**named, "upto": None, "limit": WAITING_PEEK}
            ).one()
            if not found and seen >= WAITING_PEEK:
                found, _ = conn.execute(_WAITING, {**named, "upto": at, "limit": None}).one()
            return int(found), at

    def advance(self, position: int) -> None:
        """Let the slot forget everything before `position` (never backwards; a slot that is
        gone, or stands there already, is left as it is): one statement."""
        with (
            self.store.translated_errors("advancing the slot"),
            self.store.engine.connect() as conn,
        ):
            conn.execute(_ADVANCE, {"slot": self.name, "lsn": pgoutput.lsn_text(position)})
            conn.commit()

    def drop(self, publication: bool = True) -> bool:
        """Drop the slot (and the publication); True if there was a slot."""
        with (
            self.store.translated_errors("dropping the slot"),
            self.store.engine.connect() as conn,
        ):
            conn.execution_options(isolation_level="AUTOCOMMIT")
            dropped = conn.execute(
                sa.text(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                    "WHERE slot_name = :slot AND database = current_database()"
                ),
                {"slot": self.name},
            ).first()
            if publication:
                conn.exec_driver_sql(
                    sql.SQL("DROP PUBLICATION IF EXISTS {}")
                    .format(sql.Identifier(self.name))
                    .as_string()
                )
        return dropped is not None


def typed(field: pa.Field, text: pa.Array) -> pa.Array:
    """A column of PostgreSQL's text output as `field`'s type: Arrow's casts where they read
    that text exactly as `text_converter` does, else `text_converter` value by value."""
    t = field.type
    if pa.types.is_boolean(t):
        return pc.equal(text, "t")
    if logical_type(field) is None and (
        pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
        or pa.types.is_timestamp(t) or pa.types.is_date(t)
    ) or pa.types.is_string(t) or pa.types.is_large_string(t):  # fmt: skip
        try:
            return pc.cast(text, t)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # e.g. 'infinity' dates: as before, or the same error
    convert = text_converter(field)
    return pa.array([None if v is None else convert(v) for v in text.to_pylist()], t)


def text_converter(field: pa.Field) -> Callable[[str], Any]:
    """How a value in PostgreSQL's text output becomes the Python value of `field`'s type
    (sessions are in UTC, dates ISO, intervals ISO 8601; see `PostgresStore.engine_options`)."""
    t = field.type
    if logical_type(field) is not None or pa.types.is_string(t) or pa.types.is_large_string(t):
        return str
    if pa.types.is_boolean(t):
        return lambda text: text == "t"
    if pa.types.is_integer(t):
        return int
    if pa.types.is_floating(t):
        return float
    if pa.types.is_decimal(t):
        return Decimal
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return lambda text: bytes.fromhex(text[2:])
    if pa.types.is_timestamp(t):
        if t.tz:
            return lambda text: datetime.fromisoformat(text).astimezone(UTC)
        return datetime.fromisoformat
    if pa.types.is_date(t):
        return date.fromisoformat
    if pa.types.is_time(t):
        return time.fromisoformat
    raise SourceError(
        f"column {field.name!r} has type {t}, which mode: cdc does not convert yet; "
        f"leave it out with `columns:`"
    )
