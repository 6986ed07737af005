"""Deletions, SCD2 history and audit columns, copied by the engine into PostgreSQL, MariaDB and
Parquet, as a user would check them: the destination equals the source as of the watermark.

- deletions: rows gone from the source are gone (hard) or marked (soft) at the destination, a
  key that comes back is unmarked, a second pass changes nothing, and the guard refuses a mass
  deletion with a clear message, leaving the destination as it was;
- SCD2: the current versions equal the source, every version seen is kept once, each closed
  version ends where the next begins, and copying a window again adds no version;
- audit columns: each row names the run that wrote it, when, and its window's bounds.
"""

import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import sqlalchemy as sa

from copyjob_dagster.config import CopyJob
from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs
from copyjob_dagster.defs.history import read_history
from copyjob_dagster.defs.metadata import DELETED_ROWS, SOFT_DELETED_ROWS
from copyjob_dagster.engine import CopyResult, copy_table
from copyjob_dagster.engine.counts import destination_rows
from copyjob_dagster.engine.watermark import Watermark
from copyjob_dagster.errors import MassDeleteError
from copyjob_dagster.stores import parquet_changes

DELETED = "_copyjob_deleted_at"
VALID_FROM, VALID_TO, CURRENT = "_copyjob_valid_from", "_copyjob_valid_to", "_copyjob_is_current"


class Table:
    """A SQLite source table `items` (id, name, updated_at) and its copy at a destination."""

    def __init__(self, tmp_path: Path, destination: dict[str, Any], **table: Any) -> None:
        self.path = tmp_path / "source.sqlite"
        self.destination = destination
        self.version = 0
        with self._source() as db:
            db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, updated_at INTEGER)")
        self.job = CopyJob.model_validate(
            {
                "name": "changes",
                "mode": "incremental",
                "source": {"url": f"sqlite:///{self.path}"},
                "destination": destination,
                "batch_rows": 4,
                "tables": [
                    {
                        "name": "items",
                        "incremental_column": "updated_at",
                        "primary_key": ["id"],
                        **table,
                    }
                ],
            }
        )
        self.watermark: Watermark | None = None

    def _source(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, isolation_level=None)

    def put(self, *ids: int) -> None:
        """Insert or update rows: each gets a new name and the next incremental value."""
        rows = []
        for i in ids:
            self.version += 1
            rows.append((i, f"{i} v{self.version}", self.version))
        with self._source() as db:
            db.executemany("INSERT OR REPLACE INTO items VALUES (?, ?, ?)", rows)

    def delete(self, *ids: int) -> None:
        with self._source() as db:
            db.executemany("DELETE FROM items WHERE id = ?", [(i,) for i in ids])

    def source_rows(self) -> set[tuple[Any, ...]]:
        with self._source() as db:
            return set(db.execute("SELECT id, name, updated_at FROM items"))

    def copy(self, watermark: Watermark | None = None, **options: Any) -> CopyResult:
        """Copy from the recorded watermark (or the one given: a rerun), and record the new."""
        start = watermark if watermark is not None else self.watermark
        result = copy_table(self.job, self.job.tables[0], start, **options)
        self.watermark = result.watermark
        return result

    def rows(self) -> list[dict[str, Any]]:
        url = self.destination["url"]
        if "://" not in url:
            return ds.dataset(Path(url) / "items", format="parquet").to_table().to_pylist()
        engine = sa.create_engine(url)
        try:
            table = sa.Table(
                "items", sa.MetaData(), autoload_with=engine, schema=self.destination.get("schema")
            )
            with engine.connect() as conn:
                return [dict(row._mapping) for row in conn.execute(sa.select(table))]
        finally:
            engine.dispose()


def _parquet(tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"url": str(tmp_path / "lake")}


