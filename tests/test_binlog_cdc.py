"""`mode: cdc` from MariaDB's binlog into SQLite and PostgreSQL: the first snapshot tied to a
binlog position, changes by key over binlog files, the traps of a change log (TRUNCATE, a
column added while changes flow, a transaction over two tables, a long transaction that commits
after shorter ones), refusals that name the setting, and a purged position, with a private
MariaDB (binlog on) started by the tests."""

import contextlib
import json
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as ds
import pymysql
import pytest
import sqlalchemy as sa
import tallies
from binlog_support import BinlogCase, PrivateMariaDB, binlog_server
from click.testing import CliRunner
from conftest import make_dagster_home
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from copyjob_dagster.cli import main
from copyjob_dagster.definitions import build_definitions
from copyjob_dagster.defs import cdc
from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs
from copyjob_dagster.engine import binlog_cdc, load_job
from copyjob_dagster.engine.cdc import capture_changes, cdc_problems, change_stream
from copyjob_dagster.errors import SchemaError, SourceError
from copyjob_dagster.stores import binlog_rows, mysql_changes, open_source
from copyjob_dagster.stores.binlog import parse_position
from copyjob_dagster.stores.change_apply import OPERATION, POSITION

ITEMS = (
    "CREATE TABLE items (id int PRIMARY KEY, name varchar(40), amount decimal(12,3), "
    "at datetime(6), doc json, raw blob, kind enum('a','b','c'), tags set('x','y','z'), "
    "stamp timestamp(6) NULL)"
)
FILL = (
    "INSERT INTO items SELECT seq, concat('n', seq), seq * 1.5, "
    "'2024-01-01 00:00:00.000001' + INTERVAL seq HOUR, json_object('n', seq), "
    "unhex(md5(seq)), 'a', 'x,z', '2024-01-01 00:00:00.5' + INTERVAL seq MINUTE FROM seq_1_to_{n}"
)
ALL = "id, name, amount, at, doc, raw, kind, tags, stamp"


@pytest.fixture(scope="module")
def server() -> Iterator[PrivateMariaDB]:
    yield from binlog_server()


@pytest.fixture
def case(server: PrivateMariaDB, tmp_path: Path) -> Iterator[BinlogCase]:
    made = BinlogCase(server, tmp_path)
    made.sql(ITEMS, FILL.format(n=30))
    yield made
    made.close()


