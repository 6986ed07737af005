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
waited for: on a shared machine a steadier ratio than wall time), the peak memory of the
process tree (the larger of the summed resident sets, sampled every 10 ms, and the largest
single process's own high-water mark, VmHWM), and the load average before and after. The
work of many tables runs `--repeat` rounds (copyjob and Sling in turns, the median printed);
the one-table run and the import run `--one-repeat` rounds in turns. The destinations are
checked: every table of every tool holds every row (PostgreSQL: the same rows as the source,
by an order-independent checksum; SQLite and Parquet: counted). The issue's goals follow the
table, each with its verdict. Sling comes from benchmarks/.peers, installed as `run.py`
installs it (`peers.ensure()`). Writes the table to benchmarks/results/many-vs-sling.md (or
`--out`), with the commit measured; every database and folder it made is dropped.

    .venv/bin/python benchmarks/many_vs_sling.py                # 200 tables × 1,000 rows
    .venv/bin/python benchmarks/many_vs_sling.py --tables 20    # a quick look
"""

import argparse
import functools
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402 - benchmarks/ is not a package
from many_tables import PROJECT, _fill, _loadavg, scratch_databases  # noqa: E402
from measure import _tree as process_tree  # noqa: E402
from ways import SLING  # noqa: E402

COPYJOB = Path(sys.executable).parent / "copyjob"
RESULTS = PROJECT / "benchmarks" / "results" / "many-vs-sling.md"
SAMPLE_SECONDS = 0.01
COPYJOB_TOOL, SLING_TOOL, IMPORT_TOOL = "copyjob run", "Sling 1.4.11", "python -c"
FULL_SCHEMAS = {COPYJOB_TOOL: "copyjob", SLING_TOOL: "sling"}  # where each full run writes


@dataclass
class Measured:
    work: str
    tool: str
    seconds: float
    cpu_seconds: float  # user + system of the process and the children it waited for
    peak_mib: float
    load_before: str
    load_after: str
    runs: int = 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=200)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=None, help="max_parallel_tables")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of the many-table runs (median)"
    )
    parser.add_argument(
        "--one-repeat", type=int, default=5, help="rounds of the one-table run and the import"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    _commit()  # now, before the code can change under a long run
    peers.ensure()
    with scratch_databases("cj_many") as (source, target):
        _fill(source, args.tables, args.rows)
        with sa.create_engine(target).begin() as conn:
            conn.execute(sa.text("CREATE SCHEMA copyjob; CREATE SCHEMA sling"))
        with tempfile.TemporaryDirectory(prefix="copyjob_vs_sling_") as scratch:
            rows = _measure_all(Path(scratch), source, target, args)
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
    copyjob_full = (COPYJOB_TOOL, [*copyjob, "full_pg"], env)
    sling_full = (SLING_TOOL, [str(SLING), "run", "-r", str(full)], sling_env)
    rows = _rounds(work_full, [copyjob_full, sling_full], args.repeat,
                   before=lambda tool: _fresh_schemas(target, (FULL_SCHEMAS[tool],)))  # fmt: skip
    _check_pg(source, target, "copyjob", tables)
    _check_pg(source, target, "sling", tables)
    _timed("initial", "copyjob", [*copyjob, "inc_pg"], env)
    _timed("initial", "sling", [str(SLING), "run", "-r", str(inc)], sling_env)
    rows += _rounds(
        work_noop,
        [(COPYJOB_TOOL, [*copyjob, "inc_pg"], env),
         (SLING_TOOL, [str(SLING), "run", "-r", str(inc)], sling_env)],
        args.repeat,
    )  # fmt: skip
    _check_pg(source, target, "copyjob_inc", tables)
    _check_pg(source, target, "sling_inc", tables)
    work_one = f"1 table × {args.rows:,} rows PG → PG, full, against the import"
    imports = [sys.executable, "-c", "import dagster, copyjob_dagster.definitions"]
    rows += _rounds(
        work_one,
        [(COPYJOB_TOOL, [*copyjob, "one"], env), (IMPORT_TOOL, imports, env)],
        args.one_repeat,
    )
    for job, into in (("to_sqlite", "one SQLite file"), ("to_parquet", "a Parquet folder")):
        rows += _rounds(f"{n} tables into {into}", [(COPYJOB_TOOL, [*copyjob, job], env)], 1)
    _check_files(root, tables, args.rows)
    return rows


def _rounds(work: str, tools: list, repeat: int, before=None) -> list[Measured]:
    """Each tool `repeat` times, in turns (ABBA), and the median of each; `before(tool)` runs
    before each run."""
    runs: dict[str, list[Measured]] = {tool: [] for tool, _, _ in tools}
    for round_ in range(repeat):
        for tool, argv, env in tools if round_ % 2 == 0 else tools[::-1]:
            if before is not None:
                before(tool)
            print(f"{work}: {tool}, round {round_ + 1}/{repeat} ...", flush=True)
            runs[tool].append(_timed(work, tool, argv, env))
            print(f"    {runs[tool][-1].seconds:.2f} s, {runs[tool][-1].peak_mib:.0f} MiB",
                  flush=True)  # fmt: skip
    return [_median(found, work, tool, len(found)) for tool, found in runs.items()]


def _fresh_schemas(target: sa.URL, schemas: tuple[str, ...]) -> None:
    """Each full run copies into empty schemas, as the first did."""
    engine = sa.create_engine(target)
    with engine.begin() as conn:
        for schema in schemas:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"))
    engine.dispose()


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
    """The peak memory of the process tree, in KiB: the larger of the largest sum of resident
    sets seen (every SAMPLE_SECONDS) and the largest single process's high-water mark (VmHWM,
    which catches a peak between two samples)."""
    high_water: dict[int, int] = {}
    while not stop.is_set():
        total = 0
        for pid, rss, hwm in process_tree(root):
            total += rss
            high_water[pid] = max(high_water.get(pid, 0), hwm)
        peak[0] = max(peak[0], total // 1024, max(high_water.values(), default=0) // 1024)
        stop.wait(SAMPLE_SECONDS)


def _median(runs: list[Measured], work: str, tool: str, count: int) -> Measured:
    """The median times, the largest peak, the first load before and the last after."""
    return Measured(
        work, tool, round(statistics.median(m.seconds for m in runs), 2),
        round(statistics.median(m.cpu_seconds for m in runs), 2), max(m.peak_mib for m in runs),
        runs[0].load_before, runs[-1].load_after, count,
    )  # fmt: skip


def _check_pg(source: sa.URL, target: sa.URL, schema: str, tables: list[str]) -> None:
    """Every table in `schema` holds the source's rows: the same count, and the same sum of a
    hash of each row's text (order-independent; the four columns the source has)."""
    row = "md5(concat_ws('|', id, name, amount::numeric(12, 2), extract(epoch FROM updated_at)))"
    query = "SELECT count(*), coalesce(sum(('x' || substr({row}, 1, 15))::bit(60)::bigint), 0)"
    found: dict[str, list] = {}
    for url, where in ((source, "public"), (target, schema)):
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            for table in tables:
                text = query.format(row=row) + f' FROM {where}."{table}"'
                found.setdefault(table, []).append(tuple(conn.execute(sa.text(text)).one()))
        engine.dispose()
    wrong = [t for t, (expected, copied) in found.items() if expected != copied]
    if wrong:
        raise SystemExit(f"{schema}: {len(wrong)} table(s) differ from the source: {wrong[:5]}")


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
        f"Machine: {os.cpu_count()} cores, shared with other engineers' work (see the load "
        f"averages: absolute times vary with it, the ratios of runs in turns are what "
        f"compares); `uname -r` {os.uname().release}; commit measured: {_commit()}. One "
        f"invocation of `{' '.join(['benchmarks/many_vs_sling.py', *sys.argv[1:]])}`; load "
        "average (1, 5, 15 min) before the first and after the last run of each row. Times are "
        "medians of *runs* (tools in turns); peak memory is of the whole process tree, the "
        "largest of the runs.",
        "",
        "| work | tool | runs | seconds | ratio | CPU seconds | CPU ratio | peak memory of the "
        "process tree (MiB) | load before | load after |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for work, tools in by_work.items():
        reference = tools.get(SLING_TOOL) or tools.get(IMPORT_TOOL)
        for row in tools.values():
            ratio = f"{row.seconds / reference.seconds:.2f}×" if reference else ""
            cpu = f"{row.cpu_seconds / reference.cpu_seconds:.2f}×" if reference else ""
            lines.append(
                f"| {work} | {row.tool} | {row.runs} | {row.seconds:.2f} | {ratio} | "
                f"{row.cpu_seconds:.2f} | {cpu} | {row.peak_mib:.0f} | {row.load_before} | "
                f"{row.load_after} |"
            )
    return "\n".join([*lines, "", *_goals(list(by_work.values()), args)]) + "\n"


