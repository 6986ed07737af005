"""Rows committed late by a transaction still open during a copy, with no `lookback`.

Real concurrent transactions on PostgreSQL and MariaDB: a transaction inserts a row stamped by
the database's clock, stays open while later rows commit and a copy runs, then commits. The
next copies must bring that row, once, whatever the write method. The shared test servers also
serve other engineers' tests, whose open transactions can only lower the bound (more rows read
again, never fewer copied): the assertions hold whatever they do. The tests that name the
blocking session use a database of their own, which PostgreSQL's filter keeps to.
"""

import logging
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.dataset as ds
import pytest
import sqlalchemy as sa

from copyjob_dagster.config import CopyJob
from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs
from copyjob_dagster.defs.metadata import (
    HELD_BACK_SECONDS,
    OLDEST_OPEN_TRANSACTION,
    OPEN_TRANSACTION_BOUND,
)
from copyjob_dagster.engine import copy_table
from copyjob_dagster.engine.dryrun import plan_table
from copyjob_dagster.engine.late_commits import CLOCK_MARGIN
from copyjob_dagster.engine.watermark import Watermark

VALID_FROM, CURRENT = "_copyjob_valid_from", "_copyjob_is_current"
COLUMNS = {
    "postgres": "id bigserial PRIMARY KEY, payload text, "
    "updated_at timestamptz NOT NULL DEFAULT clock_timestamp()",
    "mariadb": "id bigint AUTO_INCREMENT PRIMARY KEY, payload text, "
    "updated_at datetime(6) NOT NULL DEFAULT NOW(6)",
}
NOW = {"postgres": "now()", "mariadb": "NOW(6)"}


@dataclass
class Source:
    """A table `events` at a source, and its copy `events_copy` beside it."""

    kind: str
    url: str
    schema: str | None
    write: str
    folder: Path | None = None  # a Parquet destination instead of the source's database

    def engine(self) -> sa.Engine:
        return sa.create_engine(self.url)

    @property
    def table(self) -> str:
        return self.qualified("events")

    def qualified(self, table: str) -> str:
        return f"{self.schema}.{table}" if self.schema else table

    def create(self) -> None:
        self.execute(f"CREATE TABLE {self.table} ({COLUMNS[self.kind]})")

    def execute(self, statement: str) -> None:
        engine = self.engine()
        with engine.begin() as conn:
            conn.exec_driver_sql(statement)
        engine.dispose()

    def insert(self, rows: int, payload: str = "row") -> None:
        values = ", ".join(f"('{payload} {n}')" for n in range(rows))
        self.execute(f"INSERT INTO {self.table} (payload) VALUES {values}")

    def open_late_transaction(self) -> sa.Connection:
        """A transaction that inserts a row stamped with its clock, and stays open."""
        conn = self.engine().connect()
        conn.exec_driver_sql(
            f"INSERT INTO {self.table} (payload, updated_at) VALUES ('late', {NOW[self.kind]})"
        )
        return conn

    def job(self, **table: Any) -> CopyJob:
        return CopyJob.model_validate(
            {
                "name": "late",
                "mode": "incremental",
                "source": {"url": self.url, "schema": self.schema},
                "destination": (
                    {"url": str(self.folder)}
                    if self.folder
                    else {"url": self.url, "schema": self.schema}
                ),
                "tables": [
                    {
                        "name": "events",
                        "to": "events_copy",
                        "incremental_column": "updated_at",
                        "write": self.write,
                        "primary_key": ["id"],
                    }
                    | table
                ],
            }
        )

    def source_rows(self) -> list[tuple[Any, ...]]:
        return self._select(self.engine(), self.table, "id, payload, updated_at")

    def destination_rows(self) -> list[tuple[Any, ...]]:
        if self.folder:
            copied = ds.dataset(self.folder / "events_copy", format="parquet").to_table()
            columns = [copied.column(name).to_pylist() for name in ("id", "payload", "updated_at")]
            return list(zip(*columns, strict=True))
        extra = f", {VALID_FROM}, {CURRENT}" if self.write == "scd2" else ""
        return self._select(
            self.engine(), self.qualified("events_copy"), "id, payload, updated_at" + extra
        )

    @staticmethod
    def _select(engine: sa.Engine, table: str, columns: str) -> list[tuple[Any, ...]]:
        with engine.connect() as conn:
            rows = [tuple(row) for row in conn.exec_driver_sql(f"SELECT {columns} FROM {table}")]
        engine.dispose()
        return rows


