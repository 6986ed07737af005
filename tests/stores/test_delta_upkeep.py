"""Upkeep of a Delta destination (`maintenance:`, `copyjob maintain`): small files compacted
without changing a row, files out of the table longer than the retention deleted, versions
within the retention still readable, and bad options refused naming the field."""

import sqlite3
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from click.testing import CliRunner
from deltalake import DeltaTable

from copyjob_dagster.cli import main
from copyjob_dagster.config import CopyJob
from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs
from copyjob_dagster.engine import Watermark, copy_table, load_job, maintain_table
from copyjob_dagster.errors import ConfigError, DestinationError


def job_file(tmp_path: Path, maintenance: str, destination: str = "") -> Path:
    source = tmp_path / "source.sqlite"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, payload TEXT, updated_at INT)")
    path = tmp_path / "copy_jobs" / "lake.yaml"
    path.parent.mkdir()
    destination = destination or f"delta:///{tmp_path / 'lake'}"
    path.write_text(
        "name: lake\nmode: incremental\n"
        f"source: {{url: 'sqlite:///{source}'}}\n"
        f"destination: {{url: '{destination}'}}\n"
        "tables:\n"
        f"  - {{name: events, incremental_column: updated_at, write: append{maintenance}}}\n"
    )
    return path


def copies(
    tmp_path: Path, job: CopyJob, runs: int, start: int = 1, watermark: Watermark | None = None
) -> Watermark | None:
    """`runs` windows of 10 new rows, each copied by its own run: one small file each."""
    for run in range(start, start + runs):
        rows = [(i, f"row {i}", run) for i in range(run * 10, run * 10 + 10)]
        with sqlite3.connect(tmp_path / "source.sqlite") as db:
            db.executemany("INSERT INTO events VALUES (?, ?, ?)", rows)
        watermark = copy_table(job, job.tables[0], watermark).watermark
    return watermark


def table(tmp_path: Path, version: int | None = None) -> DeltaTable:
    return DeltaTable(str(tmp_path / "lake" / "events"), version=version)


def rows(found: DeltaTable) -> list[tuple[Any, ...]]:
    data = found.to_pyarrow_table(columns=["id", "payload", "updated_at"]).to_pydict()
    return sorted(zip(data["id"], data["payload"], data["updated_at"], strict=True))


def on_disk(tmp_path: Path) -> set[str]:
    return {p.name for p in (tmp_path / "lake" / "events").glob("*.parquet")}


def test_compaction_rewrites_small_files_and_keeps_every_version_readable(tmp_path: Path) -> None:
    job = load_job(job_file(tmp_path, ", maintenance: {every: 6}"))
    watermark = copies(tmp_path, job, 5)
    assert maintain_table(job, job.tables[0]) is None  # 5 commits: not due yet
    copies(tmp_path, job, 1, start=6, watermark=watermark)
    before = table(tmp_path)
    files, latest = len(before.file_uris()), rows(before)
    old = {v: rows(table(tmp_path, v)) for v in range(before.version() + 1)}

    done = maintain_table(job, job.tables[0])

    assert done is not None and done.commits == 6
    assert files == 6 and done.files_compacted == 6 and done.files_written == 1
    after = table(tmp_path)
    assert len(after.file_uris()) == 1
    assert rows(after) == latest  # no row changed
    # Delta's 7 days keep every replaced file: nothing deleted, every version still readable.
    assert done.files_deleted == 0
    assert {v: rows(table(tmp_path, v)) for v in old} == old
    assert maintain_table(job, job.tables[0]) is None  # due again after 6 more commits


def test_vacuum_deletes_files_out_of_the_table_longer_than_its_retention(tmp_path: Path) -> None:
    job = load_job(job_file(tmp_path, ", maintenance: {every: 100}"))
    copies(tmp_path, job, 4)
    table(tmp_path).alter.set_table_properties(
        {"delta.deletedFileRetentionDuration": "interval 2 seconds"}
    )
    first = maintain_table(job, job.tables[0], now=True)  # compacts; the 4 files are replaced
    assert first is not None and (first.files_compacted, first.files_deleted) == (4, 0)
    compacted = table(tmp_path).version()
    assert len(on_disk(tmp_path)) == 5
    time.sleep(2.5)

    second = maintain_table(job, job.tables[0], now=True)

    assert second is not None and second.files_deleted == 4
    assert on_disk(tmp_path) == {Path(uri).name for uri in table(tmp_path).file_uris()}
    assert rows(table(tmp_path)) == rows(table(tmp_path, compacted))
    assert len(rows(table(tmp_path))) == 40


