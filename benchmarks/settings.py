"""Where the benchmark's databases and files are, shared by the harness and each way's process.

Servers come from BENCH_PG_URL (default `postgresql://root@127.0.0.1:5432`) and BENCH_MYSQL_URL
(default `mysql://root@127.0.0.1:3306`); the benchmark creates its own databases on them, named
after `prefix`, and its files go under `workdir`.
"""

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

BENCH_DIR = Path(__file__).resolve().parent
SOURCE_TABLE = "orders"
DESTINATION_TABLE = "orders"
PARALLEL_TABLES = 8


@dataclass(frozen=True)
class Settings:
    rows: int
    prefix: str
    workdir: str
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_user: str = "root"
    my_host: str = "127.0.0.1"
    my_port: int = 3306
    my_user: str = "root"

    @classmethod
    def from_environment(cls, rows: int, prefix: str, workdir: Path) -> "Settings":
        pg = urlsplit(os.environ.get("BENCH_PG_URL", "postgresql://root@127.0.0.1:5432"))
        my = urlsplit(os.environ.get("BENCH_MYSQL_URL", "mysql://root@127.0.0.1:3306"))
        return cls(
            rows=rows,
            prefix=prefix,
            workdir=str(workdir.resolve()),
            pg_host=pg.hostname or "127.0.0.1",
            pg_port=pg.port or 5432,
            pg_user=pg.username or "root",
            my_host=my.hostname or "127.0.0.1",
            my_port=my.port or 3306,
            my_user=my.username or "root",
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Settings":
        return cls(**json.loads(text))

    # Names of the benchmark's own databases and files.
    @property
    def pg_source_db(self) -> str:
        return f"{self.prefix}_src"

    @property
    def pg_destination_db(self) -> str:
        return f"{self.prefix}_dst"

    @property
    def my_db(self) -> str:
        return self.prefix

    @property
    def small_rows(self) -> int:
        return max(1, self.rows // 10)

    @property
    def tiny_rows(self) -> int:
        return max(1, self.rows // 100)

    @property
    def part_rows(self) -> int:
        return max(1, self.rows // PARALLEL_TABLES)

    @property
    def sqlite_path(self) -> Path:
        return Path(self.workdir) / f"orders_{self.rows}.sqlite"

    @property
    def sqlite_destination(self) -> Path:
        """The SQLite file of the PostgreSQL → SQLite pairing."""
        return Path(self.workdir) / "destination.sqlite"

    @property
    def lake(self) -> Path:
        return Path(self.workdir) / "lake"

    @property
    def parquet_path(self) -> Path:
        return self.lake / f"{DESTINATION_TABLE}.parquet"

    @property
    def jobs_dir(self) -> Path:
        return Path(self.workdir) / "jobs"

    @property
    def dagster_home(self) -> Path:
        return Path(self.workdir) / "dagster_home"

    # Connection strings, one per client's taste.
    def pg_dsn(self, database: str) -> str:
        """A libpq URL (psql, asyncpg, ADBC, connectorx, DuckDB, sling)."""
        return f"postgresql://{self.pg_user}@{self.pg_host}:{self.pg_port}/{database}"

    def pg_sqlalchemy(self, database: str) -> str:
        return f"postgresql+psycopg://{self.pg_user}@{self.pg_host}:{self.pg_port}/{database}"

    def my_sqlalchemy(self, database: str | None = None) -> str:
        database = self.my_db if database is None else database
        return f"mysql+pymysql://{self.my_user}@{self.my_host}:{self.my_port}/{database}"

    def sqlite_sqlalchemy(self) -> str:
        return f"sqlite:///{self.sqlite_path}"
