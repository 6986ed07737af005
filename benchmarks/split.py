"""Split copies against single-stream copies of the same table, and memory as the table grows.

    .venv/bin/python benchmarks/split.py                 # 2,000,000 rows, 2 parts, 3 rounds
    .venv/bin/python benchmarks/split.py --rows 200000 --repeat 1   # a quick look

Reads the data set of `run.py` (`orders` and its tenth `orders_small` in `<prefix>_src`, built
by `run.py` or here when missing) and writes into databases of its own (`<prefix>_split_dst`
on PostgreSQL, `<prefix>_split` on MariaDB, `.work/split/lake`), so that it can run beside
`run.py`. Each copy is `copy_table` on a job file, in a process of its own (`child.py`): wall
time of the copy, peak RSS of the process. The ways take turns, round after round; the median
is printed, with the load average before and after each run (the machine is shared).
"""

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from dataset import _build_pg_source, _marker, _pg_marker, my_connect, pg_connect
from measure import Sample, run_retried
from psycopg import sql
from settings import BENCH_DIR, Settings

TRACE_ROWS = 250_000
PAIRINGS = {
    "pg-parquet": "PostgreSQL → Parquet",
    "pg-mariadb": "PostgreSQL → MariaDB",
    "pg-pg-arrow": "PostgreSQL → PostgreSQL, Arrow path",
}


def copy_file(settings: Settings, job_file: str) -> None:
    """Run by `child.py`: copy the job's one table as a program would, and write the resident
    set size every TRACE_ROWS rows to `<job>.rss.json`."""
    from copyjob_dagster.config.loading import load_job
    from copyjob_dagster.engine import copy_table

    trace: list[tuple[int, int]] = []

    def progress(rows: int, _total: int | None, _seconds: float) -> None:
        if rows >= TRACE_ROWS * (len(trace) + 1):
            trace.append((rows, _resident_mb()))

    job = load_job(Path(job_file))
    copy_table(job, job.tables[0], progress=progress)
    Path(job_file).with_suffix(".rss.json").write_text(json.dumps(trace))


def _resident_mb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--parts", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--prefix", default="cjbench")
    parser.add_argument("--pairings", default=",".join(PAIRINGS))
    args = parser.parse_args()
    settings = Settings.from_environment(args.rows, args.prefix, BENCH_DIR / ".work" / "split")
    Path(settings.workdir).mkdir(parents=True, exist_ok=True)
    _prepare(settings)
    pairings = args.pairings.split(",")
    jobs = _write_jobs(settings, args.parts, pairings)

    runs: dict[str, list[Sample]] = {name: [] for name in jobs}
    loads: dict[str, list[str]] = {name: [] for name in jobs}
    for round_number in range(1, args.repeat + 1):
        for name, job_file in jobs.items():
            if name.startswith("memory") and round_number > 1:
                continue
            before = _load()
            child = [sys.executable, str(BENCH_DIR / "child.py"), "split:copy_file"]
            sample = run_retried(
                [*child, settings.to_json(), str(job_file)],
                _environment(),
                timeout=3600,
                reports_time=True,
            )
            sample.rows = _count(settings, name)
            runs[name].append(sample)
            loads[name].append(f"{before} → {_load()}")
            print(
                f"round {round_number} {name}: {sample.copy_seconds:.1f} s, "
                f"{sample.peak_rss / 2**20:.0f} MB, {sample.rows} rows, load {loads[name][-1]}",
                flush=True,
            )
    traces = {
        name: json.loads(path.with_suffix(".rss.json").read_text())
        for name, path in jobs.items()
        if name.startswith("memory") and name.endswith(" orders")
    }
    report = _report(settings, args.parts, pairings, runs, loads, traces)
    print(report)
    results = BENCH_DIR / "results" / "split.md"
    results.write_text(report)
    print(f"written to {results}")


