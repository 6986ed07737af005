"""Delta tables on S3-compatible object storage: a moto server started by the tests on
127.0.0.1 (a free port), credentials and endpoint from the environment only."""

import sqlite3
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from s3_server import KEY, SECRET, bucket, s3_endpoint
from test_delta import Events, rows_of

from copyjob_dagster.config import CopyJob
from copyjob_dagster.engine import copy_table
from copyjob_dagster.errors import DestinationError, SourceError
from copyjob_dagster.stores import Commit, DeletionCounts, open_destination, open_source

__all__ = ["bucket", "s3_endpoint"]  # fixtures used by name


def options(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }


def s3_events(tmp_path: Path, bucket: str) -> Events:
    events = Events(tmp_path, write="merge", primary_key=["id"], deletes="hard")
    data = events.job.model_dump(by_alias=True)
    data["destination"]["url"] = f"delta+s3://{bucket}/lake"
    events.job = CopyJob.model_validate(data)
    return events


def test_a_delta_table_on_s3_merges_and_deletes_in_one_commit(
    tmp_path: Path, bucket: str, s3_endpoint: str
) -> None:
    events = s3_events(tmp_path, bucket)
    events.insert(*rows_of(6))
    initial = events.copy()
    with events.db() as db:
        db.execute("DELETE FROM events WHERE id = 2")
        db.execute("UPDATE events SET payload = 'new', updated_at = 900 WHERE id = 3")
    run = events.copy(initial.watermark)

    table = DeltaTable(f"s3://{bucket}/lake/events", storage_options=options(s3_endpoint))
    data = table.to_pyarrow_table().to_pydict()
    assert sorted(zip(data["id"], data["payload"], data["updated_at"], strict=True)) == (
        events.source_rows()
    )
    assert run.commit == Commit(version=1, inserted=0, updated=1, deleted=1)
    assert table.history(1)[0]["operation"] == "WRITE"  # the merge written file by file
    assert run.deletions == DeletionCounts(deleted=1)
    assert run.destination_location == f"s3://{bucket}/lake/events"
    assert open_destination(events.job.destination).list_tables() == ["events"]


def test_of_two_writers_of_one_version_the_later_commit_is_refused(
    bucket: str, s3_endpoint: str
) -> None:
    """What holds across machines, where the table lock cannot reach: delta-rs writes the next
    version's log file with a conditional put, so the second writer's commit conflicts."""
    uri, storage = f"s3://{bucket}/t", options(s3_endpoint)
    write_deltalake(uri, pa.table({"id": [1]}), storage_options=storage)
    first = DeltaTable(uri, storage_options=storage)
    second = DeltaTable(uri, storage_options=storage)  # both read version 0
    first.delete("id = 1")
    with pytest.raises(Exception, match="(?i)conflict|already exists|concurrent"):
        second.delete("id = 1")


def test_credentials_never_in_the_url_nor_in_errors(
    tmp_path: Path, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = s3_events(tmp_path, bucket)
    data = events.job.model_dump(by_alias=True)
    data["destination"]["url"] = f"delta+s3://{KEY}:{SECRET}@{bucket}/lake"
    job = CopyJob.model_validate(data)
    with pytest.raises(DestinationError) as refused:
        copy_table(job, job.tables[0])
    assert "from the environment" in str(refused.value) and SECRET not in str(refused.value)

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    events.insert(*rows_of(2))
    with pytest.raises(DestinationError) as failed:
        events.copy()
    assert SECRET not in str(failed.value) and KEY not in str(failed.value)


def test_a_missing_bucket_is_named_before_a_copy_runs(bucket: str) -> None:
    """What `copyjob validate --connect` asks of a destination and a source: a bucket that is
    not there is named, for Delta as for Parquet (a listing under it alone finds nothing)."""
    for url in ("delta+s3://no-such-bucket/lake", "parquet+s3://no-such-bucket/lake"):
        job = CopyJob.model_validate(
            {
                "name": "to_s3",
                "source": {"url": url},
                "destination": {"url": url},
                "tables": [{"name": "events", "to": "copy"}],
            }
        )
        with pytest.raises(DestinationError, match="bucket 'no-such-bucket' not found"):
            open_destination(job.destination).check()
        with pytest.raises(SourceError, match="bucket 'no-such-bucket' not found"):
            open_source(job.source).list_tables()


def test_a_delta_table_on_s3_is_read_in_parts_at_one_version(
    tmp_path: Path, bucket: str, s3_endpoint: str
) -> None:
    uri, storage = f"s3://{bucket}/lake/events", options(s3_endpoint)
    for start in (1, 41, 81):  # three commits, three files
        ids = list(range(start, start + 40))
        write_deltalake(uri, pa.table({"id": ids, "payload": [f"row {i}" for i in ids]}),
                        mode="append", storage_options=storage)  # fmt: skip
    job = CopyJob.model_validate(
        {
            "name": "from_s3",
            "source": {"url": f"delta+s3://{bucket}/lake"},
            "destination": {"url": f"sqlite:///{tmp_path / 'copy.sqlite'}"},
            "batch_rows": 9,
            "tables": [{"name": "events", "split": {"column": "id", "parts": 3}}],
        }
    )
    result = copy_table(job, job.tables[0])

    assert (result.parts, result.source_version, result.rows_written) == (3, 2, 120)
    with sqlite3.connect(tmp_path / "copy.sqlite") as db:
        copied = db.execute("SELECT id, payload FROM events ORDER BY id").fetchall()
    assert copied == [(i, f"row {i}") for i in range(1, 121)]
