"""PostgreSQL -> Delta against copyjob's own PostgreSQL -> Parquet, and a merge of 1% changed rows
into the Delta table against its full copy, in one invocation (each way in a fresh process).

    .venv/bin/python benchmarks/delta.py --rows 500000 --repeat 3

The source is an `orders` table in a scratch schema of the PostgreSQL server named by
COPYJOB_TEST_PG_URL (default: the local one), dropped at the end. Prints the median seconds, the
ratio to the reference and the peak RSS of each way, and the machine's load.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import sqlalchemy as sa

PG_URL = os.environ.get("COPYJOB_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")


def job(schema: str, destination: str, mode: str) -> dict:
    table = {"name": "orders"}
    if mode == "incremental":
        table |= {"incremental_column": "updated_at", "write": "merge"}
    return {
        "name": "bench",
        "mode": mode,
        "source": {"url": PG_URL, "schema": schema},
        "destination": {"url": destination},
        "tables": [table],
    }


def child(spec: dict) -> None:
    """Run one copy in this process; print its seconds, rows and peak RSS as JSON."""
    from copyjob_dagster.config import CopyJob
    from copyjob_dagster.engine import Watermark, copy_table

    copy_job = CopyJob.model_validate(spec["job"])
    watermark = Watermark(**spec["watermark"]) if spec.get("watermark") else None
    started = time.monotonic()
    result = copy_table(copy_job, copy_job.tables[0], watermark)
    seconds = time.monotonic() - started
    print(
        json.dumps(
            {
                "seconds": seconds,
                "rows": result.rows_written,
                "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "watermark": result.watermark.__dict__ if result.watermark else None,
                "commit": result.commit.__dict__ if result.commit else None,
            }
        )
    )


def run(spec: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def build(engine: sa.Engine, schema: str, rows: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        conn.execute(
            sa.text(
                f"CREATE TABLE {schema}.orders (id bigint PRIMARY KEY, customer_id integer, "
                "amount numeric(12,2), status text, note text, created_at timestamptz, "
                "updated_at timestamptz)"
            )
        )
        conn.execute(
            sa.text(
                f"INSERT INTO {schema}.orders SELECT g, g % 10007, (g % 100000) / 100.0, "
                "(ARRAY['new','paid','sent','done'])[1 + g % 4], repeat('x', 20 + g % 40), "
                "timestamptz '2024-01-01' + g * interval '1 second', "
                "timestamptz '2024-01-01' + g * interval '1 second' FROM generate_series(1, :n) g"
            ),
            {"n": rows},
        )
        conn.execute(sa.text(f"ANALYZE {schema}.orders"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--changed",
        choices=["spread", "recent"],
        default="spread",
        help="which 1%% change: every 100th row (every file rewritten), or the newest rows",
    )
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    changed = "id % 100 = 0" if args.changed == "spread" else f"id > {args.rows - args.rows // 100}"
    schema = f"cj_delta_bench_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(PG_URL)
    build(engine, schema, args.rows)
    times: dict[str, list[float]] = {}
    rss: dict[str, float] = {}
    try:
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as folder:
                parquet = run({"job": job(schema, f"{folder}/parquet", "full")})
                delta_full = run({"job": job(schema, f"delta:///{folder}/delta", "full")})
                lake = f"delta:///{folder}/inc"
                initial = run({"job": job(schema, lake, "incremental")})
                with engine.begin() as conn:  # 1% of the rows change
                    conn.execute(
                        sa.text(
                            f"UPDATE {schema}.orders SET status = 'changed', "
                            "updated_at = timestamptz '2030-01-01' + id * interval '1 microsecond'"
                            f" WHERE {changed}"
                        )
                    )
                merge = run(
                    {"job": job(schema, lake, "incremental"), "watermark": initial["watermark"]}
                )
                with engine.begin() as conn:  # undo, for the next round
                    conn.execute(
                        sa.text(
                            f"UPDATE {schema}.orders SET status = 'x', updated_at = created_at "
                            f"WHERE {changed}"
                        )
                    )
                assert merge["commit"]["updated"] == args.rows // 100, merge
            for name, measured in (
                ("PostgreSQL -> Parquet (full)", parquet),
                ("PostgreSQL -> Delta (full)", delta_full),
                ("PostgreSQL -> Delta merge of 1% changed rows", merge),
            ):
                times.setdefault(name, []).append(measured["seconds"])
                rss[name] = max(rss.get(name, 0), measured["rss_mb"])
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        engine.dispose()
    medians = {name: statistics.median(values) for name, values in times.items()}
    reference = {
        "PostgreSQL -> Parquet (full)": "PostgreSQL -> Parquet (full)",
        "PostgreSQL -> Delta (full)": "PostgreSQL -> Parquet (full)",
        "PostgreSQL -> Delta merge of 1% changed rows": "PostgreSQL -> Delta (full)",
    }
    print(
        f"{args.rows:,} rows, 1% changed: {args.changed}, median of {args.repeat}; "
        f"load average {os.getloadavg()}"
    )
    for name, seconds in medians.items():
        ratio = seconds / medians[reference[name]]
        print(
            f"{name:46} {seconds:7.2f} s  {ratio:5.2f}x {reference[name]!r:32}  "
            f"peak RSS {rss[name]:6.0f} MB"
        )


if __name__ == "__main__":
    main()
