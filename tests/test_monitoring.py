"""Monitoring as the UI shows it: a finished run's rows as run tags, its summary per table, the
lifetime totals per table (on each materialization), per job and per database."""

import sqlite3
from pathlib import Path

import dagster as dg

from copyjob_dagster.config import CopyJob
from copyjob_dagster.definitions import build_definitions
from copyjob_dagster.defs import record_run_summary
from copyjob_dagster.defs.monitoring import RUNS_KEY, TOTALS_KEY


def _job(shop_db: Path, lake: Path) -> CopyJob:
    return CopyJob.model_validate(
        {
            "name": "watched",
            "source": {"url": f"sqlite:///{shop_db}"},
            "destination": {"url": str(lake)},
            "tables": [{"name": "customers"}, {"name": "orders", "to": "orders_copy"}],
        }
    )


def _rows(shop_db: Path, table: str) -> int:
    with sqlite3.connect(shop_db) as db:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _observed(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict:
    (record,) = instance.fetch_observations(key, limit=1).records
    return record.asset_observation.metadata


def test_runs_are_tagged_summarized_and_totalled(shop_db: Path, tmp_path: Path) -> None:
    job = _job(shop_db, tmp_path / "lake")
    defs = build_definitions([job])
    customers, orders = _rows(shop_db, "customers"), _rows(shop_db, "orders")
    with dg.instance_for_test() as instance:
        first = defs.resolve_job_def("watched").execute_in_process(instance=instance)
        assert record_run_summary(instance, first.run_id, [job])
        second = defs.resolve_job_def("watched").execute_in_process(instance=instance)
        tags = instance.get_run_by_id(first.run_id).tags
        assert tags["copyjob/rows_read"] == tags["copyjob/rows_written"] == str(customers + orders)
        assert tags["copyjob/tables_copied"] == "2_of_2"

        # The sensor summarizes the second run, which nothing summarized yet, and only it.
        sensor = defs.resolve_sensor_def("copyjob_run_summaries")
        with dg.build_sensor_context(instance=instance, definitions=defs) as context:
            sensor.evaluate_tick(context)
        assert instance.get_run_by_id(second.run_id).tags["copyjob/tables_copied"] == "2_of_2"
        assert len(instance.fetch_observations(RUNS_KEY, limit=10).records) == 2

        summary = _observed(instance, RUNS_KEY)
        assert summary["run"].value == second.run_id
        assert summary["rows written"].value == customers + orders
        rows = {r.data["table"]: r.data for r in summary["tables"].value.records}
        assert rows["orders_copy"]["rows read"] == rows["orders_copy"]["rows written"] == orders
        assert rows["customers"]["status"] == "success" and rows["customers"]["seconds"] >= 0

        event = instance.get_latest_materialization_event(dg.AssetKey(["watched", "orders_copy"]))
        lifetime = event.asset_materialization.metadata
        assert lifetime["copyjob/lifetime_copies"].value == 2
        assert lifetime["copyjob/lifetime_rows_written"].value == 2 * orders

        totals = _observed(instance, TOTALS_KEY)
        assert totals["watched: rows written"].value == 2 * (customers + orders)
        (per_job,) = totals["per job"].value.records
        assert per_job.data == {
            "job": "watched",
            "copies": 4,
            "rows read": 2 * (customers + orders),
            "rows written": 2 * (customers + orders),
        }
        (per_destination,) = totals["per destination database"].value.records
        assert per_destination.data["destination"] == str(tmp_path / "lake")

        # A re-execution of the first run (orders only) inherits its tags, summary included;
        # the sensor summarizes it all the same, with its own rows.
        inherited = {
            **instance.get_run_by_id(first.run_id).tags,
            "dagster/parent_run_id": first.run_id,
        }
        third = defs.resolve_job_def("watched").execute_in_process(
            instance=instance,
            tags=inherited,
            asset_selection=[dg.AssetKey(["watched", "orders_copy"])],
        )
        with dg.build_sensor_context(
            instance=instance, definitions=defs, cursor=context.cursor
        ) as again:
            sensor.evaluate_tick(again)
        tags = instance.get_run_by_id(third.run_id).tags
        assert tags["copyjob/tables_copied"] == "1_of_1"
        assert tags["copyjob/rows_written"] == str(orders)