@contextmanager
def idle_transaction(source: Source) -> Iterator[tuple[int, datetime]]:
    """A PostgreSQL session idle in a transaction for 1.5 s while 10 rows commit: its pid and
    start."""
    idle = source.engine().connect()
    try:
        pid = idle.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        started = idle.exec_driver_sql("SELECT now()").scalar_one()
        source.execute("SELECT pg_sleep(1.5)")
        source.insert(10)
        yield pid, started
    finally:
        idle.rollback()
        idle.close()


def lost_and_duplicated(source: Source) -> tuple[int, int]:
    """Source rows missing at the destination, and destination rows held more than once (by key
    for merge, by key and incremental value for append and for SCD2's versions)."""
    expected = {(row[0], row[2]) for row in source.source_rows()}
    copied = source.destination_rows()
    if source.write == "scd2":
        copied = [row for row in copied if row[4]]  # the current versions
        versions = Counter((row[0], row[3]) for row in source.destination_rows())
        duplicates = sum(n - 1 for n in versions.values())
    else:
        by = (lambda row: row[0]) if source.write == "merge" else (lambda row: (row[0], row[2]))
        duplicates = sum(n - 1 for n in Counter(map(by, copied)).values())
    return len(expected - {(row[0], row[2]) for row in copied}), duplicates


@pytest.fixture(params=["postgres", "mariadb"])
def server(request: pytest.FixtureRequest) -> tuple[str, str, str | None]:
    """(kind, URL, schema) of a scratch schema (PostgreSQL) or database (MariaDB)."""
    if request.param == "postgres":
        return (
            "postgres",
            request.getfixturevalue("pg_server"),
            request.getfixturevalue("pg_schema"),
        )
    return "mariadb", request.getfixturevalue("mysql_url"), None


@pytest.mark.parametrize("write", ["merge", "append", "scd2"])
def test_a_row_committed_late_is_copied_once_without_lookback(
    server: tuple[str, str, str | None], write: str
) -> None:
    kind, url, schema = server
    late_row_scenario(Source(kind, url, schema, write))


def test_a_parquet_append_reads_the_open_window_again_without_duplicates(
    pg_server: str, pg_schema: str, tmp_path: Path
) -> None:
    late_row_scenario(Source("postgres", pg_server, pg_schema, "append", tmp_path / "lake"))


def late_row_scenario(source: Source) -> None:
    """100 rows copied; a late row stamped while 50 more commit and a copy runs; it commits; two
    more copies, 20 rows between them. Every row arrives once."""
    source.create()
    source.insert(100)
    job = source.job()
    first = copy_table(job, job.tables[0])  # the initial load
    late = source.open_late_transaction()
    try:
        source.insert(50)  # committed after the late row was stamped
        during = copy_table(job, job.tables[0], first.watermark)
        assert during.late_commits is not None and during.late_commits.blocking is not None
    finally:
        late.commit()
        late.close()
    after = copy_table(job, job.tables[0], during.watermark)
    source.insert(20)
    last = copy_table(job, job.tables[0], after.watermark)

    late_value = next(row[2] for row in source.source_rows() if row[1] == "late")
    assert _value(during.watermark) < late_value
    assert lost_and_duplicated(source) == (0, 0)
    assert last.watermark is not None and _value(last.watermark) >= _value(after.watermark)


def test_without_open_transactions_the_watermark_is_the_maximum_less_the_margin(
    private_pg_database: str,
) -> None:
    """On a source whose database nobody else uses, the bound is the copy's own clock."""
    source = Source("postgres", private_pg_database, None, "merge")
    source.create()
    source.insert(10)
    result = copy_table(source.job(), source.job().tables[0])
    assert result.late_commits is not None and result.late_commits.blocking is None
    bound = result.late_commits.transactions.bound
    newest = max(row[2] for row in source.source_rows())
    assert _value(result.watermark) == min(newest, bound - CLOCK_MARGIN)


def test_a_transaction_left_open_is_named_in_a_warning(private_pg_database: str) -> None:
    source = Source("postgres", private_pg_database, None, "append")
    source.create()
    source.insert(10)
    job = source.job(open_transaction_warning=1)
    with idle_transaction(source) as (pid, started):
        result = copy_table(job, job.tables[0])
    assert result.late_commits is not None
    warning = result.late_commits.warning
    assert warning is not None
    assert f"pid {pid}, open since {started.isoformat(sep=' ', timespec='seconds')}" in warning
    quiet = copy_table(source.job(), source.job().tables[0], result.watermark)
    assert quiet.late_commits is not None and quiet.late_commits.warning is None


