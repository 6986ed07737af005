"""Delta Lake tables as a destination and as a source, as a user checks them: the table's own
history (one commit per run), its rows at each version, and what the copy reports."""

import sqlite3
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from copyjob_dagster.config import CopyJob
from copyjob_dagster.defs import read_history
from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs
from copyjob_dagster.engine import Watermark, copy_table, load_job
from copyjob_dagster.errors import DestinationError
from copyjob_dagster.stores import Commit, Window
from copyjob_dagster.stores.delta_types import window_predicate
from copyjob_dagster.stores.parquet_files import window_expression


def delta_url(folder: Path) -> str:
    return f"delta:///{folder}"  # an absolute path: four slashes in all


class Events:
    """A SQLite table `events` (id, payload, updated_at) copied into a Delta folder."""

    def __init__(self, tmp_path: Path, mode: str = "incremental", **table: Any) -> None:
        self.source_path = tmp_path / "source.sqlite"
        self.lake = tmp_path / "lake"
        with self.db() as db:
            db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, payload TEXT, updated_at INT)")
        incremental = {"incremental_column": "updated_at"} if mode == "incremental" else {}
        self.job = CopyJob.model_validate(
            {
                "name": "lake",
                "mode": mode,
                "source": {"url": f"sqlite:///{self.source_path}"},
                "destination": {"url": delta_url(self.lake)},
                "batch_rows": 3,
                "tables": [{"name": "events", **incremental, **table}],
            }
        )

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.source_path, isolation_level=None)

    def insert(self, *rows: tuple[int, str, int]) -> None:
        with self.db() as db:
            db.executemany("INSERT INTO events VALUES (?, ?, ?)", rows)

    def copy(self, watermark: Watermark | None = None) -> Any:
        return copy_table(self.job, self.job.tables[0], watermark)

    def table(self, version: int | None = None) -> DeltaTable:
        return DeltaTable(str(self.lake / "events"), version=version)

    def rows(self, version: int | None = None) -> list[tuple[Any, ...]]:
        data = self.table(version).to_pyarrow_table().to_pydict()
        return sorted(zip(data["id"], data["payload"], data["updated_at"], strict=True))

    def source_rows(self) -> list[tuple[Any, ...]]:
        with self.db() as db:
            return sorted(db.execute("SELECT * FROM events").fetchall())


def rows_of(n: int, start: int = 1, at: int = 100) -> list[tuple[int, str, int]]:
    return [(i, f"row {i}", at + i) for i in range(start, start + n)]


def test_a_full_copy_replaces_the_table_in_one_commit(tmp_path: Path) -> None:
    events = Events(tmp_path, mode="full")
    events.insert(*rows_of(10))
    first = events.copy()
    with events.db() as db:
        db.execute("DELETE FROM events WHERE id > 6")
    second = events.copy()

    assert first.commit == Commit(version=0, inserted=10)
    assert second.commit == Commit(version=1, inserted=6, deleted=10)
    assert events.table().version() == 1
    assert events.rows() == events.source_rows()
    assert len(events.rows(version=0)) == 10  # the previous version is still there to read


def test_append_replaces_its_window_so_a_rerun_changes_nothing_twice(tmp_path: Path) -> None:
    events = Events(tmp_path, write="append")
    events.insert(*rows_of(5))
    initial = events.copy()
    events.insert(*rows_of(4, start=6))
    window = events.copy(initial.watermark)
    # The run's watermark was never recorded (killed after the commit): the window again.
    again = events.copy(initial.watermark)

    assert [c.version for c in (initial.commit, window.commit, again.commit)] == [0, 1, 2]
    assert window.commit == Commit(version=1, inserted=4)
    # The rows read again replace their copies by (key, incremental value).
    assert again.commit == Commit(version=2, inserted=0, updated=4)
    assert events.rows() == events.source_rows()  # no row twice
    assert events.rows(version=1) == events.rows(version=2)
    assert again.watermark == window.watermark


