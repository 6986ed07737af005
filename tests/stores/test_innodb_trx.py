"""MariaDB's open transactions while INNODB_TRX's cache is kept stale.

InnoDB refills the cache behind information_schema.INNODB_TRX only after 0.1 s unread: a
session polling it every 20 ms (as a monitoring tool may) keeps it stale. The shared test
server's other users can only add open transactions, which lower the bound, or readers, which
keep the cache stale longer: the assertions hold whatever they do.
"""

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from copyjob_dagster.config import SourceConfig
from copyjob_dagster.engine.late_commits import CLOCK_MARGIN
from copyjob_dagster.stores import OpenTransactions, innodb_trx, open_source
from copyjob_dagster.stores.innodb_trx import FRESH_WITHIN, mysql_open_transactions

POLL = 0.02  # seconds between two reads of INNODB_TRX by the poller
READERS = 8  # copyjob threads reading one server at once


# In a process of its own, so that the test's own work (holding the GIL) does not pause it.
_POLL = """
import sys, time
import sqlalchemy as sa
with sa.create_engine(sys.argv[1]).connect() as conn:
    print("ready", flush=True)
    sys.stdin.readline()
    while True:
        conn.exec_driver_sql("SELECT COUNT(*) FROM information_schema.INNODB_TRX").all()
        time.sleep(float(sys.argv[2]))
"""


class Poller:
    """A session reading INNODB_TRX every 20 ms from `start()` until `stop()`."""

    def __init__(self, url: str) -> None:
        command = [sys.executable, "-c", _POLL, url, str(POLL)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.process.stdout is not None and self.process.stdout.readline() == b"ready\n"

    def start(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")
        self.process.stdin.flush()
        time.sleep(0.05)  # polling

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


@contextmanager
def poller(url: str) -> Iterator[Poller]:
    polling = Poller(url)
    try:
        yield polling
    finally:
        polling.stop()


@contextmanager
def late_writer(url: str) -> Iterator[tuple[int, datetime]]:
    """A transaction that has inserted a row stamped NOW(6) (UTC) and stays open: its
    connection id and that time."""
    engine = sa.create_engine(url, connect_args={"init_command": "SET time_zone = '+00:00'"})
    conn = engine.connect()
    try:
        conn.exec_driver_sql("CREATE TABLE late (stamped datetime(6) NOT NULL)")
        conn.exec_driver_sql("INSERT INTO late VALUES (NOW(6))")
        stamped = conn.exec_driver_sql("SELECT stamped FROM late").scalar_one()
        pid = conn.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one()
        yield pid, stamped.replace(tzinfo=UTC)
    finally:
        conn.rollback()
        conn.close()
        engine.dispose()


def open_transactions(url: str) -> OpenTransactions:
    source = open_source(SourceConfig.model_validate({"url": url}))
    try:
        return source.open_transactions()
    finally:
        source.close()


def test_a_writer_missing_from_a_stale_cache_still_bounds_the_watermark(mysql_url: str) -> None:
    """The poller reads from before the writer opens until 0.5 s into the copy's reading: a
    stale listing, missing the writer, is not trusted; the next fresh one names it."""
    with poller(mysql_url) as polling:
        polling.start()
        with late_writer(mysql_url) as (pid, stamped):
            time.sleep(1.2)  # older than the margin: a bound at the reading passes it
            threading.Timer(0.5, polling.stop).start()
            found = open_transactions(mysql_url)
    assert found.bound is not None, found.unknown
    assert found.bound - CLOCK_MARGIN <= stamped  # the watermark stays below the late row
    assert found.oldest is not None
    assert found.oldest.pid == pid or found.oldest.started <= stamped


def test_a_stale_listing_that_lists_the_reader_is_not_trusted(mysql_url: str) -> None:
    """The reading's own connection was listed by a fill that the poller then keeps, with an
    older statement: its thread id in the listing proves nothing. Unless the poller stalls for
    0.1 s (a loaded machine) and the cache is refilled, the bound stays unknown."""
    engine = sa.create_engine(mysql_url, connect_args={"init_command": "SET time_zone = '+00:00'"})
    try:
        with engine.connect() as conn, poller(mysql_url) as polling:
            conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            time.sleep(0.15)  # the cache unread for 0.1 s: this read fills it, listing `conn`
            conn.exec_driver_sql("SELECT COUNT(*) FROM information_schema.INNODB_TRX").all()
            polling.start()
            with late_writer(mysql_url) as (pid, stamped):
                began = time.monotonic()
                found = mysql_open_transactions(conn)
                took = time.monotonic() - began
    finally:
        engine.dispose()
    if found.bound is not None:  # proven fresh after all: it names the writer, or an older one
        assert found.oldest is not None
        assert found.oldest.pid == pid or found.oldest.started <= stamped + CLOCK_MARGIN
        return
    assert found.unknown is not None and "INNODB_TRX" in found.unknown
    assert "stale" in found.unknown
    assert FRESH_WITHIN - 0.2 <= took < FRESH_WITHIN + 1.5  # tried for the time stated, no longer


def test_copyjob_threads_reading_one_server_at_once_all_see_the_writer(
    mysql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight tables of one server read at once take turns, instead of keeping the cache stale
    for each other, and share the readings that began after they asked."""
    readings: list[int] = []
    read_fresh = innodb_trx._read_fresh

    def counted(*args: Any) -> OpenTransactions:
        readings.append(1)
        return read_fresh(*args)

    monkeypatch.setattr(innodb_trx, "_read_fresh", counted)
    sources = [open_source(SourceConfig.model_validate({"url": mysql_url})) for _ in range(READERS)]
    together = threading.Barrier(READERS)
    found: list[OpenTransactions] = []

    def read(source: Any) -> None:
        source.engine.connect().close()  # connected: the readings ask at once
        together.wait()
        found.append(source.open_transactions())

    with late_writer(mysql_url) as (pid, stamped):
        time.sleep(1.2)
        threads = [threading.Thread(target=read, args=(source,)) for source in sources]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for source in sources:
        source.close()
    assert len(found) == READERS
    for each in found:
        assert each.bound is not None, each.unknown
        assert each.bound - CLOCK_MARGIN <= stamped
    assert len(readings) <= READERS // 2
