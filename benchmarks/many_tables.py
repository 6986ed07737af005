"""Load test: one copy job of many small PostgreSQL tables, run through `copyjob run`.

It makes a scratch source database of `--tables` tables (`--rows` rows each) on the PostgreSQL
server of COPYJOB_TEST_PG_URL, a job that copies them all into a Parquet folder with
`max_parallel_tables: --parallel`, and runs it twice on a fresh Dagster instance each time:
with `source: max_connections: --limit`, then without a source limit. For each run it prints
the wall time; the peak memory (VmHWM) of the `copyjob run` process, of the step processes
below it (one per table, forked by the multiprocess executor's forkserver) and of Dagster's
helper processes (the forkserver, a `tail` per step that captures its output); each step's peak
proportional set size (PSS: its resident pages, the ones it shares with the forkserver divided
among their sharers, which is what a step costs the machine); the load average at the start
and the end; and the most source connections open at once,
sampled every 0.1 s from `pg_stat_activity`: copyjob's connections (`application_name`
'copyjob') to the scratch source database. Everything it made is dropped at the end.

    .venv/bin/python benchmarks/many_tables.py                 # 200 tables, 8 at once, limit 2
    .venv/bin/python benchmarks/many_tables.py --tables 20     # a quick look
    .venv/bin/python benchmarks/many_tables.py --instance postgres   # the instance on PostgreSQL

Not part of the test suite: on a 2-core machine each run of 200 tables takes minutes, as each
table is a step in its own process (Dagster's multiprocess executor).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import sqlalchemy as sa

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT / "tests"))  # the tests' PostgreSQL-backed instance helper

PG_URL = os.environ.get("COPYJOB_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
COPYJOB = Path(sys.executable).parent / "copyjob"
SAMPLE_SECONDS = 0.1


@dataclass
class Sample:
    """What the samplers saw during one run."""

    connections: list[int] = field(default_factory=list)
    peak_kib: dict[int, int] = field(default_factory=dict)  # pid -> VmHWM
    peak_pss_kib: dict[int, int] = field(default_factory=dict)  # step pid -> largest Pss seen
    kinds: dict[int, str] = field(default_factory=dict)  # pid -> "step" | "helper"


@dataclass
class Figures:
    label: str
    tables: int
    seconds: float
    most_source_connections: int
    mean_source_connections: float
    copyjob_run_peak_mib: float
    step_processes_seen: int
    step_peak_mib_median: float
    step_peak_mib_max: float
    step_pss_mib_median: float
    step_pss_mib_max: float
    helper_processes_seen: int
    helper_peak_mib_max: float
    load_average_start: str
    load_average_end: str


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=200)
    parser.add_argument("--rows", type=int, default=1000, help="rows per table")
    parser.add_argument("--parallel", type=int, default=8, help="max_parallel_tables")
    parser.add_argument("--limit", type=int, default=2, help="source max_connections")
    parser.add_argument("--instance", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    source_db = f"cj_bench_src_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {source_db}"))
    try:
        source_url = sa.engine.make_url(PG_URL).set(database=source_db)
        _fill(source_url, args.tables, args.rows)
        results = []
        for limit in (args.limit, None):
            results.append(_measure(source_url, args, limit))
            print(json.dumps(asdict(results[-1])), flush=True)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {source_db} WITH (FORCE)"))
        admin.dispose()
        from conftest import drop_instance_databases

        drop_instance_databases()
    if args.json:
        args.json.write_text(json.dumps([asdict(f) for f in results], indent=2))


@contextmanager
def scratch_databases(prefix: str) -> Iterator[tuple[sa.URL, sa.URL]]:
    """A source and a target database of their own on PG_URL's server, dropped at the end."""
    tag = uuid.uuid4().hex[:8]
    names = (f"{prefix}_src_{tag}", f"{prefix}_dst_{tag}")
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for database in names:
            conn.execute(sa.text(f"CREATE DATABASE {database}"))
    try:
        url = sa.engine.make_url(PG_URL)
        yield url.set(database=names[0]), url.set(database=names[1])
    finally:
        with admin.connect() as conn:
            for database in names:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        admin.dispose()


def _fill(url: sa.URL, tables: int, rows: int) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for i in range(tables):
            conn.execute(
                sa.text(
                    f"CREATE TABLE t{i:03d} (id integer PRIMARY KEY, name text, amount "
                    f"numeric(12, 2), updated_at timestamptz);"
                    f"INSERT INTO t{i:03d} SELECT g, 'name ' || g, g * 1.5, "
                    f"timestamptz '2024-01-01' + g * interval '1 minute' "
                    f"FROM generate_series(1, {rows}) g"
                )
            )
    engine.dispose()


