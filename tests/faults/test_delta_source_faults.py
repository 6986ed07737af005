"""SIGKILL while a Delta SOURCE is read in parts (`split:`), then rerun; and a commit to the
source while its parts read.

A run reads one version of the source table in three key ranges at once and records that
version with its watermark (`copyjob/source_version`). So the invariant is checked against the
source AS OF THE RECORDED VERSION: the destination holds exactly its rows at or below the
watermark (none lost, none twice, none different, none extra), the watermark is that version's
highest value, and a killed run recorded nothing (neither watermark nor version).
"""

import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
import sqlalchemy as sa
from deltalake import DeltaTable, write_deltalake

from copyjob_dagster.defs.metadata import SOURCE_VERSION, watermark_from_metadata

from .fault_runner import Runner
from .test_delta_faults import DeltaView
from .test_faults import INITIAL_ROWS, KEY, Case, Store, _change_source, _sum

FAMILY = "F9 Delta source in parts SIGKILL + rerun"
SPLIT = ", split: {parts: 3}"
SCHEMA = pa.schema([("id", pa.int64()), ("payload", pa.string()), ("updated_at", pa.int64())])


@dataclass
class DeltaSource(Store):
    """The source Delta table `events`, read at `version` (its latest when None)."""

    version: int | None = None

    @property
    def path(self) -> str:
        return str(Path(sa.engine.make_url(self.url).database or "") / "events")

    def latest(self) -> int:
        return DeltaTable(self.path).version()

    def _select(self, names: tuple[str, ...]) -> list[tuple[Any, ...]]:
        table = DeltaTable(self.path, version=self.version).to_pyarrow_table(columns=list(names))
        return list(zip(*(table.column(c).to_pylist() for c in names), strict=True))


class DeltaSourceCase(Case):
    """A fault case whose source is a Delta table: each insert is an append commit, each
    round's updates one merge commit (payload changed, incremental value moved up)."""

    source: DeltaSource

    def _create_source(self) -> None:
        """Nothing: the first insert creates the table."""

    def _insert_rows(self, rows: list[dict[str, Any]]) -> None:
        write_deltalake(self.source.path, pa.Table.from_pylist(rows, SCHEMA), mode="append")

    def _update_rows(self, keys: list[int], label: str) -> None:
        value = self.next_value
        changed = [{"id": k, "payload": f"{label} {k}", "updated_at": value} for k in keys]
        (
            DeltaTable(self.source.path)
            .merge(
                pa.Table.from_pylist(changed, SCHEMA),
                predicate="t.id = s.id",
                source_alias="s",
                target_alias="t",
            )
            .when_matched_update_all()
            .execute()
        )
        self.next_value += 1

    def recorded(self) -> list[tuple[int, int | None]]:
        """(watermark, source version) of each materialization, oldest first."""
        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            records = instance.fetch_materializations(KEY, limit=10_000, ascending=True).records
        pairs = []
        for record in records:
            metadata = record.asset_materialization.metadata
            version = metadata.get(SOURCE_VERSION)
            pairs.append((self.watermark_of(metadata), None if version is None else version.value))
        return pairs

    @staticmethod
    def watermark_of(metadata: Any) -> int:
        found = watermark_from_metadata(metadata)
        assert found is not None
        return int(found.text)

    def verify_at_recorded_version(self, latest: bool = True) -> dict[str, int]:
        """The invariant against the source at the version the last run recorded; `latest`:
        that version must also be the table's newest (the source was still since the run)."""
        version = self.recorded()[-1][1]
        self.source.version = version
        try:
            counts = self.verify()
        finally:
            self.source.version = None
        counts["stale"] += version is None or (latest and version != self.source.latest())
        return counts


def _case(tmp_path: Path, destination: str = "sqlite") -> DeltaSourceCase:
    return DeltaSourceCase(
        tmp_path,
        DeltaSource(f"delta:///{tmp_path / 'lake'}"),
        Store(f"sqlite:///{tmp_path / 'copy.sqlite'}")
        if destination == "sqlite"
        else DeltaView(f"delta:///{tmp_path / 'copy_lake'}"),
        "merge",
        SPLIT,
    )


