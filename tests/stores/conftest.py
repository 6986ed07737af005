"""Fixtures shared by the tests of PostgreSQL's native read (stores/pgadbc.py)."""

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from copyjob_dagster.config import StoreConfig
from copyjob_dagster.stores import open_source, pgadbc


@pytest.fixture
def pg_source(pg_server: str, pg_schema: str) -> Iterator[Any]:
    """A source store on the test schema of the shared PostgreSQL."""
    store = open_source(StoreConfig(url=pg_server, schema=pg_schema))
    yield store
    store.close()


@pytest.fixture
def driver_batches(monkeypatch: pytest.MonkeyPatch) -> list[pa.RecordBatch]:
    """The batches ADBC's driver handed over, as it read them (empty: the driver read nothing)."""
    seen: list[pa.RecordBatch] = []
    original = pgadbc._exact

    def spy(batch: pa.RecordBatch, chosen: pgadbc.Plan) -> pa.RecordBatch:
        seen.append(batch)
        return original(batch, chosen)

    monkeypatch.setattr(pgadbc, "_exact", spy)
    return seen
