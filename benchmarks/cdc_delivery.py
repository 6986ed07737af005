"""How long a PostgreSQL source takes to hand over a `mode: cdc` run's changes: the slot peeked
(`pg_logical_slot_peek_binary_changes` through a server-side cursor, as `mode: cdc` reads it)
against the same changes streamed (`START_REPLICATION ... LOGICAL` on a replication
connection, through psycopg's libpq wrapper, with no feedback ever sent). Only the delivery is
timed: the messages are gathered, not decoded or applied.

On a PostgreSQL of its own with wal_level=logical (started in a temporary folder on a free port,
as the tests start theirs): a table of --changes rows, then --changes mixed changes (as
benchmarks/cdc.py makes them: half updates, a quarter inserts, a quarter deletes, in
transactions of 1,000), read up to the WAL flushed after them, --rounds times each way in turns.
The slot's confirmed position is printed before and after: neither way moves it.

Usage:
    python benchmarks/cdc_delivery.py [--changes 200000] [--rounds 3]
"""

import argparse
import os
import select
import struct
import sys
import time
from pathlib import Path

import psycopg
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from cdc import FILL, ORDERS, make_mixed_changes  # noqa: E402  (benchmarks/cdc.py's)
from cdc_support import LOGICAL  # noqa: E402  (the tests')
from security import private_pg  # noqa: E402

from copyjob_dagster.stores.pgoutput import lsn_text, lsn_value  # noqa: E402

SLOT = PUBLICATION = "delivery"
_XLOG_DATA, _KEEPALIVE = ord("w"), ord("k")
_BEGIN, _COMMIT = ord("B"), ord("C")
_HEADER = 25  # 'w', the message's start and the WAL's end (LSNs), the server's clock
_SLOT_STATE = (
    f"SELECT confirmed_flush_lsn::text, active FROM pg_replication_slots WHERE slot_name = '{SLOT}'"
)


def peeked(url: str, upto: int) -> tuple[int, float]:
    """The messages up to `upto`, peeked; how many, and the seconds to the first fetch."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        started = time.monotonic()
        first, count = 0.0, 0
        with driver.cursor(name="delivery", binary=True) as cursor:
            cursor.execute(
                "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, %s::pg_lsn, NULL, "
                "'proto_version', '1', 'publication_names', %s)",
                (SLOT, lsn_text(upto), PUBLICATION),
            )
            while rows := cursor.fetchmany(10_000):
                first = first or time.monotonic() - started
                count += len(rows)
        conn.rollback()
    engine.dispose()
    return count, first


def streamed(server: private_pg.PrivatePostgres, upto: int) -> tuple[int, float]:
    """The messages of the transactions that commit before `upto`, streamed; how many, and the
    seconds to the first. Stops at the first Begin or keepalive at or past `upto`, or a Commit
    that ends there; sends nothing back (no feedback: the slot stays where it is)."""
    conn = psycopg.connect(
        host=str(server.folder),
        port=server.port,
        user="postgres",
        dbname="postgres",
        replication="database",
        autocommit=True,
    )
    started = time.monotonic()
    pg = conn.pgconn
    pg.send_query(
        f"START_REPLICATION SLOT {SLOT} LOGICAL 0/0 "
        f"(proto_version '1', publication_names '{PUBLICATION}')".encode()
    )
    while pg.is_busy():
        select.select([pg.socket], [], [])
        pg.consume_input()
    result = pg.get_result()
    assert result is not None and result.status == psycopg.pq.ExecStatus.COPY_BOTH
    pg.nonblocking = 1
    count, first, done = 0, 0.0, False
    while not done:
        size, data = pg.get_copy_data(1)
        if size == 0:
            select.select([pg.socket], [], [])
            pg.consume_input()
            continue
        if size < 0:
            break
        if data[0] == _KEEPALIVE:
            done = struct.unpack_from(">Q", data, 1)[0] >= upto
        elif data[0] == _XLOG_DATA:
            kind = data[_HEADER]
            if kind == _BEGIN and struct.unpack_from(">Q", data, _HEADER + 1)[0] >= upto:
                break
            count += 1
            first = first or time.monotonic() - started
            done = kind == _COMMIT and struct.unpack_from(">Q", data, _HEADER + 10)[0] >= upto
    conn.close()
    return count, first


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n = args.changes
    server = private_pg.start(LOGICAL, replication=True)
    engine = sa.create_engine(server.admin_url, isolation_level="AUTOCOMMIT")

    def slot() -> tuple[str, bool]:
        with engine.connect() as conn:
            confirmed, active = conn.execute(sa.text(_SLOT_STATE)).one()
        return confirmed, active

    try:
        with engine.connect() as conn:
            for statement in (
                "CREATE SCHEMA src",
                ORDERS.format(t="src.mixed"),
                FILL.format(t="src.mixed", rows=n),
                f"CREATE PUBLICATION {PUBLICATION} FOR TABLE src.mixed",
                f"SELECT pg_create_logical_replication_slot('{SLOT}', 'pgoutput')",
            ):
                conn.execute(sa.text(statement))
            make_mixed_changes(conn, n)
            upto = lsn_value(
                conn.exec_driver_sql("SELECT pg_current_wal_flush_lsn()::text").scalar()
            )
        print(f"# {n:,} mixed changes, read up to {lsn_text(upto)}; slot at {slot()[0]}")
        for round in range(args.rounds):
            for way, read in (("peek", lambda: peeked(server.admin_url, upto)),
                              ("stream", lambda: streamed(server, upto))):  # fmt: skip
                load = os.getloadavg()[0]
                started, cpu = time.monotonic(), time.process_time()
                count, first = read()
                print(
                    f"round {round + 1} {way:6}: {count:,} messages, first after {first:.3f} s, "
                    f"all {time.monotonic() - started:.3f} s, client CPU "
                    f"{time.process_time() - cpu:.3f} s (load average {load:.2f})",
                    flush=True,
                )
                # the walsender ends when its client goes; the slot is free again then
                while slot()[1]:
                    time.sleep(0.1)
        print(f"slot at {slot()[0]} after the reads")
    finally:
        engine.dispose()
        private_pg.stop(server)


if __name__ == "__main__":
    main()
