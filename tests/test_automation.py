"""Schedules and the new-data sensor, as Dagster loads and ticks them."""

import sqlite3
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from conftest import make_dagster_home

from copyjob_dagster.config import CopyJob
from copyjob_dagster.definitions import build_definitions
from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs


def _source(path: Path, tables: dict[str, list[int]]) -> None:
    """A SQLite database with tables `(id, updated_at)`, one row per given updated_at."""
    with sqlite3.connect(path) as db:
        for name, values in tables.items():
            db.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, updated_at INTEGER)")
            db.executemany(f"INSERT INTO {name} (updated_at) VALUES (?)", [(v,) for v in values])


def _job(tmp_path: Path, tables: list[str], **settings: Any) -> CopyJob:
    return CopyJob.model_validate(
        {
            "name": "watched",
            "mode": "incremental",
            "source": {"url": f"sqlite:///{tmp_path / 'source.sqlite'}", "name": "src"},
            "destination": {"url": str(tmp_path / "lake")},
            "tables": [{"name": name, "incremental_column": "updated_at"} for name in tables],
            **settings,
        }
    )


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None = None) -> Any:
    sensor = defs.resolve_sensor_def("watched_new_data")
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs) as context:
        return sensor.evaluate_tick(context)


def _selected(tick: Any) -> list[list[str]]:
    return [[key.path[-1] for key in run.asset_selection] for run in tick.run_requests]


@pytest.mark.parametrize(
    ("schedule", "cron", "timezone", "status"),
    [
        ("0 * * * *", "0 * * * *", "UTC", dg.DefaultScheduleStatus.RUNNING),
        (
            {"cron": "*/15 6-20 * * 1-5", "timezone": "Europe/Paris", "status": "stopped"},
            "*/15 6-20 * * 1-5",
            "Europe/Paris",
            dg.DefaultScheduleStatus.STOPPED,
        ),
    ],
    ids=["plain-cron", "mapping"],
)
def test_schedule_runs_the_jobs_asset_job(
    tmp_path: Path, schedule: Any, cron: str, timezone: str, status: dg.DefaultScheduleStatus
) -> None:
    defs = build_definitions([_job(tmp_path, ["orders"], schedule=schedule)])
    definition = defs.resolve_schedule_def("watched_schedule")
    assert (definition.cron_schedule, definition.execution_timezone) == (cron, timezone)
    assert definition.default_status == status
    assert definition.job_name == "watched"
    assert defs.resolve_job_def("watched") is not None
    assert [sensor.name for sensor in defs.sensors] == ["copyjob_run_summaries"]  # no new-data


def test_sensor_settings_and_a_job_without_automation(tmp_path: Path) -> None:
    watched = build_definitions(
        [_job(tmp_path, ["orders"], sensor={"minimum_interval_seconds": 45, "status": "stopped"})]
    ).resolve_sensor_def("watched_new_data")
    assert watched.minimum_interval_seconds == 45
    assert watched.default_status == dg.DefaultSensorStatus.STOPPED
    assert watched.job_name == "watched"

    plain = build_definitions([_job(tmp_path, ["orders"])])
    assert not plain.schedules
    assert [sensor.name for sensor in plain.sensors] == ["copyjob_run_summaries"]  # no new-data


def test_sensor_requests_a_run_of_just_the_tables_with_new_rows(
    tmp_path: Path, instance_storage: str
) -> None:
    _source(tmp_path / "source.sqlite", {"orders": [1, 2], "customers": [5], "empty": []})
    job = _job(tmp_path, ["orders", "customers", "empty"], sensor=True)
    defs = build_definitions([job])
    home = make_dagster_home(tmp_path / "dagster_home", instance_storage)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        first = _tick(defs, instance)
        assert _selected(first) == [["customers", "orders"]]  # never copied; `empty` has no rows

        dg.materialize([*build_source_specs([job]), *build_copy_assets([job])], instance=instance)
        idle = _tick(defs, instance, first.cursor)
        assert idle.run_requests == []
        assert "no new rows in 3 of 3 table(s)" in idle.skip_message

        with sqlite3.connect(tmp_path / "source.sqlite") as db:
            db.execute("INSERT INTO orders (updated_at) VALUES (3)")
        woken = _tick(defs, instance, idle.cursor)
        assert _selected(woken) == [["orders"]]
        assert (
            woken.run_requests[0].run_key
            == _tick(defs, instance, idle.cursor).run_requests[0].run_key
        )

        again = _tick(defs, instance, woken.cursor)  # the run has not copied the row yet
        assert again.run_requests == []
        assert "already requested or under way for orders" in again.skip_message

        with sqlite3.connect(tmp_path / "source.sqlite") as db:
            db.execute("INSERT INTO orders (updated_at) VALUES (4)")
        more = _tick(defs, instance, woken.cursor)  # more rows: ask again (the run may have failed)
        assert _selected(more) == [["orders"]]
        assert more.run_requests[0].run_key != woken.run_requests[0].run_key


def test_sensor_leaves_out_a_table_whose_copy_is_under_way(tmp_path: Path) -> None:
    _source(tmp_path / "source.sqlite", {"orders": [1], "customers": [1]})
    job = _job(tmp_path, ["orders", "customers"], sensor=True)
    defs = build_definitions([job])
    with dg.instance_for_test() as instance:
        instance.create_run_for_job(
            defs.resolve_job_def("watched"),
            asset_selection=frozenset({dg.AssetKey(["watched", "orders"])}),
        )  # created, not yet started: as a queued run
        tick = _tick(defs, instance)
    assert _selected(tick) == [["customers"]]


def test_sensor_reports_an_unreachable_source_on_the_tick(tmp_path: Path) -> None:
    job = CopyJob.model_validate(
        {
            "name": "watched",
            "mode": "incremental",
            "source": {"url": "postgresql+psycopg://copyjob@127.0.0.1:1/nowhere"},
            "destination": {"url": str(tmp_path / "lake")},
            "tables": [{"name": "orders", "incremental_column": "updated_at"}],
            "sensor": True,
        }
    )
    with dg.instance_for_test() as instance:
        tick = _tick(build_definitions([job]), instance)
    assert tick.run_requests == []
    assert "the source cannot be reached" in tick.skip_message
    assert "Connection refused" in tick.skip_message


def test_sensor_reports_a_missing_table_and_checks_the_others(tmp_path: Path) -> None:
    _source(tmp_path / "source.sqlite", {"orders": [1]})
    defs = build_definitions([_job(tmp_path, ["orders", "gone"], sensor=True)])
    with dg.instance_for_test() as instance:
        tick = _tick(defs, instance)
        assert _selected(tick) == [["orders"]]
        dg.materialize(
            defs.resolve_asset_graph().assets_defs, instance=instance, selection="watched/orders"
        )
        idle = _tick(defs, instance, tick.cursor)
    assert "1 table(s) could not be checked: table 'gone'" in idle.skip_message
    assert "table 'gone' not found" in idle.skip_message