def _goals(works: list[dict[str, Measured]], args: argparse.Namespace) -> list[str]:
    """Issue 16's goals, in the order of the works measured."""
    full, noop, one, sqlite, parquet = works

    def ratio(tools: dict[str, Measured], reference: str) -> float:
        return tools[COPYJOB_TOOL].seconds / tools[reference].seconds

    def verdict(met: bool) -> str:
        return "met" if met else "NOT met"

    n = args.tables
    lines = ["## Goals (issue 16), as measured", ""]
    for label, tools, reference, limit in (
        (f"{n} tables, full, against Sling's replication", full, SLING_TOOL, 1.0),
        (f"{n} tables, no-op incremental, against Sling's", noop, SLING_TOOL, 1.0),
        ("1 table through `copyjob run` against the import alone", one, IMPORT_TOOL, 1.5),
    ):
        found = ratio(tools, reference)
        lines.append(f"- {label}: {found:.2f}× (≤ {limit}×) → {verdict(found <= limit)}")
    lines.append(
        f"- {n} tables into one SQLite file and into a Parquet folder: every row there "
        f"({sqlite[COPYJOB_TOOL].seconds:.2f} s and {parquet[COPYJOB_TOOL].seconds:.2f} s) → met"
    )
    peak = full[COPYJOB_TOOL].peak_mib
    lines.append(
        f"- peak memory of the whole process tree, {n}-table full run: {peak:.0f} MiB "
        f"(< 500 MB = 477 MiB) → {verdict(peak * 2**20 < 500e6)}"
    )
    return lines


@functools.cache
def _commit() -> str:
    """The commit the run started at (main calls it first)."""

    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=PROJECT, capture_output=True, text=True).stdout

    dirty = git("status", "--porcelain", "--", "src", "benchmarks", ":(exclude)benchmarks/results")
    head = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    return head + (" (with uncommitted changes)" if dirty.strip() else "")


if __name__ == "__main__":
    main()
