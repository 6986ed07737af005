"""Fault injection: kill, cut and overlap incremental copies, then check nothing was lost.

Each case copies a table of many batches, changes the source between runs (new rows, rows tied
with the watermark, updates for merge), breaks one run (SIGKILL at a chosen point, a connection
cut, or a second run at the same time), reruns until success, and then checks the invariant of
../shared/RELIABILITY.md: the destination equals the source as of the recorded watermark (no
row lost, none duplicated, none different, none extra) and the watermark never went backwards.
"""

import itertools
import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.dataset as ds
import pytest
import sqlalchemy as sa
from conftest import make_dagster_home

from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs, latest_watermark
from copyjob_dagster.defs.metadata import watermark_from_metadata
from copyjob_dagster.engine import load_job

from .fault_runner import Runner

KEY = dg.AssetKey(["faults", "events"])
INITIAL_ROWS = 1500
BATCH_ROWS = 50
ROWS_PER_VALUE = 3  # several rows share each incremental value: ties are the norm


@dataclass
class Store:
    url: str
    schema: str | None = None

    @property
    def is_folder(self) -> bool:
        return "://" not in self.url

    def engine(self) -> sa.Engine:
        return sa.create_engine(self.url)

    def rows(self) -> list[tuple[int, str, int]]:
        return self._select(("id", "payload", "updated_at"))

    def versions(self) -> list[tuple[Any, ...]]:
        """SCD2 rows: id, payload, updated_at, valid_from, is_current."""
        return self._select(
            ("id", "payload", "updated_at", "_copyjob_valid_from", "_copyjob_is_current")
        )

    def _select(self, names: tuple[str, ...]) -> list[tuple[Any, ...]]:
        if self.is_folder:
            folder = Path(self.url) / "events"
            if not folder.exists():  # a full copy's one file, or nothing yet
                folder = folder.with_suffix(".parquet")
            if not folder.exists():
                return []
            table = ds.dataset(folder, format="parquet").to_table()
            columns = [table.column(c).to_pylist() for c in names]
            return list(zip(*columns, strict=True))
        engine = self.engine()
        try:
            if not sa.inspect(engine).has_table("events", schema=self.schema):
                return []
            table = sa.Table("events", sa.MetaData(), autoload_with=engine, schema=self.schema)
            with engine.connect() as conn:
                query = sa.select(*(table.c[name] for name in names))
                return [tuple(row) for row in conn.execute(query)]
        finally:
            engine.dispose()


