"""Hostile table and column names, created for real, copied to every destination.

Every name below exists in PostgreSQL, MariaDB and SQLite (where the database accepts it) and
is copied to PostgreSQL, MariaDB, SQLite and Parquet. Each copy either arrives exactly (the same
table name, column names and rows) or is refused with a message that names the store and the
remedy, before anything is written. A `canary` table in every store must survive it all, and
PostgreSQL must log no error caused by a copy: the PostgreSQL stores are the suite's own server
(see private_pg), whose log the test reads.
"""

import functools
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from conftest import BadInputTally

from copyjob_dagster.config import CopyJob
from copyjob_dagster.defs import naming
from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs
from copyjob_dagster.engine import copy_table
from copyjob_dagster.errors import CopyJobError

from .private_pg import PrivatePostgres

NAMES = [
    '"',
    "`",
    "]",
    "'; DROP TABLE canary; --",
    "two words",
    "a.b",
    "order",
    "user",
    "Users",
    "users",
    "🎉 party",
    "100%",
]
# At each source's limit: 63 bytes in PostgreSQL (here 32 characters), 64 characters in MariaDB;
# SQLite has none.
AT_LIMIT = {"postgresql": "é" * 31 + "z", "mysql": "m" * 64, "sqlite": "s" * 200}
# One past it: PostgreSQL would cut the name, MariaDB refuses it; the copy must not find it.
OVER_LIMIT = {"postgresql": "é" * 32, "mysql": "m" * 65}
SOURCES = ["postgresql", "mysql", "sqlite"]
DESTINATIONS = ["postgresql", "mysql", "sqlite", "parquet"]
ROWS = [{"id": 1, "value": 'it\'s "quoted"; --'}, {"id": 2, "value": None}]


@dataclass
class Store:
    family: str
    url: str
    schema: str | None = None

    @property
    def config(self) -> dict[str, Any]:
        return {"url": self.url, **({"schema": self.schema} if self.schema else {})}

    @functools.cached_property
    def engine(self) -> sa.Engine:
        return sa.create_engine(self.url)


@dataclass
class World:
    sources: dict[str, Store]
    destinations: dict[str, dict[str, Store]]  # by source family, then destination family
    tables: dict[str, list[str]]  # the hostile tables each source holds
    column_names: dict[str, list[str]]  # the hostile columns of each source's `columns` table
    log_start: int
    postgres: PrivatePostgres


def _accepts(family: str, name: str) -> bool:
    """Whether a source database can hold `name` at all (and so the test creates it)."""
    if family == "mysql":
        return not any(ord(c) > 0xFFFF for c in name)
    return True


def _create(store: Store, table: str, columns: list[str], rows: list[dict[str, Any]]) -> None:
    engine = store.engine
    created = sa.Table(
        table,
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        *(sa.Column(c, sa.Text) for c in columns),
        schema=store.schema,
    )
    with engine.begin() as conn:
        created.create(conn)
        conn.execute(sa.insert(created), rows)


def _plant_canary(store: Store) -> None:
    _create(store, "canary", ["value"], [{"id": 1, "value": "alive"}])


def _canary_alive(store: Store) -> bool:
    if store.family == "parquet":
        return True
    try:
        table = sa.Table("canary", sa.MetaData(), autoload_with=store.engine, schema=store.schema)
        with store.engine.connect() as conn:
            return conn.execute(sa.select(table.c.value)).scalar() == "alive"
    except sa.exc.NoSuchTableError:
        return False


def _columns_for(family: str) -> list[str]:
    names = [n for n in NAMES if _accepts(family, n)]
    if family in ("mysql", "sqlite"):
        names.remove("users")  # their column names ignore case: "Users" is the same column
    return names


