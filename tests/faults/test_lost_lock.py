"""The copy lock's session ends mid-copy (an idle timeout, pg_terminate_backend, KILL, a proxy's
cut-off) and a second run takes the table at once: the run that lost its lock must write
nothing, so the newer run's rows stay (before, the older run committed last: rows lost, rows
stale)."""

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from copyjob_dagster.config import CopyJob
from copyjob_dagster.engine import Watermark, copy_table, copying, table_lock
from copyjob_dagster.errors import DestinationError
from copyjob_dagster.stores.locking import lock_key

FAMILY = "F7 copy lock lost"


class Events:
    """A SQLite source `events(id unique, payload, updated_at)` and its copy at a server
    destination."""

    def __init__(self, tmp_path: Path, destination: dict[str, Any], write: str) -> None:
        self.path = tmp_path / "source.sqlite"
        self.destination = destination
        self.next_value = 1
        with self._source() as db:
            db.execute("PRAGMA journal_mode=WAL")  # a writer beside the open snapshot
            db.execute("CREATE TABLE events (id INTEGER UNIQUE, payload TEXT, updated_at INT)")
        self.job = CopyJob.model_validate(
            {
                "name": "lostlock",
                "mode": "incremental",
                "batch_rows": 10,
                "source": {"url": f"sqlite:///{self.path}"},
                "destination": destination,
                "tables": [
                    {
                        "name": "events",
                        "incremental_column": "updated_at",
                        # append without a key rewrites the window's range; merge upserts by id
                        **({"primary_key": ["id"]} if write == "merge" else {}),
                        "write": write,
                    }
                ],
            }
        )
        self.table = self.job.tables[0]

    def _source(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, isolation_level=None)

    def put(self, *ids: int) -> None:
        """Insert or update rows, each at the next incremental value."""
        rows = [(i, f"{i} at {self.next_value}", self.next_value) for i in ids]
        self.next_value += 1
        with self._source() as db:
            db.executemany("INSERT OR REPLACE INTO events VALUES (?, ?, ?)", rows)

    def source_rows(self, watermark: Watermark) -> dict[int, tuple[Any, ...]]:
        with self._source() as db:
            rows = db.execute("SELECT id, payload, updated_at FROM events")
            return {r[0]: r for r in rows if r[2] <= int(watermark.text)}

    def copy(self, watermark: Watermark | None) -> Watermark | None:
        """One run as the asset does it: the lock held around the copy."""
        with table_lock(self.job, self.table):
            return copy_table(self.job, self.table, watermark).watermark

    def engine(self) -> sa.Engine:
        return sa.create_engine(self.destination["url"])

    def copied(self) -> list[tuple[Any, ...]]:
        engine = self.engine()
        try:
            events = sa.Table(
                "events", sa.MetaData(), autoload_with=engine, schema=self.destination.get("schema")
            )
            with engine.connect() as conn:
                query = sa.select(events.c.id, events.c.payload, events.c.updated_at)
                return [tuple(r) for r in conn.execute(query)]
        finally:
            engine.dispose()

    def end_lock_session(self) -> None:
        """End the server session that holds the table's copy lock, as an idle timeout would."""
        engine = self.engine()
        try:
            with engine.connect() as conn:
                if engine.dialect.name == "postgresql":
                    key = lock_key("copyjob", self.destination["schema"], "events")[:8]
                    session = conn.execute(
                        sa.text(
                            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                            "AND ((classid::bigint << 32) | objid::bigint) = :key"
                        ),
                        {"key": int.from_bytes(key, "big", signed=True)},
                    ).scalar_one()
                    conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": session})
                else:
                    name = "copyjob:" + lock_key(engine.url.database, None, "events").hex()[:48]
                    query = sa.text("SELECT IS_USED_LOCK(:name)")
                    session = conn.execute(query, {"name": name}).scalar_one()
                    conn.execute(sa.text(f"KILL CONNECTION {int(session)}"))
        finally:
            engine.dispose()


def _destination(kind: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if kind == "postgres":
        schema = request.getfixturevalue("pg_schema")
        return {"url": request.getfixturevalue("pg_server"), "schema": schema}
    return {"url": request.getfixturevalue("mysql_url")}


CASES = [("postgres", "append"), ("postgres", "merge"), ("mariadb", "append"), ("mariadb", "merge")]


@pytest.mark.parametrize(("destination", "write"), CASES, ids=[f"{d}-{w}" for d, w in CASES])
def test_a_run_that_lost_its_lock_writes_nothing(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    record_case: Any,
    destination: str,
    write: str,
) -> None:
    events = Events(tmp_path, _destination(destination, request), write)
    events.put(*range(1, 101))
    start = events.copy(None)
    events.put(*range(101, 131))
    newer: list[Watermark | None] = []
    plan_window = copying.plan_window

    def lose_the_lock_then_let_another_run_copy(*args: Any) -> Any:
        window = plan_window(*args)  # this run's snapshot is open: it will write 30 rows
        if not newer:
            newer.append(None)
            events.end_lock_session()
            events.put(*range(131, 151))
            events.put(*range(101, 106))  # updated: the older run holds their old values
            newer[0] = events.copy(start)  # the second run takes the table and copies
        return window

    monkeypatch.setattr(copying, "plan_window", lose_the_lock_then_let_another_run_copy)
    outcome = None
    try:
        with pytest.raises(DestinationError) as refused:
            events.copy(start)
        assert newer[0] is not None
        expected = events.source_rows(newer[0])
        copied = events.copied()
        keys = {row[0] for row in copied}
        outcome = {
            "lost": len(expected.keys() - keys),
            "duplicates": len(copied) - len({(row[0], row[2]) for row in copied}),
            "mismatches": len({row for key, row in expected.items() if key in keys} - set(copied)),
            "extra": len(keys - expected.keys()),
            "regressions": 0,
        }
    finally:
        record_case(FAMILY, f"{destination}-{write}", outcome)
    assert "copy lock ended before it wrote" in str(refused.value)
    assert "this run wrote nothing" in str(refused.value)
    assert outcome == dict.fromkeys(outcome, 0)