class Case:
    """One source table, one destination, one Dagster instance, and the runs against them."""

    def __init__(
        self,
        tmp_path: Path,
        source: Store,
        destination: Store,
        write: str,
        split: str = "",
        mode: str = "incremental",
    ) -> None:
        self.source, self.destination, self.write = source, destination, write
        self.home = make_dagster_home(tmp_path / "dagster_home")
        self.job_file = tmp_path / "faults.yaml"
        table = f"incremental_column: updated_at, write: {write}," if mode == "incremental" else ""
        self.job_file.write_text(
            f"name: faults\nmode: {mode}\n"
            f"batch_rows: {BATCH_ROWS}\n"
            f"source: {{url: '{source.url}'"
            + (f", schema: {source.schema}" if source.schema else "")
            + "}\n"
            f"destination: {{url: '{destination.url}'"
            + (f", schema: {destination.schema}" if destination.schema else "")
            + "}\n"
            "tables:\n"
            f"  - {{name: events, {table} primary_key: [id]{split}}}\n"
        )
        self.job = load_job(self.job_file)
        self.next_id = 1
        self.next_value = 1
        self.backwards_seen = 0  # backwards steps of the recorded watermark counted so far
        self.started = 0
        self._create_source()

    def _create_source(self) -> None:
        engine = self.source.engine()
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":  # a writer beside a run's open snapshot
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            events = self._table()
            events.create(conn)
        engine.dispose()

    def _table(self) -> sa.Table:
        return sa.Table(
            "events",
            sa.MetaData(),
            sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("payload", sa.Text),
            sa.Column("updated_at", sa.BigInteger, index=True),
            schema=self.source.schema,
        )

    def insert(self, count: int, tie_with_last: bool = False) -> None:
        """New rows, three per incremental value; optionally first at the current maximum."""
        if tie_with_last:
            self.next_value -= 1
        rows = []
        for index in range(count):
            rows.append(
                {
                    "id": self.next_id,
                    "payload": f"v1 {self.next_id}",
                    "updated_at": self.next_value + index // ROWS_PER_VALUE,
                }
            )
            self.next_id += 1
        self.next_value += (count + ROWS_PER_VALUE - 1) // ROWS_PER_VALUE
        self._insert_rows(rows)

    def _insert_rows(self, rows: list[dict[str, Any]]) -> None:
        self._execute(sa.insert(self._table()), rows)

    def update(self, rng: random.Random, count: int) -> None:
        """Change rows and move them past the current maximum (merge copies must follow)."""
        self._update_rows(rng.sample(range(1, self.next_id), count), "v2")

    def _update_rows(self, keys: list[int], label: str) -> None:
        table = self._table()
        for key in keys:
            self._execute(
                sa.update(table)
                .where(table.c.id == key)
                .values(payload=f"{label} {key}", updated_at=self.next_value)
            )
        self.next_value += 1

    def _execute(self, statement: Any, rows: Any = None) -> None:
        engine = self.source.engine()
        with engine.begin() as conn:
            conn.execute(statement, rows) if rows is not None else conn.execute(statement)
        engine.dispose()

    def start(
        self, point: str = "none", nth: int = 0, slow: float = 0.0, hooks: tuple[str, ...] = ()
    ) -> Runner:
        """A run in a process of its own; `hooks` name test-only hooks (see hooks.py)."""
        self.started += 1
        errors = self.home.parent / f"run_{self.started}.stderr"
        return Runner(self.job_file, point, nth, slow, self.home, errors, hooks)

    def run_until_success(self, attempts: int = 3) -> None:
        assets = [*build_source_specs([self.job]), *build_copy_assets([self.job])]
        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            for _ in range(attempts):
                if dg.materialize(assets, instance=instance, raise_on_error=False).success:
                    return
        raise AssertionError(f"{attempts} reruns failed")

    def watermark(self) -> int | None:
        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            watermark = latest_watermark(instance, KEY)
        return int(watermark.text) if watermark else None

    def verify(self) -> dict[str, int]:
        """The invariant's counts after a successful run: lost, duplicates, mismatches, extra,
        regressions, and stale (no watermark, or one short of the source's maximum)."""
        watermark, rows = self.watermark_and_source()
        expected = {row[0]: row for row in rows if row[2] <= watermark}
        copied = self.destination.rows()
        keys = Counter(row[0] for row in copied)
        actual = {row[0]: row for row in copied}
        return {
            "lost": len(expected.keys() - actual.keys()),
            "duplicates": sum(n - 1 for n in keys.values()),
            "mismatches": sum(
                1 for k in expected.keys() & actual.keys() if expected[k] != actual[k]
            ),
            "extra": len(actual.keys() - expected.keys()),
            **self.watermark_counts(watermark, rows),
        }

    def watermark_and_source(self) -> tuple[int, list[tuple[int, str, int]]]:
        """The recorded watermark (-1 when there is none) and the source's rows. The source is
        still since the run, so its maximum now is the maximum at the run's snapshot."""
        watermark = self.watermark()
        rows = self.source.rows()
        assert rows, "the source is empty: the case would check nothing"
        return (-1 if watermark is None else watermark), rows

    def recorded_watermarks(self) -> list[int]:
        """Every watermark the table's materializations recorded, oldest first."""
        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            records = instance.fetch_materializations(KEY, limit=10_000, ascending=True).records
        recorded = (watermark_from_metadata(r.asset_materialization.metadata) for r in records)
        return [int(w.text) for w in recorded if w is not None]

    def watermark_counts(self, watermark: int, rows: list[tuple[Any, ...]]) -> dict[str, int]:
        """Regressions: each time a recorded watermark went below the one before it (a rerun
        after a backwards step would hide it from the latest value alone)."""
        history = self.recorded_watermarks()
        backwards = sum(1 for a, b in itertools.pairwise(history) if b < a)
        regressions, self.backwards_seen = backwards - self.backwards_seen, backwards
        return {"regressions": regressions, "stale": int(watermark != max(r[2] for r in rows))}


def _store_for(kind: str, tmp_path: Path, request: pytest.FixtureRequest, role: str) -> Store:
    if kind == "sqlite":
        return Store(f"sqlite:///{tmp_path / f'{role}.sqlite'}")
    if kind == "parquet":
        return Store(str(tmp_path / f"{role}_lake"))
    if kind == "postgres":
        schema_fixture = "pg_schema" if role == "destination" else "pg_source_schema"
        return Store(request.getfixturevalue("pg_server"), request.getfixturevalue(schema_fixture))
    if kind == "mariadb":
        return Store(request.getfixturevalue("mysql_url"))
    raise ValueError(kind)