@pytest.fixture(scope="module")
def world(
    private_postgres: PrivatePostgres, mysql_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    tag = uuid.uuid4().hex[:8]
    folder = tmp_path_factory.mktemp("hostile")
    admin = private_postgres.admin_url
    mysql_databases: list[str] = []

    def mysql_store(suffix: str) -> Store:
        database = f"cj_hostile_{tag}_{suffix}"
        engine = sa.create_engine(mysql_server)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {database}")
        engine.dispose()
        mysql_databases.append(database)
        url = sa.engine.make_url(mysql_server).set(database=database)
        return Store("mysql", url.render_as_string(hide_password=False))

    def pg_store(suffix: str) -> Store:
        schema = f"hostile_{tag}_{suffix}"
        engine = sa.create_engine(admin)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        engine.dispose()
        return Store("postgresql", admin, schema)

    stores: list[Store] = []

    def store(family: str, suffix: str) -> Store:
        if family == "postgresql":
            made = pg_store(suffix)
        elif family == "mysql":
            made = mysql_store(suffix)
        elif family == "sqlite":
            made = Store("sqlite", f"sqlite:///{folder / f'{suffix}.sqlite'}")
        else:
            made = Store("parquet", str(folder / suffix))
        stores.append(made)
        return made

    try:
        log_start = private_postgres.log_size()
        sources = {family: store(family, f"source_{family}") for family in SOURCES}
        destinations = {
            source: {family: store(family, f"{source}_to_{family}") for family in DESTINATIONS}
            for source in SOURCES
        }
        tables: dict[str, list[str]] = {}
        columns: dict[str, list[str]] = {}
        for family, source in sources.items():
            tables[family] = [n for n in [*NAMES, AT_LIMIT[family]] if _accepts(family, n)]
            if family == "sqlite":
                tables[family].remove("users")  # SQLite's table names ignore case too
            for table in tables[family]:
                _create(source, table, [table], [{"id": r["id"], table: r["value"]} for r in ROWS])
            columns[family] = _columns_for(family)
            _create(
                source,
                "columns",
                columns[family],
                [{"id": 1, **dict.fromkeys(columns[family], "v")}],
            )
        for store_ in [
            *sources.values(),
            *(d for by in destinations.values() for d in by.values()),
        ]:
            if store_.family != "parquet":
                _plant_canary(store_)
        yield World(sources, destinations, tables, columns, log_start, private_postgres)
    finally:
        for made in stores:
            if made.family != "parquet":
                made.engine.dispose()
        engine = sa.create_engine(mysql_server)
        with engine.begin() as conn:
            for database in mysql_databases:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {database}")
        engine.dispose()


def expected_refusal(
    destination: str, table: str, columns: list[str], copied: Sequence[str] = ()
) -> bool:
    """The names that `destination` cannot hold as they are: these must be refused. `copied`
    are the tables already copied there."""
    names = [table, *columns]
    if destination == "postgresql":
        return any(len(n.encode()) > 63 for n in names)
    if destination == "mysql":
        folded = [c.casefold() for c in columns]
        return any(len(n) > 64 or any(ord(c) > 0xFFFF for c in n) for n in names) or len(
            set(folded)
        ) < len(folded)
    if destination == "sqlite":  # a table twin in case replaces the other
        folded = [c.casefold() for c in columns]
        twins = [t for t in copied if t != table and t.casefold() == table.casefold()]
        return len(set(folded)) < len(folded) or bool(twins)
    return False


def _job(source: Store, destination: Store, table: str) -> CopyJob:
    return CopyJob.model_validate(
        {
            "name": "hostile",
            "source": source.config,
            "destination": destination.config,
            "tables": [{"name": table}],
        }
    )


def read_copy(store: Store, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The column names and rows (ordered by id) of a table, as the database states them
    (SQLAlchemy's MySQL reflection keeps backticks in names doubled)."""
    if store.family == "parquet":
        data = pq.read_table(Path(store.url) / f"{table}.parquet")
        rows = sorted(zip(*(data.column(c).to_pylist() for c in data.column_names), strict=True))
        return data.column_names, rows
    preparer = store.engine.dialect.identifier_preparer
    quoted = preparer.format_table(sa.table(table, schema=store.schema))
    with store.engine.connect() as conn:
        result = conn.exec_driver_sql(f"SELECT * FROM {quoted} ORDER BY id")
        return list(result.keys()), [tuple(r) for r in result]


def _try_copy(
    world: World,
    source_family: str,
    destination_family: str,
    table: str,
    columns: list[str],
    copied: list[str],
) -> tuple[str | None, list[str]]:
    """Copy one table; return the refusal (None if copied) and the problems seen."""
    source = world.sources[source_family]
    destination = world.destinations[source_family][destination_family]
    job = _job(source, destination, table)
    problems = []
    try:
        copy_table(job, job.tables[0])
    except CopyJobError as exc:
        message = str(exc)
        if not expected_refusal(destination_family, table, columns, copied):
            problems.append(f"{table!r}: refused, but {destination_family} can hold it: {message}")
        if "syntax" in message.lower() or "1064" in message:
            problems.append(f"{table!r}: a syntax error reached the database: {message}")
        if not message.startswith(("destination ", "source ")):
            problems.append(f"{table!r}: the refusal does not name the store: {message}")
        return message, problems
    if expected_refusal(destination_family, table, columns, copied):
        problems.append(f"{table!r}: copied, but {destination_family} cannot hold its names")
    copied_columns, rows = read_copy(destination, table)
    if copied_columns != ["id", *columns]:
        problems.append(f"{table!r}: columns {copied_columns} instead of {['id', *columns]}")
    expected_rows = read_copy(source, table)[1]
    if rows != expected_rows:
        problems.append(f"{table!r}: rows {rows} instead of {expected_rows}")
    return None, problems


@pytest.mark.parametrize("destination_family", DESTINATIONS)
@pytest.mark.parametrize("source_family", SOURCES)
def test_hostile_names_are_copied_exactly_or_refused_clearly(
    world: World, source_family: str, destination_family: str, bad_inputs: BadInputTally
) -> None:
    cases = [(t, [t]) for t in world.tables[source_family]]
    cases.append(("columns", world.column_names[source_family]))
    problems: list[str] = []
    copied: list[str] = []
    for table, columns in cases:
        refusal, seen = _try_copy(world, source_family, destination_family, table, columns, copied)
        if refusal is None:
            copied.append(table)
        if refusal is not None or expected_refusal(destination_family, table, columns, copied):
            bad_inputs.refusal(
                f"{source_family} → {destination_family}: {table!r}", not seen and bool(refusal)
            )
        problems += seen
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source_family", ["postgresql", "mysql"])
def test_a_name_over_the_source_limit_is_not_found(
    world: World, source_family: str, bad_inputs: BadInputTally
) -> None:
    name = OVER_LIMIT[source_family]
    source = world.sources[source_family]
    destination = world.destinations[source_family]["parquet"]
    job = _job(source, destination, name)
    with pytest.raises(CopyJobError) as refused:
        copy_table(job, job.tables[0])
    clear = f"table {name!r} not found" in str(refused.value)
    bad_inputs.refusal(f"{source_family} source: name over the limit", clear)
    assert clear, refused.value
    assert not (Path(destination.url) / f"{name}.parquet").exists()


def test_hostile_table_names_make_distinct_assets(
    world: World, tmp_path: Path, bad_inputs: BadInputTally
) -> None:
    """Through Dagster: asset keys and op names stay valid; names that would share an asset
    key are refused by the job's validation."""
    source = world.sources["postgresql"]
    tables = ["'; DROP TABLE canary; --", "🎉 party", "100%", "Users", "users"]
    spec = {
        "name": "hostile_assets",
        "source": source.config,
        "destination": {"url": str(tmp_path / "lake")},
        "tables": [{"name": t} for t in tables],
    }
    job = CopyJob.model_validate(spec)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [*build_source_specs([job]), *build_copy_assets([job])], instance=instance
        )
        assert result.success
        keys = {e.materialization.asset_key for e in result.get_asset_materialization_events()}
    assert len(keys) == len(tables)
    for table in tables:
        assert pq.read_table(tmp_path / "lake" / f"{table}.parquet").num_rows == len(ROWS)

    with pytest.raises(ValueError, match="make the same asset key '_'") as refused:
        CopyJob.model_validate({**spec, "tables": [{"name": '"'}, {"name": "]"}]})
    bad_inputs.refusal(
        "two tables sharing an asset key", "give one of them another `to:`" in str(refused.value)
    )


def test_canaries_survive_and_postgres_logged_no_error(
    world: World, bad_inputs: BadInputTally
) -> None:
    stores = [
        *world.sources.values(),
        *(d for by in world.destinations.values() for d in by.values()),
    ]
    dead = [f"{s.family} {s.schema or s.url}" for s in stores if not _canary_alive(s)]
    bad_inputs.canaries("hostile names", len(dead))
    assert not dead
    errors = [
        line
        for line in world.postgres.log(world.log_start).splitlines()
        if "ERROR:" in line or "syntax error" in line
    ]
    assert not errors, "\n".join(errors)


def test_source_tables_whose_names_differ_in_replaced_characters_keep_distinct_keys() -> None:
    names = ['"', "`", "]", "a-b", "a_b", "'; DROP TABLE canary; --"]
    job = CopyJob.model_validate(
        {
            "name": "keys",
            "source": {"url": "sqlite:////data/shop.sqlite"},
            "destination": {"url": "/data/lake"},
            "tables": [{"name": name, "to": f"t{i}"} for i, name in enumerate(names)],
        }
    )
    keys = [naming.source_key(job, table).path[-1] for table in job.tables]
    assert len(set(keys)) == len(names)
    assert keys[4] == "a_b"  # a valid key part stays as it is
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", key) for key in keys)
