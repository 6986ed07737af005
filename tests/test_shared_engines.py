"""The tables of one run share their stores' connections to a PostgreSQL server: a run of many
small tables connects a few times, not several times a table, and copies every row; a table's
copy lock is released when the table is done, though its session stays open for the next."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from copyjob_dagster.config import CopyJob, StoreConfig
from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs
from copyjob_dagster.engine import shared_engines
from copyjob_dagster.stores import open_destination

TABLES = [f"t{i}" for i in range(8)]


@pytest.fixture
def source(pg_server: str, pg_schema: str) -> str:
    with sa.create_engine(pg_server).begin() as conn:
        for table in TABLES:
            conn.execute(
                sa.text(
                    f"CREATE TABLE {pg_schema}.{table} (id integer PRIMARY KEY, name text);"
                    f"INSERT INTO {pg_schema}.{table} SELECT g, 'n' || g "
                    "FROM generate_series(1, 30) g"
                )
            )
    return pg_schema


@pytest.fixture
def connections() -> Iterator[list[Any]]:
    """Every connection SQLAlchemy opens to PostgreSQL while the test runs."""
    opened: list[Any] = []

    def count(dbapi_connection: Any, record: Any) -> None:
        if type(dbapi_connection).__module__.startswith("psycopg"):
            opened.append(dbapi_connection)

    sa.event.listen(sa.engine.Engine, "connect", count)
    yield opened
    sa.event.remove(sa.engine.Engine, "connect", count)


def test_a_runs_tables_connect_a_few_times_and_copy_every_row(
    pg_server: str, source: str, pg_schema: str, connections: list[Any], tmp_path: Path
) -> None:
    destination = f"{pg_schema}_copy"
    with sa.create_engine(pg_server).begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {destination}"))
    try:
        job = CopyJob.model_validate(
            {
                "name": "shared",
                "source": {"url": pg_server, "schema": source},
                "destination": {"url": pg_server, "schema": destination},
                "max_parallel_tables": 2,
                "tables": [{"name": table} for table in TABLES],
            }
        )
        with dg.instance_for_test() as instance:
            result = dg.materialize(
                [*build_source_specs([job]), *build_copy_assets([job])], instance=instance
            )
        assert result.success
        # Two tables at once, each holding a lock, a read and a write session at most: the
        # run's sessions, not 3-4 for each of the 8 tables (the source and destination share
        # one engine here, the same server and settings).
        assert len(connections) <= 10, len(connections)
        with sa.create_engine(pg_server).connect() as conn:
            counts = {
                t: conn.execute(sa.text(f"SELECT count(*) FROM {destination}.{t}")).scalar()
                for t in TABLES
            }
        assert counts == dict.fromkeys(TABLES, 30)
    finally:
        with sa.create_engine(pg_server).begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {destination} CASCADE"))


def test_a_done_tables_lock_is_free_while_its_session_stays_open(
    pg_server: str, pg_schema: str
) -> None:
    config = StoreConfig.model_validate({"url": pg_server, "schema": pg_schema})
    # Another run's store: other settings, so an engine and sessions of its own.
    other = StoreConfig.model_validate(
        {"url": pg_server, "schema": pg_schema, "connect_timeout": 7}
    )
    with shared_engines():
        first = open_destination(config)
        with first.lock("orders", timeout_seconds=5):
            pass
        first.close()
        assert first.engine.pool.checkedin() >= 1  # type: ignore[attr-defined]  # kept open
        second = open_destination(config)
        assert second.engine is first.engine  # type: ignore[attr-defined]  # the next table's
        second.close()
        elsewhere = open_destination(other)
        try:
            assert elsewhere.engine is not first.engine  # type: ignore[attr-defined]
            with elsewhere.lock("orders", timeout_seconds=1):  # at once: nobody holds it
                pass
        finally:
            elsewhere.close()
