"""`mode: cdc` from MariaDB's binlog against the watermark copy it replaces, on a MariaDB of its
own with the binlog on (started in a temporary folder on a free port, as the tests start
theirs). The destination is PostgreSQL: COPYJOB_TEST_PG_URL (default the local test server), in
a schema of its own, dropped after.

1. A table of --rows rows; 1% of rows updated and 0.5% deleted: one CDC run against one
   incremental run with `deletes: hard` (which reads every key to find deletions).
2. --changes mixed changes (half updates, a quarter inserts, a quarter deletes, in transactions
   of 1,000) applied MariaDB -> PostgreSQL, against a plain full copy of a table of as many rows.

Prints each figure with the machine's load average. Usage:
    python benchmarks/binlog_cdc.py [--rows 2000000] [--changes 200000]
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
from copyjob_dagster.engine.cdc import capture_changes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import binlog_support  # noqa: E402  (the tests')

ORDERS = (
    "CREATE TABLE {t} (id bigint PRIMARY KEY, customer int, amount decimal(12,2), note text, "
    "updated_at timestamp(6) NOT NULL DEFAULT current_timestamp(6) "
    "ON UPDATE current_timestamp(6), KEY (updated_at))"
)
FILL = (
    "INSERT INTO {t} (id, customer, amount, note, updated_at) SELECT seq, seq % 1000, "
    "seq * 0.01, concat('note ', seq), '2024-01-01' + INTERVAL seq SECOND FROM seq_1_to_{rows}"
)
DESTINATION = os.environ.get("COPYJOB_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
DESTINATION_SCHEMA = "binlog_bench_dst"


def job(url: str, name: str, mode: str, table: dict[str, Any]) -> CopyJob:
    return CopyJob.model_validate(
        {
            "name": name,
            "mode": mode,
            "source": {"url": url},
            "destination": {"url": DESTINATION, "schema": DESTINATION_SCHEMA},
            "tables": [table],
        }
    )


def cdc_run(copy_job: CopyJob, position: int | None) -> tuple[float, int, Any]:
    started = time.monotonic()
    result = capture_changes(copy_job, copy_job.tables[0], position)
    return time.monotonic() - started, result.position, result


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--changes", type=int, default=200_000)
    args = parser.parse_args()
    server = binlog_support.start(("--innodb-buffer-pool-size=512M", "--max-allowed-packet=64M"))
    server.sql("CREATE DATABASE src")
    url = server.url("src")
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
        print(f"# mode: cdc from MariaDB, {args.rows:,} rows, {args.changes:,} mixed changes")
        print(f"start: {load()}")
        # 1. updates and deletes: cdc against incremental + deletes: hard
        sql(ORDERS.format(t="orders"), FILL.format(t="orders", rows=args.rows))
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
            "UPDATE orders SET amount = amount + 1 WHERE id % 100 = 0",
            "DELETE FROM orders WHERE id % 200 = 1",
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
        n, per = args.changes, 1000
        sql(ORDERS.format(t="mixed"), FILL.format(t="mixed", rows=n))
        mixed = job(url, "bench_mixed", "cdc", {"name": "mixed"})
        _, mixed_position, _ = cdc_run(mixed, None)
        for start in range(0, n // 2, per):  # updates, in transactions of 1,000
            sql(f"UPDATE mixed SET amount = amount + 1 WHERE id > {start} AND id <= {start + per}")
        for start in range(0, n // 4, per):
            sql(
                f"INSERT INTO mixed (id, customer, amount, note) SELECT seq, 1, 1, 'new' "
                f"FROM seq_{n + start + 1}_to_{n + start + per}",
                f"DELETE FROM mixed WHERE id > {n // 2 + start} AND id <= {n // 2 + start + per}",
            )
        seconds_mixed, _, result = cdc_run(mixed, mixed_position)
        sql(ORDERS.format(t="plain"), FILL.format(t="plain", rows=n))
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
        print(f"end: {load()}")
    finally:
        with destination.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {DESTINATION_SCHEMA} CASCADE")
        destination.dispose()
        engine.dispose()
        binlog_support.stop(server)


if __name__ == "__main__":
    main()
