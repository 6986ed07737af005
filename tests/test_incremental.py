"""Incremental copies as a user runs them: materialize, change the source, materialize again.

After every step the destination must equal the source as of the recorded watermark: the same
keys, no duplicates, the same values.
"""

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.dataset as ds
import pytest
import sqlalchemy as sa

from copyjob_dagster.config import CopyJob
from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs, latest_watermark
from copyjob_dagster.engine import copy_table
from copyjob_dagster.stores.sql import SqlStore

KEY = dg.AssetKey(["inc", "events"])


class Scenario:
    """A SQLite source table `events`, a destination, and one Dagster instance."""

    def __init__(self, tmp_path: Path, destination: dict[str, Any], **table: Any) -> None:
        self.source_path = tmp_path / "source.sqlite"
        self.destination = destination
        with self.source() as db:
            db.execute(
                "CREATE TABLE events (id INTEGER PRIMARY KEY, payload TEXT, updated_at INTEGER)"
            )
        self.job = CopyJob.model_validate(
            {
                "name": "inc",
                "mode": "incremental",
                "source": {"url": f"sqlite:///{self.source_path}"},
                "destination": destination,
                "batch_rows": 7,
                "tables": [{"name": "events", "incremental_column": "updated_at", **table}],
            }
        )
        self.assets = [*build_source_specs([self.job]), *build_copy_assets([self.job])]

    def source(self) -> sqlite3.Connection:
        return sqlite3.connect(self.source_path, isolation_level=None)

    def insert(self, *rows: tuple[int, str | None, int | None]) -> None:
        with self.source() as db:
            db.executemany("INSERT INTO events VALUES (?, ?, ?)", rows)

    def materialize(self, instance: dg.DagsterInstance, **config: Any) -> dict[str, Any]:
        run_config = {"ops": {"copy__inc": {"config": config}}} if config else None
        result = dg.materialize(self.assets, instance=instance, run_config=run_config)
        assert result.success
        event = instance.get_latest_materialization_event(KEY)
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}

    def destination_rows(self) -> list[tuple[Any, ...]]:
        url = self.destination["url"]
        if "://" not in url:
            table = ds.dataset(Path(url) / "events", format="parquet").to_table()
            rows = zip(
                *(table.column(c).to_pylist() for c in ("id", "payload", "updated_at")), strict=True
            )
            return sorted(rows)
        engine = sa.create_engine(url)
        schema = self.destination.get("schema")
        table = sa.Table("events", sa.MetaData(), autoload_with=engine, schema=schema)
        with engine.connect() as conn:
            rows = conn.execute(sa.select(table.c.id, table.c.payload, table.c.updated_at))
            result = sorted(tuple(r) for r in rows)
        engine.dispose()
        return result

    def source_rows(self, watermark: int) -> list[tuple[Any, ...]]:
        with self.source() as db:
            return sorted(
                db.execute("SELECT * FROM events WHERE updated_at <= ?", (watermark,)).fetchall()
            )

    def assert_equal_as_of(self, watermark: int) -> None:
        destination = self.destination_rows()
        assert len({row[0] for row in destination}) == len(destination), "duplicates"
        assert destination == self.source_rows(watermark)


def _sqlite(tmp_path: Path) -> dict[str, Any]:
    return {"url": f"sqlite:///{tmp_path / 'dest.sqlite'}"}


def _parquet(tmp_path: Path) -> dict[str, Any]:
    return {"url": str(tmp_path / "lake")}


def _postgres(tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    return {
        "url": request.getfixturevalue("pg_server"),
        "schema": request.getfixturevalue("pg_schema"),
    }


def _mysql(tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"url": request.getfixturevalue("mysql_url")}


DESTINATIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "sqlite": lambda tmp_path, request: _sqlite(tmp_path),
    "parquet": lambda tmp_path, request: _parquet(tmp_path),
    "postgres": _postgres,
    "mariadb": _mysql,
}


