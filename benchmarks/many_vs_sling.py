"""Many small tables, copyjob against Sling: issue 16's goals, side by side in one invocation.

Builds a scratch source database of `--tables` tables × `--rows` rows on the PostgreSQL server
of COPYJOB_TEST_PG_URL, and a scratch destination database on the same server, then measures:

- PostgreSQL → PostgreSQL, full: `copyjob run` (schema `copyjob`) and Sling 1.4.11's
  replication of the same streams (`sling run -r`, schema `sling`, mode full-refresh);
- the same tables again with nothing changed, incrementally (`updated_at`, key `id`): both
  tools load once, and the second, no-op run is timed;
- one table of `--rows` rows through `copyjob run`, against `python -c "import dagster,
  copyjob_dagster.definitions"` (median of 3 each);
- the tables into one SQLite file, and into a Parquet folder, every row checked.

For each run: wall seconds, CPU seconds (user and system, of the tool and the processes it
waited for: on a shared machine a steadier ratio than wall time), the peak of the summed
resident memory of the process tree (sampled every 0.1 s), and the load average before and
after. Sling comes from
benchmarks/.peers, installed as `run.py` installs it (`peers.ensure()`). Writes the table to
benchmarks/results/many-tables.md (or `--out`); every database and folder it made is dropped.

    .venv/bin/python benchmarks/many_vs_sling.py                # 200 tables × 1,000 rows
    .venv/bin/python benchmarks/many_vs_sling.py --tables 20    # a quick look
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402 - benchmarks/ is not a package
from many_tables import PG_URL, PROJECT, _fill, _loadavg, _tree  # noqa: E402
from ways import SLING  # noqa: E402

COPYJOB = Path(sys.executable).parent / "copyjob"
RESULTS = PROJECT / "benchmarks" / "results" / "many-tables.md"


@dataclass
class Measured:
    work: str
    tool: str
    seconds: float
    cpu_seconds: float  # user + system of the process and the children it waited for
    peak_mib: float
    load_before: str
    load_after: str


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=200)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=None, help="max_parallel_tables")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    peers.ensure()
    tag = uuid.uuid4().hex[:8]
    source_db, target_db = f"cj_many_src_{tag}", f"cj_many_dst_{tag}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for database in (source_db, target_db):
            conn.execute(sa.text(f"CREATE DATABASE {database}"))
    try:
        source = sa.engine.make_url(PG_URL).set(database=source_db)
        target = sa.engine.make_url(PG_URL).set(database=target_db)
        _fill(source, args.tables, args.rows)
        with sa.create_engine(target).begin() as conn:
            conn.execute(sa.text("CREATE SCHEMA copyjob; CREATE SCHEMA sling"))
        with tempfile.TemporaryDirectory(prefix="copyjob_vs_sling_") as scratch:
            rows = _measure_all(Path(scratch), source, target, args)
    finally:
        with admin.connect() as conn:
            for database in (source_db, target_db):
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        admin.dispose()
    text = _table(rows, args)
    print(text)
    args.out.write_text(text)


def _measure_all(root: Path, source: sa.URL, target: sa.URL, args: argparse.Namespace) -> list:
    tables = [f"t{i:03d}" for i in range(args.tables)]
    n = len(tables)
    home = root / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT / "dagster.yaml").read_text())
    jobs = root / "jobs"
    jobs.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "COPYJOB_JOBS_DIR": str(jobs)}
    src, dst = _plain(source), _plain(target)
    parallel = f"max_parallel_tables: {args.parallel}\n" if args.parallel else ""
    listed = "".join(f"  - name: {t}\n" for t in tables)
    incremental = "".join(
        f"  - {{name: {t}, incremental_column: updated_at, primary_key: [id]}}\n" for t in tables
    )
    for name, destination, mode, listing in (
        ("full_pg", f"{{url: '{dst}', schema: copyjob}}", "full", listed),
        ("inc_pg", f"{{url: '{dst}', schema: copyjob_inc}}", "incremental", incremental),
        ("one", f"{{url: '{dst}', schema: copyjob_one}}", "full", f"  - name: {tables[0]}\n"),
        ("to_sqlite", f"{{url: 'sqlite:///{root / 'one.sqlite'}'}}", "full", listed),
        ("to_parquet", f"{{url: '{root / 'lake'}'}}", "full", listed),
    ):
        (jobs / f"{name}.yaml").write_text(
            f"name: {name}\nsource: {{url: '{src}'}}\ndestination: {destination}\n"
            f"mode: {mode}\n{parallel}tables:\n{listing}"
        )
    with sa.create_engine(target).begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA copyjob_inc; CREATE SCHEMA copyjob_one"))
    copyjob = [str(COPYJOB), "run"]
    sling_env = {
        **os.environ,
        "SRC_PG": f"{src.replace('postgresql+psycopg', 'postgresql')}?sslmode=disable",
        "DST_PG": f"{dst.replace('postgresql+psycopg', 'postgresql')}?sslmode=disable",
        "SLING_HOME_DIR": str(root / "sling"),
        "SLING_DISABLE_TELEMETRY": "true",
    }
    full = _replication(root / "full.yaml", tables, "mode: full-refresh", "sling")
    inc = _replication(
        root / "inc.yaml",
        tables,
        "mode: incremental\n  primary_key: [id]\n  update_key: updated_at",
        "sling_inc",
    )
    with sa.create_engine(target).begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA sling_inc"))
    work_full = f"{n} tables × {args.rows:,} rows PG → PG, full"
    work_noop = f"the same {n} tables, no-op incremental"
    rows = [
        _timed(work_full, "copyjob run", [*copyjob, "full_pg"], env),
        _timed(work_full, "Sling 1.4.11", [str(SLING), "run", "-r", str(full)], sling_env),
    ]
    _timed("initial", "copyjob", [*copyjob, "inc_pg"], env)
    _timed("initial", "sling", [str(SLING), "run", "-r", str(inc)], sling_env)
    rows += [
        _timed(work_noop, "copyjob run", [*copyjob, "inc_pg"], env),
        _timed(work_noop, "Sling 1.4.11", [str(SLING), "run", "-r", str(inc)], sling_env),
    ]
    _check_pg(target, "copyjob", tables, args.rows)
    _check_pg(target, "sling", tables, args.rows)
    one = [_timed("", "", [*copyjob, "one"], env) for _ in range(3)]
    imports = [
        _timed("", "", [sys.executable, "-c", "import dagster, copyjob_dagster.definitions"], env)
        for _ in range(3)
    ]
    work_one = f"1 table × {args.rows:,} rows PG → PG, full (median of 3), against the import"
    rows += [
        _median(one, work_one, "copyjob run"),
        _median(imports, work_one, "python -c"),
    ]
    for job, into in (("to_sqlite", "one SQLite file"), ("to_parquet", "a Parquet folder")):
        rows.append(_timed(f"{n} tables into {into}", "copyjob run", [*copyjob, job], env))
    _check_files(root, tables, args.rows)
    return rows


def _plain(url: sa.URL) -> str:
    return url.render_as_string(hide_password=False)


def _replication(path: Path, tables: list[str], defaults: str, schema: str) -> Path:
    streams = "".join(f"  public.{t}:\n" for t in tables)
    path.write_text(
        f"source: SRC_PG\ntarget: DST_PG\ndefaults:\n  {defaults}\n  object: "
        f"{schema}.{{stream_table}}\nstreams:\n{streams}"
    )
    return path


def _timed(work: str, tool: str, argv: list[str], env: dict[str, str]) -> Measured:
    peak = [0]
    stop = threading.Event()
    load = _loadavg()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    process = subprocess.Popen(
        argv, cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    sampler = threading.Thread(target=_sample, args=(process.pid, peak, stop))
    sampler.start()
    output, _ = process.communicate()
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stop.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{output[-3000:]}")
    return Measured(
        work, tool, round(seconds, 2), round(cpu, 2), round(peak[0] / 1024, 1), load, _loadavg()
    )


def _sample(root: int, peak: list[int], stop: threading.Event) -> None:
    """The largest sum of resident memory (VmRSS) over the process tree seen."""
    while not stop.is_set():
        total = 0
        for pid in _tree(root):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                continue
        peak[0] = max(peak[0], total)
        stop.wait(0.1)


def _median(runs: list[Measured], work: str, tool: str) -> Measured:
    middle = sorted(runs, key=lambda m: m.seconds)[len(runs) // 2]
    return Measured(
        work, tool, round(statistics.median(m.seconds for m in runs), 2),
        round(statistics.median(m.cpu_seconds for m in runs), 2), middle.peak_mib,
        runs[0].load_before, runs[-1].load_after,
    )  # fmt: skip


def _check_pg(target: sa.URL, schema: str, tables: list[str], rows: int) -> None:
    with sa.create_engine(target).connect() as conn:
        for table in tables:
            found = conn.execute(sa.text(f'SELECT count(*) FROM {schema}."{table}"')).scalar_one()
            if found != rows:
                raise SystemExit(f"{schema}.{table}: {found} rows, not {rows}")


def _check_files(root: Path, tables: list[str], rows: int) -> None:
    import sqlite3

    with sqlite3.connect(root / "one.sqlite") as db:
        for table in tables:
            found = db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            if found != rows:
                raise SystemExit(f"one.sqlite {table}: {found} rows, not {rows}")
    for table in tables:
        found = pq.ParquetFile(root / "lake" / f"{table}.parquet").metadata.num_rows
        if found != rows:
            raise SystemExit(f"lake/{table}.parquet: {found} rows, not {rows}")


def _table(rows: list[Measured], args: argparse.Namespace) -> str:
    by_work: dict[str, dict[str, Measured]] = {}
    for row in rows:
        by_work.setdefault(row.work, {})[row.tool] = row
    lines = [
        f"# Many tables: copyjob against Sling 1.4.11 ({args.tables} tables × {args.rows:,} rows)",
        "",
        f"Machine: {os.cpu_count()} cores; `uname -r` {os.uname().release}. One invocation of "
        "`benchmarks/many_vs_sling.py`; load average (1, 5, 15 min) before and after each run.",
        "",
        "| work | tool | seconds | ratio | CPU seconds | CPU ratio | peak RSS of the process "
        "tree (MiB) | load before | load after |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for work, tools in by_work.items():
        reference = tools.get("Sling 1.4.11") or tools.get("python -c")
        for row in tools.values():
            ratio = f"{row.seconds / reference.seconds:.2f}×" if reference else ""
            cpu = f"{row.cpu_seconds / reference.cpu_seconds:.2f}×" if reference else ""
            lines.append(
                f"| {work} | {row.tool} | {row.seconds:.2f} | {ratio} | {row.cpu_seconds:.2f} | "
                f"{cpu} | {row.peak_mib:.0f} | {row.load_before} | {row.load_after} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