def _fill(case: DeltaSourceCase) -> None:
    """The initial rows in five append commits: the version read has several files."""
    for _ in range(5):
        case.insert(INITIAL_ROWS // 5)


def _read_then_kill(case: DeltaSourceCase, rng: random.Random) -> Runner:
    """Killed from outside once the run's parts have handed a few batches to the write."""
    process = case.start("read", slow=0.2)
    target = rng.randint(1, 3)
    deadline = time.monotonic() + 120
    while process.poll() is None and process.batches_read() < target:
        assert time.monotonic() < deadline, "the run never read its batches"
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before the kill"
    process.send_signal(signal.SIGKILL)
    return process


# Into SQLite: while the three parts read (`mid-read`), as a batch goes into the write
# (`batch`), just before the destination commits (`write-commit`), after it committed but
# before the watermark is recorded (`after-commit`). Into Delta: as a batch goes into the
# Delta write, just before its commit, right after it (see fault_runner.py).
CASES = [
    *(("sqlite", point) for point in ("mid-read", "batch", "write-commit", "after-commit")),
    *(("delta", point) for point in ("delta-during", "delta-before", "delta-after")),
]
COMMITTED = {"after-commit", "delta-after"}


@pytest.mark.parametrize(("destination", "point"), CASES, ids=[f"{d}-{p}" for d, p in CASES])
def test_delta_source_split_sigkill_then_rerun(
    tmp_path: Path, record_case: Any, destination: str, point: str
) -> None:
    """Killed in the initial load and in the next window, then rerun."""
    rng = random.Random(f"delta-source-{point}")
    case = _case(tmp_path, destination)
    outcomes: list[dict[str, int]] = []
    try:
        for round_number in range(2):
            if round_number == 0:
                _fill(case)
            else:
                _change_source(case, rng, round_number)  # 200 new rows (a tie), 50 updated
            recorded, copied = case.recorded(), case.destination.rows()
            if point == "mid-read":
                process = _read_then_kill(case, rng)
            else:
                nth = rng.randint(2, 5) if point in ("batch", "delta-during") else 1
                process = case.start(point, nth)
            assert process.wait(timeout=120) == -signal.SIGKILL, process.errors()
            if point == "write-commit":
                assert process.landing(), "the kill did not land in the table's transaction"
            if point not in COMMITTED:  # killed before the destination committed
                assert sorted(case.destination.rows()) == sorted(copied), point
            advanced = int(case.recorded() != recorded)
            case.run_until_success()
            outcomes.append({**case.verify_at_recorded_version(), "advanced": advanced})
    finally:
        counts = _sum(outcomes) | _advanced(outcomes) if len(outcomes) == 2 else None
        record_case(FAMILY, f"to {destination}, {point}", counts)
    total = _sum(outcomes) | _advanced(outcomes)
    assert len(outcomes) == 2 and total == dict.fromkeys(total, 0), total


def _advanced(outcomes: list[dict[str, int]]) -> dict[str, int]:
    return {"advanced": sum(o.get("advanced", 0) for o in outcomes)}


def _commit_while_parts_read(case: DeltaSourceCase, hooks: tuple[str, ...] = ()) -> int:
    """The initial load, its parts reading slowly; once the write has taken a batch, the
    source gets a commit that moves every 10th row past the maximum with a new payload and
    adds 100 rows. Returns the version the run opened (the one before that commit)."""
    _fill(case)
    opened = case.source.latest()
    process = case.start("read", slow=0.3, hooks=hooks)
    deadline = time.monotonic() + 120
    while process.poll() is None and process.batches_read() < 1:
        assert time.monotonic() < deadline, "the run never read its batches"
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before the source's commit"
    case._update_rows(list(range(10, case.next_id, 10)), "v3")
    case.insert(100)
    assert process.poll() is None, "the run ended before the source's commit landed"
    assert process.wait(timeout=120) == 0, process.errors()
    assert case.source.latest() == opened + 2
    return opened


def test_delta_source_parts_read_the_version_opened_while_the_source_commits(
    tmp_path: Path, record_case: Any
) -> None:
    """Every part reads the version the run opened, though the source commits while they
    read: the run records that version, and the copy equals it whole (a part that read the
    newer version would miss the moved rows of its range). The rerun then copies the rest."""
    case = _case(tmp_path)
    outcomes: list[dict[str, int]] = []
    try:
        opened = _commit_while_parts_read(case)
        assert case.recorded()[-1][1] == opened
        outcomes.append(case.verify_at_recorded_version(latest=False))
        case.run_until_success()
        assert case.recorded()[-1][1] == case.source.latest()
        outcomes.append(case.verify_at_recorded_version())
    finally:
        counts = _sum(outcomes) if len(outcomes) == 2 else None
        record_case(FAMILY, "source commits mid-read", counts)
    assert len(outcomes) == 2 and _sum(outcomes) == dict.fromkeys(_sum(outcomes), 0)


def test_parts_that_open_the_latest_version_are_reported(tmp_path: Path) -> None:
    """Negative control of the case above: parts after the first open the table's latest
    version as they start (hooks.py `parts-latest`), so they read the source's new commit and
    the check against the recorded version reports the rows they missed."""
    case = _case(tmp_path)
    opened = _commit_while_parts_read(case, hooks=("parts-latest",))
    assert case.recorded()[-1][1] == opened  # the first reader's version, as recorded
    counts = case.verify_at_recorded_version(latest=False)
    print(counts)
    assert counts["lost"] > 0, counts