@pytest.fixture(params=list(DESTINATIONS))
def destination(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    return DESTINATIONS[request.param](tmp_path, request)


@pytest.fixture(params=[name for name in DESTINATIONS if name != "parquet"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Destinations that merge by key (Parquet files are appended)."""
    return DESTINATIONS[request.param](tmp_path, request)


def _write_for(destination: dict[str, Any]) -> str:
    return "append" if "://" not in destination["url"] else "merge"


def test_first_run_loads_all_then_only_new_rows(tmp_path: Path, destination: dict) -> None:
    scenario = Scenario(tmp_path, destination, write=_write_for(destination))
    scenario.insert(*[(i, f"row {i}", i * 10) for i in range(1, 21)])
    with dg.instance_for_test() as instance:
        first = scenario.materialize(instance)
        assert (first["copyjob/load"], first["copyjob/rows_read"]) == ("initial", 20)
        assert (first["copyjob/watermark"], first["copyjob/watermark_type"]) == ("200", "integer")
        scenario.assert_equal_as_of(200)

        scenario.insert(*[(i, f"row {i}", i * 10) for i in range(21, 31)])
        second = scenario.materialize(instance)
        assert (second["copyjob/load"], second["copyjob/rows_read"]) == ("incremental", 10)
        assert second["copyjob/watermark_before"] == "200"
        assert second["copyjob/watermark"] == "300"
        scenario.assert_equal_as_of(300)


def test_rows_arriving_late_at_the_watermark_are_not_lost(
    tmp_path: Path, destination: dict
) -> None:
    scenario = Scenario(tmp_path, destination, write=_write_for(destination))
    scenario.insert((1, "a", 100), (2, "b", 100))
    with dg.instance_for_test() as instance:
        assert scenario.materialize(instance)["copyjob/watermark_rows_at_value"] == 2
        scenario.insert((3, "late, same value", 100))  # e.g. a second-resolution timestamp
        late = scenario.materialize(instance)
        assert late["copyjob/watermark"] == "100"
        assert late["copyjob/watermark_rows_at_value"] == 3
        scenario.assert_equal_as_of(100)

        scenario.insert((4, "next", 101))
        assert scenario.materialize(instance)["copyjob/rows_read"] == 1  # ties not re-read
        scenario.assert_equal_as_of(101)


def test_a_run_with_nothing_new_changes_nothing(tmp_path: Path, destination: dict) -> None:
    scenario = Scenario(tmp_path, destination, write=_write_for(destination))
    scenario.insert((1, "a", 5), (2, "b", 6))
    with dg.instance_for_test() as instance:
        scenario.materialize(instance)
        files_before = (
            sorted((tmp_path / "lake").rglob("*")) if "://" not in destination["url"] else []
        )
        again = scenario.materialize(instance)
        assert (again["copyjob/rows_read"], again["copyjob/rows_written"]) == (0, 0)
        assert again["copyjob/watermark"] == "6"
        if "://" not in destination["url"]:
            assert sorted((tmp_path / "lake").rglob("*")) == files_before  # no empty file
        scenario.assert_equal_as_of(6)


def test_merge_replaces_updated_rows(tmp_path: Path, database: dict) -> None:
    scenario = Scenario(tmp_path, database, write="merge")
    scenario.insert((1, "first", 1), (2, "first", 2))
    with dg.instance_for_test() as instance:
        scenario.materialize(instance)
        with scenario.source() as db:
            db.execute("UPDATE events SET payload = 'second', updated_at = 3 WHERE id = 1")
        scenario.materialize(instance)
        assert scenario.destination_rows() == [(1, "second", 3), (2, "first", 2)]


def test_rerun_after_a_commit_that_was_never_recorded_duplicates_nothing(
    tmp_path: Path, destination: dict
) -> None:
    scenario = Scenario(tmp_path, destination, write=_write_for(destination))
    scenario.insert((1, "a", 1), (2, "b", 2))
    with dg.instance_for_test() as instance:
        scenario.materialize(instance)
        scenario.insert((3, "c", 3), (4, "d", 3))
        # The destination commits, then the process dies before Dagster records the watermark.
        table = scenario.job.tables[0]
        copy_table(scenario.job, table, latest_watermark(instance, KEY))
        scenario.insert((5, "e", 4))
        rerun = scenario.materialize(instance)
        assert rerun["copyjob/watermark"] == "4"
        scenario.assert_equal_as_of(4)


def test_null_incremental_values_fail_by_default_and_can_be_skipped(tmp_path: Path) -> None:
    scenario = Scenario(tmp_path, _sqlite(tmp_path))
    scenario.insert((1, "a", 1), (2, "no cursor", None))
    with dg.instance_for_test() as instance:
        result = dg.materialize(scenario.assets, instance=instance, raise_on_error=False)
        assert not result.success
        message = result.get_step_failure_events()[0].step_failure_data.user_failure_data
        assert "1 rows have a NULL incremental column 'updated_at'" in message.description
        assert instance.get_latest_materialization_event(KEY) is None

    (tmp_path / "skip").mkdir()
    skipping = Scenario(tmp_path / "skip", _sqlite(tmp_path / "skip"), null_cursor="skip")
    skipping.insert((1, "a", 1), (2, "no cursor", None))
    with dg.instance_for_test() as instance:
        assert skipping.materialize(instance)["copyjob/null_cursor_rows"] == 1
        skipping.assert_equal_as_of(1)


def test_full_refresh_from_run_config_reloads_the_table(tmp_path: Path, destination: dict) -> None:
    scenario = Scenario(tmp_path, destination, write=_write_for(destination))
    scenario.insert((1, "a", 1), (2, "b", 2))
    with dg.instance_for_test() as instance:
        scenario.materialize(instance)
        with scenario.source() as db:  # a change the watermark cannot see
            db.execute("UPDATE events SET payload = 'edited' WHERE id = 1")
        refreshed = scenario.materialize(instance, full_refresh=True)
        assert (refreshed["copyjob/load"], refreshed["copyjob/rows_read"]) == ("initial", 2)
        scenario.assert_equal_as_of(2)


def test_added_column_appears_and_dropped_column_stops_the_run(tmp_path: Path) -> None:
    scenario = Scenario(tmp_path, _sqlite(tmp_path))
    scenario.insert((1, "a", 1))
    with dg.instance_for_test() as instance:
        scenario.materialize(instance)
        with scenario.source() as db:
            db.execute("ALTER TABLE events ADD COLUMN note TEXT")
            db.execute("INSERT INTO events VALUES (2, 'b', 2, 'new column')")
        scenario.materialize(instance)
        with sqlite3.connect(tmp_path / "dest.sqlite") as db:
            assert db.execute("SELECT id, note FROM events ORDER BY id").fetchall() == [
                (1, None),
                (2, "new column"),
            ]
        with scenario.source() as db:
            db.execute("ALTER TABLE events DROP COLUMN payload")
            db.execute("INSERT INTO events VALUES (3, 3, 'x')")
        failed = dg.materialize(scenario.assets, instance=instance, raise_on_error=False)
        assert not failed.success
        description = failed.get_step_failure_events()[0].step_failure_data.user_failure_data
        assert (
            "table 'events'" in description.description and "'payload'" in description.description
        )
        latest = instance.get_latest_materialization_event(KEY).asset_materialization
        assert latest.metadata["copyjob/watermark"].value == "2"


def test_parquet_folder_as_incremental_source(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = tmp_path / "files" / "events"
    source.mkdir(parents=True)
    pq.write_table(pa.table({"id": [1, 2], "updated_at": [10, 20]}), source / "a.parquet")
    job = CopyJob.model_validate(
        {
            "name": "files",
            "mode": "incremental",
            "source": {"url": str(tmp_path / "files")},
            "destination": {"url": f"sqlite:///{tmp_path / 'dest.sqlite'}"},
            "tables": [
                {"name": "events", "incremental_column": "updated_at", "primary_key": ["id"]}
            ],
        }
    )
    assets = [*build_source_specs([job]), *build_copy_assets([job])]
    with dg.instance_for_test() as instance:
        dg.materialize(assets, instance=instance)
        pq.write_table(pa.table({"id": [3], "updated_at": [30]}), source / "b.parquet")
        dg.materialize(assets, instance=instance)
        event = instance.get_latest_materialization_event(dg.AssetKey(["files", "events"]))
    assert event.asset_materialization.metadata["copyjob/rows_read"].value == 1
    with sqlite3.connect(tmp_path / "dest.sqlite") as db:
        assert db.execute("SELECT id FROM events ORDER BY id").fetchall() == [(1,), (2,), (3,)]


def test_ties_are_caught_when_as_many_rows_leave_the_watermark_value(tmp_path: Path) -> None:
    # A count of the rows at the watermark would not notice: one row leaves the value (an
    # update moves it on) while one new row arrives with it. The fingerprint does.
    scenario = Scenario(tmp_path, _sqlite(tmp_path), write="merge")
    scenario.insert((1, "a", 10), (2, "b", 10))
    with dg.instance_for_test() as instance:
        scenario.materialize(instance)
        with scenario.source() as db:
            db.execute("UPDATE events SET updated_at = 11, payload = 'moved' WHERE id = 1")
        scenario.insert((3, "late", 10))
        again = scenario.materialize(instance)
        assert again["copyjob/window"] == "updated_at >= 10 and <= 11"
        scenario.assert_equal_as_of(11)


def test_mariadb_second_resolution_ties_from_a_mariadb_source(
    mysql_url: str, tmp_path: Path
) -> None:
    # MariaDB's DATETIME keeps no fraction by default: rows in the same second are the norm.
    engine = sa.create_engine(mysql_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE events (id INT PRIMARY KEY, changed DATETIME)"))
        conn.execute(sa.text("INSERT INTO events VALUES (1, '2024-05-01 10:00:00')"))
    job = CopyJob.model_validate(
        {
            "name": "maria",
            "mode": "incremental",
            "source": {"url": mysql_url},
            "destination": {"url": str(tmp_path / "lake")},
            "tables": [{"name": "events", "incremental_column": "changed"}],
        }
    )
    assets = [*build_source_specs([job]), *build_copy_assets([job])]
    with dg.instance_for_test() as instance:
        dg.materialize(assets, instance=instance)
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO events VALUES (2, '2024-05-01 10:00:00')"))
        dg.materialize(assets, instance=instance)
    engine.dispose()
    copied = ds.dataset(tmp_path / "lake" / "events", format="parquet").to_table()
    assert sorted(copied.column("id").to_pylist()) == [1, 2]


def test_a_rename_onto_an_existing_column_is_refused_before_copying(tmp_path: Path) -> None:
    scenario = Scenario(tmp_path, _sqlite(tmp_path), rename={"payload": "id"})
    scenario.insert((1, "a", 1))
    with dg.instance_for_test() as instance:
        result = dg.materialize(scenario.assets, instance=instance, raise_on_error=False)
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert "field 'rename': several columns would be named 'id'" in failure.description
    assert not (tmp_path / "dest.sqlite").exists()


def test_row_count_is_the_tables_size_after_an_increment(tmp_path: Path) -> None:
    scenario = Scenario(tmp_path, _sqlite(tmp_path))
    scenario.insert((1, "a", 1), (2, "b", 2))
    with dg.instance_for_test() as instance:
        scenario.materialize(instance)
        scenario.insert((3, "c", 3))
        second = scenario.materialize(instance)
    assert second["copyjob/rows_written"] == 1
    assert second["dagster/row_count"] == 3


def test_a_run_with_nothing_new_opens_each_store_once_and_records_the_same_watermark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table with no new rows still gets its materialization (0 rows, the same watermark) and
    its row-count check; its lock, copy and counts share one source and one destination."""
    scenario = Scenario(tmp_path, _sqlite(tmp_path))
    scenario.insert((1, "a", 10), (2, "b", 20))
    with dg.instance_for_test() as instance:
        first = scenario.materialize(instance)
        opened: list[str] = []
        init = SqlStore.__init__

        def counted(self: SqlStore, url: str, schema: Any, role: str, *args: Any) -> None:
            opened.append(role)
            init(self, url, schema, role, *args)

        monkeypatch.setattr(SqlStore, "__init__", counted)
        result = dg.materialize(scenario.assets, instance=instance)
        (materialization,) = result.get_asset_materialization_events()
        metadata = materialization.materialization.metadata  # type: ignore[union-attr]
        again = {k: v.value for k, v in metadata.items()}
        assert (again["copyjob/rows_read"], again["copyjob/rows_written"]) == (0, 0)
        assert again["copyjob/watermark"] == first["copyjob/watermark"] == "20"
        assert sorted(opened) == ["destination", "source"]
        (check,) = result.get_asset_check_evaluations()
        assert (check.check_name, check.passed) == ("row_count_parity", True)
        assert check.metadata["copyjob/destination_rows"].value == 2
    scenario.assert_equal_as_of(20)