def _make_case(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    source: str,
    destination: str,
    write: str,
    split: str = "",
    mode: str = "incremental",
) -> Case:
    return Case(
        tmp_path,
        _store_for(source, tmp_path, request, "source"),
        _store_for(destination, tmp_path, request, "destination"),
        write,
        split,
        mode,
    )


def _change_source(case: Case, rng: random.Random, round_number: int) -> None:
    """Round 0 fills the table; later rounds add rows (first tied with the maximum) and,
    for merge and scd2, update rows."""
    if round_number == 0:
        case.insert(INITIAL_ROWS)
        return
    case.insert(200, tie_with_last=True)
    if case.write in ("merge", "scd2"):
        case.update(rng, 50)


KILL_POINTS = ["batch", "commit", "after-commit", "mid-read"]
PAIRS = [
    ("postgres", "merge"),
    ("postgres", "append"),
    ("mariadb", "merge"),
    ("mariadb", "append"),
    ("sqlite", "merge"),
    ("parquet", "append"),
]
KILL_CASES = [(d, w, p) for d, w in PAIRS for p in KILL_POINTS]


@pytest.mark.parametrize(
    ("destination", "write", "point"), KILL_CASES, ids=[f"{d}-{w}-{p}" for d, w, p in KILL_CASES]
)
def test_sigkill_then_rerun(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    record_case: Any,
    destination: str,
    write: str,
    point: str,
) -> None:
    _kill_then_rerun(tmp_path, request, record_case, "sqlite", destination, write, point)


@pytest.mark.parametrize("point", ["batch"])
def test_sigkill_in_a_binary_copy_passthrough_then_rerun(
    tmp_path: Path, request: pytest.FixtureRequest, record_case: Any, point: str
) -> None:
    """PostgreSQL to PostgreSQL streams COPY bytes, not Arrow batches: killed mid-stream, the
    same invariant holds."""
    _kill_then_rerun(tmp_path, request, record_case, "postgres", "postgres", "merge", point)


def test_sigkill_in_a_split_copy_then_rerun(
    tmp_path: Path, request: pytest.FixtureRequest, record_case: Any
) -> None:
    """Killed while three parts stream into the one write: the destination still shows the last
    committed copy whole, never some parts alone, and the rerun loses and duplicates nothing."""
    rng = random.Random("split")
    case = _make_case(tmp_path, request, "postgres", "mariadb", "merge", ", split: {parts: 3}")
    outcomes = []
    try:
        for round_number in range(2):
            _change_source(case, rng, round_number)
            if round_number == 0:  # killed mid-way through the initial load's 30 batches
                process = case.start("batch", rng.randint(2, 20))
                assert process.wait(timeout=120) == -signal.SIGKILL, process.errors()
                assert case.destination.rows() == []
            case.run_until_success()
            outcomes.append(case.verify())
    finally:
        record_case(
            "F5 split kill + rerun",
            "postgres-to-mariadb-merge",
            _sum(outcomes) if len(outcomes) == 2 else None,
        )
    assert _sum(outcomes) == dict.fromkeys(_sum(outcomes), 0)


# MariaDB commits DDL at once, so its swap is a RENAME of a table staged beforehand; a Parquet
# copy is one file written aside and renamed into place (SQLite and PostgreSQL do it all in one
# transaction).
# PostgreSQL -> MariaDB streams COPY's CSV into LOAD DATA (chunks of 50 rows, not batches).
@pytest.mark.parametrize(
    ("source", "destination"),
    [("sqlite", "mariadb"), ("sqlite", "parquet"), ("postgres", "mariadb")],
)
def test_sigkill_in_a_full_copy_keeps_the_previous_copy(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    record_case: Any,
    source: str,
    destination: str,
) -> None:
    """A full copy killed mid-way (at batch 20 of 34) leaves the previous copy whole and
    nothing of the new one (it is built aside and swapped in); the rerun copies the source."""
    outcome = None
    try:
        outcome = kill_a_full_copy(tmp_path, request, destination, source=source)
    finally:
        label = destination if source == "sqlite" else f"{source}-to-{destination}"
        record_case("F8 full copy SIGKILL + rerun", label, outcome)
    assert outcome == dict.fromkeys(outcome, 0)


