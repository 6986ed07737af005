"""Watermark resets and sets, and backfills, as a user runs them from the launchpad's run config.

Against PostgreSQL (merge), MariaDB (append) and Parquet (append): a rewind copies the rewound
window again without duplicates, a skip copies nothing below the new value, a backfill copies
its window and leaves the watermark (and the rows above the window) alone, a reset reloads the
table, and every operation is in the table's history with the old and new values.
"""

import getpass
import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from click.testing import CliRunner
from conftest import make_dagster_home
from test_automation import _job, _selected, _source, _tick
from test_incremental import DESTINATIONS, KEY, Scenario

from copyjob_dagster.cli import main
from copyjob_dagster.definitions import build_definitions
from copyjob_dagster.defs import naming
from copyjob_dagster.defs.assets import latest_watermark
from copyjob_dagster.defs.metadata import LOAD, OPERATION, REASON, WATERMARK, WATERMARK_TYPE, WINDOW
from copyjob_dagster.defs.operations import NO_WATERMARK, operation_event
from copyjob_dagster.engine.overrides import typed_watermark

CASES = {"postgres": "merge", "mariadb": "append", "parquet": "append"}


@pytest.fixture(params=list(CASES))
def scenario(request: pytest.FixtureRequest, tmp_path: Path) -> Scenario:
    destination = DESTINATIONS[request.param](tmp_path, request)
    return Scenario(tmp_path, destination, write=CASES[request.param])


def _operate(scenario: Scenario, instance: dg.DagsterInstance, **config: Any) -> None:
    """A state operation from the launchpad: it records an observation, never a copy."""
    copies = instance.fetch_materializations(KEY, limit=100).records
    result = dg.materialize(
        scenario.assets,
        instance=instance,
        run_config={"ops": {"copy__inc": {"config": config}}},
        tags={"ticket": "DATA-42"},
    )
    assert result.success
    assert result.get_asset_materialization_events() == []
    assert instance.fetch_materializations(KEY, limit=100).records == copies
    (observation,) = result.get_asset_observation_events()
    assert observation.asset_observation_data.asset_observation.metadata[OPERATION].value


def test_rewind_skip_backfill_and_reset_keep_every_row_once(
    scenario: Scenario, tmp_path: Path
) -> None:
    env = _project(scenario, tmp_path)
    scenario.insert(*[(i, f"v{i}", i * 10) for i in range(1, 11)])
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert scenario.materialize(instance)[WATERMARK] == "100"

        # Rewind to 50: rows 50..100 are copied again, and a change the watermark could not see
        # (row 7 edited without moving its updated_at) arrives with them.
        with scenario.source() as db:
            db.execute("UPDATE events SET payload = 'edited' WHERE id = 7")
        _operate(scenario, instance, set_watermark="50", reason="row 7 was fixed in place")
        assert latest_watermark(instance, KEY).text == "50"
        rewound = scenario.materialize(instance)
        assert (rewound[WATERMARK], rewound["copyjob/rows_read"]) == ("100", 6)
        scenario.assert_equal_as_of(100)

        # Skip to 130, from the command line: rows 110 and 120 are never copied.
        scenario.insert(*[(i, f"v{i}", i * 10) for i in range(11, 16)])
        done = CliRunner(env=env).invoke(
            main, ["watermark", "set", "inc", "events", "130", "--reason", "110-120 are test data"]
        )
        assert (done.exit_code, done.output) == (0, "inc/events: watermark 100 → 130\n")
        (planned,) = json.loads(CliRunner(env=env).invoke(main, ["plan", "--json"]).output)
        assert (planned["watermark"], planned["window"], planned["rows"]) == (
            "130",
            "updated_at >= 130 and <= 150",
            3,
        )
        skipped = scenario.materialize(instance)
        assert (skipped[WATERMARK], skipped["copyjob/rows_read"]) == ("150", 3)
        assert [row[0] for row in scenario.destination_rows()] == [*range(1, 11), 13, 14, 15]

        # Backfill [110, 120]: the watermark stays, and so do the rows above the window.
        backfill = scenario.materialize(
            instance, backfill_from="110", backfill_to="120", reason="they were real"
        )
        assert (backfill[LOAD], backfill[WATERMARK], backfill["copyjob/rows_read"]) == (
            "backfill",
            "150",
            2,
        )
        assert backfill[WINDOW] == "updated_at >= 110 and <= 120"
        assert backfill[REASON] == "they were real"
        scenario.assert_equal_as_of(150)

        # Reset: the next run loads the whole table anew.
        done = CliRunner(env=env).invoke(
            main, ["watermark", "reset", "inc", "events", "--reason", "new destination schema"]
        )
        assert done.exit_code == 0, done.output
        assert latest_watermark(instance, KEY) is None
        reloaded = scenario.materialize(instance)
        assert (reloaded[LOAD], reloaded["copyjob/rows_read"]) == ("initial", 15)
        scenario.assert_equal_as_of(150)

    history = json.loads(CliRunner(env=env).invoke(main, ["history", "--json"]).output)
    operations = history["operations"]
    assert [
        (o["operation"], o["watermark_before"], o["watermark_after"], o["reason"])
        for o in operations
    ] == [
        ("watermark reset", "150", NO_WATERMARK, "new destination schema"),
        ("watermark set", "100", "130", "110-120 are test data"),
        ("watermark set", "100", "50", "row 7 was fixed in place"),
    ]
    reset, skip, rewind = operations
    # From the launchpad: the run and its tags; from the command line: the OS user.
    assert rewind["requested_by"] == f"run {rewind['run_id']}"
    assert rewind["run_tags"]["ticket"] == "DATA-42"
    for operation in (reset, skip):
        assert operation["run_id"] is None
        assert operation["requested_by"].startswith(f"{getpass.getuser()}@")
    assert reset["recorded"] > skip["recorded"] > rewind["recorded"]
    # The runs that reset or set the watermark copied nothing, and are not listed as copies.
    assert [run["load"] for run in history["runs"]] == [
        "initial",
        "backfill",
        "incremental",
        "incremental",
        "initial",
    ]


def _project(scenario: Scenario, tmp_path: Path) -> dict[str, str]:
    """The scenario's job as a job file, and an instance, for the `copyjob` command."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    table = scenario.job.tables[0]
    job = {
        "name": "inc",
        "mode": "incremental",
        "source": {"url": scenario.job.source.url},
        "destination": scenario.destination,
        "tables": [{"name": "events", "incremental_column": "updated_at", "write": table.write}],
    }
    (jobs / "inc.yaml").write_text(json.dumps(job))  # JSON is YAML
    home = make_dagster_home(tmp_path / "dagster_home")
    return {"DAGSTER_HOME": str(home), "COPYJOB_JOBS_DIR": str(jobs)}


def test_the_new_data_sensor_starts_from_a_rewound_watermark(tmp_path: Path) -> None:
    _source(tmp_path / "source.sqlite", {"orders": [1, 2]})
    job = _job(tmp_path, ["orders"], sensor=True)
    defs = build_definitions([job])
    with dg.instance_for_test() as instance:
        (table,) = job.tables
        copied = {WATERMARK: "2", WATERMARK_TYPE: "integer"}  # as a copy of both rows records it
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=naming.asset_key(job, table), metadata=copied)
        )
        assert _tick(defs, instance).run_requests == []

        rewind = typed_watermark(job.name, table, "integer", "1")
        instance.report_runless_asset_event(
            operation_event(instance, job, table, rewind, "row 2 changed in place", "a test")
        )
        assert _selected(_tick(defs, instance)) == [["orders"]]
