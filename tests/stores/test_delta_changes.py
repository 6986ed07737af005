"""Deletions and SCD2 into a Delta table, as a user checks them: the table's rows at each
version, one commit per run (the table's own history), and the counts the run reports."""

from pathlib import Path
from typing import Any

import pytest
from test_delta import Events, rows_of

from copyjob_dagster.engine import copy_table
from copyjob_dagster.errors import MassDeleteError
from copyjob_dagster.stores import Commit, DeletionCounts


def versions(events: Events) -> int:
    return len(events.table().history())


def test_hard_deletes_and_the_window_are_one_commit(tmp_path: Path) -> None:
    events = Events(tmp_path, write="merge", primary_key=["id"], deletes="hard")
    events.insert(*rows_of(10))
    initial = events.copy()
    with events.db() as db:
        db.execute("DELETE FROM events WHERE id IN (3, 4)")
        db.execute("UPDATE events SET payload = 'changed', updated_at = 900 WHERE id = 5")
    events.insert(*rows_of(2, start=11, at=900))
    run = events.copy(initial.watermark)
    # Its watermark was never recorded (killed right after the commit): the same run again.
    again = events.copy(initial.watermark)

    assert run.commit == Commit(version=1, inserted=2, updated=1, deleted=2)
    assert run.deletions == DeletionCounts(deleted=2)
    assert events.rows(version=1) == events.source_rows()
    assert again.deletions == DeletionCounts()
    assert events.rows() == events.source_rows()
    assert versions(events) == 3  # one commit per run, none of its own for the deletions


def test_deletions_without_new_rows_still_commit_once(tmp_path: Path) -> None:
    events = Events(tmp_path, write="merge", primary_key=["id"], deletes="hard")
    events.insert(*rows_of(10))
    initial = events.copy()
    with events.db() as db:
        db.execute("DELETE FROM events WHERE id = 7")
    run = events.copy(initial.watermark)
    nothing = events.copy(run.watermark)

    assert run.rows_written == 0 and run.deletions == DeletionCounts(deleted=1)
    assert run.commit == Commit(version=1, inserted=0, deleted=1)
    assert nothing.commit is None  # nothing to do: no empty commit either
    assert versions(events) == 2
    assert events.rows() == events.source_rows()


def test_soft_deletes_mark_rows_and_a_key_back_is_unmarked(tmp_path: Path) -> None:
    events = Events(tmp_path, write="merge", primary_key=["id"], deletes="soft")
    events.insert(*rows_of(6))
    initial = events.copy()
    with events.db() as db:
        db.execute("DELETE FROM events WHERE id IN (2, 4)")
    marked = events.copy(initial.watermark)
    events.insert((2, "row 2", 102))  # back with its old incremental value: not in a window
    events.insert((4, "four again", 950))  # back with a new one: the window's row
    back = events.copy(marked.watermark)

    def deleted_ids(version: int) -> list[int]:
        data = events.table(version).to_pyarrow_table().to_pydict()
        return sorted(i for i, d in zip(data["id"], data["_copyjob_deleted_at"], strict=True) if d)

    assert marked.deletions == DeletionCounts(soft_deleted=2)
    assert deleted_ids(1) == [2, 4]
    assert len(events.rows(version=1)) == 6  # marked, not removed
    assert back.deletions == DeletionCounts(restored=1)
    assert deleted_ids(2) == []
    assert events.rows() == events.source_rows()
    assert versions(events) == 3


def test_the_mass_delete_guard_stops_before_any_commit(tmp_path: Path) -> None:
    events = Events(tmp_path, write="merge", primary_key=["id"], deletes="hard")
    events.insert(*rows_of(10))
    initial = events.copy()
    with events.db() as db:
        db.execute("DELETE FROM events WHERE id > 2")
    events.insert((20, "new", 999))

    with pytest.raises(MassDeleteError, match="8 of the destination's 10 rows"):
        events.copy(initial.watermark)
    assert versions(events) == 1
    allowed = copy_table(
        events.job, events.job.tables[0], initial.watermark, allow_mass_delete=True
    )
    assert allowed.commit == Commit(version=1, inserted=1, deleted=8)
    assert events.rows() == events.source_rows()


def scd2_rows(events: Events, version: int | None = None) -> list[tuple[Any, ...]]:
    data = events.table(version).to_pyarrow_table().to_pydict()
    names = ["id", "payload", "valid_from", "valid_to", "is_current"]
    return sorted(zip(*(data[n] for n in names), strict=True))


@pytest.mark.parametrize("deletes", ["ignore", "hard", "soft"])
def test_scd2_keeps_versions_in_one_commit_per_run(tmp_path: Path, deletes: str) -> None:
    events = Events(
        tmp_path,
        write="scd2",
        primary_key=["id"],
        deletes=deletes,
        history_columns={
            "valid_from": "valid_from",
            "valid_to": "valid_to",
            "is_current": "is_current",
        },
    )
    events.insert(*rows_of(3))
    initial = events.copy()
    with events.db() as db:
        db.execute("UPDATE events SET payload = 'v2', updated_at = 500 WHERE id = 1")
        db.execute("DELETE FROM events WHERE id = 3")
    run = events.copy(initial.watermark)
    again = events.copy(initial.watermark)  # the watermark was not recorded: the window again

    gone = {
        "ignore": [(3, "row 3", 103, None, True)],
        "hard": [],
        "soft": [(3, "row 3", 103, 500, False)],  # closed at the run's upper bound
    }[deletes]
    assert scd2_rows(events, version=1) == sorted(
        [(1, "row 1", 101, 500, False), (1, "v2", 500, None, True), (2, "row 2", 102, None, True)]
        + gone
    )
    assert scd2_rows(events) == scd2_rows(events, version=1)
    assert run.commit.inserted == 1 and again.commit.inserted == 0
    assert versions(events) == 3


def test_renamed_key_and_audit_columns_with_appended_versions(tmp_path: Path) -> None:
    """write: append keeps each (key, incremental value); a gone key's rows are all deleted."""
    events = Events(
        tmp_path,
        write="append",
        primary_key=["id"],
        deletes="hard",
        rename={"id": "event_id"},
        audit_columns=True,
    )
    events.insert(*rows_of(4))
    initial = copy_table(events.job, events.job.tables[0], run_id="run-1")
    with events.db() as db:
        db.execute("UPDATE events SET payload = 'v2', updated_at = 700 WHERE id = 1")
        db.execute("DELETE FROM events WHERE id = 2")
    run = copy_table(events.job, events.job.tables[0], initial.watermark, run_id="run-2")

    data = events.table().to_pyarrow_table().to_pydict()
    rows = sorted(zip(data["event_id"], data["updated_at"], data["_copyjob_run_id"], strict=True))
    assert rows == [(1, 101, "run-1"), (1, 700, "run-2"), (3, 103, "run-1"), (4, 104, "run-1")]
    assert run.commit == Commit(version=1, inserted=1, deleted=1)
