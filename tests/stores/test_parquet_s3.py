"""The Parquet folder store on S3-compatible object storage (`parquet+s3://bucket/prefix`),
against the moto server of `s3_server`: what a user checks is the objects in the bucket."""

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from s3_server import KEY, SECRET, bucket, s3_client, s3_endpoint
from test_delta import Events, rows_of

from copyjob_dagster.config import CopyJob
from copyjob_dagster.engine import copy_table
from copyjob_dagster.errors import DestinationError
from copyjob_dagster.stores import open_destination, open_source
from copyjob_dagster.stores.validation import store_problems

__all__ = ["bucket", "s3_endpoint"]  # fixtures used by name


def s3_events(tmp_path: Path, bucket: str, mode: str = "incremental") -> Events:
    events = Events(tmp_path, mode=mode)
    data = events.job.model_dump(by_alias=True)
    data["destination"]["url"] = f"parquet+s3://{bucket}/lake"
    events.job = CopyJob.model_validate(data)
    return events


def keys(endpoint: str, bucket: str) -> list[str]:
    """The objects in the bucket; pyarrow's empty folder markers (`lake/`) aside."""
    listing = s3_client(endpoint).list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listing.get("Contents", []) if not o["Key"].endswith("/"))


def rows_in(endpoint: str, bucket: str, *names: str) -> list[tuple[Any, ...]]:
    """The rows of the objects `names`, each read whole with one GET, as any reader would."""
    found = []
    for name in names:
        body = s3_client(endpoint).get_object(Bucket=bucket, Key=name)["Body"].read()
        data = pq.read_table(io.BytesIO(body)).to_pydict()
        found += zip(data["id"], data["payload"], data["updated_at"], strict=True)
    return sorted(found)


def test_a_full_copy_replaces_the_object_whole(
    tmp_path: Path, bucket: str, s3_endpoint: str
) -> None:
    events = s3_events(tmp_path, bucket, mode="full")
    events.insert(*rows_of(10))
    events.copy()
    with events.db() as db:
        db.execute("DELETE FROM events WHERE id > 6")
    second = events.copy()

    assert keys(s3_endpoint, bucket) == ["lake/events.parquet"]  # no temporary key left
    assert rows_in(s3_endpoint, bucket, "lake/events.parquet") == events.source_rows()
    assert second.destination_location == f"s3://{bucket}/lake/events.parquet"

    # A write that fails midway: while it runs and after it, the object is the previous one.
    store = open_destination(events.job.destination)
    schema = pa.schema([("id", pa.int64()), ("payload", pa.string()), ("updated_at", pa.int64())])
    during = []

    def failing() -> Iterator[pa.RecordBatch]:
        yield pa.record_batch([[99], ["half"], [999]], schema=schema)
        during.append(rows_in(s3_endpoint, bucket, "lake/events.parquet"))
        raise RuntimeError("the source broke")

    with pytest.raises(RuntimeError, match="the source broke"):
        store.replace("events", schema, ("id",), failing())
    assert during == [events.source_rows()]
    assert rows_in(s3_endpoint, bucket, "lake/events.parquet") == events.source_rows()
    assert keys(s3_endpoint, bucket) == ["lake/events.parquet"]


def test_an_incremental_copy_appends_parts_and_a_rerun_adds_nothing_twice(
    tmp_path: Path, bucket: str, s3_endpoint: str
) -> None:
    events = s3_events(tmp_path, bucket)
    events.insert(*rows_of(4))
    initial = events.copy()
    with events.db() as db:
        db.execute("UPDATE events SET payload = 'new', updated_at = 900 WHERE id = 3")
    events.insert(*rows_of(1, start=5, at=104))
    second = events.copy(initial.watermark)
    again = events.copy(initial.watermark)  # its watermark was never recorded: run again
    after = events.copy(second.watermark)  # nothing new

    parts = keys(s3_endpoint, bucket)
    assert len(parts) == 2 and all(k.startswith("lake/events/part-") for k in parts)
    # Appending keeps each version of a row (row 3 before and after its update), once.
    assert rows_in(s3_endpoint, bucket, *parts) == sorted(
        [*rows_of(4), (3, "new", 900), (5, "row 5", 109)]
    )
    assert (initial.rows_written, second.rows_written, again.rows_written) == (4, 2, 2)
    assert after.rows_written == 0
    assert open_destination(events.job.destination).list_tables() == ["events"]

    events.copy()  # the watermark reset: the table is loaded anew, the older part removed
    assert keys(s3_endpoint, bucket) == ["lake/events/part-initial.parquet"]
    assert rows_in(s3_endpoint, bucket, "lake/events/part-initial.parquet") == (
        events.source_rows()
    )


