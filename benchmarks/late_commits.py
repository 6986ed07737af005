"""Late commits with no `lookback`, and the rows a run reads again because of the bound.

1. The case of issue 18, on PostgreSQL and MariaDB, for merge and append: 50,000 rows copied
   (incremental column stamped by the database's clock), then a transaction inserts a row with
   `now()` and stays open 6 s while 1,000 more rows commit and a copy runs; it commits, and the
   next copy runs. Rows lost and duplicated, with the bound and without it (the bound switched
   off in this process only, to show what it changes).
2. A busy source: a writer commits 20 rows every 50 ms while copies run one after the other;
   for each run, the rows it read that an earlier run had already copied (merge: rows read less
   keys new to the destination), and how far the bound held its watermark back.

Each case works in a database of its own (PostgreSQL) or a scratch database (MariaDB), dropped
after. Usage: python benchmarks/late_commits.py [--runs 6]
"""

import argparse
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import sqlalchemy as sa

from copyjob_dagster.config import CopyJob
from copyjob_dagster.engine import copy_table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_late_commits import COLUMNS, NOW, scratch_database  # noqa: E402  (the tests')

PG = os.environ.get("COPYJOB_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
MYSQL = os.environ.get("COPYJOB_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


def scratch(kind: str) -> AbstractContextManager[str]:
    return scratch_database(PG if kind == "postgres" else MYSQL)


def insert(engine: sa.Engine, rows: int) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO events (payload) VALUES " + ", ".join(["('x')"] * rows))


def job_for(url: str, write: str) -> CopyJob:
    return CopyJob.model_validate(
        {
            "name": "late_bench",
            "mode": "incremental",
            "source": {"url": url},
            "destination": {"url": url},
            "tables": [
                {
                    "name": "events",
                    "to": "events_copy",
                    "incremental_column": "updated_at",
                    "primary_key": ["id"],
                    "write": write,
                }
            ],
        }
    )


def lost_and_duplicated(engine: sa.Engine, write: str) -> tuple[int, int]:
    with engine.connect() as conn:
        source = set(conn.exec_driver_sql("SELECT id, updated_at FROM events").all())
        copied = conn.exec_driver_sql("SELECT id, updated_at FROM events_copy").all()
    keys = [row if write == "append" else row[0] for row in copied]
    return len({row[0] for row in source} - {row[0] for row in copied}), len(keys) - len(set(keys))


def late_commit_case(kind: str, write: str, bound: bool) -> tuple[int, int]:
    with scratch(kind) as url:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE events ({COLUMNS[kind]})")
        for _ in range(10):
            insert(engine, 5_000)
        job = job_for(url, write)
        switch = mock.patch("copyjob_dagster.engine.copying.observe", return_value=None)
        with switch if not bound else _nothing():
            first = copy_table(job, job.tables[0])
            late = engine.connect()
            opened = time.monotonic()
            late.exec_driver_sql(
                f"INSERT INTO events (payload, updated_at) VALUES ('late', {NOW[kind]})"
            )
            for _ in range(10):
                insert(engine, 100)
            during = copy_table(job, job.tables[0], first.watermark)
            time.sleep(max(0.0, 6 - (time.monotonic() - opened)))
            late.commit()
            late.close()
            copy_table(job, job.tables[0], during.watermark)
        result = lost_and_duplicated(engine, write)
        engine.dispose()
        return result


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def busy_source(kind: str, runs: int) -> list[dict[str, Any]]:
    with scratch(kind) as url:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE events ({COLUMNS[kind]})")
        insert(engine, 10_000)
        job = job_for(url, "merge")
        stop = threading.Event()

        def write() -> None:
            while not stop.is_set():
                insert(engine, 20)
                time.sleep(0.05)

        writer = threading.Thread(target=write)
        writer.start()
        found = []
        try:
            result = copy_table(job, job.tables[0])
            for _ in range(runs):
                time.sleep(1)
                before = _count(engine)
                result = copy_table(job, job.tables[0], result.watermark)
                new = _count(engine) - before
                late = result.late_commits
                found.append(
                    {
                        "rows read": result.rows_read,
                        "new": new,
                        "read again": result.rows_read - new,
                        "held back s": round(late.held_back.total_seconds(), 3) if late else None,
                    }
                )
        finally:
            stop.set()
            writer.join()
            engine.dispose()
        return found


def _count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT count(*) FROM events_copy").scalar_one()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=6)
    args = parser.parse_args()
    print(f"load: {os.getloadavg()}")
    for kind in ("postgres", "mariadb"):
        for write in ("merge", "append"):
            for bound in (True, False):
                lost, duplicated = late_commit_case(kind, write, bound)
                label = "with the bound" if bound else "bound off    "
                print(f"{kind:8} {write:6} {label}: rows lost {lost}, duplicates {duplicated}")
    for kind in ("postgres", "mariadb"):
        for number, run in enumerate(busy_source(kind, args.runs), 1):
            print(f"{kind:8} busy run {number}: {run}")
    print(f"load: {os.getloadavg()}")


if __name__ == "__main__":
    main()