def kill_a_full_copy(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    destination: str,
    hooks: tuple[str, ...] = (),
    source: str = "sqlite",
) -> dict[str, int]:
    """Copy, change the source, kill the next copy at batch 20 (`hooks` in its process), and
    count: the previous copy against the destination just after the kill, then the source
    against it after a rerun."""
    case = _make_case(tmp_path, request, source, destination, "merge", mode="full")
    case.insert(INITIAL_ROWS)
    case.run_until_success()
    previous = case.destination.rows()
    assert sorted(previous) == sorted(case.source.rows())
    case.insert(200)
    case.update(random.Random(f"full-{destination}"), 50)
    process = case.start("batch", 20, hooks=hooks)
    assert process.wait(timeout=120) == -signal.SIGKILL, process.errors()
    after_kill = compare(previous, case.destination.rows())
    case.run_until_success()
    after_rerun = compare(case.source.rows(), case.destination.rows())
    return {name: after_kill[name] + after_rerun[name] for name in COUNTS}


def compare(expected_rows: list[tuple[Any, ...]], rows: list[tuple[Any, ...]]) -> dict[str, int]:
    """The invariant's counts of `rows` (keyed by their first value) against `expected_rows`."""
    expected = {row[0]: row for row in expected_rows}
    actual = {row[0]: row for row in rows}
    return {
        "lost": len(expected.keys() - actual.keys()),
        "duplicates": len(rows) - len(actual),
        "mismatches": sum(1 for k in expected.keys() & actual.keys() if expected[k] != actual[k]),
        "extra": len(actual.keys() - expected.keys()),
        "regressions": 0,
        "stale": 0,
    }


def _kill_then_rerun(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    record_case: Any,
    source: str,
    destination: str,
    write: str,
    point: str,
) -> None:
    rng = random.Random(f"{destination}-{write}-{point}")
    case = _make_case(tmp_path, request, source, destination, write)
    killed_round = rng.randrange(3)
    # A commit kill lands in every round: the first load's swap and each later window's write.
    killed_rounds = range(3) if point == "commit" else (killed_round,)
    outcomes = []
    try:
        for round_number in range(3):
            _change_source(case, rng, round_number)
            if round_number in killed_rounds:
                _kill_one_run(case, rng, point, round_number)
            case.run_until_success()
            outcomes.append(case.verify())
    finally:
        record_case(
            "F1 SIGKILL + rerun",
            request.node.callspec.id,
            _sum(outcomes) if len(outcomes) == 3 else None,
        )
    assert _sum(outcomes) == dict.fromkeys(_sum(outcomes), 0)


def _kill_one_run(case: Case, rng: random.Random, point: str, round_number: int) -> None:
    batches = INITIAL_ROWS // BATCH_ROWS if round_number == 0 else 250 // BATCH_ROWS
    if point == "mid-read":  # killed from outside once the run has read `target` batches
        process = case.start("read", slow=0.2)
        target = rng.randint(1, batches - 2)
        deadline = time.monotonic() + 120
        while process.poll() is None and process.batches_read() < target:
            assert time.monotonic() < deadline, "the run never read its batches"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL, process.errors()
        assert target <= process.batches_read() < batches, "the kill did not land mid-read"
        return
    if point == "commit":
        _kill_before_the_write_commits(case, round_number)
        return
    nth = rng.randint(1, batches) if point == "batch" else 1
    process = case.start(point, nth)
    assert process.wait(timeout=120) == -signal.SIGKILL, process.errors()


# The statement a MariaDB copy changes its table with, in the transaction the kill interrupts:
# the first load swaps the staged table in; later windows upsert, or delete the window and load
# it again (the load goes through the driver, unseen by SQLAlchemy's events, in the same
# transaction).
MARIADB_WRITES = {
    "initial": "RENAME TABLE",
    "merge": "ON DUPLICATE KEY UPDATE",
    "append": "DELETE FROM",
}


def _kill_before_the_write_commits(case: Case, round_number: int) -> None:
    """Killed just before the transaction that changes the copied table commits (a Parquet
    write: before its file's rename); asserts that is where the kill landed."""
    if case.destination.is_folder:
        process = case.start("replace", 1)
        assert process.wait(timeout=120) == -signal.SIGKILL, process.errors()
        return
    process = case.start("write-commit", 1)
    assert process.wait(timeout=120) == -signal.SIGKILL, process.errors()
    landing = process.landing()
    assert landing, "the kill did not land in a transaction that changes the table"
    if "mysql" in case.destination.url:
        expected = MARIADB_WRITES["initial" if round_number == 0 else case.write]
        assert expected in landing.upper(), landing


