"""SIGKILL around the one commit of a Delta write, then rerun: append, merge, SCD2 and hard
deletes into a Delta table, killed while its files are written, just before its commit (for a
merge written file by file, at its commit, its files all written), and right after it (before
the watermark is recorded). The invariant of RELIABILITY.md holds: the
copy equals the source as of the recorded watermark, and the Delta table only ever moves by
whole commits."""

import random
import signal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from deltalake import DeltaTable

from .test_faults import Case, Store, _change_source, _sum, _verify_versions

# One run is killed at each point in turn (each kill costs a run's start-up, so the three
# share one case per write); then a rerun must succeed and leave the invariant whole.
POINTS = ["delta-during", "delta-before", "delta-after"]
WRITES = {"append": "append", "merge": "merge", "scd2": "scd2", "hard-deletes": "merge"}


class DeltaView(Store):
    """The Delta destination table, read at its latest version."""

    def _select(self, names: tuple[str, ...]) -> list[tuple[Any, ...]]:
        path = Path(sa.engine.make_url(self.url).database or "") / "events"
        if not (path / "_delta_log").exists():
            return []
        table = DeltaTable(str(path)).to_pyarrow_table(columns=list(names))
        return list(zip(*(table.column(c).to_pylist() for c in names), strict=True))


@pytest.mark.parametrize("write", list(WRITES), ids=[f"delta-{w}" for w in WRITES])
def test_delta_sigkill_around_the_commit_then_rerun(
    tmp_path: Path, request: pytest.FixtureRequest, record_case: Any, write: str
) -> None:
    rng = random.Random(f"delta-{write}")
    deletes = ", deletes: hard" if write == "hard-deletes" else ""
    case = Case(
        tmp_path,
        Store(f"sqlite:///{tmp_path / 'source.sqlite'}"),
        DeltaView(f"delta:///{tmp_path / 'lake'}"),
        WRITES[write],
        deletes,
    )
    seen: set[tuple[int, int]] = set()
    outcomes = []
    table = tmp_path / "lake" / "events"
    try:
        for round_number in range(2):
            _change_source(case, rng, round_number)
            if round_number == 1:
                if deletes:
                    events = case._table()
                    case._execute(sa.delete(events).where(events.c.id % 7 == 0))
                for point in POINTS:
                    before = DeltaTable(str(table)).version()
                    process = case.start(point, rng.randint(1, 4))
                    assert process.wait(timeout=120) == -signal.SIGKILL, process.errors()
                    # Killed before its commit: the previous version; after: one commit more.
                    committed = 1 if point == "delta-after" else 0
                    assert DeltaTable(str(table)).version() - before == committed, point
            case.run_until_success()
            if round_number == 1 and WRITES[write] == "merge":  # written file by file
                assert DeltaTable(str(table)).history(1)[0]["operation"] == "WRITE"
            if WRITES[write] == "scd2":
                outcomes.append(_verify_versions(case, seen))
            else:
                outcomes.append(case.verify())
    finally:
        record_case(
            "F7 Delta SIGKILL during, before, after the commit + rerun",
            request.node.callspec.id,
            _sum(outcomes) if len(outcomes) == 2 else None,
        )
    assert _sum(outcomes) == dict.fromkeys(_sum(outcomes), 0)
