"""`copyjob plan`'s engine: what the next copy would do, found without writing anything.

Against PostgreSQL, MariaDB and Parquet destinations: the planned rows are the rows the copy then
reads (initial load, then a window widened by `lookback`), a column new at the source shows as
added and is not added by the plan, and a column the copy would refuse is named as the problem.
"""

from pathlib import Path

import pytest
from test_incremental import DESTINATIONS, Scenario

from copyjob_dagster.engine import copy_table
from copyjob_dagster.engine.dryrun import plan_table
from copyjob_dagster.stores import open_destination


@pytest.fixture(params=["postgres", "mariadb", "parquet"])
def scenario(request: pytest.FixtureRequest, tmp_path: Path) -> Scenario:
    destination = DESTINATIONS[request.param](tmp_path, request)
    return Scenario(tmp_path, destination, lookback=15)


def _destination_columns(scenario: Scenario) -> list[str]:
    destination = open_destination(scenario.job.destination)
    try:
        described = destination.describe("events")
        return [] if described is None else described.column_names
    finally:
        destination.close()


def _files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


def test_plan_counts_what_the_copy_then_reads_and_writes_nothing(
    scenario: Scenario, tmp_path: Path
) -> None:
    job, table = scenario.job, scenario.job.tables[0]
    scenario.insert(*[(i, f"v{i}", i * 10) for i in range(1, 11)], (99, "no cursor", None))
    table = table.model_copy(update={"null_cursor": "skip"})

    initial = plan_table(job, table, None)
    assert (initial.load, initial.rows, initial.null_cursor_rows) == ("initial", 10, 1)
    assert (initial.destination_exists, initial.schema, initial.problems) == (False, None, [])
    assert _destination_columns(scenario) == []  # the plan created nothing
    first = copy_table(job, table, None)
    assert first.rows_read == initial.rows

    scenario.insert((11, "v11", 110), (12, "v12", 120))
    with scenario.source() as db:
        db.execute("ALTER TABLE events ADD COLUMN note TEXT")
    files_before = _files(tmp_path)
    planned = plan_table(job, table, first.watermark)
    assert (planned.mode, planned.load, planned.watermark) == ("incremental", "incremental", "100")
    assert planned.window == "updated_at >= 85 and <= 120"  # the lookback of 15 included
    assert planned.rows == 4  # 90, 100, 110, 120
    assert [field.name for field in planned.schema.added] == ["note"]
    assert (planned.schema.dropped, planned.problems) == ((), [])
    assert "note" not in _destination_columns(scenario)
    assert _files(tmp_path) == files_before  # no lock file, no Parquet part, no staging
    second = copy_table(job, table, first.watermark)
    assert second.rows_read == planned.rows
    assert "note" in _destination_columns(scenario)

    narrowed = table.model_copy(update={"columns": ["id", "updated_at", "note"]})
    refused = plan_table(job, narrowed, second.watermark)
    assert refused.load == "cannot run"
    assert refused.schema.dropped == ("payload",)
    (problem,) = refused.problems
    assert problem.startswith("the next run stops: ") and "'payload'" in problem