COUNTS = ("lost", "duplicates", "mismatches", "extra", "regressions", "stale")


def _sum(outcomes: list[dict[str, int]]) -> dict[str, int]:
    total = Counter()
    for outcome in outcomes:
        total.update(outcome)
    return {k: total[k] for k in COUNTS}


CUT_CASES = [
    ("postgres", "mariadb", "merge", "source"),
    ("postgres", "parquet", "append", "source"),
    ("sqlite", "postgres", "merge", "destination"),
    ("sqlite", "mariadb", "append", "destination"),
    ("postgres", "postgres", "append", "destination"),
]


@pytest.mark.parametrize(
    ("source", "destination", "write", "cut"),
    CUT_CASES,
    ids=[f"{s}-to-{d}-{w}-cut-{c}" for s, d, w, c in CUT_CASES],
)
def test_connection_cut_then_rerun(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    record_case: Any,
    source: str,
    destination: str,
    write: str,
    cut: str,
) -> None:
    rng = random.Random(f"{source}-{destination}-{cut}")
    case = _make_case(tmp_path, request, source, destination, write)
    outcomes = []
    try:
        for round_number in range(2):
            _change_source(case, rng, round_number)
            process = case.start(slow=0.05)
            store = case.source if cut == "source" else case.destination
            _cut_connections_of(store, process, rng)
            if round_number == 0:  # the first copy spans 30 slow batches: the cut lands in it
                assert process.wait(timeout=120) != 0, "the connection cut did not break the run"
            process.wait(timeout=120)
            case.run_until_success()
            outcomes.append(case.verify())
    finally:
        record_case(
            "F2 connection cut",
            request.node.callspec.id,
            _sum(outcomes) if len(outcomes) == 2 else None,
        )
    assert _sum(outcomes) == dict.fromkeys(_sum(outcomes), 0)


def _cut_connections_of(store: Store, process: Runner, rng: random.Random) -> None:
    """Once the copy is connected to `store`, wait a moment, then keep killing its sessions
    there for a while: a session the copy opens after the first cut (its writer, say, after
    its lock) is cut too."""
    engine = store.engine()
    deadline = time.monotonic() + 30
    try:
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            while process.poll() is None and time.monotonic() < deadline:
                if _copy_sessions(conn, store, process.pid):
                    break
                time.sleep(0.05)
            time.sleep(rng.uniform(0.1, 0.6))
            cutting_until = time.monotonic() + 2
            while process.poll() is None and time.monotonic() < cutting_until:
                for session in _copy_sessions(conn, store, process.pid):
                    _kill_session(conn, session)
                time.sleep(0.1)
    finally:
        engine.dispose()


def _copy_sessions(conn: sa.Connection, store: Store, pid: int) -> list[int]:
    """The copy process's sessions: on PostgreSQL, those whose client port is one of its
    sockets (other tests' copies, running at the same time, are left alone)."""
    if conn.dialect.name == "postgresql":
        query = sa.text(
            "SELECT pid FROM pg_stat_activity WHERE client_port = ANY(:ports) "
            "AND client_addr IS NOT NULL"
        ).bindparams(ports=sorted(_local_ports(pid)))
    else:
        query = sa.text(
            "SELECT id FROM information_schema.processlist WHERE db = :db AND id <> CONNECTION_ID()"
        ).bindparams(db=sa.engine.make_url(store.url).database)
    return [row[0] for row in conn.execute(query)]


def _local_ports(pid: int) -> set[int]:
    """The local TCP ports of the process's open sockets, from /proc."""
    try:
        inodes = {
            os.readlink(f"/proc/{pid}/fd/{fd}")[len("socket:[") : -1]
            for fd in os.listdir(f"/proc/{pid}/fd")
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")
        }
    except OSError:  # the process has ended
        return set()
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _kill_session(conn: sa.Connection, session: int) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": session})
    else:
        conn.execute(sa.text(f"KILL CONNECTION {int(session)}"))


OVERLAP_CASES = [
    ("postgres", "merge"),
    ("mariadb", "append"),
    ("parquet", "append"),
    ("sqlite", "append"),
]