def _prepare(settings: Settings) -> None:
    """The source data set (`run.py`'s, reused when it is there) and empty destinations."""
    with pg_connect(settings, "postgres") as conn:
        existing = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
        for database in (settings.pg_source_db, _pg_destination(settings)):
            if database not in existing:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    with pg_connect(settings, settings.pg_source_db) as conn:
        if _pg_marker(conn) != _marker(settings):
            _build_pg_source(conn, settings)
    with my_connect(settings) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{_my_destination(settings)}`")


def _write_jobs(settings: Settings, parts: int, pairings: list[str]) -> dict[str, Path]:
    """One job file per way: a pairing single-stream and split, and the memory runs."""
    folder = Path(settings.workdir) / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    source = {"url": settings.pg_sqlalchemy(settings.pg_source_db)}
    lake = str(Path(settings.workdir) / "lake")
    destinations = {
        "pg-parquet": {"url": lake},
        "pg-mariadb": {"url": settings.my_sqlalchemy(_my_destination(settings))},
        "pg-pg-arrow": {"url": settings.pg_sqlalchemy(_pg_destination(settings))},
    }
    destinations["pg-pg-passthrough"] = destinations["pg-pg-arrow"]
    split = {"parts": parts, "column": "id"}  # the data set's table has no key, only an index
    ways: dict[str, tuple[str, str, dict | None]] = {}
    for pairing in pairings:
        ways[f"{pairing} single"] = (pairing, "orders", None)
        ways[f"{pairing} split"] = (pairing, "orders", split)
    if "pg-pg-arrow" in pairings:  # what the Arrow path, split or not, competes with
        ways["pg-pg passthrough"] = ("pg-pg-passthrough", "orders", None)
    for variant in ("single", "split"):
        for table in ("orders_small", "orders"):
            ways[f"memory {variant} {table}"] = (
                "pg-parquet",
                table,
                split if variant == "split" else None,
            )
    jobs = {}
    for name, (pairing, table, table_split) in ways.items():
        entry: dict = {"name": table, "to": "orders_split"}
        if table_split:
            entry["split"] = table_split
        job = {
            "name": name.replace(" ", "_").replace("-", "_"),
            "source": source,
            "destination": destinations[pairing],
            "tables": [entry],
        }
        if pairing == "pg-pg-arrow":
            job["audit_columns"] = True  # added columns take the Arrow path, not the passthrough
        path = folder / f"{job['name']}.yaml"
        path.write_text(yaml.safe_dump(job, sort_keys=False))
        jobs[name] = path
    return jobs


def _count(settings: Settings, name: str) -> int:
    if "parquet" in name or name.startswith("memory"):
        path = Path(settings.workdir) / "lake" / "orders_split.parquet"
        return pq.ParquetFile(path).metadata.num_rows
    if "mariadb" in name:
        with my_connect(settings, _my_destination(settings)) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM orders_split")
            return cur.fetchone()[0]
    with pg_connect(settings, _pg_destination(settings)) as conn:
        return conn.execute("SELECT count(*) FROM orders_split").fetchone()[0]


def _report(
    settings: Settings,
    parts: int,
    pairings: list[str],
    runs: dict[str, list[Sample]],
    loads: dict[str, list[str]],
    traces: dict[str, list[tuple[int, int]]],
) -> str:
    def seconds(name: str) -> float:
        return statistics.median(s.copy_seconds for s in runs[name])

    def rss(name: str) -> float:
        return max(s.peak_rss for s in runs[name]) / 2**20

    def rows(name: str) -> str:
        return ", ".join(f"{n:,}" for n in sorted({s.rows for s in runs[name]}))

    lines = [
        f"# Split copies: {settings.rows:,} rows, {parts} parts, {os.cpu_count()} CPUs",
        "",
        "Median wall time of `copy_table` per way (each in a process of its own); load "
        "averages (1 min) before → after each run.",
        "",
        "| pairing | single s | split s | speed-up | rows copied | peak RSS single / split MB "
        "| load averages single | load averages split |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for pairing in pairings:
        single, split = f"{pairing} single", f"{pairing} split"
        lines.append(
            f"| {PAIRINGS[pairing]} | {seconds(single):.1f} | {seconds(split):.1f} "
            f"| {seconds(single) / seconds(split):.2f}× | {rows(split)} "
            f"| {rss(single):.0f} / {rss(split):.0f} | {'; '.join(loads[single])} "
            f"| {'; '.join(loads[split])} |"
        )
    if "pg-pg passthrough" in runs:
        lines += [
            "",
            f"PostgreSQL → PostgreSQL through the binary passthrough (a single stream, what "
            f"such a copy takes unless columns change on the way): "
            f"{seconds('pg-pg passthrough'):.1f} s, {rows('pg-pg passthrough')} rows, "
            f"load averages {'; '.join(loads['pg-pg passthrough'])}.",
        ]
    lines += [
        "",
        "Peak RSS (whole process) of PostgreSQL → Parquet as the table grows tenfold:",
        "",
        "| way | orders_small MB | orders MB | ratio | load averages |",
        "|---|---|---|---|---|",
    ]
    for variant in ("single", "split"):
        small, large = f"memory {variant} orders_small", f"memory {variant} orders"
        lines.append(
            f"| {variant} | {rss(small):.0f} | {rss(large):.0f} | {rss(large) / rss(small):.2f} "
            f"| {'; '.join(loads[small] + loads[large])} |"
        )
    lines += ["", f"Resident set (MB) during the copy of `orders`, every {TRACE_ROWS:,} rows:", ""]
    for name, trace in traces.items():
        lines.append(f"- {name.split()[1]}: " + ", ".join(f"{mb}" for _, mb in trace))
    return "\n".join(lines) + "\n"


def _pg_destination(settings: Settings) -> str:
    return f"{settings.prefix}_split_dst"


def _my_destination(settings: Settings) -> str:
    return f"{settings.prefix}_split"


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def _environment() -> dict[str, str]:
    root = str(BENCH_DIR.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH_DIR), root])}


if __name__ == "__main__":
    main()
