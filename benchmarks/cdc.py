"""`mode: cdc` against the watermark copy it replaces, on a PostgreSQL of its own with
wal_level=logical (started in a temporary folder on a free port, as the tests start theirs).

1. A table of --rows rows (default 2,000,000); 1% of rows updated and 0.5% deleted: one CDC run
   against one incremental run with `deletes: hard` (which reads every key to find deletions).
The destination is another server: COPYJOB_TEST_PG_URL (default the local test server), in a
schema of its own, dropped after.

2. --changes mixed changes (default 200,000: half updates, a quarter inserts, a quarter deletes,
   in transactions of 1,000) applied PostgreSQL -> PostgreSQL, against a plain full copy of a
   table of as many rows.
3. A long transaction that began before a run and committed after it: its rows arrive in the
   next run, with no lookback.

Prints each figure with the machine's load average. Usage:
    python benchmarks/cdc.py [--rows 2000000] [--changes 200000]
"""

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from copyjob_dagster.config import CopyJob
from copyjob_dagster.engine import copy_table
from copyjob_dagster.engine.cdc import capture_changes, confirm_position

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from cdc_support import LOGICAL  # noqa: E402  (the tests')
from security import private_pg  # noqa: E402

ORDERS = (
    "CREATE TABLE {t} (id bigint PRIMARY KEY, customer int, amount numeric(12,2), note text, "
    "updated_at timestamptz NOT NULL DEFAULT now())"
)
FILL = (
    "INSERT INTO {t} (id, customer, amount, note, updated_at) SELECT g, g % 1000, g * 0.01, "
    "'note ' || g, '2024-01-01'::timestamptz + g * interval '1 second' "
    "FROM generate_series(1, {rows}) g"
)


