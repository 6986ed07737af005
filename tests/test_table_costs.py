"""What each table of a many-table run costs at the servers, and that the cuts change nothing a
user sees: the source tables are described in one go (a table dropped or changed meanwhile is
still reported, and its retry describes it anew); a full copy's row count does not describe the
table it just created (and what it keeps is what the server would describe); the rows at a
watermark are read on the reader's own connection, the same values the driver reads; and
`copyjob run` asks Dagster's schema probes once."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
import sqlalchemy as sa

from copyjob_dagster.cli.probes import remember_schema_probes
from copyjob_dagster.config import CopyJob, StoreConfig
from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs
from copyjob_dagster.engine import copy_table, describe_sources, shared_engines, table_stores
from copyjob_dagster.errors import CopyJobError
from copyjob_dagster.stores import Window, open_destination, open_source, pgadbc

TABLES = [f"t{i}" for i in range(8)]


@pytest.fixture
def source(pg_server: str, pg_schema: str) -> str:
    with sa.create_engine(pg_server).begin() as conn:
        for table in TABLES:
            conn.execute(
                sa.text(
                    f"CREATE TABLE {pg_schema}.{table} (id integer PRIMARY KEY, name text, "
                    f"amount numeric(12, 2), at timestamptz);"
                    f"INSERT INTO {pg_schema}.{table} SELECT g, 'n' || g, g * 1.5, "
                    f"timestamptz '2024-01-01' + (g / 3) * interval '1 hour' "
                    "FROM generate_series(1, 30) g"
                )
            )
    return pg_schema


@pytest.fixture
def catalog_queries() -> Iterator[list[str]]:
    """Every statement sent to PostgreSQL that reads its catalog, while the test runs."""
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "pg_catalog" in statement and conn.dialect.name == "postgresql":
            seen.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", note)
    yield seen
    sa.event.remove(sa.engine.Engine, "before_cursor_execute", note)


def _job(pg_server: str, source: str, destination: str | Path) -> CopyJob:
    where = (
        {"url": pg_server, "schema": destination}
        if isinstance(destination, str)
        else {"url": str(destination)}
    )
    return CopyJob.model_validate(
        {
            "name": "costs",
            "source": {"url": pg_server, "schema": source},
            "destination": where,
            "max_parallel_tables": 2,
            "tables": [{"name": table} for table in TABLES],
        }
    )


def test_a_runs_tables_ask_the_catalog_a_few_times_and_copy_every_row(
    pg_server: str, source: str, catalog_queries: list[str]
) -> None:
    destination = f"{source}_copy"
    with sa.create_engine(pg_server).begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {destination}"))
    try:
        job = _job(pg_server, source, destination)
        with dg.instance_for_test() as instance:
            result = dg.materialize(
                [*build_source_specs([job]), *build_copy_assets([job])], instance=instance
            )
        assert result.success
        # Describing a table is about ten catalog queries: 8 tables described one by one at
        # the source, and again at the destination for their row counts, were over 150.
        assert len(catalog_queries) <= 4 * len(TABLES), len(catalog_queries)
        with sa.create_engine(pg_server).connect() as conn:
            counts = {
                t: conn.execute(sa.text(f"SELECT count(*) FROM {destination}.{t}")).scalar()
                for t in TABLES
            }
        assert counts == dict.fromkeys(TABLES, 30)
        checks = result.get_asset_check_evaluations()
        assert len(checks) == len(TABLES) and all(check.passed for check in checks)
    finally:
        with sa.create_engine(pg_server).begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {destination} CASCADE"))


def test_a_column_dropped_after_the_run_described_it_fails_the_table_and_its_retry_copies(
    pg_server: str, source: str, tmp_path: Path
) -> None:
    job = _job(pg_server, source, tmp_path / "lake")
    table = job.tables[0]
    with shared_engines():
        describe_sources(job, job.tables)
        with sa.create_engine(pg_server).begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {source}.{table.name} DROP COLUMN amount"))
        with table_stores(job) as stores, pytest.raises(CopyJobError, match="amount"):
            copy_table(job, table, stores=stores)
        with table_stores(job) as stores:  # the retry: described anew
            result = copy_table(job, table, stores=stores)
    assert result.rows_written == 30
    assert "amount" not in result.plan.destination_schema.names


def test_a_replaced_tables_description_is_the_one_the_server_gives(
    pg_server: str, pg_schema: str
) -> None:
    """PostgreSQL keeps the definition it created (`describes_as_created`): what it describes
    from it is what the server describes."""
    schema = pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            pa.field("amount", pa.decimal128(12, 2)),
            pa.field("name", pa.string()),
            pa.field("at", pa.timestamp("us", tz="UTC")),
            pa.field("day", pa.date32()),
            pa.field("ok", pa.bool_()),
            pa.field("score", pa.float64()),
            pa.field("small", pa.int16()),
            pa.field("medium", pa.int32()),
            pa.field("wide", pa.decimal128(38, 10)),
            pa.field("naive", pa.timestamp("us")),
            pa.field("clock", pa.time64("us")),
            pa.field("bytes", pa.binary()),
            pa.field("real", pa.float32()),
        ]
    )
    batch = pa.RecordBatch.from_pylist([], schema=schema)
    config = StoreConfig(url=pg_server, schema=pg_schema)
    store = open_destination(config)
    try:
        store.replace("kept", schema, ("id",), [batch])
        kept = store.describe("kept")
    finally:
        store.close()
    fresh = open_destination(config)
    try:
        assert kept == fresh.describe("kept")
    finally:
        fresh.close()


def test_the_rows_at_a_watermark_are_read_on_the_readers_connection_as_the_driver_reads_them(
    pg_server: str, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_source(StoreConfig(url=pg_server, schema=source))
    columns = ["id", "name", "amount", "at"]
    try:
        with store.open_reader("t0") as reader:
            every = pa.Table.from_batches(list(reader.batches(columns, 1000)))
            value = every.column("at")[4].as_py()
            opened: list[str] = []
            original = pgadbc.read
            monkeypatch.setattr(
                pgadbc, "read", lambda *args: opened.append(args[2]) or original(*args)
            )
            at_value = pa.Table.from_batches(
                list(reader.batches(columns, 1000, Window("at", value, True, value)))
            )
    finally:
        store.close()
    assert not opened  # no session of the driver's own
    expected = [row for row in every.to_pylist() if row["at"] == value]
    assert at_value.to_pylist() == expected and len(expected) == 3
    assert at_value.schema == every.schema


def test_dagsters_schema_probes_are_asked_once_when_they_find_a_migration(
    tmp_path: Path,
) -> None:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        storage = instance.event_log_storage
        asked: list[str] = []
        for name in ("has_secondary_index", "has_asset_key_col"):
            probe = getattr(storage, name)
            setattr(storage, name, lambda arg, probe=probe: asked.append(arg) or probe(arg))
        remember_schema_probes(instance)
        for _ in range(3):
            assert storage.has_asset_key_col("last_materialization_timestamp")
            assert not storage.has_asset_key_col("no_such_column")
        assert asked.count("last_materialization_timestamp") == 1
        assert asked.count("no_such_column") == 3  # not found: asked again each time


def test_a_postgresql_table_is_described_as_a_whole_reflection_describes_it_from_fewer_queries(
    pg_server: str, pg_schema: str, catalog_queries: list[str]
) -> None:
    """Columns and primary key only (`PostgresStore._reflected`): every column's type,
    nullability, default, identity and generated expression, and the key's columns and name,
    are what SQLAlchemy's whole reflection gives, from a fraction of its catalog queries."""
    with sa.create_engine(pg_server).begin() as conn:
        conn.execute(sa.text(f"CREATE TYPE {pg_schema}.mood AS ENUM ('ok', 'sad')"))
        conn.execute(
            sa.text(
                f"CREATE TABLE {pg_schema}.wide (a int, b text NOT NULL DEFAULT 'x', "
                "c numeric(12, 2), d timestamptz DEFAULT now(), e int GENERATED ALWAYS AS "
                "(a * 2) STORED, f bigint GENERATED BY DEFAULT AS IDENTITY, g jsonb, h uuid, "
                f'i {pg_schema}.mood, j int[], k bytea, "Odd Name" varchar(7), '
                "CONSTRAINT wide_key PRIMARY KEY (a, b));"
                f"COMMENT ON COLUMN {pg_schema}.wide.c IS 'money'"
            )
        )
    store = open_destination(StoreConfig(url=pg_server, schema=pg_schema))
    try:
        catalog_queries.clear()
        lean = store.reflect("wide")
        asked = len(catalog_queries)
        whole = sa.Table("wide", sa.MetaData(), autoload_with=store.engine, schema=pg_schema)
        assert lean is not None and asked * 2 <= len(catalog_queries) - asked

        def seen(table: sa.Table) -> list[tuple[Any, ...]]:
            return [
                (
                    c.name, repr(c.type), c.nullable, c.primary_key, c.autoincrement,
                    str(getattr(c.server_default, "arg", None)),
                    str(getattr(c.computed, "sqltext", None)), repr(c.identity), c.comment,
                )
                for c in table.columns
            ]  # fmt: skip

        assert seen(lean) == seen(whole)
        assert lean.primary_key.name == whole.primary_key.name == "wide_key"
        assert store.reflect("no_such_table") is None
    finally:
        store.close()
