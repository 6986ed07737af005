"""A Delta table with its change data feed, copied incrementally without an incremental column:
the watermark is the source version last copied, and the feed's deletes reach the destination."""

import sqlite3
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from test_delta import delta_url

from copyjob_dagster.config import CopyJob
from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs
from copyjob_dagster.engine import copy_table, plan_table, rows_beyond
from copyjob_dagster.errors import SourceError
from copyjob_dagster.stores import DeletionCounts

FEED = {"delta.enableChangeDataFeed": "true"}


class Lake:
    """A Delta source table `events` (id, payload) and a SQLite copy of it."""

    def __init__(self, tmp_path: Path, feed: bool = True, **table: Any) -> None:
        self.path = tmp_path / "lake" / "events"
        self.copy_path = tmp_path / "copy.sqlite"
        rows = pa.table({"id": [1, 2, 3, 4], "payload": ["a", "b", "c", "d"]})
        write_deltalake(str(self.path), rows, configuration=FEED if feed else None)
        self.job = CopyJob.model_validate(
            {
                "name": "from_lake",
                "mode": "incremental",
                "source": {"url": delta_url(tmp_path / "lake")},
                "destination": {"url": f"sqlite:///{self.copy_path}"},
                "tables": [{"name": "events", "primary_key": ["id"], **table}],
            }
        )

    def source(self) -> DeltaTable:
        return DeltaTable(str(self.path))

    def change(self) -> None:
        """Version 1 updates 2 and deletes 3; version 2 inserts 5 and 6 and deletes 6 again."""
        self.source().update(updates={"payload": "'b2'"}, predicate="id = 2")
        self.source().delete("id = 3")
        write_deltalake(
            str(self.path), pa.table({"id": [5, 6], "payload": ["e", "f"]}), mode="append"
        )
        self.source().delete("id = 6")

    def copied(self) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.copy_path) as db:
            return sorted(db.execute("SELECT id, payload FROM events").fetchall())


def test_the_feed_copies_changes_and_deletes_since_the_version_last_copied(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    initial = copy_table(lake.job, lake.job.tables[0])
    unchanged = plan_table(lake.job, lake.job.tables[0], initial.watermark)  # `copyjob plan`
    lake.change()
    planned = plan_table(lake.job, lake.job.tables[0], initial.watermark)
    run = copy_table(lake.job, lake.job.tables[0], initial.watermark)
    again = copy_table(lake.job, lake.job.tables[0], initial.watermark)  # not recorded: again
    nothing = copy_table(lake.job, lake.job.tables[0], run.watermark)

    assert (initial.watermark.text, run.watermark.text) == ("0", "4")
    assert (unchanged.load, unchanged.write) == ("nothing new", "merge")
    assert (planned.load, planned.window) == ("incremental", "source versions 1..4")
    assert initial.rows_written == 4
    assert run.rows_read == 2  # the newest row of 2 and the new 5; 6 came and went
    assert run.deletions == DeletionCounts(deleted=1)
    assert lake.copied() == [(1, "a"), (2, "b2"), (4, "d"), (5, "e")]
    assert again.deletions == DeletionCounts() and lake.copied() == [
        (1, "a"),
        (2, "b2"),
        (4, "d"),
        (5, "e"),
    ]
    assert nothing.rows_read == 0 and nothing.watermark.text == "4"
    # What the new-data sensor asks: the versions since the watermark's.
    ahead = rows_beyond(lake.job, {"events": initial.watermark})
    assert [(n.rows, n.error) for n in ahead] == [(4, None)]
    assert rows_beyond(lake.job, {"events": run.watermark})[0].rows == 0


def test_the_feed_version_is_the_recorded_watermark(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    assets = [*build_source_specs([lake.job]), *build_copy_assets([lake.job])]
    key = dg.AssetKey(["from_lake", "events"])
    with dg.instance_for_test() as instance:
        assert dg.materialize(assets, instance=instance).success
        lake.change()
        assert dg.materialize(assets, instance=instance).success
        event = instance.get_latest_materialization_event(key)
        metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}

    assert metadata["copyjob/watermark"] == "4"
    assert metadata["copyjob/source_version"] == 4
    assert lake.copied() == [(1, "a"), (2, "b2"), (4, "d"), (5, "e")]


def test_a_table_without_the_feed_is_named(tmp_path: Path) -> None:
    lake = Lake(tmp_path, feed=False)

    with pytest.raises(SourceError, match="delta.enableChangeDataFeed = true"):
        copy_table(lake.job, lake.job.tables[0])


def test_a_copy_by_the_feed_needs_a_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="name it with primary_key"):
        CopyJob.model_validate(
            {
                "name": "from_lake",
                "mode": "incremental",
                "source": {"url": delta_url(tmp_path)},
                "destination": {"url": f"sqlite:///{tmp_path / 'c.sqlite'}"},
                "tables": [{"name": "events"}],
            }
        )
