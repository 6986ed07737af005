"""The transactions open at a source that could still commit rows: how far down a late commit
can land.

A row that a transaction commits after a copy's snapshot is invisible to that copy. When its
incremental column is a time the database's clock gave inside the transaction, that time is
never before the transaction started (PostgreSQL's `now()` is the transaction's start,
`clock_timestamp()` and `statement_timestamp()` come later; MySQL's `NOW()` is the start of the
statement that writes the row). So the start of the oldest transaction still open is a floor
under every late row: a watermark at or below it loses none of them.

The sessions are read just before the snapshot begins, on a connection of their own, never in
the snapshot itself: a transaction open when the snapshot starts and committed before the
sessions were read would be in neither. Read first, every transaction open at the snapshot
either was open at the reading, and is listed with its start, or began after it, later than
the reading's own time, which also bounds the result.

Which sessions count:
- PostgreSQL: the client sessions of the same database (a transaction cannot write another
  database's tables), in a transaction, other than copyjob's own (whose readers are read-only
  and whose writers stamp no database time). Any open transaction counts, whether or not it has
  written yet, since `now()` is its start. Without `pg_read_all_stats` (or superuser), other
  roles' sessions are hidden: the bound is then unknown. So it is while a prepared transaction
  (two-phase commit) waits: it has left its session, and its start time is not kept.
- MySQL/MariaDB (InnoDB, one engine for every database of the server): the transactions that
  have written rows or are running a statement; one that has only read and is between two
  statements will write later rows with a later `NOW()`. `information_schema.innodb_trx` needs
  the PROCESS privilege; without it the bound is unknown. It is a cache, trusted only once
  proven fresh (`innodb_trx.py`).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection

from copyjob_dagster.errors import CopyJobError

if TYPE_CHECKING:
    from copyjob_dagster.stores.sql import SqlStore

COPYJOB_APPLICATION = "copyjob"  # PostgreSQL's application_name of copyjob's own sessions

_PG_SESSIONS = """
SELECT pid, xact_start, state, backend_type
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND application_name IS DISTINCT FROM %(application)s
  AND (backend_type IS NULL
       OR (xact_start IS NOT NULL AND backend_type NOT IN ('autovacuum worker', 'walsender')))
"""


@dataclass(frozen=True)
class OpenTransaction:
    """One session's open transaction: its process (PostgreSQL) or connection (MySQL) id, when
    it started (aware, UTC), and what the session is doing (`idle in transaction`, `Sleep`)."""

    pid: int
    started: datetime
    state: str

    def describe(self) -> str:
        started = self.started.isoformat(sep=" ", timespec="seconds")
        return f"pid {self.pid}, open since {started} ({self.state})"


@dataclass(frozen=True)
class OpenTransactions:
    """What a source said, just before a snapshot, about late commits.

    `bound` (aware, UTC) is the floor under the database-clock time of any row committed after
    the snapshot; None when it cannot be known, and `unknown` says why. `oldest` is the open
    transaction that sets it, if one does. `naive_offset` is how far the server's default time
    zone is ahead of UTC: a naive column stamped by a session in that zone holds `bound` plus it.
    """

    bound: datetime | None
    oldest: OpenTransaction | None = None
    unknown: str | None = None
    naive_offset: timedelta = timedelta(0)


def read_open_transactions(
    store: "SqlStore", read: Callable[[Connection], OpenTransactions]
) -> OpenTransactions:
    """`read` on a connection of its own. An error (a missing privilege, a view the server
    lacks) leaves the bound unknown, with the reason, and never fails the copy; a lost
    connection is raised, since the copy would meet it too."""
    try:
        with store.translated_errors("reading open transactions"), store.engine.connect() as conn:
            return read(conn)
    except CopyJobError as exc:
        if exc.transient:
            raise
        return OpenTransactions(None, unknown=str(exc))


# The clock is read first: a transaction that begins after the sessions are read began after
# it, so the clock's reading bounds it too.


def postgres_open_transactions(conn: Connection) -> OpenTransactions:
    read_at, role = conn.exec_driver_sql("SELECT statement_timestamp(), current_user").one()
    read_at = read_at.astimezone(UTC)
    rows = conn.exec_driver_sql(_PG_SESSIONS, {"application": COPYJOB_APPLICATION}).all()
    hidden = sum(1 for row in rows if row.backend_type is None)
    if hidden:
        return OpenTransactions(
            None,
            unknown=f"role {role!r} cannot see the transactions of {hidden} other session(s) of "
            f"this database; grant it pg_read_all_stats",
        )
    prepared = conn.exec_driver_sql(
        "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()"
    ).scalar_one()
    if prepared:
        return OpenTransactions(
            None,
            unknown=f"{prepared} prepared transaction(s) (two-phase commit) wait in this database, "
            f"and PostgreSQL keeps no start time for them",
        )
    sessions = [OpenTransaction(row.pid, row.xact_start.astimezone(UTC), row.state) for row in rows]
    return bounded(read_at, sessions)


def bounded(
    read_at: datetime, sessions: list[OpenTransaction], naive_offset: timedelta = timedelta(0)
) -> OpenTransactions:
    """The bound: the start of the oldest of `sessions`, or the clock's reading if none began
    before it."""
    oldest = min(sessions, key=lambda session: session.started, default=None)
    if oldest is None or oldest.started >= read_at:
        return OpenTransactions(read_at, naive_offset=naive_offset)
    return OpenTransactions(oldest.started, oldest, naive_offset=naive_offset)