def test_merge_upserts_by_key_and_reports_the_commit_counts(tmp_path: Path) -> None:
    events = Events(tmp_path, write="merge")
    events.insert(*rows_of(6))
    initial = events.copy()
    with events.db() as db:
        db.execute("UPDATE events SET payload = 'changed', updated_at = 900 WHERE id IN (2, 3)")
    events.insert(*rows_of(3, start=7, at=900))
    merged = events.copy(initial.watermark)

    assert merged.commit == Commit(version=1, inserted=3, updated=2)
    assert merged.rows_written == 5
    assert events.rows() == events.source_rows()
    assert len(events.table().history()) == 2


def test_a_failed_write_leaves_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = Events(tmp_path, write="append")
    events.insert(*rows_of(5))
    initial = events.copy()
    events.insert(*rows_of(9, start=6))

    def failing(batches: Any, schema: pa.Schema) -> pa.RecordBatchReader:
        def broken() -> Any:
            yield next(iter(batches)).cast(schema)
            raise OSError("the source connection dropped")

        return pa.RecordBatchReader.from_batches(schema, broken())

    monkeypatch.setattr("copyjob_dagster.stores.delta.as_delta", failing)
    with pytest.raises(DestinationError, match="the source connection dropped"):
        events.copy(initial.watermark)

    assert events.table().version() == 0
    assert events.rows() == sorted(rows_of(5))


def test_window_bounds_with_quotes_in_names_and_values(tmp_path: Path) -> None:
    """Bounds are rendered as typed literals: a quote in a value or a name changes nothing."""
    source = tmp_path / "source.sqlite"
    with sqlite3.connect(source) as db:
        db.execute('CREATE TABLE t (id INTEGER PRIMARY KEY, "Up""d At" TEXT)')
        db.executemany("INSERT INTO t VALUES (?, ?)", [(1, "a' OR 'x'='x"), (2, "b")])
    job = CopyJob.model_validate(
        {
            "name": "quotes",
            "mode": "incremental",
            "source": {"url": f"sqlite:///{source}"},
            "destination": {"url": delta_url(tmp_path / "lake")},
            "tables": [{"name": "t", "incremental_column": 'Up"d At', "write": "append"}],
        }
    )
    initial = copy_table(job, job.tables[0])
    with sqlite3.connect(source) as db:
        db.execute("INSERT INTO t VALUES (3, 'c''s')")
    window = copy_table(job, job.tables[0], initial.watermark)
    again = copy_table(job, job.tables[0], initial.watermark)

    data = DeltaTable(str(tmp_path / "lake" / "t")).to_pyarrow_table().to_pydict()
    assert sorted(zip(data["id"], data['Up"d At'], strict=True)) == [
        (1, "a' OR 'x'='x"),
        (2, "b"),
        (3, "c's"),
    ]
    # The row read again replaces its copy by (key, value), not by a range of the text.
    assert (window.commit.inserted, again.commit.updated) == (1, 1)


def write_source_table(path: Path, rows: list[tuple[int, str, int]]) -> int:
    table = pa.table(
        {
            "id": [r[0] for r in rows],
            "payload": [r[1] for r in rows],
            "updated_at": [r[2] for r in rows],
        }
    )
    write_deltalake(str(path), table, mode="append")
    return DeltaTable(str(path)).version()