def test_mariadb_names_the_oldest_writing_transaction(mysql_url: str) -> None:
    """MariaDB's transactions are the server's (InnoDB spans databases): the warning names the
    oldest that has written rows, ours unless another test's began earlier."""
    source = Source("mariadb", mysql_url, None, "merge")
    source.create()
    source.insert(10)
    job = source.job()
    late = source.open_late_transaction()
    try:
        connection = late.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one()
        stamped = late.exec_driver_sql(
            f"SELECT updated_at FROM {source.table} WHERE payload = 'late'"
        ).scalar_one()
        source.execute("DO SLEEP(1.5)")
        source.insert(10)
        result = copy_table(job, job.tables[0])
    finally:
        late.rollback()
        late.close()
    blocking = result.late_commits.blocking if result.late_commits else None
    assert blocking is not None
    # InnoDB registers a transaction a moment after its statement's NOW(), within the margin.
    assert (
        blocking.pid == connection
        or blocking.started.replace(tzinfo=None) <= stamped + CLOCK_MARGIN
    )


def _value(watermark: Watermark | None) -> Any:
    assert watermark is not None
    return watermark.value


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """The URL of a database of its own on a server, dropped after: PostgreSQL's bound counts
    the sessions of the copy's database only, so no other test's transaction is seen."""
    name = f"cj_late_{uuid.uuid4().hex[:10]}"
    postgres = sa.engine.make_url(server_url).get_backend_name() == "postgresql"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield (
            sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if postgres else ""
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{force}")
        admin.dispose()


@pytest.fixture
def private_pg_database(pg_server: str) -> Iterator[str]:
    with scratch_database(pg_server) as url:
        yield url


def _materialize(job: CopyJob, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    assets = [*build_source_specs([job]), *build_copy_assets([job])]
    return dg.materialize(assets, instance=instance)


def _checks_alone(job: CopyJob, instance: dg.DagsterInstance) -> dict[str, dg.AssetCheckEvaluation]:
    """The table's checks executed from the UI's way, without copying."""
    assets = [*build_source_specs([job]), *build_copy_assets([job])]
    key = dg.AssetKey([job.name, job.tables[0].destination_name])
    result = dg.materialize(
        assets, instance=instance, selection=dg.AssetSelection.checks_for_assets(key)
    )
    assert result.get_asset_materialization_events() == []
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _warnings(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [
        entry.user_message
        for entry in instance.all_logs(run_id)
        if entry.level == logging.WARNING and entry.user_message
    ]


def test_the_run_log_metadata_and_check_name_the_blocking_session(
    private_pg_database: str, tmp_path: Path
) -> None:
    source = Source("postgres", private_pg_database, None, "merge")
    source.create()
    source.insert(10)
    job = source.job(open_transaction_warning=1)
    with (
        idle_transaction(source) as (pid, _),
        dg.instance_for_test(temp_dir=str(tmp_path)) as instance,
    ):
        before = _checks_alone(job, instance)
        result = _materialize(job, instance)
        warnings = _warnings(instance, result.run_id)
        alone = _checks_alone(job, instance)  # from the latest copy's metadata
    assert before["open_transactions"].description == "the table has not been copied yet"
    assert f"pid {pid}," in alone["open_transactions"].description
    assert not alone["open_transactions"].passed
    (materialization,) = result.get_asset_materialization_events()
    metadata = materialization.materialization.metadata
    assert metadata[HELD_BACK_SECONDS].value > 1
    assert f"pid {pid}," in metadata[OLDEST_OPEN_TRANSACTION].value
    assert OPEN_TRANSACTION_BOUND in metadata
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["row_count_parity"].passed  # the rows above the watermark do not count
    assert not checks["open_transactions"].passed
    assert checks["open_transactions"].severity == dg.AssetCheckSeverity.WARN
    assert f"pid {pid}," in checks["open_transactions"].description
    assert [w for w in warnings if f"pid {pid}," in w and "holds the watermark" in w]


def test_a_role_that_cannot_see_other_sessions_is_warned_once_and_not_held(
    private_pg_database: str, tmp_path: Path
) -> None:
    source = Source("postgres", private_pg_database, None, "append")
    source.create()
    source.insert(10)
    source.execute(f"CREATE TABLE {source.qualified('others')} (LIKE events INCLUDING ALL)")
    source.execute("INSERT INTO others SELECT * FROM events")
    role = f"cj_norole_{uuid.uuid4().hex[:8]}"
    source.execute(f"CREATE ROLE {role} LOGIN")
    try:
        source.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        url = sa.engine.make_url(private_pg_database).set(username=role)
        table = {"incremental_column": "updated_at", "primary_key": ["id"], "write": "append"}
        job = CopyJob.model_validate(
            {
                "name": "unseen",
                "mode": "incremental",
                "source": {"url": url.render_as_string(hide_password=False)},
                "destination": {"url": f"sqlite:///{tmp_path / 'copy.sqlite'}"},
                "tables": [{"name": "events", **table}, {"name": "others", **table}],
            }
        )
        watcher = source.engine().connect()  # a session of another role, hidden from `role`
        try:
            with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
                result = _materialize(job, instance)
                warnings = _warnings(instance, result.run_id)
        finally:
            watcher.close()
    finally:
        source.execute(f"DROP OWNED BY {role}")
        source.execute(f"DROP ROLE {role}")
    assert result.success
    unseen = [w for w in warnings if "pg_read_all_stats" in w]
    assert len(unseen) == 1, warnings
    newest = max(row[2] for row in source.source_rows())
    for materialization in result.get_asset_materialization_events():
        metadata = materialization.materialization.metadata
        assert metadata[OPEN_TRANSACTION_BOUND].value == "(unknown)"
        assert metadata["copyjob/watermark"].value == newest.isoformat(
            sep=" ", timespec="microseconds"
        )


def test_mariadb_without_process_privilege_copies_with_a_warning(mysql_url: str) -> None:
    source = Source("mariadb", mysql_url, None, "merge")
    source.create()
    source.insert(10)
    database = sa.engine.make_url(mysql_url).database
    user = f"cj_np_{uuid.uuid4().hex[:8]}"
    source.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY 'pw'")
    try:
        source.execute(f"GRANT ALL ON {database}.* TO '{user}'@'%%'")
        url = sa.engine.make_url(mysql_url).set(username=user, password="pw")
        job = source.job()
        job = job.model_copy(
            update={
                "source": job.source.model_copy(
                    update={"url": url.render_as_string(hide_password=False)}
                )
            }
        )
        result = copy_table(job, job.tables[0])
    finally:
        source.execute(f"DROP USER '{user}'@'%%'")
    assert result.late_commits is not None and result.late_commits.warning is not None
    assert "PROCESS" in result.late_commits.warning and "pw" not in result.late_commits.warning
    assert _value(result.watermark) == max(row[2] for row in source.source_rows())


def test_plan_shows_the_watermark_the_copy_then_records(private_pg_database: str) -> None:
    source = Source("postgres", private_pg_database, None, "merge")
    source.create()
    source.insert(10)
    job = source.job()
    first = copy_table(job, job.tables[0])
    late = source.open_late_transaction()
    try:
        pid = late.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        source.insert(10)
        planned = plan_table(job, job.tables[0], first.watermark)
        copied = copy_table(job, job.tables[0], first.watermark)
    finally:
        late.rollback()
        late.close()
    assert f"by the oldest open transaction: pid {pid}," in planned.open_transactions
    assert planned.held_watermark == copied.watermark.text
    assert planned.rows == copied.rows_read


def test_transactions_that_cannot_write_a_late_row_do_not_hold_the_watermark(
    private_pg_database: str, mysql_url: str
) -> None:
    """A MariaDB transaction that has only read (its later writes get a later NOW()), and a
    PostgreSQL session of copyjob's own (another copy's read-only snapshot) are not counted."""
    copyjob_session = sa.engine.make_url(private_pg_database).set(
        query={"application_name": "copyjob"}
    )
    for source in (
        Source("mariadb", mysql_url, None, "merge"),
        Source("postgres", copyjob_session.render_as_string(False), None, "merge"),
    ):
        source.create()
        source.insert(10)
        reader = source.engine().connect()
        try:
            reader.exec_driver_sql("SELECT count(*) FROM events").scalar_one()  # begins it
            session = reader.exec_driver_sql(
                "SELECT CONNECTION_ID()" if source.kind == "mariadb" else "SELECT pg_backend_pid()"
            ).scalar_one()
            source.insert(10)  # newer than the reader's start: counted, it would hold them back
            result = copy_table(source.job(), source.job().tables[0])
        finally:
            reader.rollback()
            reader.close()
        blocking = result.late_commits.blocking if result.late_commits else None
        assert blocking is None or blocking.pid != session, source.kind
