"""What the MariaDB `mode: cdc` tests share: a private MariaDB with the binlog on (log_bin,
binlog_format=ROW, binlog_row_image=FULL, binlog_row_metadata=FULL), made by
`mariadb-install-db` in a temporary folder and served on a free port and a Unix socket there,
and a table case that writes a job file, runs the engine's capture, and compares the
destination with the source."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest
import sqlalchemy as sa
import yaml

from copyjob_dagster.config import CopyJob
from copyjob_dagster.engine import load_job
from copyjob_dagster.engine.cdc import CdcResult, capture_changes, slot_state

SERVER = "/usr/sbin/mariadbd"
START_SECONDS = 30


class Unavailable(Exception):
    """No MariaDB server binaries here, or the server would not start."""


@dataclass(frozen=True)
class PrivateMariaDB:
    folder: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def socket(self) -> Path:
        return self.folder / "mysqld.sock"

    def url(self, database: str, user: str = "root", password: str | None = None) -> str:
        return sa.URL.create(
            "mysql+pymysql",
            username=user,
            password=password,
            host="localhost",
            database=database,
            query={"unix_socket": str(self.socket)},
        ).render_as_string(hide_password=False)

    def sql(self, *statements: str) -> None:
        connection = pymysql.connect(
            unix_socket=str(self.socket), user="root", autocommit=True, charset="utf8mb4"
        )
        try:
            with connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
        finally:
            connection.close()


def start(settings: tuple[str, ...] = ()) -> PrivateMariaDB:
    """`settings`: more server options (`--innodb-buffer-pool-size=1G`), after the defaults."""
    installer = shutil.which("mariadb-install-db")
    if installer is None or not os.path.exists(SERVER):
        raise Unavailable(f"no mariadb-install-db or {SERVER} here")
    folder = Path(tempfile.mkdtemp(prefix="copyjob-maria-"))
    data = folder / "data"
    common = ["--innodb-log-file-size=4M", "--innodb-buffer-pool-size=32M", "--skip-name-resolve"]
    user = ["--user=root"] if os.geteuid() == 0 else []
    made = subprocess.run(
        [installer, "--no-defaults", f"--datadir={data}", "--skip-test-db",
         "--auth-root-authentication-method=normal", *user, *common],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if made.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise Unavailable(f"mariadb-install-db failed: {made.stderr[-500:]}")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [SERVER, "--no-defaults", f"--datadir={data}", f"--socket={folder / 'mysqld.sock'}",
         f"--port={port}", "--bind-address=127.0.0.1", f"--log-bin={data / 'binlog'}",
         "--binlog-format=ROW", "--binlog-row-image=FULL", "--binlog-row-metadata=FULL",
         "--server-id=1", "--character-set-server=utf8mb4", f"--pid-file={folder / 'pid'}",
         f"--log-error={folder / 'error.log'}", *user, *common, *settings],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    server = PrivateMariaDB(folder, port, process)
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            server.sql("SELECT 1")
            return server
        except pymysql.err.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                log = (folder / "error.log").read_text(errors="replace")[-1000:]
                stop(server)
                raise Unavailable(f"mariadbd did not start: {log}") from None
            time.sleep(0.1)


def stop(server: PrivateMariaDB) -> None:
    server.process.terminate()
    try:
        server.process.wait(20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    shutil.rmtree(server.folder, ignore_errors=True)


def binlog_server() -> Iterator[PrivateMariaDB]:
    """A MariaDB server of the tests' own with the binlog on; skip without one (fail under
    CI)."""
    try:
        server = start()
    except Unavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot start a MariaDB server with the binlog on: {exc}")
        pytest.skip(f"cannot start a MariaDB server with the binlog on: {exc}")
    try:
        yield server
    finally:
        stop(server)


class BinlogCase:
    """Source tables in a database of their own, a destination, and the job between them."""

    def __init__(
        self,
        server: PrivateMariaDB,
        folder: Path,
        destination: str | None = None,
        tables: list[dict[str, Any]] | None = None,
    ) -> None:
        self.server = server
        self.name = f"binlog_{uuid.uuid4().hex[:8]}"
        server.sql(f"CREATE DATABASE {self.name}")
        self.source_url = server.url(self.name)
        self.engine = sa.create_engine(self.source_url, isolation_level="AUTOCOMMIT")
        self.destination_url = destination or f"sqlite:///{folder / 'destination.db'}"
        self.destination_schema: str | None = None
        self.tables = tables or [{"name": "items"}]
        self.folder = folder
        self.position: dict[str, int | None] = {t["name"]: None for t in self.tables}

    def sql(self, *statements: str) -> None:
        with self.engine.connect() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)

    def job(self, **settings: Any) -> CopyJob:
        """The job, with job-level `settings` (e.g. `sensor=True`) beside the usual ones."""
        path = self.folder / f"{self.name}.yaml"
        destination: dict[str, Any] = {"url": self.destination_url}
        if self.destination_schema:
            destination["schema"] = self.destination_schema
        tree = {
            "name": self.name,
            "source": {"url": self.source_url},
            "destination": destination,
            "mode": "cdc",
            "tables": self.tables,
            **settings,
        }
        path.write_text(yaml.safe_dump(tree))
        return load_job(path)

    def config(self, table: str) -> Any:
        return next(t for t in self.job().tables if t.name == table)

    def run(self, table: str = "items", record: bool = True, full: bool = False) -> CdcResult:
        job = self.job()
        config = next(t for t in job.tables if t.name == table)
        result = capture_changes(job, config, self.position[table], full_refresh=full)
        if record:
            self.position[table] = result.position
        return result

    def behind(self, table: str = "items") -> Any:
        job = self.job()
        return slot_state(job, next(t for t in job.tables if t.name == table), self.position[table])

    def source_rows(self, table: str = "items", columns: str = "*") -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            query = f"SELECT {columns} FROM {table} ORDER BY 1"
            return [tuple(row) for row in conn.exec_driver_sql(query)]

    def destination_rows(self, table: str = "items", columns: str = "*") -> list[tuple[Any, ...]]:
        engine = sa.create_engine(self.destination_url)
        prefix = f"{self.destination_schema}." if self.destination_schema else ""
        try:
            with engine.connect() as conn:
                query = f"SELECT {columns} FROM {prefix}{table} ORDER BY 1"
                return [tuple(row) for row in conn.exec_driver_sql(query)]
        finally:
            engine.dispose()

    def close(self) -> None:
        self.engine.dispose()
        self.server.sql(f"DROP DATABASE {self.name}")