def _postgres(tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    return {
        "url": request.getfixturevalue("pg_server"),
        "schema": request.getfixturevalue("pg_schema"),
    }


def _mariadb(tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"url": request.getfixturevalue("mysql_url")}


DESTINATIONS: dict[str, Callable[[Path, pytest.FixtureRequest], dict[str, Any]]] = {
    "postgres": _postgres,
    "mariadb": _mariadb,
    "parquet": _parquet,
}


@pytest.fixture(params=list(DESTINATIONS))
def destination(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    return DESTINATIONS[request.param](tmp_path, request)


def _plain(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["id"], row["name"], row["updated_at"])


def _latest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest row per key (Parquet folders append; a database merges)."""
    newest: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row["id"] not in newest or row["updated_at"] > newest[row["id"]]["updated_at"]:
            newest[row["id"]] = row
    return list(newest.values())


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_deletions_follow_the_source(
    tmp_path: Path, destination: dict[str, Any], mode: str
) -> None:
    _deletions_follow_the_source(Table(tmp_path, destination, deletes=mode), mode)


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_parquet_deletions_in_several_buckets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """Beyond BUCKET_KEYS destination rows, keys are compared one hashed bucket at a time."""
    monkeypatch.setattr(parquet_changes, "BUCKET_KEYS", 3)
    _deletions_follow_the_source(
        Table(tmp_path, {"url": str(tmp_path / "lake")}, deletes=mode), mode
    )


def test_buckets_of_a_key_do_not_depend_on_its_batch() -> None:
    keys = [("a", 1), ("b", 2), ("é", 3), ("a", 2)]
    batch = pa.record_batch({"k": [k for k, _ in keys], "n": [n for _, n in keys]})
    together = parquet_changes._buckets(batch, ["k", "n"], 3)
    alone = [parquet_changes._buckets(batch.slice(i, 1), ["k", "n"], 3)[0] for i in range(4)]
    assert list(together) == alone
    ints = pa.record_batch({"id": pa.array(range(-500, 500), pa.int32())})
    wide = pa.record_batch({"id": pa.array(range(-500, 500), pa.int64())})
    spread = parquet_changes._buckets(ints, ["id"], 4)
    assert list(spread) == list(parquet_changes._buckets(wide, ["id"], 4))
    assert set(spread) == {0, 1, 2, 3}


def _deletions_follow_the_source(table: Table, mode: str) -> None:
    destination = table.destination
    table.put(*range(1, 11))
    assert table.copy().deletions.deleted == 0  # the initial load: nothing to compare

    table.delete(2, 3, 4)
    table.put(11)
    result = table.copy()
    rows = table.rows()
    if mode == "hard":
        assert (result.deletions.deleted, result.deletions.soft_deleted) == (3, 0)
        assert {_plain(r) for r in rows} == table.source_rows()
    else:
        assert (result.deletions.deleted, result.deletions.soft_deleted) == (0, 3)
        assert {r["id"] for r in rows if r[DELETED] is not None} == {2, 3, 4}
        assert {_plain(r) for r in rows if r[DELETED] is None} == table.source_rows()
        assert len({r[DELETED] for r in rows if r[DELETED] is not None}) == 1

    again = table.copy(result.watermark_before)  # the same window again: a rerun
    assert sorted(map(repr, table.rows())) == sorted(map(repr, rows))
    assert again.deletions.deleted == again.deletions.soft_deleted == 0

    table.put(3)  # a deleted key comes back
    back = table.copy()
    latest = _latest(table.rows())
    if mode == "soft":
        assert back.deletions.restored == (1 if "://" not in destination["url"] else 0)
        assert {r["id"] for r in latest if r[DELETED] is not None} == {2, 4}
        latest = [r for r in latest if r[DELETED] is None]
    assert {_plain(r) for r in latest} == table.source_rows()


def test_guard_refuses_a_mass_deletion(tmp_path: Path, destination: dict[str, Any]) -> None:
    table = Table(tmp_path, destination, deletes="hard", max_delete_share=0.5)
    table.put(*range(1, 11))
    table.copy()
    before = sorted(map(_plain, table.rows()))
    table.delete(*range(1, 7))
    table.put(20)

    with pytest.raises(MassDeleteError) as refused:
        table.copy()
    message = str(refused.value)
    assert "table 'items'" in message and "6 of the destination's 10 rows (60%)" in message
    assert "--allow-mass-delete" in message
    assert sorted(map(_plain, table.rows())) == before  # not even the new row was written

    result = table.copy(allow_mass_delete=True)
    assert result.deletions.deleted == 6
    assert {_plain(r) for r in table.rows()} == table.source_rows()


def _versions_hold(table: Table, expected: set[tuple[int, int]]) -> dict[str, Any]:
    """Check the SCD2 invariant; return the rows by (id, valid_from)."""
    rows = table.rows()
    versions = Counter((r["id"], r[VALID_FROM]) for r in rows)
    assert max(versions.values()) == 1, "a version is duplicated"
    assert set(versions) == expected, "versions lost or extra"
    current = [r for r in rows if r[CURRENT]]
    assert {_plain(r) for r in current} == table.source_rows()
    by_key: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        assert row[VALID_FROM] == row["updated_at"]
        by_key.setdefault(row["id"], []).append(row)
    for history in by_key.values():
        history.sort(key=lambda r: r[VALID_FROM])
        for older, newer in zip(history, history[1:], strict=False):
            assert older[VALID_TO] == newer[VALID_FROM] and not older[CURRENT]
    return {(r["id"], r[VALID_FROM]): r for r in rows}


def test_scd2_keeps_every_version_once(tmp_path: Path, destination: dict[str, Any]) -> None:
    table = Table(tmp_path, destination, write="scd2", deletes="soft")
    table.put(1, 2, 3, 4)
    table.copy()
    table.put(2, 3)
    table.put(3, 5)
    first = table.copy()
    # Versions as the runs saw them: (3, 6) was replaced at the source before a copy read it.
    expected = {(1, 1), (2, 2), (3, 3), (4, 4), (2, 5), (3, 7), (5, 8)}
    _versions_hold(table, expected)

    table.copy(first.watermark_before)  # killed before the watermark was recorded: a rerun
    _versions_hold(table, expected)

    table.delete(4)
    table.put(1)
    result = table.copy()
    assert result.deletions.soft_deleted == 1
    rows = _versions_hold(table, expected | {(1, 9)})
    gone = rows[(4, 4)]
    assert not gone[CURRENT] and gone[VALID_TO] == 9  # closed at the run's upper bound
    table.copy(result.watermark_before)
    _versions_hold(table, expected | {(1, 9)})
    # The row-count check compares the current versions with the source's rows.
    assert destination_rows(table.job, table.job.tables[0]) == 4


def test_audit_columns_name_the_run_and_window(tmp_path: Path, destination: dict[str, Any]) -> None:
    table = Table(
        tmp_path,
        destination,
        audit_columns={"run_id": "loaded_by", "window_from": None},
    )
    table.put(1, 2)
    table.copy(run_id="run-one")
    table.put(3)
    table.copy(run_id="run-two")
    rows = {r["id"]: r for r in table.rows()}
    assert "_copyjob_window_from" not in rows[1]
    assert [rows[i]["loaded_by"] for i in (1, 2, 3)] == ["run-one", "run-one", "run-two"]
    assert [rows[i]["_copyjob_window_to"] for i in (1, 2, 3)] == ["2", "2", "3"]
    loaded = [rows[i]["_copyjob_loaded_at"] for i in (1, 2, 3)]
    assert loaded[0] == loaded[1] < loaded[2].replace(tzinfo=loaded[0].tzinfo)


def test_through_dagster_metadata_history_and_the_guard(tmp_path: Path) -> None:
    """Materialized as a user does: deleted counts in the metadata and the history totals, the
    run id in the audit column, and the guard's refusal (then a run told to go ahead)."""
    table = Table(
        tmp_path, {"url": str(tmp_path / "lake")}, deletes="soft", audit_columns={"run_id": "run"}
    )
    assets = [*build_source_specs([table.job]), *build_copy_assets([table.job])]
    key = dg.AssetKey(["changes", "items"])
    table.put(*range(1, 9))
    with dg.instance_for_test() as instance:

        def materialize(**config: Any) -> dg.ExecuteInProcessResult:
            run_config = {"ops": {"copy__changes": {"config": config}}} if config else None
            return dg.materialize(
                assets, instance=instance, run_config=run_config, raise_on_error=False
            )

        first = materialize()
        assert first.success
        table.delete(1, 2, 3, 4, 5)
        table.put(9)
        refused = materialize()
        assert not refused.success
        failure = refused.get_step_failure_events()[0].step_failure_data.user_failure_data
        assert "5 of the destination's 8 rows (62%)" in failure.description
        assert "--allow-mass-delete" in failure.description
        assert instance.get_latest_materialization_event(key).run_id == first.run_id
        assert {r["id"] for r in table.rows()} == set(range(1, 9))  # as it was, unmarked
        assert all(r[DELETED] is None for r in table.rows())

        allowed = materialize(allow_mass_delete=True)
        assert allowed.success
        metadata = instance.get_latest_materialization_event(key).asset_materialization.metadata
        assert metadata[SOFT_DELETED_ROWS].value == 5 and metadata[DELETED_ROWS].value == 0
        rows = {r["id"]: r for r in table.rows()}
        assert {i for i, r in rows.items() if r[DELETED] is not None} == {1, 2, 3, 4, 5}
        assert rows[8]["run"] == first.run_id and rows[9]["run"] == allowed.run_id
        totals = read_history(instance, [table.job]).tables[0]
        assert (totals.copies, totals.rows_soft_deleted, totals.rows_deleted) == (2, 5, 0)
        # The row-count check counts the rows not marked deleted: 4 of the 9 held.
        parity = allowed.get_asset_check_evaluations()[0]
        assert parity.passed, parity.description
        assert metadata["dagster/row_count"].value == 4
