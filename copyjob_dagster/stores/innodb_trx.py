"""MySQL/MariaDB's open transactions, from an `information_schema.INNODB_TRX` proven fresh.

INNODB_TRX is not live. InnoDB serves it from a cache that a read refills only when nobody has
read it for 0.1 s, and every read, refilled or not, starts those 0.1 s again (`trx0i_s.cc`,
`can_cache_be_updated`; INNODB_LOCKS and INNODB_LOCK_WAITS share it). A session that reads it
more often (a monitoring tool, copyjob's own threads copying many tables of one server) keeps it
stale for as long as it does: on MariaDB 10.11, under a reader every 20 ms, a transaction that
had written a row was missing for all of the 5 s watched. Missed, it would let the watermark
pass the rows it commits later.

So a reading proves its listing fresh. Its connection first begins a transaction that InnoDB
lists (`START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY`; a plain `START TRANSACTION`
begins nothing in InnoDB until a table is read, and is not listed), then reads INNODB_TRX with a
nonce in the statement's text. The cache keeps each transaction's statement (`trx_query`) as it
was when filled: a row for its own connection holding this nonce shows that the cache was filled
during this very statement, after the clock was read, so every transaction open at the clock's
reading is listed or has committed by now, before the snapshot. A stale cache cannot show it:
an older filling holds an older statement (measured: a pooled connection's earlier reading,
nonce and all, stays listed under a 20 ms reader, so its thread id alone proves nothing).
Otherwise the reading waits until the cache may be refilled (0.1 s after this process's last
read, plus a random 0-0.1 s so that readers of other processes drift apart) and reads again, for
at most FRESH_WITHIN seconds; then the bound is unknown, with the reason: the copy warns and
its watermark is not held, as without the PROCESS privilege (never silent).

In one process, readings of one server take turns (a lock per server), and a reading that began
after a thread started waiting serves that thread too: a fresh listing bounds any later
snapshot, since a transaction it misses began after its clock reading.

Not used: `SHOW ENGINE INNODB STATUS` is live but a text for people (`ACTIVE 3 sec`, whole
seconds, worded differently by MySQL and MariaDB, and its list of transactions cut short past
1 MiB of output); `performance_schema.events_transactions_current` needs the performance schema,
off by default in MariaDB, and its transaction consumers enabled.
"""

import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, timedelta

from sqlalchemy import URL
from sqlalchemy.engine import Connection

from copyjob_dagster.stores.open_transactions import OpenTransaction, OpenTransactions, bounded

CACHE_IDLE = 0.1  # seconds unread after which InnoDB refills the cache (CACHE_MIN_IDLE_TIME_NS)
FRESH_WITHIN = 2.0  # seconds a reading tries to see the cache refilled, at most
_JITTER = 0.1  # seconds, at most, added to each wait

# The server's clock, and how far its default time zone is ahead of UTC (for naive columns).
_CLOCK = (
    "SELECT NOW(6), "
    "TIMESTAMPDIFF(MICROSECOND, NOW(6), CONVERT_TZ(NOW(6), '+00:00', @@global.time_zone))"
)
# The nonce comes first: InnoDB keeps the first 1024 characters of a statement.
_LISTING = """
SELECT %(nonce)s AS reading, t.trx_mysql_thread_id = CONNECTION_ID() AS own, t.trx_query,
       t.trx_mysql_thread_id, t.trx_started, p.COMMAND
FROM information_schema.INNODB_TRX t
LEFT JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id
WHERE t.trx_mysql_thread_id = CONNECTION_ID()
   OR (t.trx_is_read_only = 0 AND (t.trx_rows_modified > 0 OR t.trx_query IS NOT NULL))
"""


@dataclass
class _Turns:
    """One server's readings in this process: taken one at a time."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    last_read: float = float("-inf")  # time.monotonic() when the last read of the cache ended
    latest: tuple[float, OpenTransactions] | None = None  # (when its reading began, its result)


_SERVERS: dict[str, _Turns] = {}
_SERVERS_LOCK = threading.Lock()


def mysql_open_transactions(conn: Connection) -> OpenTransactions:
    """The bound from a listing proven fresh, or unknown after FRESH_WITHIN seconds."""
    turns = _turns_of(conn.engine.url)
    asked = time.monotonic()
    with turns.lock:
        if turns.latest is not None and turns.latest[0] >= asked:
            return turns.latest[1]
        _until_idle(turns)  # whoever asks meanwhile shares this reading
        began = time.monotonic()
        result = _read_fresh(conn, turns)
        turns.latest = (began, result)
        return result


def _turns_of(url: URL) -> _Turns:
    """The turns of the server `url` names (InnoDB's cache is the server's, for every database)."""
    key = url.set(database=None).render_as_string(hide_password=True)
    with _SERVERS_LOCK:
        return _SERVERS.setdefault(key, _Turns())


def _read_fresh(conn: Connection, turns: _Turns) -> OpenTransactions:
    """The clock, then the listing until it shows this reading's nonce (see above). MySQL
    returns naive values in the session's time zone, which copyjob pins to UTC."""
    read_at, offset = conn.exec_driver_sql(_CLOCK).one()
    read_at = read_at.replace(tzinfo=UTC)
    naive_offset = timedelta(microseconds=offset or 0)  # NULL: no time zone tables for a name
    conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
    deadline = time.monotonic() + FRESH_WITHIN
    while True:
        _until_idle(turns)
        nonce = uuid.uuid4().hex
        try:
            rows = conn.exec_driver_sql(_LISTING, {"nonce": nonce}).all()
        finally:
            turns.last_read = time.monotonic()
        if any(row.own and nonce in (row.trx_query or "") for row in rows):
            sessions = [
                OpenTransaction(
                    row.trx_mysql_thread_id,
                    row.trx_started.replace(tzinfo=UTC),
                    row.COMMAND or "running",
                )
                for row in rows
                if not row.own
            ]
            return bounded(read_at, sessions, naive_offset)
        if time.monotonic() + CACHE_IDLE >= deadline:
            return OpenTransactions(
                None,
                unknown=f"InnoDB's list of transactions (information_schema.INNODB_TRX) stayed "
                f"stale for {FRESH_WITHIN:g} s: another session reads it (or INNODB_LOCKS) more "
                f"often than every {CACHE_IDLE:g} s, and InnoDB refills it only after "
                f"{CACHE_IDLE:g} s unread",
                naive_offset=naive_offset,
            )


def _until_idle(turns: _Turns) -> None:
    """Sleep until this process has left the cache unread for CACHE_IDLE, and a little more."""
    idle = turns.last_read + CACHE_IDLE - time.monotonic()
    if idle > 0:
        time.sleep(idle + random.uniform(0.01, _JITTER))