def make_mixed_changes(conn: sa.Connection, n: int, per: int = 1000) -> None:
    """`n` mixed changes to `src.mixed` (a table of `n` rows, ids 1..n), in transactions of
    `per` rows on an autocommit connection: half updates, a quarter inserts, a quarter deletes."""
    for start in range(0, n // 2, per):
        conn.exec_driver_sql(
            f"UPDATE src.mixed SET amount = amount + 1 WHERE id > {start} AND id <= {start + per}"
        )
    for start in range(0, n // 4, per):
        conn.exec_driver_sql(
            f"INSERT INTO src.mixed (id, customer, amount, note) SELECT g, 1, 1, 'new' "
            f"FROM generate_series({n + start + 1}, {n + start + per}) g"
        )
        conn.exec_driver_sql(
            f"DELETE FROM src.mixed WHERE id > {n // 2 + start} AND id <= {n // 2 + start + per}"
        )


# The destination lives on another server (the shared test server by default), as it would in
# production: a destination on the source's server would put its own writes into the WAL that
# the slot decodes.
DESTINATION = os.environ.get("COPYJOB_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
DESTINATION_SCHEMA = "cdc_bench_dst"


def job(url: str, name: str, mode: str, table: dict[str, Any]) -> CopyJob:
    return CopyJob.model_validate(
        {
            "name": name,
            "mode": mode,
            "source": {"url": url, "schema": "src"},
            "destination": {"url": DESTINATION, "schema": DESTINATION_SCHEMA},
            "tables": [table],
        }
    )


def cdc_run(copy_job: CopyJob, position: int | None) -> tuple[float, int, Any]:
    table = copy_job.tables[0]
    started = time.monotonic()
    result = capture_changes(copy_job, table, position)
    confirm_position(copy_job, table, result.position)
    return time.monotonic() - started, result.position, result


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--changes", type=int, default=200_000)
    args = parser.parse_args()
    server = private_pg.start(LOGICAL + "max_wal_size = 4GB\n", replication=True)
    url = server.admin_url
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")

    def sql(*statements: str) -> None:
        with engine.connect() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))

    destination = sa.create_engine(DESTINATION, isolation_level="AUTOCOMMIT")
    with destination.connect() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {DESTINATION_SCHEMA} CASCADE")
        conn.exec_driver_sql(f"CREATE SCHEMA {DESTINATION_SCHEMA}")
    try:
        sql("CREATE SCHEMA src")
        print(f"# mode: cdc benchmark, {args.rows:,} rows, {args.changes:,} mixed changes")
        print(f"start: {load()}")
        # 1. updates and deletes: cdc against incremental + deletes: hard
        sql(ORDERS.format(t="src.orders"), FILL.format(t="src.orders", rows=args.rows))
        sql("CREATE INDEX ON src.orders (updated_at)", "ANALYZE src.orders")
        cdc_job = job(url, "bench_cdc", "cdc", {"name": "orders", "to": "orders_cdc"})
        inc_job = job(
            url,
            "bench_inc",
            "incremental",
            {
                "name": "orders",
                "to": "orders_inc",
                "incremental_column": "updated_at",
                "deletes": "hard",
                "primary_key": ["id"],
                "write": "merge",
                "max_delete_share": 0.9,
            },
        )
        seconds, position, _ = cdc_run(cdc_job, None)
        print(f"cdc first snapshot: {seconds:.2f} s")
        started = time.monotonic()
        first = copy_table(inc_job, inc_job.tables[0], None)
        print(f"incremental initial load: {time.monotonic() - started:.2f} s")
        sql(
            "UPDATE src.orders SET amount = amount + 1, updated_at = now() WHERE id % 100 = 0",
            "DELETE FROM src.orders WHERE id % 200 = 1",
        )
        seconds_cdc, position, result = cdc_run(cdc_job, position)
        started = time.monotonic()
        copy_table(inc_job, inc_job.tables[0], first.watermark)
        seconds_inc = time.monotonic() - started
        print(
            f"1% updated, 0.5% deleted: cdc {seconds_cdc:.2f} s ({result.counts.upserted:,} "
            f"upserted, {result.counts.deleted:,} deleted), incremental + deletes: hard "
            f"{seconds_inc:.2f} s: {seconds_inc / seconds_cdc:.1f}x ({load()})"
        )
        # 2. mixed changes against a plain full copy of as many rows
        n = args.changes
        sql(ORDERS.format(t="src.mixed"), FILL.format(t="src.mixed", rows=n))
        mixed = job(url, "bench_mixed", "cdc", {"name": "mixed"})
        _, mixed_position, _ = cdc_run(mixed, None)
        with engine.connect() as conn:
            make_mixed_changes(conn, n)
        seconds_mixed, _, result = cdc_run(mixed, mixed_position)
        sql(ORDERS.format(t="src.plain"), FILL.format(t="src.plain", rows=n))
        plain = job(url, "bench_plain", "full", {"name": "plain"})
        started = time.monotonic()
        copy_table(plain, plain.tables[0])
        seconds_full = time.monotonic() - started
        print(
            f"{n:,} mixed changes ({result.counts.upserted:,} upserted, "
            f"{result.counts.deleted:,} deleted, {result.transactions:,} transactions): cdc "
            f"{seconds_mixed:.2f} s; full copy of {n:,} rows {seconds_full:.2f} s: "
            f"{seconds_mixed / seconds_full:.2f}x the full copy ({load()})"
        )
        # 3. a long transaction that commits after a run
        with engine.connect() as long:
            long.exec_driver_sql("BEGIN")
            long.exec_driver_sql(
                "INSERT INTO src.orders (id, customer, amount, note, updated_at) "
                "VALUES (-1, 0, 0, 'long', now() - interval '1 hour')"
            )
            sql("INSERT INTO src.orders (id, customer, amount, note) VALUES (-2, 0, 0, 'short')")
            _, position, _ = cdc_run(cdc_job, position)
            long.exec_driver_sql("COMMIT")
        _, position, _ = cdc_run(cdc_job, position)
        with destination.connect() as conn:
            arrived = conn.exec_driver_sql(
                f"SELECT count(*) FROM {DESTINATION_SCHEMA}.orders_cdc WHERE id IN (-1, -2)"
            ).scalar_one()
        print(f"long transaction committed after a run: {arrived} of 2 rows arrived, no lookback")
        print(f"end: {load()}")
    finally:
        with destination.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {DESTINATION_SCHEMA} CASCADE")
        destination.dispose()
        engine.dispose()
        private_pg.stop(server)


if __name__ == "__main__":
    main()
