"""The SQLite instance of `copyjob run`, its database connections kept while the run goes on.

Dagster's SQLite storages open a new SQLAlchemy engine and a new SQLite connection for every
read and every write (`NullPool`), and close it after. In WAL mode, closing the last connection
to a database checkpoints the log into the database file and deletes it, with fsyncs: on this
machine an open-write-commit-close costs about 30 ms against about 3 ms on a connection kept
open. A run stores 6 events per table, most of them twice (in the run's own event-log database
and in the asset index), and reads the log for watermarks and progress: with many small tables
the run's time went to opening and closing databases.

`keep_connections` gives the instance's event log and run storage one engine per database,
kept until the instance is disposed (the end of the command). What they store, and where, is
unchanged: the same files, the same statements, a transaction per call as before; other
processes (the webserver, the daemon) see each event once it is committed, as before. Another
storage (PostgreSQL, a storage class of one's own) is left as it is.

A commit waits for the disk (SQLite's `synchronous=FULL`, an fsync of the log) only when it
stores what a later copy starts from: an asset's materialization or observation (the watermark,
a CDC position, a watermark operation). Every other event (step outputs, check evaluations,
log lines, run status) is committed with `synchronous=NORMAL`: written to the log, which other
processes read at once, and made durable by the next fsync. A process that dies loses nothing
either way; a power cut or an OS crash can lose only the events stored after the last
materialization or observation, so never a watermark that a destination's commit went with
(docs/scale.md, "What a run stores, and how durably").
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from sqlalchemy import Connection, Engine, create_engine, event

from copyjob_dagster.cli.probes import remembered

_EVENT_LOG_PARTS = ("_db_lock", "_initdb", "_initialized_dbs", "conn_string_for_shard")
# The events a later copy reads its starting point from: committed with an fsync.
DURABLE_EVENTS = frozenset(
    {dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_OBSERVATION}
)


def keep_connections(instance: dg.DagsterInstance) -> None:
    """Keep the SQLite connections of `instance`'s event log and run storage open until it is
    disposed; any other storage stays as it is."""
    events = instance.event_log_storage
    if type(events) is SqliteEventLogStorage and all(hasattr(events, a) for a in _EVENT_LOG_PARTS):
        _keep_event_log(events)
    runs = instance.run_storage
    if type(runs) is SqliteRunStorage and hasattr(runs, "_conn_string"):
        _keep_run_storage(runs)


def _engine(url: str) -> Engine:
    # One connection kept per database (the event log's calls hold a lock of Dagster's); threads
    # that read the run storage at the same time get more, closed after use as before.
    engine = create_engine(
        url, pool_size=1, max_overflow=16, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
    )
    event.listen(engine, "connect", _write_ahead)
    return engine


def _write_ahead(dbapi_connection: Any, _record: Any) -> None:
    """Each connection in WAL mode from its first statement, commits at `synchronous=NORMAL`
    until `_synchronous` says otherwise.

    Dagster's databases are WAL already, except the run's own, which Dagster creates (about 20
    tables and indexes, each statement its own commit) in SQLite's default rollback-journal mode
    and switches to WAL after: a journal file made, fsynced and deleted per statement, 0.45 s of
    waiting on this machine against 0.03 s in WAL. A schema commit that a power cut loses is
    made again at the next start (Dagster creates a database it finds unstamped), and the
    first durable commit after it (`DURABLE_EVENTS`) fsyncs the log up to there."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _synchronous(conn: Connection, durable: bool) -> None:
    """Make the connection's next commit wait for the disk (`durable`) or not. (Through the
    driver: a PRAGMA opens no transaction there, and takes effect at the commit.)"""
    level = "FULL" if durable else "NORMAL"
    conn.connection.driver_connection.execute(f"PRAGMA synchronous = {level}")  # type: ignore[union-attr]


def _keep_event_log(storage: Any) -> None:
    engines: dict[str, Engine] = {}
    storing = threading.local()  # the event type the thread is storing, if any

    @contextmanager
    def connect(shard: str) -> Iterator[Connection]:
        # Dagster's `_connect`, with the shard's engine kept instead of made and disposed.
        with storage._db_lock:
            engine = engines.get(shard)
            if engine is None:
                engine = engines[shard] = _engine(storage.conn_string_for_shard(shard))
            if shard not in storage._initialized_dbs:
                storage._initdb(engine)
                storage._initialized_dbs.add(shard)
            with engine.connect() as conn:
                _synchronous(conn, getattr(storing, "kind", None) in DURABLE_EVENTS)
                with conn.begin():
                    yield conn

    store_event = storage.store_event

    def store(event: Any) -> None:
        storing.kind = event.dagster_event_type
        try:
            store_event(event)
        finally:
            storing.kind = None

    dispose = storage.dispose

    def dispose_all() -> None:
        with storage._db_lock:
            for engine in engines.values():
                engine.dispose()
            engines.clear()
        dispose()

    storage._connect = connect
    storage.store_event = store
    # Dagster asks before most writes whether a table of the index exists (a new engine and
    # connection each time); a table it has does not go away while the process runs.
    storage.has_table = remembered(storage.has_table)
    storage.dispose = dispose_all


def _keep_run_storage(storage: Any) -> None:
    engine = _engine(storage._conn_string)

    @contextmanager
    def connect() -> Iterator[Connection]:
        # Runs, their tags and status: nothing a copy starts from (commits at NORMAL, as
        # `_write_ahead` leaves every connection of this engine).
        with engine.connect() as conn, conn.begin():
            yield conn

    dispose = storage.dispose

    def dispose_all() -> None:
        engine.dispose()
        dispose()

    storage.connect = connect
    storage.dispose = dispose_all
