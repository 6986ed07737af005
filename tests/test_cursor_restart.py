"""A source table dropped and recreated with its incremental values starting again stops the
incremental copy with a message that suggests `--full-refresh`, instead of keeping the old rows
stale and skipping the new ones below the watermark."""

from pathlib import Path

import pyarrow.dataset as ds
import pytest
import sqlalchemy as sa

from copyjob_dagster.config import CopyJob
from copyjob_dagster.engine import copy_table, plan_table
from copyjob_dagster.errors import CopyJobError


@pytest.fixture(params=["sqlite", "postgres"])
def source(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "sqlite":
        return {"url": f"sqlite:///{tmp_path / 'shop.sqlite'}"}
    return {
        "url": request.getfixturevalue("pg_server"),
        "schema": request.getfixturevalue("pg_schema"),
    }


def _fill(source: dict[str, str], rows: range) -> None:
    """(Re)create `events(id, at)` holding `rows`, with `at` equal to `id`."""
    engine = sa.create_engine(source["url"])
    table = f"{source['schema']}.events" if "schema" in source else "events"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        conn.exec_driver_sql(f"CREATE TABLE {table} (id int PRIMARY KEY, at int)")
        if rows:
            conn.execute(
                sa.text(f"INSERT INTO {table} VALUES (:id, :id)"), [{"id": i} for i in rows]
            )
    engine.dispose()


def _job(source: dict[str, str], lake: Path, lookback: int) -> CopyJob:
    return CopyJob.model_validate(
        {
            "name": "restart",
            "source": source,
            "destination": {"url": str(lake)},
            "mode": "incremental",
            "tables": [{"name": "events", "incremental_column": "at", "lookback": lookback}],
        }
    )


@pytest.mark.parametrize("lookback", [0, 2])
def test_a_recreated_table_with_a_restarted_cursor_stops_the_copy(
    source: dict[str, str], tmp_path: Path, lookback: int
) -> None:
    _fill(source, range(1, 601))
    job = _job(source, tmp_path / "lake", lookback)
    first = copy_table(job, job.tables[0])
    assert first.watermark.text == "600"
    _fill(source, range(1, 11))  # dropped and recreated: ids and cursor start again

    planned = plan_table(job, job.tables[0], first.watermark)
    assert any("--full-refresh" in problem for problem in planned.problems), planned
    with pytest.raises(CopyJobError) as stopped:
        copy_table(job, job.tables[0], first.watermark)
    message = str(stopped.value)
    assert "highest at is 10, below the watermark 600" in message and "--full-refresh" in message
    assert ds.dataset(tmp_path / "lake" / "events", format="parquet").count_rows() == 600

    copy_table(job, job.tables[0], full_refresh=True)
    assert ds.dataset(tmp_path / "lake" / "events", format="parquet").count_rows() == 10


def test_an_emptied_table_copies_nothing_and_goes_on(
    source: dict[str, str], tmp_path: Path
) -> None:
    _fill(source, range(1, 6))
    job = _job(source, tmp_path / "lake", 0)
    first = copy_table(job, job.tables[0])
    _fill(source, range(0))
    assert copy_table(job, job.tables[0], first.watermark).rows_written == 0
