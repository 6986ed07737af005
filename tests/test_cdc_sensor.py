"""The new-data sensor of a `mode: cdc` job: it asks each table's replication slot whether
changes wait there (a peek, which consumes nothing), with a private server (wal_level=logical)
started by the tests."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from cdc_support import CdcCase, logical_server
from security import private_pg

from copyjob_dagster.definitions import build_definitions
from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs


@pytest.fixture(scope="module")
def server() -> Iterator[private_pg.PrivatePostgres]:
    yield from logical_server()


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance, name: str, cursor: Any) -> Any:
    sensor = defs.resolve_sensor_def(f"{name}_new_data")
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs) as context:
        return sensor.evaluate_tick(context)


def test_sensor_wakes_on_changes_in_the_slot_and_not_before(
    server: private_pg.PrivatePostgres, tmp_path: Path
) -> None:
    case = CdcCase(server, tmp_path)
    s = case.schema
    case.sql(f"CREATE TABLE {s}.items (id int PRIMARY KEY, name text)")
    case.sql(f"CREATE TABLE {s}.other (id int PRIMARY KEY)")  # not copied: not published
    case.sql(f"INSERT INTO {s}.items SELECT g, 'n' || g FROM generate_series(1, 5) g")
    try:
        job = case.job(sensor=True)
        defs = build_definitions([job])
        assets = [*build_source_specs([job]), *build_copy_assets([job])]
        with dg.instance_for_test() as instance:
            first = _tick(defs, instance, job.name, None)  # no slot yet: a first run is due
            assert [[k.path[-1] for k in r.asset_selection] for r in first.run_requests] == [
                ["items"]
            ]
            assert dg.materialize(assets, instance=instance).success
            idle = _tick(defs, instance, job.name, first.cursor)
            assert idle.run_requests == [] and "no new rows in 1 of 1" in idle.skip_message

            case.sql(f"INSERT INTO {s}.other VALUES (1)")  # WAL moves, the slot has nothing
            still = _tick(defs, instance, job.name, idle.cursor)
            assert still.run_requests == []

            confirmed = case.slot().confirmed
            case.sql(f"UPDATE {s}.items SET name = 'changed' WHERE id = 2")
            woken = _tick(defs, instance, job.name, still.cursor)
            assert [[k.path[-1] for k in r.asset_selection] for r in woken.run_requests] == [
                ["items"]
            ]
            assert case.slot().confirmed == confirmed  # the peek consumed nothing

            assert dg.materialize(assets, instance=instance).success
            assert case.destination_rows(columns="id, name")[1] == (2, "changed")
            after = _tick(defs, instance, job.name, woken.cursor)
            assert after.run_requests == []
    finally:
        case.close()
