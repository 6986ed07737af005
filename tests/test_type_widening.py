"""A column widened at the source (real -> double precision, numeric(10,2) -> numeric(12,4),
varchar(10) -> varchar(100)) is never rounded or cut into the existing destination column: the
incremental copy stops before writing, naming the column and `--full-refresh`, and `copyjob
plan` says so; a full refresh then copies the wider values exactly."""

from decimal import Decimal
from pathlib import Path

import pyarrow.dataset as ds
import pytest
import sqlalchemy as sa

from copyjob_dagster.config import CopyJob
from copyjob_dagster.engine import copy_table, plan_table
from copyjob_dagster.errors import CopyJobError

WIDENINGS = {
    "r": ("real", "double precision", 1.2345678901234567),
    "n": ("numeric(10,2)", "numeric(12,4)", Decimal("12345678.1234")),
    "s": ("varchar(10)", "varchar(100)", "x" * 60),
}
FIRST = {"r": 1.5, "n": Decimal("1.25"), "s": "short"}


@pytest.fixture(params=["postgres", "mariadb", "parquet"])
def destination(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return "postgres"  # the source's own server, in the source's schema: see _job
    if request.param == "mariadb":
        return request.getfixturevalue("mysql_url")
    return str(tmp_path / "lake")


def _job(pg_server: str, pg_schema: str, destination: str) -> CopyJob:
    target = (
        {"url": pg_server, "schema": pg_schema}
        if destination == "postgres"
        else {"url": destination}
    )
    return CopyJob.model_validate(
        {
            "name": "widen",
            "source": {"url": pg_server, "schema": pg_schema},
            "destination": target,
            "mode": "incremental",
            "tables": [
                {"name": "w", "to": "w_copy", "incremental_column": "at", "primary_key": ["id"]}
            ],
        }
    )


def _destination_rows(job: CopyJob, destination: str, pg_schema: str) -> list[tuple]:
    if destination.startswith("/"):
        table = ds.dataset(Path(destination) / "w_copy", format="parquet").to_table()
        return sorted(zip(*(table[c].to_pylist() for c in ("id", *WIDENINGS)), strict=True))
    url = job.destination.url
    engine = sa.create_engine(url)
    name = f"{pg_schema}.w_copy" if destination == "postgres" else "w_copy"
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"SELECT id, r, n, s FROM {name} ORDER BY id").fetchall()
    engine.dispose()
    return [tuple(row) for row in rows]


@pytest.mark.parametrize("column", list(WIDENINGS))
def test_a_widened_column_stops_the_copy_before_writing(
    column: str, destination: str, pg_server: str, pg_schema: str
) -> None:
    before, after, wide_value = WIDENINGS[column]
    engine = sa.create_engine(pg_server)
    with engine.begin() as conn:
        columns = ", ".join(f"{name} {types[0]}" for name, types in WIDENINGS.items())
        conn.exec_driver_sql(f"CREATE TABLE {pg_schema}.w (id int PRIMARY KEY, {columns}, at int)")
        conn.execute(sa.text(f"INSERT INTO {pg_schema}.w VALUES (1, :r, :n, :s, 10)"), FIRST)
    job = _job(pg_server, pg_schema, destination)
    first = copy_table(job, job.tables[0])
    copied = _destination_rows(job, destination, pg_schema)

    with engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {pg_schema}.w ALTER COLUMN {column} TYPE {after}")
        conn.execute(
            sa.text(f"INSERT INTO {pg_schema}.w VALUES (2, :r, :n, :s, 20)"),
            {**FIRST, column: wide_value},
        )
    engine.dispose()

    planned = plan_table(job, job.tables[0], first.watermark)
    if column == "s" and destination.startswith("/"):
        # Parquet strings have no length: nothing to widen, the value arrives whole.
        assert planned.problems == []
        copy_table(job, job.tables[0], first.watermark)
        assert _destination_rows(job, destination, pg_schema)[1][3] == wide_value
        return
    assert column in {retyped.name for retyped in planned.schema.retyped}
    assert any(f"column {column!r}" in p and "--full-refresh" in p for p in planned.problems)

    with pytest.raises(CopyJobError) as stopped:
        copy_table(job, job.tables[0], first.watermark)
    assert f"column {column!r}" in str(stopped.value) and "--full-refresh" in str(stopped.value)
    assert _destination_rows(job, destination, pg_schema) == copied  # nothing written

    copy_table(job, job.tables[0], full_refresh=True)
    widened = _destination_rows(job, destination, pg_schema)[1]
    assert widened[1 + list(WIDENINGS).index(column)] == wide_value
