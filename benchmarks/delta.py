"""PostgreSQL -> Delta against copyjob's own PostgreSQL -> Parquet, and a merge of changed rows
(20,000 by default) into the Delta table against its full copy and against the same merge into
PostgreSQL, in one invocation (each way in a fresh process); with the peak RSS of the Delta full
copy at a tenth of the rows too, so memory can be compared over two sizes.

    .venv/bin/python benchmarks/delta.py --rows 2000000 --repeat 3
    .venv/bin/python benchmarks/run.py --delta ...   (the same, in run.py's invocation)

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


def job(schema: str, destination: str, mode: str, destination_schema: str | None = None) -> dict:
    table = {"name": "orders"}
    if mode == "incremental":
        table |= {"incremental_column": "updated_at", "write": "merge"}
    return {
        "name": "bench",
        "mode": mode,
        "source": {"url": PG_URL, "schema": schema},
        "destination": {"url": destination}
        | ({"schema": destination_schema} if destination_schema else {}),
        "tables": [table],
    }


def child(spec: dict) -> None:
    """Run one copy in this process; print its seconds, rows and peak RSS as JSON."""
    from copyjob_dagster.config import CopyJob
    from copyjob_dagster.engine import Watermark, copy_table

    copy_job = CopyJob.model_validate(spec["job"])
    watermark = Watermark(**spec["watermark"]) if spec.get("watermark") else None
    merges = _timed_merges()
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
                "delta_merge": merges,
            }
        )
    )


def _timed_merges() -> list[dict]:
    """Where a copy's time goes: each delta-rs merge's own seconds and metrics (files rewritten,
    rows copied) are appended to the returned list as the merges run."""
    from deltalake.table import TableMerger

    merges: list[dict] = []
    execute = TableMerger.execute

    def timed(self: TableMerger) -> dict:
        started = time.monotonic()
        metrics = execute(self)
        merges.append({"seconds": time.monotonic() - started, **metrics})
        return metrics

    TableMerger.execute = timed
    return merges


def run(spec: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def build(engine: sa.Engine, schema: str, rows: int, index_updated_at: bool = False) -> None:
    """The `orders` table; `index_updated_at`: with an index on the incremental column, so an
    incremental run's queries of the source find the window without reading the whole table."""
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
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
        if index_updated_at:
            conn.execute(sa.text(f"CREATE INDEX ON {schema}.orders (updated_at)"))
        conn.execute(sa.text(f"ANALYZE {schema}.orders"))


def measure(rows: int, repeat: int, changed_rows: int = 20_000, spread: bool = True) -> list[str]:
    """The figures, as printed lines: medians of `repeat` rounds, ratios, peak RSS. The changed
    rows are every Nth row (`spread`: every data file holds some), or the newest ones."""
    every = max(1, rows // changed_rows)
    changed = f"id % {every} = 0" if spread else f"id > {rows - changed_rows}"
    expected = rows // every if spread else changed_rows
    tag = uuid.uuid4().hex[:8]
    schema, small, target = (f"cj_delta_bench_{tag}", f"cj_delta_small_{tag}", f"cj_delta_pg_{tag}")
    engine = sa.create_engine(PG_URL)
    build(engine, schema, rows)
    build(engine, small, max(1, rows // 10))
    times: dict[str, list[float]] = {}
    rss: dict[str, float] = {}
    names = (
        "PostgreSQL -> Parquet (full)",
        "PostgreSQL -> Delta (full)",
        f"PostgreSQL -> Delta merge of {expected:,} changed rows",
        f"PostgreSQL -> PostgreSQL merge of {expected:,} changed rows",
        f"PostgreSQL -> Delta (full), {max(1, rows // 10):,} rows",
    )
    try:
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as folder:
                parquet = run({"job": job(schema, f"{folder}/parquet", "full")})
                delta_full = run({"job": job(schema, f"delta:///{folder}/delta", "full")})
                delta_small = run({"job": job(small, f"delta:///{folder}/small", "full")})
                lake = job(schema, f"delta:///{folder}/inc", "incremental")
                database = job(schema, PG_URL, "incremental", target)
                with engine.begin() as conn:
                    conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {target} CASCADE"))
                    conn.execute(sa.text(f"CREATE SCHEMA {target}"))
                initial = run({"job": lake})
                initial_pg = run({"job": database})
                with engine.begin() as conn:
                    conn.execute(
                        sa.text(
                            f"UPDATE {schema}.orders SET status = 'changed', "
                            "updated_at = timestamptz '2030-01-01' + id * interval '1 microsecond'"
                            f" WHERE {changed}"
                        )
                    )
                merge = run({"job": lake, "watermark": initial["watermark"]})
                merge_pg = run({"job": database, "watermark": initial_pg["watermark"]})
                with engine.begin() as conn:  # undo, for the next round
                    conn.execute(
                        sa.text(
                            f"UPDATE {schema}.orders SET status = 'x', updated_at = created_at "
                            f"WHERE {changed}"
                        )
                    )
                assert merge["commit"]["updated"] == expected, merge
            for name, measured in zip(
                names, (parquet, delta_full, merge, merge_pg, delta_small), strict=True
            ):
                times.setdefault(name, []).append(measured["seconds"])
                rss[name] = max(rss.get(name, 0), measured["rss_mb"])
    finally:
        with engine.begin() as conn:
            for dropped in (schema, small, target):
                conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {dropped} CASCADE"))
        engine.dispose()
    medians = {name: statistics.median(values) for name, values in times.items()}
    reference = dict(zip(names, (names[0], names[0], names[1], names[3], names[4]), strict=True))
    lines = [
        f"Delta: {rows:,} rows, {expected:,} changed "
        f"({f'every {every}th' if spread else 'the newest'}), median of {repeat}; "
        f"load average {tuple(round(x, 2) for x in os.getloadavg())}"
    ]
    for name, seconds in medians.items():
        ratio = seconds / medians[reference[name]]
        lines.append(
            f"{name:52} {seconds:7.2f} s  {ratio:5.2f}x {reference[name]!r:38}  "
            f"peak RSS {rss[name]:6.0f} MB"
        )
    lines.append(
        f"Delta merge / PostgreSQL merge: {medians[names[2]] / medians[names[3]]:.2f}x; "
        f"peak RSS of the Delta full copy, {rows:,} vs {max(1, rows // 10):,} rows: "
        f"{rss[names[1]] / rss[names[4]]:.2f}x"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--changed-rows", type=int, default=20_000)
    parser.add_argument("--changed", choices=["spread", "newest"], default="spread")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    lines = measure(args.rows, args.repeat, args.changed_rows, args.changed == "spread")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
