"""`mode: cdc` from PostgreSQL's logical replication into SQLite, PostgreSQL, MariaDB and a
Parquet folder: the first snapshot, changes by key, and the traps of a change log (unchanged
TOASTed values, TRUNCATE, a column added while changes flow, a transaction over several tables,
a long transaction that commits after shorter ones), with a private server (wal_level=logical)
started by the tests."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.dataset as ds
import pytest
import sqlalchemy as sa
import tallies
from cdc_support import CdcCase, load_job_file, logical_server
from click.testing import CliRunner
from conftest import make_dagster_home
from pyarrow import fs
from security import private_pg
from stores.s3_server import bucket, s3_endpoint

from copyjob_dagster.cli import main
from copyjob_dagster.defs import cdc
from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs
from copyjob_dagster.engine.cdc import cdc_problems
from copyjob_dagster.errors import CopyJobError, SourceError
from copyjob_dagster.stores.change_apply import OPERATION, POSITION
from copyjob_dagster.stores.object_storage import s3_filesystem
from copyjob_dagster.stores.pg_changes import PostgresChangeStream
from copyjob_dagster.stores.pgoutput import lsn_value

__all__ = ["bucket", "s3_endpoint"]  # fixtures used by name

ITEMS = (
    "CREATE TABLE {s}.items (id int PRIMARY KEY, name text, big text, amount numeric(10,2), "
    "at timestamptz, flag boolean, raw bytea)"
)
FILL = (
    "INSERT INTO {s}.items SELECT g, 'n' || g, NULL, g * 1.5, "
    "'2024-01-01 00:00:00+00'::timestamptz + g * interval '1 hour', g % 2 = 0, "
    "decode(md5(g::text), 'hex') FROM generate_series(1, :rows) g"
)
# About 160 kB of text that does not compress: it is stored out of line (TOAST).
BIG = "(SELECT string_agg(md5(random()::text || g::text), '') FROM generate_series(1, 5000) g)"


@pytest.fixture(scope="module")
def server() -> Iterator[private_pg.PrivatePostgres]:
    yield from logical_server()


@pytest.fixture
def case(server: private_pg.PrivatePostgres, tmp_path: Path) -> Iterator[CdcCase]:
    made = CdcCase(server, tmp_path)
    made.sql(ITEMS.format(s=made.schema))
    made.sql(FILL.format(s=made.schema), rows=30)
    yield made
    made.close()


def same(case: CdcCase, columns: str = "id, name, amount, flag") -> None:
    assert case.destination_rows(columns=columns) == case.source_rows(columns=columns)


def test_snapshot_then_changes_by_key(case: CdcCase) -> None:
    first = case.run()
    assert first.copy.load == "full" and first.copy.rows_written == 30
    assert first.position_before is None
    same(case)
    s = case.schema
    case.sql(
        f"INSERT INTO {s}.items (id, name, amount) VALUES (100, 'new', 2.5)",
        f"UPDATE {s}.items SET name = 'changed', amount = amount + 1 WHERE id <= 5",
        f"DELETE FROM {s}.items WHERE id BETWEEN 10 AND 12",
        f"UPDATE {s}.items SET id = 200 WHERE id = 20",  # a key that changes
        # one transaction: insert, update and delete of the same key
        f"BEGIN; INSERT INTO {s}.items (id, name) VALUES (300, 'a'); "
        f"UPDATE {s}.items SET name = 'b' WHERE id = 300; DELETE FROM {s}.items WHERE id = 300; "
        f"COMMIT",
    )
    second = case.run()
    assert second.position_before == first.position and second.position > first.position
    assert (second.counts.deleted, second.transactions) == (5, 5)  # 10-12, 20, 300
    same(case)
    same(case, "id, raw")  # timestamps: see the PostgreSQL destination
    # the slot moved to the recorded position: a run with nothing new reads nothing
    assert case.slot().confirmed == second.position
    third = case.run()
    assert (third.transactions, third.counts.upserted, third.counts.deleted) == (0, 0, 0)


def test_unchanged_toast_keeps_its_value(case: CdcCase) -> None:
    s = case.schema
    case.sql(f"UPDATE {s}.items SET big = {BIG} WHERE id IN (1, 2)")
    case.run()
    # Updates that leave the big value alone: pgoutput does not resend it.
    case.sql(
        f"UPDATE {s}.items SET name = 'touched' WHERE id = 1",
        f"INSERT INTO {s}.items (id, name, big) VALUES (50, 'fresh', {BIG})",
        f"UPDATE {s}.items SET name = 'touched too' WHERE id = 50",  # its insert is in this run
    )
    case.run()
    same(case, "id, name, big")
    big = dict(case.destination_rows(columns="id, big"))
    assert len(big[1]) == 160_000 and len(big[50]) == 160_000


def test_truncate_then_rows(case: CdcCase) -> None:
    case.run()
    s = case.schema
    case.sql(
        f"INSERT INTO {s}.items (id, name) VALUES (101, 'before')",
        f"TRUNCATE {s}.items",
        f"INSERT INTO {s}.items (id, name) VALUES (102, 'after')",
    )
    result = case.run()
    assert result.counts.truncated == 1
    assert case.destination_rows(columns="id, name") == [(102, "after")]


def test_column_added_while_changes_flow(case: CdcCase) -> None:
    case.run()
    s = case.schema
    case.sql(
        f"UPDATE {s}.items SET name = 'before the column' WHERE id = 1",
        f"ALTER TABLE {s}.items ADD COLUMN note text",
        f"INSERT INTO {s}.items (id, name, note) VALUES (60, 'with a note', 'hello')",
        f"UPDATE {s}.items SET note = 'later' WHERE id = 2",
    )
    case.run()
    same(case, "id, name, note")
    assert dict(case.destination_rows(columns="id, note"))[60] == "hello"


def test_long_transaction_arrives_without_lookback(case: CdcCase) -> None:
    case.run()
    s = case.schema
    with case.engine.connect() as long:
        long.exec_driver_sql("BEGIN")
        long.exec_driver_sql(f"INSERT INTO {s}.items (id, name) VALUES (500, 'long')")
        case.sql(f"INSERT INTO {s}.items (id, name) VALUES (501, 'short')")
        case.run()
        ids = [row[0] for row in case.destination_rows(columns="id")]
        assert 501 in ids and 500 not in ids  # not committed yet
        long.exec_driver_sql("COMMIT")
    case.run()
    same(case)


def test_one_transaction_over_two_tables(
    server: private_pg.PrivatePostgres, tmp_path: Path
) -> None:
    two = CdcCase(server, tmp_path, tables=[{"name": "items"}, {"name": "parts"}])
    try:
        s = two.schema
        two.sql(ITEMS.format(s=s), f"CREATE TABLE {s}.parts (id int PRIMARY KEY, item int)")
        two.run("items"), two.run("parts")
        two.sql(
            f"BEGIN; INSERT INTO {s}.items (id, name) VALUES (1, 'one'); "
            f"INSERT INTO {s}.parts VALUES (1, 1), (2, 1); "
            f"UPDATE {s}.items SET name = 'uno' WHERE id = 1; COMMIT"
        )
        assert two.run("items").transactions == 1
        assert two.run("parts").transactions == 1
        assert two.destination_rows("items", "id, name") == [(1, "uno")]
        assert two.destination_rows("parts") == [(1, 1), (2, 1)]
    finally:
        two.close()


def test_a_rerun_from_the_recorded_position_changes_nothing_twice(case: CdcCase) -> None:
    """The destination committed, the position was not recorded: the same changes again."""
    case.run()
    s = case.schema
    case.sql(
        f"UPDATE {s}.items SET amount = amount * 2 WHERE id <= 10",
        f"DELETE FROM {s}.items WHERE id = 30",
        f"INSERT INTO {s}.items (id, name) VALUES (31, 'x')",
    )
    unrecorded = case.run(confirm=False)
    again = case.run()
    assert again.position == unrecorded.position
    same(case)


def test_postgresql_destination(server: private_pg.PrivatePostgres, tmp_path: Path) -> None:
    pg = CdcCase(server, tmp_path, destination=server.admin_url)
    pg.tables = [{"name": "items", "to": "items_copy"}]
    try:
        pg.sql(
            ITEMS.format(s=pg.schema),
            f"ALTER TABLE {pg.schema}.items ADD COLUMN doc jsonb, ADD COLUMN u uuid",
        )
        pg.sql(FILL.format(s=pg.schema), rows=20)
        pg.sql(f"UPDATE {pg.schema}.items SET big = {BIG} WHERE id = 5")
        pg.run()
        pg.sql(
            f"UPDATE {pg.schema}.items SET big = {BIG}, name = 'x' WHERE id = 3",
            f"UPDATE {pg.schema}.items SET name = 'y' WHERE id = 3",
            f"DELETE FROM {pg.schema}.items WHERE id = 4",
            # big left alone (not resent): the row is updated in place, the JSON bound as JSON
            f"""UPDATE {pg.schema}.items SET doc = '{{"a": [1, "two"]}}', u = gen_random_uuid() """
            "WHERE id = 5",
        )
        pg.run()
        columns = "id, name, big, amount, at, flag, raw, doc::text, u::text"
        assert pg.destination_rows("items_copy", columns) == pg.source_rows(columns=columns)
    finally:
        pg.close()


def test_postgresql_destination_updates_rows_on_their_page(
    server: private_pg.PrivatePostgres, tmp_path: Path
) -> None:
    """A few updates to a big table are written in place: each row's new version stays on
    its page (room left by the first copy, an update rather than a delete and an insert at
    the table's end), and the rows are the source's."""
    pg = CdcCase(server, tmp_path, destination=server.admin_url)
    pg.tables = [{"name": "items", "to": "items_copy"}]
    try:
        pg.sql(ITEMS.format(s=pg.schema))
        pg.sql(FILL.format(s=pg.schema), rows=2000)
        pg.run()

        def pages() -> dict[int, int]:
            query = f"SELECT id, (ctid::text::point)[0]::int FROM {pg.schema}.items_copy"
            with pg.engine.connect() as conn:
                return dict(conn.exec_driver_sql(query).all())

        before = pages()
        pg.sql(
            f"UPDATE {pg.schema}.items SET name = 'changed', amount = amount + 1 "
            "WHERE id IN (10, 700, 1500)",
            f"DELETE FROM {pg.schema}.items WHERE id = 20",
            f"INSERT INTO {pg.schema}.items (id, name) VALUES (5000, 'new')",
        )
        result = pg.run()
        assert (result.counts.upserted, result.counts.deleted) == (4, 1)
        after = pages()
        assert {i: after[i] for i in (10, 700, 1500)} == {i: before[i] for i in (10, 700, 1500)}
        columns = "id, name, big, amount, at, flag, raw"
        assert pg.destination_rows("items_copy", columns) == pg.source_rows(columns=columns)
    finally:
        pg.close()


def test_mariadb_destination(
    server: private_pg.PrivatePostgres, tmp_path: Path, mysql_url: str
) -> None:
    maria = CdcCase(server, tmp_path, destination=mysql_url)
    try:
        maria.sql(ITEMS.format(s=maria.schema))
        maria.sql(FILL.format(s=maria.schema), rows=20)
        maria.run()
        maria.sql(
            f"UPDATE {maria.schema}.items SET name = 'x', amount = 9.99 WHERE id = 3",
            f"DELETE FROM {maria.schema}.items WHERE id = 4",
        )
        maria.run()
        engine = sa.create_engine(mysql_url)
        with engine.connect() as conn:
            rows = [tuple(r) for r in conn.exec_driver_sql("SELECT id, name FROM items ORDER BY 1")]
        engine.dispose()
        assert rows == maria.source_rows(columns="id, name")
    finally:
        maria.close()


def test_parquet_folder_gets_a_change_log(
    server: private_pg.PrivatePostgres, tmp_path: Path
) -> None:
    log = CdcCase(server, tmp_path, destination=str(tmp_path / "lake"))
    try:
        s = log.schema
        log.sql(ITEMS.format(s=s))
        log.sql(FILL.format(s=s), rows=5)
        log.run()
        log.sql(
            f"UPDATE {s}.items SET name = 'x' WHERE id = 1",
            f"DELETE FROM {s}.items WHERE id = 2",
        )
        first = log.run(confirm=False)
        log.run(confirm=True)  # a replay from the same position replaces the run's file
        changes = ds.dataset(tmp_path / "lake" / "items_changes").to_table().to_pylist()
        assert [(c["id"], c[OPERATION]) for c in changes] == [(1, "update"), (2, "delete")]
        assert changes[0][POSITION] < changes[1][POSITION] <= first.position
        assert len(log.destination_rows()) == 5  # the snapshot
        log.sql(
            f"UPDATE {s}.items SET name = 'y' WHERE id = 3",
            f"ALTER TABLE {s}.items ADD COLUMN note text",
            f"INSERT INTO {s}.items (id, name, note) VALUES (9, 'noted', 'hello')",
        )
        log.run()
        files = sorted((tmp_path / "lake" / "items_changes").glob("*.parquet"))
        last = ds.dataset(files[-1]).to_table().to_pylist()
        assert [(c["id"], c["note"], c[OPERATION]) for c in last] == [
            (3, None, "update"),
            (9, "hello", "insert"),
        ]
        assert not list((tmp_path / "lake").rglob("*.tmp"))
    finally:
        log.close()


def test_parquet_on_s3_gets_a_change_log_object_per_run(
    server: private_pg.PrivatePostgres, tmp_path: Path, bucket: str, s3_endpoint: str
) -> None:
    log = CdcCase(server, tmp_path, destination=f"parquet+s3://{bucket}/lake")
    s3 = s3_filesystem()

    def objects() -> list[str]:
        found = s3.get_file_info(fs.FileSelector(f"{bucket}/lake", recursive=True))
        return sorted(f.path for f in found if f.type == fs.FileType.File)

    try:
        s = log.schema
        log.sql(ITEMS.format(s=s))
        log.sql(FILL.format(s=s), rows=5)
        log.run()
        assert objects() == [f"{bucket}/lake/items.parquet"]  # the snapshot
        log.sql(
            f"UPDATE {s}.items SET name = 'x' WHERE id = 1",
            f"DELETE FROM {s}.items WHERE id = 2",
        )
        first = log.run(confirm=False)
        log.run(confirm=True)  # a replay from the same position replaces the run's object
        changes_folder = f"{bucket}/lake/items_changes"
        assert [o for o in objects() if o.startswith(changes_folder)] == [
            f"{changes_folder}/changes-{first.position_before:020d}.parquet"
        ]
        changes = ds.dataset(changes_folder, filesystem=s3).to_table().to_pylist()
        assert [(c["id"], c[OPERATION]) for c in changes] == [(1, "update"), (2, "delete")]
        assert changes[1][POSITION] <= first.position
    finally:
        log.close()


def test_refusals_name_the_fix(case: CdcCase, server: private_pg.PrivatePostgres) -> None:
    s = case.schema
    case.sql(f"CREATE TABLE {s}.loose (id int, name text)")
    case.tables = [{"name": "loose"}]
    case.position["loose"] = None
    with pytest.raises(SourceError, match="no primary key or replica identity.*REPLICA IDENTITY"):
        case.run("loose")
    with pytest.raises(CopyJobError, match="mode: cdc follows the source's change log"):
        case.tables = [{"name": "items", "incremental_column": "id"}]
        case.job()
    case.tables = [{"name": "items"}]
    case.sql("CREATE ROLE cdc_reader LOGIN; GRANT USAGE ON SCHEMA " + s + " TO cdc_reader")
    try:
        case.source_url = case.source_url.replace("postgres@", "cdc_reader@")
        with pytest.raises(SourceError, match="lacks the REPLICATION attribute: ALTER ROLE"):
            case.run()
    finally:
        case.source_url = server.admin_url
        case.sql(f"REVOKE ALL ON SCHEMA {s} FROM cdc_reader; DROP ROLE cdc_reader")


def test_wal_level_replica_is_named(pg_schema: str, pg_server: str, tmp_path: Path) -> None:
    """The shared server runs with wal_level=replica: the error names the setting."""
    engine = sa.create_engine(pg_server)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {pg_schema}.items (id int PRIMARY KEY)")
        level = conn.exec_driver_sql("SHOW wal_level").scalar_one()
    engine.dispose()
    if level == "logical":
        pytest.skip("the shared server already runs with wal_level=logical")
    job = load_job_file(tmp_path, pg_server, pg_schema)
    problems = cdc_problems(job, job.tables[0])
    assert any("wal_level = logical" in p for p in problems), problems


def test_dagster_records_the_position_then_moves_the_slot(case: CdcCase) -> None:
    job = case.job()
    assets = [*build_source_specs([job]), *build_copy_assets([job])]
    key = dg.AssetKey([job.name, "items"])
    with dg.instance_for_test() as instance:
        assert dg.materialize(assets, instance=instance).success
        first = instance.get_latest_materialization_event(key).asset_materialization.metadata
        assert first[cdc.POSITION_BEFORE].value == "(none: initial snapshot)"
        case.sql(f"UPDATE {case.schema}.items SET name = 'dagster' WHERE id = 7")
        result = dg.materialize(assets, instance=instance)
        second = instance.get_latest_materialization_event(key).asset_materialization.metadata
        assert second[cdc.POSITION_BEFORE].value == first[cdc.POSITION].value
        assert second[cdc.ROWS_UPSERTED].value == 1 and second[cdc.TRANSACTIONS].value == 1
        assert case.slot().confirmed == lsn_value(second[cdc.POSITION].value)
        checks = result.get_asset_check_evaluations()
        assert [(c.check_name, c.passed) for c in checks] == [(cdc.SLOT_CHECK, True)]
    same(case)


def test_plan_list_and_drop_show_and_free_the_slot(
    case: CdcCase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    job = case.job()
    (jobs / f"{job.name}.yaml").write_text((tmp_path / f"{job.name}.yaml").read_text())
    home = make_dagster_home(tmp_path / "home")
    monkeypatch.setenv("COPYJOB_JOBS_DIR", str(jobs))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    cli = CliRunner()

    def plan() -> dict[str, Any]:
        done = cli.invoke(main, ["plan", job.name, "--json"])
        assert done.exit_code == 0, done.output
        return json.loads(done.output)[0]

    assert (plan()["mode"], plan()["load"]) == ("cdc", "snapshot (new slot)")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assets = [*build_source_specs([job]), *build_copy_assets([job])]
        assert dg.materialize(assets, instance=instance).success
    case.sql(f"UPDATE {case.schema}.items SET big = {BIG}")  # WAL the slot now holds
    planned = plan()
    assert planned["load"] == "changes" and planned["retained_wal_bytes"] > 1_000_000
    listed = cli.invoke(main, ["list", "--json"])
    assert json.loads(listed.output)[0]["tables"][0]["watermark"].startswith("LSN ")
    dropped = cli.invoke(main, ["cdc", "drop", job.name])
    assert dropped.exit_code == 0 and "dropped slot and publication" in dropped.output
    assert case.slot() is None
    assert plan()["load"] == "snapshot (new slot)"


def test_validate_connect_names_the_missing_key(
    case: CdcCase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case.sql(f"CREATE TABLE {case.schema}.loose (id int, name text)")
    case.tables = [{"name": "items"}, {"name": "loose"}]
    job = case.job()
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / f"{job.name}.yaml").write_text((tmp_path / f"{job.name}.yaml").read_text())
    monkeypatch.setenv("COPYJOB_JOBS_DIR", str(jobs))
    done = CliRunner().invoke(main, ["validate", "--connect"])
    assert done.exit_code == 1
    assert "table 'loose', field 'mode': mode: cdc: the table has no primary key" in done.output
    assert "table 'items'" not in done.output
    case.tables = [{"name": "items"}]


def test_connection_cut_mid_stream_applies_nothing_then_recovers(
    case: CdcCase, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """The source's session is terminated while the changes stream: the destination's
    transaction rolls back whole, nothing is recorded, and the next run applies everything."""
    case.run()
    s = case.schema
    case.sql(f"UPDATE {s}.items SET name = 'before the cut' WHERE id < 5")
    # one transaction of 3,000 changes: more than one fetch of the stream's cursor
    updates = "; ".join(f"UPDATE {s}.items SET amount = {n}" for n in range(100))
    case.sql(f"BEGIN; {updates}; DELETE FROM {s}.items WHERE id > 25; COMMIT")
    before = case.destination_rows(columns="id, name")
    original = PostgresChangeStream.messages

    def cut(self: PostgresChangeStream, upto: int) -> Iterator[Any]:
        for index, message in enumerate(original(self, upto)):
            if index == 2500:
                case.sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'FETCH%' AND pid <> pg_backend_pid()"
                )
            yield message

    monkeypatch.setattr(PostgresChangeStream, "messages", cut)
    with pytest.raises(CopyJobError):
        case.run()
    assert case.destination_rows(columns="id, name") == before  # nothing applied
    monkeypatch.setattr(PostgresChangeStream, "messages", original)
    case.run()
    copied = case.destination_rows(columns="id, name, amount, flag")
    wanted = case.source_rows(columns="id, name, amount, flag")
    keys = {row[0] for row in copied}
    counts = {
        "lost": len({row[0] for row in wanted} - keys),
        "duplicates": len(copied) - len(keys),
        "mismatches": len(set(wanted) ^ set(copied)) // 2,
    }
    tallies.record(request.node, tallies.FAULT_CASE, ("C2 cdc connection cut", "peek", counts))
    assert copied == wanted


def test_a_new_source_table_for_the_same_copy_gets_its_changes(case: CdcCase) -> None:
    """The slot and publication are named after the copy; pointing the copy at another source
    table points the publication at it too."""
    case.run()
    s = case.schema
    case.sql(ITEMS.format(s=s).replace(".items", ".items_v2"))
    case.tables = [{"name": "items_v2", "to": "items"}]
    case.position["items_v2"] = None
    case.run("items_v2")  # a new snapshot (nothing recorded for this source table)
    case.sql(f"INSERT INTO {s}.items_v2 (id, name) VALUES (7, 'seven')")
    assert case.run("items_v2").counts.upserted == 1
    assert case.destination_rows(columns="id, name") == [(7, "seven")]