@pytest.mark.parametrize(
    ("destination", "write"), OVERLAP_CASES, ids=[f"{d}-{w}" for d, w in OVERLAP_CASES]
)
def test_two_runs_of_one_table_at_once(
    tmp_path: Path, request: pytest.FixtureRequest, record_case: Any, destination: str, write: str
) -> None:
    rng = random.Random(f"overlap-{destination}-{write}")
    case = _make_case(tmp_path, request, "sqlite", destination, write)
    outcomes = []
    try:
        for round_number in range(2):
            first, second = overlapping_runs(case, rng, round_number)
            assert second.noted("waiting") is not None, "the second run never asked for the lock"
            # The second run took the lock only once the first had let it go.
            assert second.noted("held") > first.noted("released")  # type: ignore[operator]
            case.run_until_success()
            outcomes.append(case.verify())
    finally:
        record_case(
            "F3 overlapping runs",
            request.node.callspec.id,
            _sum(outcomes) if len(outcomes) == 2 else None,
        )
    assert _sum(outcomes) == dict.fromkeys(_sum(outcomes), 0)


def overlapping_runs(
    case: Case, rng: random.Random, round_number: int, breakages: tuple[str, ...] = ()
) -> tuple[Runner, Runner]:
    """A first run takes the copy lock, opens its snapshot and is held there; the source
    changes (rows and updates its snapshot does not see), and a second run (started beside
    the first, held before it asks for the lock) goes on. Once the second has asked for the
    lock and been refused (or, without the lock, has finished), the first goes on. Both end;
    returns them (first, second)."""
    _change_source(case, rng, round_number)
    first = case.start(hooks=("hold", *breakages))
    second = case.start(hooks=("gate", *breakages))
    assert first.wait_for_note("planned") == "planned", first.errors()
    assert first.noted("held") is not None
    _change_source(case, rng, max(round_number, 1))
    assert second.wait_for_note("gated") == "gated", second.errors()
    second.go()
    if second.wait_for_note("waiting") == "waiting":
        assert second.noted("held") is None  # refused while the first holds the lock
    first.go()
    codes = [second.wait(timeout=120), first.wait(timeout=120)]
    assert 0 in codes, [first.errors(), second.errors()]
    return first, second


# SCD2: killed just before the transaction that writes a window's versions commits (PostgreSQL;
# the staging table's create and load commit first), and after a Parquet window's new part is
# in place but before older parts' versions are closed (the second file rename). A kill after
# the commit, before the watermark is recorded, is a rerun of the same window: tests/
# test_changes.py reruns windows on every destination.
SCD2_CASES = [("postgres", "commit", 3), ("parquet", "replace", 2)]


@pytest.mark.parametrize(
    ("destination", "point", "nth"), SCD2_CASES, ids=[f"{d}-{p}" for d, p, _ in SCD2_CASES]
)
def test_scd2_sigkill_then_rerun(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    record_case: Any,
    destination: str,
    point: str,
    nth: int,
) -> None:
    rng = random.Random(f"scd2-{destination}-{point}")
    case = _make_case(tmp_path, request, "sqlite", destination, "scd2")
    seen: set[tuple[int, int]] = set()
    outcomes = []
    try:
        for round_number in range(2):
            _change_source(case, rng, round_number)
            if round_number == 1:
                process = case.start(point, nth)
                assert process.wait(timeout=120) == -signal.SIGKILL, process.errors()
            case.run_until_success()
            outcomes.append(_verify_versions(case, seen))
    finally:
        record_case(
            "F4 SCD2 SIGKILL + rerun",
            request.node.callspec.id,
            _sum(outcomes) if len(outcomes) == 2 else None,
        )
    assert _sum(outcomes) == dict.fromkeys(_sum(outcomes), 0)


def _verify_versions(case: Case, seen: set[tuple[int, int]]) -> dict[str, int]:
    """The SCD2 invariant: every version a successful run saw is there once, and the current
    versions equal the source as of the watermark."""
    watermark, rows = case.watermark_and_source()
    source = {row[0]: row for row in rows if row[2] <= watermark}
    seen |= {(key, row[2]) for key, row in source.items()}
    versions = case.destination.versions()
    counted = Counter((row[0], row[3]) for row in versions)
    current = {row[0]: row[:3] for row in versions if row[4]}
    currents = Counter(row[0] for row in versions if row[4])
    return {
        "lost": len(seen - counted.keys()),
        "duplicates": sum(n - 1 for n in counted.values()) + sum(n - 1 for n in currents.values()),
        "mismatches": sum(1 for k in source if current.get(k) != source[k])
        + sum(1 for row in versions if row[4] and row[3] != row[2]),
        "extra": len(counted.keys() - seen) + len(current.keys() - source.keys()),
        **case.watermark_counts(watermark, rows),
    }