def normal(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Values as text, decimals and JSON in one spelling, timestamps without a zone."""

    def one(value: Any) -> Any:
        if isinstance(value, Decimal | float):
            return f"{Decimal(str(value)).normalize():f}"
        if isinstance(value, str) and value.startswith("{"):
            return json.dumps(json.loads(value), sort_keys=True)
        if isinstance(value, str) and value[:4].isdigit():
            with contextlib.suppress(ValueError):
                value = datetime.fromisoformat(value)
        if isinstance(value, datetime):
            return value.replace(tzinfo=None).isoformat(" ", "microseconds")
        return str(value) if value is not None else None

    return [tuple(one(v) for v in row) for row in rows]


def same(case: BinlogCase, columns: str = ALL, table: str = "items") -> None:
    assert normal(case.destination_rows(table, columns)) == normal(case.source_rows(table, columns))


def test_snapshot_then_changes_by_key_over_binlog_files(case: BinlogCase) -> None:
    first = case.run()
    assert first.copy.load == "full" and first.copy.rows_written == 30
    assert first.position_before is None
    same(case)
    case.sql(
        "INSERT INTO items (id, name, amount, doc, raw, kind, tags, stamp) VALUES "
        "(100, 'new', 2.5, '{\"a\": [1, \"two\"]}', x'00ff', 'c', 'y,x', '2024-06-01 12:00:00')",
        "UPDATE items SET name = 'changed', amount = amount + 1, tags = 'z' WHERE id <= 5",
        "FLUSH BINARY LOGS",  # the changes go on in the next binlog file
        "DELETE FROM items WHERE id BETWEEN 10 AND 12",
        "UPDATE items SET id = 200 WHERE id = 20",  # a key that changes
        # one transaction: insert, update and delete of the same key
        "BEGIN",
        "INSERT INTO items (id, name) VALUES (300, 'a')",
        "UPDATE items SET name = 'b' WHERE id = 300",
        "DELETE FROM items WHERE id = 300",
        "COMMIT",
    )
    second = case.run()
    assert second.position_before == first.position and second.position > first.position
    assert (second.counts.deleted, second.transactions) == (5, 5)  # 10-12, 20, 300
    same(case)
    third = case.run()  # nothing new: nothing read
    assert (third.transactions, third.counts.upserted, third.position) == (0, 0, second.position)
    assert case.behind().retained_bytes == 0


def test_postgresql_destination(
    server: PrivateMariaDB, tmp_path: Path, pg_server: str, pg_schema: str
) -> None:
    pg = BinlogCase(
        server, tmp_path, destination=pg_server, tables=[{"name": "items", "to": "copy"}]
    )
    pg.destination_schema = pg_schema
    try:
        pg.sql(ITEMS, FILL.format(n=20))
        pg.run()
        pg.sql(
            "UPDATE items SET name = 'x', doc = '{\"b\": null}', kind = 'b' WHERE id = 3",
            "DELETE FROM items WHERE id = 4",
            "INSERT INTO items (id, at, stamp) VALUES (50, '2030-01-02 03:04:05.123456', NULL)",
        )
        pg.run()
        wanted = normal(pg.source_rows(columns=ALL))
        assert normal(pg.destination_rows("copy", ALL.replace("doc", "doc::text"))) == wanted
    finally:
        pg.close()


def test_mariadb_destination(server: PrivateMariaDB, tmp_path: Path, mysql_url: str) -> None:
    maria = BinlogCase(server, tmp_path, destination=mysql_url)
    try:
        maria.sql(ITEMS, FILL.format(n=10))
        maria.run()
        maria.sql(
            "UPDATE items SET name = 'x', amount = 9.99, tags = 'y' WHERE id = 3",
            "DELETE FROM items WHERE id = 4",
        )
        maria.run()
        same(maria)
    finally:
        maria.close()


def test_parquet_folder_gets_a_change_log(server: PrivateMariaDB, tmp_path: Path) -> None:
    log = BinlogCase(server, tmp_path, destination=str(tmp_path / "lake"))
    try:
        log.sql(ITEMS, FILL.format(n=5))
        snapshot = log.run()
        log.sql("UPDATE items SET name = 'x' WHERE id = 1", "DELETE FROM items WHERE id = 2")
        changed = log.run()
        changes = ds.dataset(tmp_path / "lake" / "items_changes").to_table().to_pylist()
        assert [(c["id"], c["name"], c[OPERATION]) for c in changes] == [
            (1, "x", "update"),
            (2, "n2", "delete"),  # a delete carries the whole old row
        ]
        assert snapshot.position < changes[0][POSITION] < changes[1][POSITION] <= changed.position
    finally:
        log.close()


def test_snapshot_stands_at_its_binlog_position(case: BinlogCase) -> None:
    """What the first copy relies on: a transaction committed after the snapshot began is
    neither seen by the snapshot nor written before the position the snapshot reports."""
    job = case.job()
    source = open_source(job.source)
    try:
        stream = change_stream(source, job, job.tables[0])
        with stream.snapshot() as (begin, point), source.engine.connect() as conn:
            begin(conn)
            at = point()
            assert at == stream.current()  # nothing committed since
            case.sql("INSERT INTO items (id, name) VALUES (900, 'after')")
            assert point() == at and stream.current() > at
            seen = conn.exec_driver_sql("SELECT count(*) FROM items WHERE id = 900").scalar()
            assert seen == 0
            conn.rollback()
    finally:
        source.close()


def test_one_transaction_over_two_tables(server: PrivateMariaDB, tmp_path: Path) -> None:
    two = BinlogCase(server, tmp_path, tables=[{"name": "items"}, {"name": "parts"}])
    try:
        two.sql(ITEMS, "CREATE TABLE parts (id int PRIMARY KEY, item int)")
        two.run("items"), two.run("parts")
        two.sql(
            "BEGIN",
            "INSERT INTO items (id, name) VALUES (1, 'one')",
            "INSERT INTO parts VALUES (1, 1), (2, 1)",
            "UPDATE items SET name = 'uno' WHERE id = 1",
            "COMMIT",
        )
        assert two.run("items").transactions == 1
        assert two.run("parts").transactions == 1
        assert two.destination_rows("items", "id, name") == [(1, "uno")]
        assert two.destination_rows("parts") == [(1, 1), (2, 1)]
    finally:
        two.close()


def test_long_transaction_arrives_without_lookback(case: BinlogCase) -> None:
    case.run()
    with case.engine.connect() as long:
        long.exec_driver_sql("BEGIN")
        long.exec_driver_sql("INSERT INTO items (id, name) VALUES (500, 'long')")
        case.sql("INSERT INTO items (id, name) VALUES (501, 'short')")
        case.run()
        ids = [row[0] for row in case.destination_rows(columns="id")]
        assert 501 in ids and 500 not in ids  # not committed yet
        long.exec_driver_sql("COMMIT")
    case.run()
    same(case)


def test_a_run_lists_the_binlog_files_once(case: BinlogCase) -> None:
    """Each `SHOW BINARY LOGS` is a round trip and a scan of the server's index file: a run of
    changes makes one listing, for the retention check, the reading and the result."""
    case.run()
    case.sql("UPDATE items SET name = 'listed' WHERE id = 1", "FLUSH BINARY LOGS")
    listings = []

    def seen(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if "SHOW BINARY LOGS" in statement.upper():
            listings.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", seen)
    try:
        result = case.run()
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", seen)
    assert result.counts.upserted == 1
    assert len(listings) == 1
    same(case)


def test_progress_comes_every_so_many_changes_whatever_the_transactions_hold(
    case: BinlogCase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`progress` is also the run's chance to be abandoned: it must come after every
    PROGRESS_EVERY changes, not only when the count lands on a multiple of it."""
    monkeypatch.setattr(binlog_cdc, "PROGRESS_EVERY", 10)
    case.run()
    for start in range(1000, 1030, 3):  # 10 transactions of 3 changes each
        case.sql(
            "BEGIN",
            *(f"INSERT INTO items (id, name) VALUES ({i}, 'p')" for i in range(start, start + 3)),
            "COMMIT",
        )
    calls: list[int] = []
    job = case.job()
    result = capture_changes(
        job, job.tables[0], case.position["items"], progress=lambda n, *_: calls.append(n)
    )
    assert result.counts.upserted == 30
    assert calls == [12, 24]


def test_truncate_then_rows(case: BinlogCase) -> None:
    case.run()
    case.sql(
        "INSERT INTO items (id, name) VALUES (101, 'before')",
        "TRUNCATE TABLE items",
        "INSERT INTO items (id, name) VALUES (102, 'after')",
    )
    result = case.run()
    assert result.counts.truncated == 1
    assert case.destination_rows(columns="id, name") == [(102, "after")]


def test_column_added_while_changes_flow(case: BinlogCase) -> None:
    case.run()
    case.sql(
        "UPDATE items SET name = 'before the column' WHERE id = 1",
        "ALTER TABLE items ADD COLUMN note varchar(20)",
        "INSERT INTO items (id, name, note) VALUES (60, 'with a note', 'hello')",
        "UPDATE items SET note = 'later' WHERE id = 2",
    )
    case.run()
    same(case, "id, name, note")
    assert dict(case.destination_rows(columns="id, note"))[60] == "hello"
    # A column that gives the rows no change touches a value: refused, naming the fix.
    case.sql("ALTER TABLE items ADD COLUMN flag int NOT NULL DEFAULT 7")
    with pytest.raises(SchemaError, match="NOT NULL or a DEFAULT.*--full-refresh"):
        case.run()
    case.run(full=True)
    same(case, "id, name, note, flag")


def test_column_added_then_dropped_before_the_run(case: BinlogCase) -> None:
    """Its values arrive as text, as they would have had a run come between the ALTERs."""
    case.run()
    case.sql(
        "ALTER TABLE items ADD COLUMN score int",
        "INSERT INTO items (id, name, score) VALUES (61, 'scored', 7)",
        "UPDATE items SET score = 8 WHERE id = 3",
        "ALTER TABLE items DROP COLUMN score",
        "UPDATE items SET name = 'after the drop' WHERE id = 4",
    )
    case.run()
    same(case)
    scores = dict(case.destination_rows(columns="id, score"))
    assert (scores[61], scores[3], scores[4], scores[5]) == ("7", "8", None, None)


def test_xa_transactions_are_refused_when_they_change_the_table(case: BinlogCase) -> None:
    case.sql("CREATE TABLE other (id int PRIMARY KEY)")
    case.run()

    def xa(name: str, insert: str) -> None:
        case.sql(f"XA START '{name}'", insert, f"XA END '{name}'", f"XA PREPARE '{name}'",
                 f"XA COMMIT '{name}'")  # fmt: skip

    xa("a", "INSERT INTO other VALUES (1)")
    assert case.run().transactions == 0  # another table's: passed over
    xa("b", "INSERT INTO items (id) VALUES (1000)")
    with pytest.raises(SourceError, match="an XA transaction changed the table"):
        case.run()


def test_a_rerun_from_the_recorded_position_changes_nothing_twice(case: BinlogCase) -> None:
    """The destination committed, the position was not recorded: the same changes again."""
    case.run()
    case.sql(
        "UPDATE items SET amount = amount * 2 WHERE id <= 10",
        "DELETE FROM items WHERE id = 30",
        "INSERT INTO items (id, name) VALUES (31, 'x')",
        "UPDATE items SET amount = amount + 1 WHERE id <= 3",
    )
    unrecorded = case.run(record=False)
    again = case.run()
    assert again.position == unrecorded.position
    same(case)


def test_refusals_name_the_setting(
    case: BinlogCase, server: PrivateMariaDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    case.sql("CREATE TABLE loose (id int, name text)")
    case.tables = [{"name": "loose"}]
    case.position["loose"] = None
    with pytest.raises(SchemaError, match="applies changes by primary key, and the table has none"):
        case.run("loose")
    job = case.job()
    assert any("the table has no primary key" in p for p in cdc_problems(job, job.tables[0]))
    case.tables = [{"name": "items"}]
    settings = ("binlog_format = 'MIXED'", "binlog_row_image = 'MINIMAL'",
                "binlog_row_metadata = 'MINIMAL'")  # fmt: skip
    server.sql(*(f"SET GLOBAL {s}" for s in settings))
    try:
        with pytest.raises(SourceError) as refused:
            case.run()
    finally:
        server.sql("SET GLOBAL binlog_format = 'ROW'", "SET GLOBAL binlog_row_image = 'FULL'",
                   "SET GLOBAL binlog_row_metadata = 'FULL'")  # fmt: skip
    for named in ("binlog_format = ROW", "binlog_row_image = FULL", "binlog_row_metadata = FULL"):
        assert named in str(refused.value)
    server.sql(
        "CREATE USER plain@localhost IDENTIFIED BY 'secret-pw'",
        f"GRANT SELECT ON {case.name}.* TO plain@localhost",
    )
    try:
        monkeypatch.setenv("BINLOG_PLAIN_PASSWORD", "secret-pw")
        case.source_url = (
            f"mysql+pymysql://plain:${{BINLOG_PLAIN_PASSWORD}}@localhost/{case.name}"
            f"?unix_socket={server.socket}"
        )
        with pytest.raises(SourceError) as refused:
            case.run()
        assert "lacks the REPLICATION SLAVE privilege" in str(refused.value)
        assert "lacks the REPLICATION CLIENT privilege" in str(refused.value)
        assert "secret-pw" not in str(refused.value)
    finally:
        case.source_url = server.url(case.name)
        server.sql("DROP USER plain@localhost")


def test_binlog_off_is_named(mysql_url: str, tmp_path: Path) -> None:
    """The shared server runs without the binlog: the problem names the setting."""
    engine = sa.create_engine(mysql_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE items (id int PRIMARY KEY)")
        log_bin = conn.exec_driver_sql("SELECT @@log_bin").scalar()
    engine.dispose()
    if log_bin:
        pytest.skip("the shared server runs with the binlog on")
    (tmp_path / "j.yaml").write_text(
        f"name: binlog_off\nsource: {{url: '{mysql_url}'}}\ndestination: {{url: 'sqlite:///"
        f"{tmp_path}/o.db'}}\nmode: cdc\ntables: [{{name: items}}]\n"
    )
    job = load_job(tmp_path / "j.yaml")
    assert any("the binary log is off" in p for p in cdc_problems(job, job.tables[0]))


def test_a_purged_position_is_a_clear_error(case: BinlogCase) -> None:
    case.run()
    case.sql("UPDATE items SET name = 'lost?' WHERE id = 1")
    recorded = f"{case.position['items'] >> 32:06d}"
    with case.engine.connect() as conn:
        for _ in range(50):  # MariaDB purges a file once InnoDB no longer needs it
            conn.exec_driver_sql("FLUSH BINARY LOGS")
            newest = conn.exec_driver_sql("SHOW MASTER STATUS").first()[0]
            conn.exec_driver_sql(f"PURGE BINARY LOGS TO '{newest}'")
            if not any(recorded in row[0] for row in conn.exec_driver_sql("SHOW BINARY LOGS")):
                break
            time.sleep(0.1)
    with pytest.raises(SourceError, match="purged.*binlog_expire_logs_seconds.*--full-refresh"):
        case.run()
    case.run(full=True)
    same(case)


def test_dagster_records_the_position_and_the_cli_shows_it(
    case: BinlogCase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = case.job()
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / f"{job.name}.yaml").write_text((tmp_path / f"{job.name}.yaml").read_text())
    home = make_dagster_home(tmp_path / "home")
    monkeypatch.setenv("COPYJOB_JOBS_DIR", str(jobs))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    cli = CliRunner()

    def plan() -> dict[str, Any]:
        done = cli.invoke(main, ["plan", job.name, "--json"])
        assert done.exit_code == 0, done.output
        return json.loads(done.output)[0]

    planned = plan()
    assert (planned["mode"], planned["load"]) == ("cdc", "snapshot")
    assets = [*build_source_specs([job]), *build_copy_assets([job])]
    key = dg.AssetKey([job.name, "items"])
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert dg.materialize(assets, instance=instance).success
        first = instance.get_latest_materialization_event(key).asset_materialization.metadata
        assert first[cdc.POSITION_BEFORE].value == "(none: initial snapshot)"
        assert first[cdc.POSITION].value.startswith("binlog.0000")
        case.sql("UPDATE items SET name = 'dagster' WHERE id = 7")
        planned = plan()
        assert planned["load"] == "changes" and planned["retained_wal_bytes"] > 0
        assert planned["watermark"] == first[cdc.POSITION].value
        result = dg.materialize(assets, instance=instance)
        second = instance.get_latest_materialization_event(key).asset_materialization.metadata
        assert second[cdc.POSITION_BEFORE].value == first[cdc.POSITION].value
        assert parse_position(second[cdc.POSITION].value) > parse_position(
            first[cdc.POSITION].value
        )
        assert second[cdc.ROWS_UPSERTED].value == 1 and second[cdc.TRANSACTIONS].value == 1
        checks = result.get_asset_check_evaluations()
        assert [(c.check_name, c.passed) for c in checks] == [(cdc.SLOT_CHECK, True)]
        assert "binlog behind" in checks[0].description
    same(case)
    listed = cli.invoke(main, ["list", "--json"])
    watermark = json.loads(listed.output)[0]["tables"][0]["watermark"]
    assert watermark == f"binlog {second[cdc.POSITION].value} (0 bytes of binlog behind)"
    dropped = cli.invoke(main, ["cdc", "drop", job.name])
    assert dropped.exit_code == 0 and "nothing to drop" in dropped.output


def test_sensor_wakes_on_the_tables_changes_in_the_binlog(case: BinlogCase) -> None:
    case.sql("CREATE TABLE other (id int PRIMARY KEY)")
    job = case.job(sensor=True)
    defs = build_definitions([job])
    assets = [*build_source_specs([job]), *build_copy_assets([job])]
    sensor = defs.resolve_sensor_def(f"{job.name}_new_data")

    def tick(cursor: str | None) -> Any:
        with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs) as context:
            return sensor.evaluate_tick(context)

    def requested(result: Any) -> list[list[str]]:
        return [[key.path[-1] for key in r.asset_selection] for r in result.run_requests]

    with dg.instance_for_test() as instance:
        first = tick(None)  # no position yet: the snapshot is due
        assert requested(first) == [["items"]]
        assert dg.materialize(assets, instance=instance).success
        idle = tick(first.cursor)
        assert idle.run_requests == [] and "no new rows in 1 of 1" in idle.skip_message
        case.sql("INSERT INTO other VALUES (1)")  # the binlog grows, not with this table
        still = tick(idle.cursor)
        assert still.run_requests == []
        case.sql("UPDATE items SET name = 'sensed' WHERE id = 2")
        woken = tick(still.cursor)
        assert requested(woken) == [["items"]]
        assert dg.materialize(assets, instance=instance).success
        assert tick(woken.cursor).run_requests == []
    same(case)


@pytest.mark.parametrize("reconnect", ["resumes", "refused"])
def test_connection_cut_mid_stream_then_recovers(
    case: BinlogCase,
    reconnect: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """The binlog connection is lost inside a large transaction. mysql-replication reconnects
    and resumes at the event it stopped at; when the reconnection is refused, the run fails
    with nothing applied and the next run applies everything. Either way the destination ends
    equal to the source."""
    case.run()
    case.sql("UPDATE items SET name = 'before the cut' WHERE id < 5")
    case.sql(
        "BEGIN",
        "INSERT INTO items (id, name) SELECT 1000 + seq, 'bulk' FROM seq_1_to_3000",
        "UPDATE items SET amount = amount + 1",
        "DELETE FROM items WHERE id > 25 AND id < 1000",
        "COMMIT",
    )
    before = case.destination_rows(columns="id, name")
    original = BinLogStreamReader.fetchone
    calls, connects = [], []

    def lost(*args: Any, **kwargs: Any) -> Any:
        raise pymysql.err.OperationalError(2013, "Lost connection to server during query")

    def connect(*args: Any, **kwargs: Any) -> Any:
        connects.append(1)
        if reconnect == "refused":
            raise pymysql.err.OperationalError(2003, "Can't connect to server")
        return pymysql.connect(*args, **kwargs)

    def cut(self: BinLogStreamReader) -> Any:
        calls.append(1)
        if len(calls) == 10:  # inside the big transaction
            self._stream_connection._read_packet = lost
            self.pymysql_wrapper = connect
        return original(self)

    monkeypatch.setattr(BinLogStreamReader, "fetchone", cut)
    if reconnect == "resumes":
        case.run()
        assert connects  # it reconnected
    else:
        with pytest.raises(SourceError, match="reading the binlog failed"):
            case.run()
        assert connects and case.destination_rows(columns="id, name") == before  # nothing
        case.run()
    assert len(calls) > 10  # the stream was cut
    copied = normal(case.destination_rows(columns=ALL))
    wanted = normal(case.source_rows(columns=ALL))
    keys = {row[0] for row in copied}
    counts = {
        "lost": len({row[0] for row in wanted} - keys),
        "duplicates": len(copied) - len(keys),
        "mismatches": len(set(wanted) ^ set(copied)) // 2,
    }
    tallies.record(
        request.node, tallies.FAULT_CASE, ("C2 cdc connection cut", f"binlog {reconnect}", counts)
    )
    assert copied == wanted


WIDE = (
    "CREATE TABLE wide (id bigint PRIMARY KEY, t tinyint, tu tinyint unsigned, s smallint, "
    "m mediumint, mu mediumint unsigned, i int, iu int unsigned, bu bigint unsigned, f float, "
    "d double, small decimal(5,2), big decimal(30,10), whole decimal(18,0), v varchar(300), "
    "c char(3), l text CHARACTER SET latin1, vb varbinary(20), b blob, j json, dt date, "
    "dtm datetime, dt3 datetime(3), ts timestamp(6) NULL, y year, k enum('a','b','c'), "
    "st set('x','y','z'))"
)
WIDE_ROWS = (
    "INSERT INTO wide VALUES (1, -128, 255, -32768, -8388608, 16777215, -2147483648, "
    "4294967295, 18446744073709551615, -1.5, 3.141592653589793, -123.45, "
    "-12345678901234567890.0123456789, 999999999999999999, repeat('é', 300), 'ab', 'çà', "
    "x'00ff10', x'cafe', '{\"a\": [1, 2]}', '1000-01-01', '9999-12-31 23:59:59', "
    "'2024-02-29 12:34:56.789', '2038-01-19 03:14:07.999999', 2155, 'c', 'x,z')",
    "INSERT INTO wide (id, small, big, dt, dtm, y, st) VALUES (2, 0.01, 0.0000000001, "
    "'2000-02-29', '1970-01-01 00:00:00', 1901, '')",
    "INSERT INTO wide (id) VALUES (3)",
    "UPDATE wide SET id = 4, small = -0.5, big = 1, v = 'moved' WHERE id = 2",
    "DELETE FROM wide WHERE id = 1",
)


def both_ways(
    case: BinlogCase, table: str, create: str, statements: tuple[str, ...]
) -> tuple[list[Any], list[Any]]:
    """The changes `statements` make to `table`, decoded by mysql-replication a row at a time
    (as `mysql_changes` adjusts them) and by `binlog_rows` as columns."""
    case.sql(create)
    stream = change_stream(open_source(case.job().source), case.job(), case.config("items"))
    start = stream.current()
    case.sql(*statements)
    upto = stream.current()
    stream.table = table

    def changes(columns: bool) -> list[tuple[str, dict[str, Any], Any]]:
        found = []
        events = stream.events(start, upto)
        for event, _ in events:
            if not isinstance(event, WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent):
                continue
            if columns:
                assert binlog_rows.decodable(event)
                chunk = binlog_rows.split(event, ("id",)).chunk()
                rows = pa.table(chunk.columns).to_pylist()
                old = chunk.old_keys and pa.table(chunk.old_keys).to_pylist()
                found += [(chunk.operation, r, old and old[i]) for i, r in enumerate(rows)]
            else:
                for change in mysql_changes._row_changes(event):
                    old = change.old and {"id": change.old["id"]}
                    found.append((change.operation, change.row, old))
        return found

    return changes(False), changes(True)


def test_rows_decoded_as_columns_as_mysql_replication_decodes_them(case: BinlogCase) -> None:
    """Every type the column-wise decoder takes, extremes and NULLs included: its values are
    mysql-replication's, as the row-by-row path gives them (`mysql_changes`)."""
    by_rows, by_columns = both_ways(case, "wide", WIDE, WIDE_ROWS)
    assert len(by_rows) == 5 and [c[0] for c in by_rows] == [
        "insert", "insert", "insert", "update", "delete"
    ]  # fmt: skip
    assert by_columns == by_rows


def test_a_table_with_a_type_decoded_row_by_row(server: PrivateMariaDB, tmp_path: Path) -> None:
    """BIT is left to mysql-replication's decoding, a row at a time: the same rows arrive."""
    made = BinlogCase(server, tmp_path, tables=[{"name": "flags"}])
    try:
        made.sql(
            "CREATE TABLE flags (id int PRIMARY KEY, b bit(8), name varchar(10))",
            "INSERT INTO flags SELECT seq, 65 + seq, 'n' FROM seq_1_to_5",
        )
        made.run("flags")
        made.sql(
            "UPDATE flags SET b = 90, name = 'u' WHERE id = 2",
            "DELETE FROM flags WHERE id = 3",
            "INSERT INTO flags VALUES (9, 97, 'new')",
        )
        result = made.run("flags")
        assert (result.counts.upserted, result.counts.deleted) == (2, 1)
        assert made.destination_rows("flags") == [
            (1, "B", "n"), (2, "Z", "u"), (4, "E", "n"), (5, "F", "n"), (9, "a", "new")
        ]  # fmt: skip
    finally:
        made.close()


MEMBERS = ", ".join(f"'m{i}'" for i in range(300))  # an ENUM of 2 bytes
BITS = ", ".join(f"'b{i}'" for i in range(64))  # a SET of 8 bytes
EDGES = (
    "CREATE TABLE edges (id int PRIMARY KEY, d40 decimal(40,2), d65 decimal(65,30), "
    "d18 decimal(18,9), d9 decimal(9,9), d10 decimal(10,0), m mediumint, "
    "c100 char(100) CHARACTER SET utf8mb4, v85 varchar(85) CHARACTER SET utf8mb3, "
    "v64 varchar(64) CHARACTER SET utf8mb4, vl varchar(255) CHARACTER SET latin1, "
    "cb binary(4), tt tinytext, mt mediumtext, lb longblob, "
    "cy text CHARACTER SET cp1251, u16 varchar(10) CHARACTER SET utf16, "
    f"e enum({MEMBERS}), s set({BITS}), dt1 datetime(1), dt2 datetime(2), dt5 datetime(5), "
    "ts1 timestamp(1) NULL, ts4 timestamp(4) NULL, y year, dz date, dtz datetime)"
)
EDGE_ROWS = (
    "SET SESSION sql_mode = ''",
    "INSERT INTO edges VALUES (1, -12345678901234567890123456789012345678.99, "
    "-12345678901234567890123456789012345.123456789012345678901234567891, "
    "-999999999.999999999, -0.999999999, -9999999999, -8388608, repeat('ü', 100), "
    "repeat('€', 85), repeat('x', 64), repeat('ÿ', 255), x'61620000', 'tiny', "
    "repeat('m', 70000), repeat(x'00ff', 40000), 'Привет', 'ab€', 'm299', 'b0,b63', "
    "'2024-01-02 03:04:05.1', '2024-01-02 03:04:05.99', '1999-12-31 23:59:59.12345', "
    "'2001-02-03 04:05:06.7', '2001-02-03 04:05:06.0009', 0, '0000-00-00', "
    "'0000-00-00 00:00:00')",
    "INSERT INTO edges (id, d40, d65, d18, d9, d10, y, dz, dtz) VALUES (2, "
    "99999999999999999999999999999999999999.99, 0.000000000000000000000000000001, "
    "999999999.999999999, 0.000000001, 1, 1901, '2024-02-00', '2024-00-01 00:00:00')",
    "UPDATE edges SET id = 3, d40 = -0.01, e = 'm0', s = '' WHERE id = 1",
    "DELETE FROM edges WHERE id = 2",
)


def test_more_types_decoded_as_columns_as_mysql_replication(case: BinlogCase) -> None:
    """DECIMALs wider than 38 digits (MariaDB's go to 65), 1- and 2-byte string lengths by
    each character set's widest character, 2-byte ENUMs, 8-byte SETs, odd fractional seconds,
    zero dates: the column-wise decoder gives mysql-replication's values."""
    by_rows, by_columns = both_ways(case, "edges", EDGES, EDGE_ROWS)
    assert [c[0] for c in by_rows] == ["insert", "insert", "update", "delete"]
    assert by_columns == by_rows


def test_compressed_binlog_events_are_refused_not_skipped(
    case: BinlogCase, server: PrivateMariaDB
) -> None:
    """MariaDB's log_bin_compress writes rows events mysql-replication does not know: skipped,
    their rows would never arrive. The setting is named, and events written while it was on
    stop the run, whatever the setting is now."""
    case.run()
    server.sql("SET GLOBAL log_bin_compress = ON")
    try:
        job = case.job()
        assert any("log_bin_compress = OFF" in p for p in cdc_problems(job, job.tables[0]))
        # Rows of more than log_bin_compress_min_len (256) bytes: their rows event compressed.
        server.sql(
            f"INSERT INTO {case.name}.items (id, raw) "
            f"SELECT 1000 + seq, repeat('x', 300) FROM {case.name}.seq_1_to_40"
        )
    finally:
        server.sql("SET GLOBAL log_bin_compress = OFF")
    with pytest.raises(SourceError, match="compressed events"):
        case.run()
    assert case.destination_rows(columns="count(*)") == [(30,)]


@pytest.mark.parametrize("extra", ["", ", f bit(8)"], ids=["columns", "row by row"])
def test_binary_n_keeps_its_trailing_zero_bytes(
    server: PrivateMariaDB, tmp_path: Path, extra: str
) -> None:
    """The binlog leaves out a BINARY(n)'s trailing zero bytes, as it does a CHAR's spaces;
    the table holds them, and so must the destination, by either decoder (a BIT column sends
    the table to mysql-replication's)."""
    made = BinlogCase(server, tmp_path, tables=[{"name": "fixed"}])
    try:
        made.sql(
            f"CREATE TABLE fixed (id int PRIMARY KEY, b binary(4), c char(4), v varbinary(4)"
            f"{extra})",
            "INSERT INTO fixed (id, b, c, v) VALUES (1, x'61620000', 'ab', x'6100')",
        )
        made.run("fixed")
        made.sql(
            "INSERT INTO fixed (id, b, c, v) VALUES (2, x'61620000', 'ab  ', x'6100'), "
            "(3, x'00000000', '', x'00'), (4, NULL, NULL, NULL)",
            "UPDATE fixed SET c = 'x' WHERE id = 1",
        )
        made.run("fixed")
        columns = "id, b, c, v"
        assert made.destination_rows("fixed", columns) == made.source_rows("fixed", columns)
        assert [row[1] for row in made.destination_rows("fixed", "id, b")] == [
            b"ab\0\0", b"ab\0\0", bytes(4), None
        ]  # fmt: skip
    finally:
        made.close()


@pytest.mark.parametrize("extra", ["", ", f bit(8)"], ids=["columns", "row by row"])
def test_year_0000_stays_0(server: PrivateMariaDB, tmp_path: Path, extra: str) -> None:
    """YEAR's byte counts from 1900, but 0 is the year 0000, as the table and the snapshot
    have it (mysql-replication adds 1900 to it too)."""
    made = BinlogCase(server, tmp_path, tables=[{"name": "years"}])
    try:
        made.sql(
            f"CREATE TABLE years (id int PRIMARY KEY, y year{extra})",
            "INSERT INTO years (id, y) VALUES (1, 2000)",
        )
        made.run("years")
        made.sql(
            "INSERT INTO years (id, y) VALUES (2, 0), (3, 1901), (4, 2155), (5, NULL)",
            "UPDATE years SET y = 0 WHERE id = 1",
        )
        made.run("years")
        assert made.destination_rows("years", "id, y") == made.source_rows("years", "id, y")
        assert made.source_rows("years", "id, y") == [
            (1, 0),
            (2, 0),
            (3, 1901),
            (4, 2155),
            (5, None),
        ]
    finally:
        made.close()


@pytest.mark.parametrize(
    ("kind", "named"),
    [("uuid", "uuid"), ("inet6", "inet6"), ("varchar(8) CHARACTER SET ucs2", "ucs2 text")],
)
def test_a_column_the_binlog_sends_undecodable_is_refused_naming_it(
    server: PrivateMariaDB, tmp_path: Path, kind: str, named: str
) -> None:
    """MariaDB's UUID and INET6 reach the binlog as their 16 stored bytes, and ucs2 text in
    an encoding neither decoder reads: copied, they would be bytes where the snapshot wrote
    text. The table is refused before its first copy, naming the column and its type."""
    made = BinlogCase(server, tmp_path, tables=[{"name": "odd"}])
    made.sql(f"CREATE TABLE odd (id int PRIMARY KEY, v {kind})")
    job = made.job()
    assert any("column 'v'" in p for p in cdc_problems(job, job.tables[0]))
    with pytest.raises(SourceError, match=f"column 'v' is {named}"):
        made.run("odd")