def test_a_delta_source_is_read_incrementally_at_one_version(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    first_version = write_source_table(lake / "events", rows_of(5))
    destination = tmp_path / "copy.sqlite"
    job = CopyJob.model_validate(
        {
            "name": "from_lake",
            "mode": "incremental",
            "source": {"url": delta_url(lake)},
            "destination": {"url": f"sqlite:///{destination}"},
            "tables": [{"name": "events", "incremental_column": "updated_at", "write": "append"}],
        }
    )
    initial = copy_table(job, job.tables[0])
    second_version = write_source_table(lake / "events", rows_of(3, start=6))
    window = copy_table(job, job.tables[0], initial.watermark)

    assert (initial.source_version, window.source_version) == (first_version, second_version)
    assert (initial.rows_read, window.rows_read) == (5, 3)
    assert window.watermark.text == "108"
    with sqlite3.connect(destination) as db:
        assert sorted(db.execute("SELECT * FROM events").fetchall()) == sorted(rows_of(8))


def test_materialization_metadata_names_the_delta_versions(tmp_path: Path) -> None:
    events = Events(tmp_path, write="merge")
    events.insert(*rows_of(4))
    assets = [*build_source_specs([events.job]), *build_copy_assets([events.job])]
    key = dg.AssetKey(["lake", "events"])
    with dg.instance_for_test() as instance:
        assert dg.materialize(assets, instance=instance).success
        with events.db() as db:
            db.execute("UPDATE events SET payload = 'new', updated_at = 500 WHERE id = 1")
        events.insert((5, "five", 501))
        assert dg.materialize(assets, instance=instance).success
        event = instance.get_latest_materialization_event(key)
        metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
        history = read_history(instance, [events.job])

    assert [run.destination_version for run in history.runs] == [1, 0]  # `copyjob history`

    assert metadata["copyjob/destination_version"] == 1
    assert events.table().version() == 1
    assert (metadata["copyjob/rows_inserted"], metadata["copyjob/rows_updated"]) == (1, 1)
    assert metadata["copyjob/rows_deleted"] == 0
    assert metadata["copyjob/watermark"] == "501"


def test_a_relative_delta_url_resolves_against_the_job_folder(tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    job_file = tmp_path / "jobs" / "lake.yaml"
    job_file.write_text(
        "name: lake\n"
        "source: {url: 'sqlite:///shop.sqlite'}\n"
        "destination: {url: 'delta:///lake/tables'}\n"
        "tables: [{name: events}]\n"
    )
    job = load_job(job_file, base_dir=tmp_path)

    assert job.destination.url == f"delta:///{tmp_path / 'lake' / 'tables'}"
    assert job.destination.display_name == "tables"
    assert job.destination.technology == "delta"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("delta+hdfs://cluster/tables", "unknown Delta location 'delta+hdfs'"),
        ("delta://host/tables", "a Delta folder is written delta:///relative/folder"),
    ],
)
def test_delta_urls_the_store_cannot_open_are_named(tmp_path: Path, url: str, problem: str) -> None:
    from copyjob_dagster.stores.delta import DeltaStore

    assert problem in DeltaStore.url_problem(url)


BOUNDARY_VALUES = {
    "decimal": (pa.decimal128(12, 2), [Decimal("1.10"), Decimal("2.20"), Decimal("3.30")]),
    "date": (pa.date32(), [date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)]),
    "timestamp": (
        pa.timestamp("us"),
        [datetime(2024, 1, 1, 0, 0, 0, n) for n in (1, 2, 3)],
    ),
    "timestamp_tz": (
        pa.timestamp("us", "UTC"),
        [datetime(2024, 1, 1, 0, 0, 0, n, tzinfo=UTC) for n in (1, 2, 3)],
    ),
    "string": (pa.string(), ["a'", "b'", "c'"]),
    "integer": (pa.int32(), [1, 2, 3]),
}


@pytest.mark.parametrize("kind", list(BOUNDARY_VALUES))
@pytest.mark.parametrize("inclusive", [False, True], ids=["open", "closed"])
def test_the_delta_predicate_selects_the_window_pyarrow_selects(
    tmp_path: Path, kind: str, inclusive: bool
) -> None:
    """The predicate delta-rs runs and the filter that counts the replaced rows agree, to the
    microsecond and the last decimal digit, for every watermark kind."""
    arrow_type, values = BOUNDARY_VALUES[kind]
    table = pa.table({"c": pa.array(values, arrow_type)})
    write_deltalake(str(tmp_path / "t"), table)
    window = Window("c", values[1], inclusive)
    expected = 2 if inclusive else 1

    counted = (
        DeltaTable(str(tmp_path / "t"))
        .to_pyarrow_dataset()
        .count_rows(filter=window_expression(window))
    )
    deleted = DeltaTable(str(tmp_path / "t")).delete(window_predicate(window, table.schema))

    assert counted == deleted["num_deleted_rows"] == expected