def test_parquet_objects_on_s3_are_a_source(tmp_path: Path, bucket: str, s3_endpoint: str) -> None:
    client = s3_client(s3_endpoint)

    def put(key: str, table: pa.Table) -> None:
        sink = io.BytesIO()
        pq.write_table(table, sink)
        client.put_object(Bucket=bucket, Key=key, Body=sink.getvalue())

    put("shop/orders.parquet", pa.table({"id": [1, 2, 3], "amount": [1.5, 2.5, 3.5]}))
    put("shop/items/part-1.parquet", pa.table({"id": [1, 2], "sku": ["a", "b"]}))
    put("shop/items/part-2.parquet", pa.table({"id": [3], "sku": ["c"]}))
    put("shop/items/.part-3.parquet.x.tmp", pa.table({"id": [4], "sku": ["half"]}))
    job = CopyJob.model_validate(
        {
            "name": "from_s3",
            "source": {"url": f"parquet+s3://{bucket}/shop"},
            "destination": {"url": str(tmp_path / "out")},
            "tables": [{"name": "orders"}, {"name": "items"}],
        }
    )
    assert open_source(job.source).list_tables() == ["items", "orders"]
    for table in job.tables:
        copy_table(job, table)

    assert pq.read_table(tmp_path / "out" / "orders.parquet").to_pydict() == {
        "id": [1, 2, 3],
        "amount": [1.5, 2.5, 3.5],
    }
    items = pq.read_table(tmp_path / "out" / "items.parquet").sort_by("id").to_pydict()
    assert items == {"id": [1, 2, 3], "sku": ["a", "b", "c"]}  # the temporary key is not read

    # Read incrementally by a watermark column: the second run reads the new object's rows only.
    data = job.model_dump(by_alias=True)
    data.update(mode="incremental", tables=[{"name": "items", "incremental_column": "id"}])
    incremental = CopyJob.model_validate(data)
    first = copy_table(incremental, incremental.tables[0])
    put("shop/items/part-4.parquet", pa.table({"id": [4, 5], "sku": ["d", "e"]}))
    second = copy_table(incremental, incremental.tables[0], first.watermark)
    assert (first.rows_read, second.rows_read) == (3, 2)
    assert second.watermark is not None and second.watermark.value == 5


def test_credentials_never_in_the_url_nor_in_errors(
    tmp_path: Path, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = s3_events(tmp_path, bucket)
    data = events.job.model_dump(by_alias=True)
    data["destination"]["url"] = f"parquet+s3://{KEY}:{SECRET}@{bucket}/lake"
    job = CopyJob.model_validate(data)
    with pytest.raises(DestinationError) as refused:
        copy_table(job, job.tables[0])
    assert "from the environment" in str(refused.value) and SECRET not in str(refused.value)

    events.insert(*rows_of(2))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(DestinationError) as failed:
        events.copy()
    assert SECRET not in str(failed.value) and KEY not in str(failed.value)
    assert f"s3://{bucket}/lake" in str(failed.value)


def test_what_s3_parquet_cannot_do_is_refused_before_connecting() -> None:
    job = CopyJob.model_validate(
        {
            "name": "to_s3",
            "mode": "incremental",
            "source": {"url": "sqlite:///shop.sqlite"},
            "destination": {"url": "parquet+s3://bucket/lake"},
            "tables": [
                {"name": "a", "incremental_column": "at", "primary_key": ["id"], "deletes": "hard"},
                {"name": "b", "incremental_column": "at", "primary_key": ["id"], "write": "scd2"},
            ],
        }
    )
    problems = {p.loc[-1]: str(p) for p in store_problems(job)}
    assert set(problems) == {"deletes", "write"}
    for problem in problems.values():  # the reason, and where it can be done
        assert "at once" in problem and "delta+s3://" in problem, problem
    bad = job.model_copy(
        update={"destination": job.destination.model_copy(update={"url": "parquet+s3:///lake"})}
    )
    assert "parquet+s3://bucket/prefix" in str(next(store_problems(bad)))


CHANGES = pa.schema([("id", pa.int64()), ("payload", pa.string())])


def test_a_cdc_change_log_is_one_object_in_the_bucket_put_whole(
    bucket: str, s3_endpoint: str
) -> None:
    job = CopyJob.model_validate(
        {
            "name": "cdc_to_s3",
            "mode": "cdc",
            "source": {"url": "postgresql+psycopg://h/shop"},
            "destination": {"url": f"parquet+s3://{bucket}/lake"},
            "tables": [{"name": "events", "primary_key": ["id"]}],
        }
    )
    assert list(store_problems(job)) == []
    store = open_destination(job.destination)
    assert store.capabilities.applies_changes == "log"
    log = "lake/events_changes/changes-00000000000000000042.parquet"

    def run(payload: str, fail: bool = False) -> list[list[str]]:
        """Changes from position 42 on; the objects in the bucket while they are taken."""
        seen = []
        with store.applying_changes("events", CHANGES, ("id",), 42) as sink:
            sink.change("insert", {"id": 1, "payload": payload}, None, 43)
            sink.change("delete", {"id": 2, "payload": None}, (2,), 44)
            seen.append(keys(s3_endpoint, bucket))
            if fail:
                raise RuntimeError("the stream broke")
        return seen

    with pytest.raises(RuntimeError, match="the stream broke"):
        run("first", fail=True)
    assert keys(s3_endpoint, bucket) == []  # a failed run leaves no object, no temporary key
    assert run("second") == [[]]  # nothing is seen before the run's changes are all in
    assert run("again") == [[log]]  # replayed from the same position: the same object
    assert keys(s3_endpoint, bucket) == [log]
    body = s3_client(s3_endpoint).get_object(Bucket=bucket, Key=log)["Body"].read()
    assert pq.read_table(io.BytesIO(body)).to_pylist() == [
        {"id": 1, "payload": "again", "_copyjob_operation": "insert", "_copyjob_position": 43},
        {"id": 2, "payload": None, "_copyjob_operation": "delete", "_copyjob_position": 44},
    ]