def test_a_retention_shorter_than_the_tables_own_is_refused(tmp_path: Path) -> None:
    job = load_job(job_file(tmp_path, ", maintenance: {every: 1, retention_hours: 200}"))
    copies(tmp_path, job, 2)
    table(tmp_path).alter.set_table_properties(
        {"delta.deletedFileRetentionDuration": "interval 30 days"}
    )
    files = on_disk(tmp_path)

    with pytest.raises(DestinationError, match=r"maintenance.retention_hours \(200 hours\)"):
        maintain_table(job, job.tables[0])
    assert on_disk(tmp_path) >= files


@pytest.mark.parametrize(
    ("maintenance", "field", "says"),
    [
        (", maintenance: {every: 5, retention_hours: 24}", "maintenance.retention_hours", "168"),
        (", maintenance: {every: 0}", "maintenance.every", "greater than or equal to 1"),
        (
            ", maintenance: {every: 5, retention_hour: 200}",
            "maintenance.retention_hour",
            "unknown field; did you mean 'retention_hours'?",
        ),
    ],
    ids=["retention-under-7-days", "every-0", "unknown-key"],
)
def test_a_bad_maintenance_option_is_refused_naming_where(
    tmp_path: Path, maintenance: str, field: str, says: str
) -> None:
    path = job_file(tmp_path, maintenance)
    with pytest.raises(ConfigError) as refused:
        load_job(path)
    message = str(refused.value)
    assert str(path) in message and "job 'lake'" in message and "table 'events'" in message
    assert f"field {field!r}" in message and says in message


def test_maintenance_of_a_destination_without_upkeep_is_refused(tmp_path: Path) -> None:
    path = job_file(tmp_path, ", maintenance: {every: 5}", f"sqlite:///{tmp_path / 'c.sqlite'}")
    with pytest.raises(ConfigError) as refused:
        load_job(path)
    message = str(refused.value)
    assert "table 'events'" in message and "field 'maintenance'" in message
    assert "Delta" in message
    path.write_text("maintenance: {every: 5}\n" + path.read_text())  # the job's, for every table
    with pytest.raises(ConfigError, match=r"job 'lake', field 'maintenance': .*Delta"):
        load_job(path)


def test_copyjob_maintain_compacts_now(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = job_file(tmp_path, "")
    job = load_job(path)
    copies(tmp_path, job, 3)
    monkeypatch.setenv("COPYJOB_JOBS_DIR", str(path.parent))
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(main, ["maintain", "lake"])

    assert result.exit_code == 0, result.output
    assert "lake/events: 3 small files compacted into 1, 0 unused files deleted" in result.output
    assert len(table(tmp_path).file_uris()) == 1 and len(rows(table(tmp_path))) == 30


def test_runs_compact_the_table_after_every_n_commits(tmp_path: Path) -> None:
    """Dagster runs of a table with `maintenance: {every: 3}`: its upkeep follows the run that
    makes the third commit since the last one, once the copy is recorded."""
    job = load_job(job_file(tmp_path, ", maintenance: {every: 3}"))
    assets = [*build_source_specs([job]), *build_copy_assets([job])]
    with dg.instance_for_test() as instance:
        for run in range(1, 5):
            with sqlite3.connect(tmp_path / "source.sqlite") as db:
                db.executemany(
                    "INSERT INTO events VALUES (?, ?, ?)",
                    [(i, f"row {i}", run) for i in range(run * 10, run * 10 + 10)],
                )
            assert dg.materialize(assets, instance=instance).success

    history = {entry["version"]: entry["operation"] for entry in table(tmp_path).history()}
    # The runs' merges are written file by file: each a WRITE commit.
    assert [history[v] for v in sorted(history)] == ["WRITE", "WRITE", "WRITE", "OPTIMIZE", "WRITE"]
    assert len(table(tmp_path).file_uris()) == 2  # the three runs' files in one, and the 4th's
    with sqlite3.connect(tmp_path / "source.sqlite") as db:
        expected = sorted(db.execute("SELECT id, payload, updated_at FROM events"))
    assert rows(table(tmp_path)) == expected
