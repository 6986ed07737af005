"""What the `mode: cdc` tests share: a private PostgreSQL with wal_level=logical, started by the
tests in a temporary folder on a free port (see security/private_pg.py), and a table case that
writes a job file, runs the engine's capture, and compares the destination with the source."""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
import sqlalchemy as sa
import yaml
from security import private_pg

from copyjob_dagster.config import CopyJob
from copyjob_dagster.engine import load_job
from copyjob_dagster.engine.cdc import (
    CdcResult,
    capture_changes,
    confirm_position,
    drop_slot,
    slot_state,
)

LOGICAL = "wal_level = logical\nmax_replication_slots = 40\nmax_wal_senders = 40\n"


def logical_server() -> Iterator[private_pg.PrivatePostgres]:
    """A PostgreSQL server of the tests' own with wal_level=logical; skip without one (fail
    under CI)."""
    try:
        server = private_pg.start(LOGICAL, replication=True)
    except private_pg.Unavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot start a PostgreSQL server with wal_level=logical: {exc}")
        pytest.skip(f"cannot start a PostgreSQL server with wal_level=logical: {exc}")
    try:
        yield server
    finally:
        private_pg.stop(server)


class CdcCase:
    """Source tables in a schema of their own, a destination, and the job between them."""

    def __init__(
        self,
        server: private_pg.PrivatePostgres,
        folder: Path,
        destination: str | None = None,
        tables: list[dict[str, Any]] | None = None,
        name: str | None = None,
    ) -> None:
        self.name = name or f"cdc_{uuid.uuid4().hex[:8]}"
        self.schema = self.name
        self.source_url = server.admin_url
        self.engine = sa.create_engine(server.admin_url, isolation_level="AUTOCOMMIT")
        self.sql(f"CREATE SCHEMA {self.schema}")
        self.destination_url = destination or f"sqlite:///{folder / 'destination.db'}"
        self.tables = tables or [{"name": "items"}]
        self.folder = folder
        self.position: dict[str, int | None] = {t["name"]: None for t in self.tables}

    def sql(self, *statements: str, **params: Any) -> None:
        with self.engine.connect() as conn:
            for statement in statements:
                conn.execute(sa.text(statement), params)

    def job(self, **extra: Any) -> CopyJob:
        path = self.folder / f"{self.name}.yaml"
        tree = {
            "name": self.name,
            "source": {"url": self.source_url, "schema": self.schema},
            "destination": {"url": self.destination_url},
            "mode": "cdc",
            "tables": self.tables,
            **extra,
        }
        if self.destination_url.startswith("postgresql"):
            tree["destination"]["schema"] = self.schema
        path.write_text(yaml.safe_dump(tree))
        return load_job(path)

    def run(self, table: str = "items", confirm: bool = True) -> CdcResult:
        job = self.job()
        config = next(t for t in job.tables if t.name == table)
        result = capture_changes(job, config, self.position[table])
        if confirm:
            self.position[table] = result.position
            confirm_position(job, config, result.position)
        return result

    def slot(self, table: str = "items") -> Any:
        job = self.job()
        return slot_state(job, next(t for t in job.tables if t.name == table))

    def source_rows(self, table: str = "items", columns: str = "*") -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            query = f"SELECT {columns} FROM {self.schema}.{table} ORDER BY 1"
            return [tuple(row) for row in conn.exec_driver_sql(query)]

    def destination_rows(self, table: str = "items", columns: str = "*") -> list[tuple[Any, ...]]:
        if "://" not in self.destination_url:
            data = ds.dataset(Path(self.destination_url) / f"{table}.parquet").to_table()
            return sorted(zip(*(c.to_pylist() for c in data.columns), strict=True))
        engine = sa.create_engine(self.destination_url)
        prefix = f"{self.schema}." if self.destination_url.startswith("postgresql") else ""
        try:
            with engine.connect() as conn:
                query = f"SELECT {columns} FROM {prefix}{table} ORDER BY 1"
                return [tuple(row) for row in conn.exec_driver_sql(query)]
        finally:
            engine.dispose()

    def close(self) -> None:
        job = self.job()
        for table in job.tables:
            drop_slot(job, table)
        self.sql(f"DROP SCHEMA {self.schema} CASCADE")
        self.engine.dispose()


def load_job_file(folder: Path, source_url: str, schema: str) -> CopyJob:
    """A `mode: cdc` job of table `items` of `schema` into a SQLite file."""
    path = folder / "cdc_job.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "cdc_job",
                "source": {"url": source_url, "schema": schema},
                "destination": {"url": f"sqlite:///{folder / 'out.db'}"},
                "mode": "cdc",
                "tables": [{"name": "items"}],
            }
        )
    )
    return load_job(path)
