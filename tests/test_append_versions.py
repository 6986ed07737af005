"""`write: append` on a table with a primary key: an updated row is appended as another version,
as docs/incremental.md says, on every destination; tables that an older copyjob keyed by the
source's key alone are re-keyed where the database can, or refused with what to do."""

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from deltalake import DeltaTable
from test_changes import DESTINATIONS, Table

from copyjob_dagster.errors import DestinationError


@pytest.fixture(params=[*DESTINATIONS, "sqlite", "delta"])
def destination(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "sqlite":
        return {"url": f"sqlite:///{tmp_path / 'copy.sqlite'}"}
    if request.param == "delta":
        return {"url": f"delta:///{tmp_path / 'lake'}"}
    return DESTINATIONS[request.param](tmp_path, request)


def _versions(table: Table) -> list[tuple[Any, ...]]:
    url = table.destination["url"]
    if url.startswith("delta://"):
        rows = DeltaTable(url.removeprefix("delta://") + "/items").to_pyarrow_table().to_pylist()
    else:
        rows = table.rows()
    return sorted((r["id"], r["name"], r["updated_at"]) for r in rows)


def test_append_keeps_each_version_of_an_updated_row(
    tmp_path: Path, destination: dict[str, Any]
) -> None:
    table = Table(tmp_path, destination, write="append")
    table.put(1, 2)
    table.copy()
    table.put(2)  # an update: the row's second version
    table.copy()
    table.put(2, 3)  # the third version, and a new row after it
    result = table.copy()
    table.copy(result.watermark_before)  # the same window again: a rerun
    expected = [(1, "1 v1", 1), (2, "2 v2", 2), (2, "2 v3", 3), (2, "2 v4", 4), (3, "3 v5", 5)]
    assert _versions(table) == expected
    assert table.watermark is not None and table.watermark.text == "5"


def _key_by_id_alone(destination: dict[str, Any]) -> None:
    """Make the copy's primary key (id), as copyjob created appended tables before."""
    engine = sa.create_engine(destination["url"])
    qualified = ".".join(p for p in (destination.get("schema"), "items") if p)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(sa.text(f"ALTER TABLE {qualified} DROP CONSTRAINT items_pkey"))
                conn.execute(sa.text(f"ALTER TABLE {qualified} ADD PRIMARY KEY (id)"))
            else:
                conn.execute(
                    sa.text(f"ALTER TABLE {qualified} DROP PRIMARY KEY, ADD PRIMARY KEY (id)")
                )
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
def test_a_table_keyed_the_old_way_is_rekeyed(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    destination = DESTINATIONS[kind](tmp_path, request)
    table = Table(tmp_path, destination, write="append")
    table.put(1, 2)
    table.copy()
    _key_by_id_alone(destination)
    table.put(2)
    table.copy()
    assert _versions(table) == [(1, "1 v1", 1), (2, "2 v2", 2), (2, "2 v3", 3)]
    engine = sa.create_engine(destination["url"])
    try:
        key = sa.inspect(engine).get_pk_constraint("items", schema=destination.get("schema"))
    finally:
        engine.dispose()
    assert key["constrained_columns"] == ["id", "updated_at"]


def test_sqlite_table_keyed_the_old_way_is_refused_with_what_to_do(tmp_path: Path) -> None:
    destination = {"url": f"sqlite:///{tmp_path / 'copy.sqlite'}"}
    table = Table(tmp_path, destination, write="append")
    table.put(1, 2)
    table.copy()
    engine = sa.create_engine(destination["url"])
    with engine.begin() as conn:  # SQLite cannot change a key: the table made the old way
        conn.execute(sa.text("ALTER TABLE items RENAME TO old_items"))
        conn.execute(
            sa.text("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, updated_at INTEGER)")
        )
        conn.execute(sa.text("INSERT INTO items SELECT id, name, updated_at FROM old_items"))
    engine.dispose()
    table.put(2)
    with pytest.raises(DestinationError) as refused:
        table.copy()
    message = str(refused.value)
    assert "table 'items' has primary key (id)" in message and "--full-refresh" in message
    assert _versions(table) == [(1, "1 v1", 1), (2, "2 v2", 2)]
