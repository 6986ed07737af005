"""`copyjob run`'s instance keeps its SQLite connections: a run of several assets opens a few
database connections, not several per event, and stores the same events, which another
instance on the same folder (the webserver's) reads at once."""

import sqlite3
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from conftest import make_dagster_home

from copyjob_dagster.cli.storage import keep_connections

TABLES = [f"t{i}" for i in range(5)]


def _assets() -> list[dg.AssetsDefinition]:
    def table(name: str) -> dg.AssetsDefinition:
        @dg.asset(name=name)
        def copy() -> dg.MaterializeResult:
            return dg.MaterializeResult(metadata={"rows": 1})

        return copy

    return [table(name) for name in TABLES]


def _run(home: Path, keep: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """Connections opened by a run of the five assets, and the run's id."""
    opened = [0]
    connect = sqlite3.dbapi2.connect

    def counting(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened[0] += 1
        return connect(*args, **kwargs)

    with dg.DagsterInstance.from_config(str(home)) as instance:
        if keep:
            keep_connections(instance)
        monkeypatch.setattr(sqlite3.dbapi2, "connect", counting)
        result = dg.materialize(_assets(), instance=instance)
        monkeypatch.setattr(sqlite3.dbapi2, "connect", connect)
    assert result.success
    return opened[0], result.run_id


def test_a_run_opens_a_few_connections_and_stores_every_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = make_dagster_home(tmp_path / "home")
    as_dagster, _ = _run(home, False, monkeypatch)
    kept, run_id = _run(home, True, monkeypatch)
    assert as_dagster > 40  # a new connection per read and write: the cost cut here
    assert kept <= 12 < as_dagster // 4, (kept, as_dagster)  # a few per database, not per event
    with dg.DagsterInstance.from_config(str(home)) as other:  # another process's view
        for name in TABLES:
            event = other.get_latest_materialization_event(dg.AssetKey(name))
            assert event is not None and event.run_id == run_id
        assert other.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
        stored = other.get_records_for_run(run_id, limit=1000).records
    assert sum(r.event_log_entry.dagster_event_type == "ASSET_MATERIALIZATION" for r in stored) == 5


def test_only_materializations_wait_for_the_disk(tmp_path: Path) -> None:
    """A commit that stores a materialization (what a copy's watermark is read from) waits for
    the disk (`synchronous=FULL`); the run's other events are committed without an fsync."""
    home = make_dagster_home(tmp_path / "home")
    levels: list[int] = []

    def commit(conn: Any) -> None:
        driver = conn.connection.driver_connection
        if isinstance(driver, sqlite3.Connection):
            levels.append(driver.execute("PRAGMA synchronous").fetchone()[0])

    with dg.DagsterInstance.from_config(str(home)) as instance:
        keep_connections(instance)
        sa.event.listen(sa.engine.Engine, "commit", commit)
        try:
            result = dg.materialize(_assets(), instance=instance)
        finally:
            sa.event.remove(sa.engine.Engine, "commit", commit)
    assert result.success
    full, normal = levels.count(2), levels.count(1)
    # Each of the 5 materializations in the run's own log and in the asset index (the run's new
    # database is created at NORMAL: the test below).
    assert 2 * len(TABLES) <= full <= 2 * len(TABLES) + 2, levels
    assert normal > full, levels  # step events, run status: no fsync


def test_the_runs_new_database_is_created_in_wal_without_an_fsync(tmp_path: Path) -> None:
    """Dagster creates each run's own database statement by statement (about 20 commits) in
    SQLite's rollback-journal mode: a journal file made, fsynced and deleted per statement,
    0.45 s of waiting for a one-table run. Kept connections create it in WAL mode, at
    `synchronous=NORMAL`, like the run's other events."""
    home = make_dagster_home(tmp_path / "home")
    commits: list[tuple[str, int]] = []

    def commit(conn: Any) -> None:
        driver = conn.connection.driver_connection
        if isinstance(driver, sqlite3.Connection):
            mode = driver.execute("PRAGMA journal_mode").fetchone()[0]
            commits.append((mode, driver.execute("PRAGMA synchronous").fetchone()[0]))

    with dg.DagsterInstance.from_config(str(home)) as instance:
        keep_connections(instance)
        sa.event.listen(sa.engine.Engine, "commit", commit)
        try:
            result = dg.materialize(_assets(), instance=instance)
        finally:
            sa.event.remove(sa.engine.Engine, "commit", commit)
    assert result.success
    assert {mode for mode, _ in commits} == {"wal"}, commits
    assert commits.count(("wal", 2)) == 2 * len(TABLES), commits  # the materializations only