def _measure(source_url: sa.URL, args: argparse.Namespace, limit: int | None) -> Figures:
    url = source_url
    label = f"max_connections {limit}" if limit else "no source limit"
    with tempfile.TemporaryDirectory(prefix="copyjob_many_") as scratch:
        root = Path(scratch)
        jobs = root / "jobs"
        jobs.mkdir()
        limit_line = f"  max_connections: {limit}\n" if limit else ""
        tables = "".join(f"  - name: t{i:03d}\n" for i in range(args.tables))
        (jobs / "many.yaml").write_text(
            f"name: many\nsource:\n  url: '{url.render_as_string(hide_password=False)}'\n"
            f"{limit_line}destination: {{url: '{root / 'lake'}'}}\n"
            f"max_parallel_tables: {args.parallel}\n"
            # Other tests on a shared server may cut copyjob's sessions; a lost connection is
            # transient, and retried as in production.
            f"retries: {{max_retries: 3, delay_seconds: 1}}\ntables:\n{tables}"
        )
        home = _dagster_home(root / "home", args.instance)
        env = {**os.environ, "DAGSTER_HOME": str(home), "COPYJOB_JOBS_DIR": str(jobs)}
        sample = Sample()
        stop = threading.Event()
        load_start = _loadavg()
        started = time.monotonic()
        process = subprocess.Popen(
            [str(COPYJOB), "run", "many"],
            cwd=PROJECT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        samplers = [
            threading.Thread(target=_sample_connections, args=(url.database, sample, stop)),
            threading.Thread(target=_sample_memory, args=(process.pid, sample, stop)),
        ]
        for thread in samplers:
            thread.start()
        _, stderr = process.communicate()
        seconds = time.monotonic() - started
        stop.set()
        for thread in samplers:
            thread.join()
        if process.returncode != 0:
            raise SystemExit(f"{label}: copyjob run failed:\n{stderr[-3000:]}")
        copied = len(list((root / "lake").glob("*.parquet")))
        if copied != args.tables:
            raise SystemExit(f"{label}: {copied} of {args.tables} tables copied")
    steps = _peaks_mib(sample, "step")
    pss = [kib / 1024 for kib in sample.peak_pss_kib.values()]
    helpers = _peaks_mib(sample, "helper")
    return Figures(
        label=label,
        tables=args.tables,
        seconds=round(seconds, 1),
        most_source_connections=max(sample.connections, default=0),
        mean_source_connections=round(statistics.fmean(sample.connections or [0]), 2),
        copyjob_run_peak_mib=round(sample.peak_kib.get(process.pid, 0) / 1024, 1),
        step_processes_seen=len(steps),
        step_peak_mib_median=round(statistics.median(steps or [0]), 1),
        step_peak_mib_max=round(max(steps, default=0), 1),
        step_pss_mib_median=round(statistics.median(pss or [0]), 1),
        step_pss_mib_max=round(max(pss, default=0), 1),
        helper_processes_seen=len(helpers),
        helper_peak_mib_max=round(max(helpers, default=0), 1),
        load_average_start=load_start,
        load_average_end=_loadavg(),
    )


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (the command's process tree, to its exit) of one command run from
    the project's folder; a failure stops the benchmark with the command's last output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(argv, cwd=PROJECT, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _peaks_mib(sample: Sample, kind: str) -> list[float]:
    return [sample.peak_kib[pid] / 1024 for pid, k in sample.kinds.items() if k == kind]


def _dagster_home(folder: Path, storage: str) -> Path:
    from conftest import make_dagster_home  # the tests' helper: SQLite, or deploy/ PostgreSQL

    return make_dagster_home(folder, storage)


def _sample_connections(database: str, sample: Sample, stop: threading.Event) -> None:
    engine = sa.create_engine(PG_URL)
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = 'copyjob' AND datname = :database"
    )
    with engine.connect() as conn:
        while not stop.is_set():
            sample.connections.append(conn.execute(query, {"database": database}).scalar_one())
            conn.rollback()
            stop.wait(SAMPLE_SECONDS)
    engine.dispose()


def _sample_memory(root_pid: int, sample: Sample, stop: threading.Event) -> None:
    """Peak resident memory (VmHWM) of `copyjob run` and of every process below it."""
    while not stop.is_set():
        for pid in _tree(root_pid):
            peak = _vm_hwm(pid)
            if peak is not None:
                sample.peak_kib[pid] = max(sample.peak_kib.get(pid, 0), peak)
                if pid != root_pid and pid not in sample.kinds:
                    sample.kinds[pid] = _kind(pid)
            pss = _pss(pid) if sample.kinds.get(pid) == "step" else None
            if pss is not None:
                sample.peak_pss_kib[pid] = max(sample.peak_pss_kib.get(pid, 0), pss)
        stop.wait(SAMPLE_SECONDS)


def _tree(root_pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _kind(pid: int) -> str:
    """A step's process (spawned, or forked by the forkserver, whose command line it keeps), or
    one of Dagster's helpers (the forkserver itself, the compute-log watchers it starts beside
    each step, multiprocessing's resource tracker)."""
    command = _command(pid)
    if "spawn_main" in command:
        return "step"
    if "forkserver" in command:
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return "helper"
        return "step" if "forkserver" in _command(parent) else "helper"
    return "helper"


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _pss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _vm_hwm(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


if __name__ == "__main__":
    main()
