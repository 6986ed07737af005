"""Shared fixtures: server URLs from the environment, scratch databases, a sample source.

Tests that need PostgreSQL or MariaDB read the server's URL from COPYJOB_TEST_PG_URL or
COPYJOB_TEST_MYSQL_URL (defaults: the local servers). Without a server they skip with the
reason, except under CI=true, where a missing server is a failure.
"""

import atexit
import dataclasses
import functools
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
import scheduling
import sqlalchemy as sa
import tallies
import yaml
from tallies import BadInputTally

from copyjob_dagster.cli.sample import create_shop
from copyjob_dagster.config import StoreConfig
from copyjob_dagster.stores import open_source, pgadbc

PG_URL = os.environ.get("COPYJOB_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("COPYJOB_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
PG_INSTANCE_FILE = Path(__file__).resolve().parent.parent / "deploy" / "dagster.postgres.yaml"


def _server_or_skip(url: str, name: str) -> None:
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means "no server"
        message = f"{name} is not reachable at {sa.engine.make_url(url).render_as_string()}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def pg_server() -> str:
    _server_or_skip(PG_URL, "PostgreSQL")
    return PG_URL


@pytest.fixture(scope="session")
def mysql_server() -> str:
    _server_or_skip(MYSQL_URL, "MariaDB/MySQL")
    return MYSQL_URL


def scratch_schema(server_url: str, kind: str) -> Iterator[str]:
    """A schema (PostgreSQL) or database (MariaDB) of its own for one test, dropped after."""
    name = f"cj_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(server_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE {kind} {name}"))
    try:
        yield name
    finally:
        with engine.begin() as conn:
            conn.execute(
                sa.text(f"DROP {kind} IF EXISTS {name}" + (" CASCADE" if kind == "SCHEMA" else ""))
            )
        engine.dispose()


@pytest.fixture
def pg_schema(pg_server: str) -> Iterator[str]:
    """A fresh PostgreSQL schema; use it with PG_URL and `schema:`."""
    yield from scratch_schema(pg_server, "SCHEMA")


@pytest.fixture
def pg_source(pg_server: str, pg_schema: str) -> Iterator[Any]:
    """A source store on a fresh schema of the shared PostgreSQL."""
    store = open_source(StoreConfig(url=pg_server, schema=pg_schema))
    yield store
    store.close()


@pytest.fixture
def driver_batches(monkeypatch: pytest.MonkeyPatch) -> list[pa.RecordBatch]:
    """The batches ADBC's PostgreSQL driver handed over, as it read them (empty: it read
    nothing)."""
    seen: list[pa.RecordBatch] = []
    original = pgadbc._exact

    def spy(batch: pa.RecordBatch, chosen: pgadbc.Plan) -> pa.RecordBatch:
        seen.append(batch)
        return original(batch, chosen)

    monkeypatch.setattr(pgadbc, "_exact", spy)
    return seen


@pytest.fixture
def mysql_url(mysql_server: str) -> Iterator[str]:
    """The URL of a fresh MariaDB database, dropped after the test."""
    for database in scratch_schema(mysql_server, "DATABASE"):
        yield (
            sa.engine.make_url(mysql_server)
            .set(database=database)
            .render_as_string(hide_password=False)
        )


def make_dagster_home(folder: Path, storage: str = "sqlite") -> Path:
    """A Dagster instance of its own in `folder`, its storage created now: two processes that
    create it at once race in its schema migrations.

    `storage="postgres"` (with the `instance_storage` fixture) keeps it in a fresh PostgreSQL
    database, configured by the production file deploy/dagster.postgres.yaml itself.
    """
    if storage != "postgres":
        shutil.copytree(_migrated_sqlite_home(), folder)
        return folder
    folder.mkdir(parents=True)
    (folder / "dagster.yaml").write_text(postgres_instance_yaml(_new_instance_database()))
    dg.DagsterInstance.from_config(str(folder)).dispose()
    return folder


@functools.cache
def _migrated_sqlite_home() -> Path:
    """One SQLite instance per test process, created once and copied for each test: creating
    its storage costs about 0.3 s of CPU, a copy a fifth of that."""
    folder = Path(tempfile.mkdtemp(prefix="cj_dagster_home_")) / "home"
    folder.mkdir()
    atexit.register(shutil.rmtree, folder.parent, True)
    (folder / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    dg.DagsterInstance.from_config(str(folder)).dispose()
    return folder


def postgres_instance_yaml(database: str) -> str:
    """deploy/dagster.postgres.yaml, its database named: the connection's other values still
    come from the DAGSTER_PG_* variables, as in production."""
    config = yaml.safe_load(PG_INSTANCE_FILE.read_text())
    config["storage"]["postgres"]["postgres_db"]["db_name"] = database
    return yaml.safe_dump(config)


_instance_databases: list[str] = []


def _new_instance_database() -> str:
    url = sa.engine.make_url(PG_URL)
    os.environ.update(
        DAGSTER_PG_HOST=url.host or "localhost",
        DAGSTER_PG_PORT=str(url.port or 5432),
        DAGSTER_PG_USERNAME=url.username or "",
        DAGSTER_PG_PASSWORD=url.password or "",
    )
    name = f"cj_dagster_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    _instance_databases.append(name)
    return name


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def instance_storage(request: pytest.FixtureRequest) -> str:
    """Runs a test on both instance storages: the embedded SQLite one, and PostgreSQL
    (dagster-postgres, as deploy/dagster.postgres.yaml configures it)."""
    if request.param == "postgres":
        request.getfixturevalue("pg_server")
        try:
            import dagster_postgres  # noqa: F401
        except ImportError:
            message = "dagster-postgres is not installed (pip install -e .)"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
    return request.param


def drop_instance_databases() -> None:
    """Drops the PostgreSQL databases of the instances `make_dagster_home` made."""
    if not _instance_databases:
        return
    engine = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        while _instance_databases:
            name = _instance_databases.pop()
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    engine.dispose()


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Some modules whole to one worker, the slowest work first (see scheduling.py)."""
    return scheduling.GroupedSlowestFirst(config, log)


def pytest_sessionfinish(session: pytest.Session) -> None:
    drop_instance_databases()


@pytest.fixture(scope="session")
def shop_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small copy of the sample shop database (2% of the demo's rows), shared read-only."""
    path = tmp_path_factory.mktemp("shop") / "shop.sqlite"
    create_shop(path, scale=0.02)
    return path


@pytest.fixture
def bad_inputs(request: pytest.FixtureRequest) -> Iterator[BadInputTally]:
    """This test's tally of bad inputs and leaks, added to the session's when it ends."""
    tally = BadInputTally()
    yield tally
    tallies.record(request.node, tallies.BAD_INPUTS, dataclasses.asdict(tally))


SESSION_TALLIES = tallies.SessionTallies()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "teardown":
        SESSION_TALLIES.add(report)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    SESSION_TALLIES.summarize(terminalreporter)
