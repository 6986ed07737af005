"""Bad inputs beyond those of tests/test_cli_validate.py: refused clearly, with nothing done.

Job files with bad timeouts, lookbacks, time zones, empty lists and table names that a SQLite
destination takes for one are refused by `copyjob validate` without opening any connection
(their source is a port that counts connections). Incremental columns whose type cannot order
(boolean, JSON, binary, float) are refused by `validate --connect` and, at run time, before
anything is written, as are unknown tables and columns and table names that would leave a
Parquet folder.
"""

import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import BadInputTally
from test_cli_validate import assert_clean_failure, run_validate

from copyjob_dagster.config import CopyJob
from copyjob_dagster.engine import copy_table
from copyjob_dagster.errors import CopyJobError


@pytest.fixture(scope="module")
def counting_port() -> Iterator[tuple[int, list[int]]]:
    """A port that counts the connections made to it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    accepted: list[int] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                server.accept()[0].close()
                accepted.append(1)
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


def _head(port: int, source: str = "", destination: str = "") -> str:
    return (
        f"source: {{url: 'postgresql+psycopg://u@127.0.0.1:{port}/shop'{source}}}\n"
        f"destination: {{url: 'postgresql+psycopg://u@127.0.0.1:{port}/wh'{destination}}}\n"
    )


ORDERS = "tables:\n  - name: orders\n"
INCREMENTAL = "mode: incremental\ntables:\n  - name: orders\n    incremental_column: id\n"
# (file stem = job name, job body after the head, head options, what the message names)
BAD_JOBS = [
    ("timeout_negative", ORDERS, {"source": ", connect_timeout: -1"},
     ["field 'source.connect_timeout'", "greater than or equal to 2"]),
    ("timeout_text", ORDERS, {"source": ", connect_timeout: soon"},
     ["field 'source.connect_timeout'", "should be a valid integer, got text"]),
    ("timeout_fraction", ORDERS, {"destination": ", connect_timeout: 2.5"},
     ["field 'destination.connect_timeout'", "should be a valid integer, got a number"]),
    ("statement_zero", ORDERS, {"destination": ", statement_timeout: 0"},
     ["field 'destination.statement_timeout'", "greater than 0"]),
    ("lookback_negative", INCREMENTAL + "    lookback: -5\n", {},
     ["table 'orders'", "field 'lookback'", "greater than or equal to 0"]),
    ("null_cursor_bad", INCREMENTAL + "    null_cursor: maybe\n", {},
     ["table 'orders'", "field 'null_cursor'", "should be 'fail' or 'skip'"]),
    ("timezone_bad", ORDERS + "schedule: {cron: '0 * * * *', timezone: Mars/Olympus}\n", {},
     ["field 'schedule.timezone'", "not a known time zone"]),
    ("columns_empty", ORDERS + "    columns: []\n", {},
     ["table 'orders'", "field 'columns'", "must list at least one item"]),
    ("key_empty", ORDERS + "    primary_key: []\n", {},
     ["table 'orders'", "field 'primary_key'", "must list at least one item"]),
    ("retries_negative", ORDERS + "retries: {max_retries: -1}\n", {},
     ["field 'retries.max_retries'", "greater than or equal to 0"]),
    ("sensor_too_often", INCREMENTAL + "sensor: {minimum_interval_seconds: 1}\n", {},
     ["field 'sensor.minimum_interval_seconds'", "greater than or equal to 5"]),
]  # fmt: skip
CASE_TWINS = (
    "name: case_twins\nsource: {url: 'sqlite:///shop.db'}\n"
    "destination: {url: 'sqlite:///copy.db'}\ntables:\n  - name: Users\n  - name: users\n"
)


def test_bad_job_files_are_refused_without_connecting(
    tmp_path: Path, counting_port: tuple[int, list[int]], bad_inputs: BadInputTally
) -> None:
    port, accepted = counting_port
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    for stem, body, head, _ in BAD_JOBS:
        (jobs_dir / f"{stem}.yaml").write_text(f"name: {stem}\n{_head(port, **head)}{body}")
    (jobs_dir / "case_twins.yaml").write_text(CASE_TWINS)
    result = run_validate(jobs_dir, "--connect")  # even asked to connect, a bad file is not
    assert_clean_failure(result)
    expected = [(stem, parts) for stem, _, _, parts in BAD_JOBS]
    expected.append(
        ("case_twins", ["table 'users'", "field 'to'", "'users' and 'Users' (table 'Users') "
         "differ only in case, and SQLite takes them for one table"])
    )  # fmt: skip
    missing = []
    for stem, parts in expected:
        lines = [line for line in result.stderr.splitlines() if f"/{stem}.yaml: job " in line]
        clear = any(all(part in line for part in parts) for line in lines)
        bad_inputs.refusal(f"validate {stem}.yaml", clear)
        if not clear:
            missing.append(f"{stem}: {lines}")
    assert not missing, "\n".join(missing) + "\n" + result.stderr
    assert accepted == []


UNORDERED = {"flag": "BOOLEAN", "doc": "JSON", "data": "BLOB", "ratio": "REAL"}


@pytest.fixture
def typed_source(tmp_path: Path) -> Path:
    path = tmp_path / "typed.sqlite"
    with sqlite3.connect(path) as db:
        columns = ", ".join(f"{name} {kind}" for name, kind in UNORDERED.items())
        db.execute(f"CREATE TABLE typed (id INTEGER PRIMARY KEY, {columns})")
    return path


def test_unordered_incremental_columns_are_refused_by_validate_connect(
    tmp_path: Path, typed_source: Path, bad_inputs: BadInputTally
) -> None:
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    for column in UNORDERED:
        (jobs_dir / f"by_{column}.yaml").write_text(
            f"name: by_{column}\nsource: {{url: 'sqlite:///{typed_source}'}}\n"
            f"destination: {{url: '{tmp_path / 'lake'}'}}\nmode: incremental\n"
            f"tables:\n  - name: typed\n    incremental_column: {column}\n"
        )
    result = run_validate(jobs_dir, "--connect")
    assert_clean_failure(result)
    for column in UNORDERED:
        expected = (
            f"job 'by_{column}', table 'typed', field 'incremental_column': incremental "
            f"column {column!r}"
        )
        clear = expected in result.stderr
        bad_inputs.refusal(f"validate --connect: incremental column of type {column}", clear)
        assert clear, result.stderr
    assert not (tmp_path / "lake").exists()


RUN_TIME = [
    pytest.param({"name": "events", "incremental_column": "flag"}, "cannot serve as a watermark",
                 id="boolean-cursor"),
    pytest.param({"name": "events", "incremental_column": "doc"}, "which do not order",
                 id="jsonb-cursor"),
    pytest.param({"name": "events", "incremental_column": "data"}, "cannot serve as a watermark",
                 id="bytea-cursor"),
    pytest.param({"name": "missing", "incremental_column": "id"}, "table 'missing' not found",
                 id="unknown-table"),
    pytest.param({"name": "events", "incremental_column": "id", "columns": ["id", "nope"]},
                 "has no column 'nope'", id="unknown-column"),
    pytest.param({"name": "events", "incremental_column": "id", "to": "../escape"},
                 "is not a file name in the folder", id="to-leaves-the-folder"),
]  # fmt: skip


@pytest.fixture
def pg_events(pg_server: str, pg_schema: str) -> dict[str, str]:
    engine = sa.create_engine(pg_server)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE {pg_schema}.events "
            "(id int PRIMARY KEY, flag boolean, doc jsonb, data bytea);"
            f"INSERT INTO {pg_schema}.events VALUES (1, true, '{{}}', '\\x00')"
        )
    engine.dispose()
    return {"url": pg_server, "schema": pg_schema}


@pytest.mark.parametrize(("table", "expected"), RUN_TIME)
def test_bad_tables_are_refused_at_run_time_before_writing(
    pg_events: dict[str, str],
    tmp_path: Path,
    table: dict[str, object],
    expected: str,
    bad_inputs: BadInputTally,
) -> None:
    lake = tmp_path / "nested" / "lake"
    job = CopyJob.model_validate(
        {
            "name": "run_time",
            "mode": "incremental",
            "source": pg_events,
            "destination": {"url": str(lake)},
            "tables": [table],
        }
    )
    with pytest.raises(CopyJobError) as refused:
        copy_table(job, job.tables[0])
    clear = expected in str(refused.value) and (
        f"table {table['name']!r}" in str(refused.value) or "folder" in str(refused.value)
    )
    bad_inputs.refusal(f"run: {table}", clear)
    assert clear, refused.value
    assert not (tmp_path / "nested").exists()
