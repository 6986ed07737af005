"""Every way of copying, per pairing: the references, the peers, and copyjob's own two.

A way is a command (timed as a whole process) or a Python function run by `child.py` in a
process of its own (timed from after its imports). Each one loads into the pairing's
destination; dlt writes into a dataset of its own, named by `count_in`.
"""

import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from copiers import PG_FOR_MYSQL
from settings import BENCH_DIR, DESTINATION_TABLE, SOURCE_TABLE, Settings

PAIRINGS = {
    "pg-pg": "PostgreSQL → PostgreSQL",
    "pg-mariadb": "PostgreSQL → MariaDB",
    "pg-parquet": "PostgreSQL → Parquet",
    "sqlite-parquet": "SQLite → Parquet",
    "pg-sqlite": "PostgreSQL → SQLite",
}
# Pairings without the peer tools (Sling, dlt, pandas, connectorx): only the reference and copyjob.
WITHOUT_PEERS = ("pg-sqlite",)
PEERS_PYTHON = BENCH_DIR / ".peers" / "bin" / "python"
SLING = BENCH_DIR / ".peers/lib/python3.11/site-packages/sling_linux_amd64/bin/sling-linux-amd64"
DUCKDB_EXTENSIONS = BENCH_DIR / ".peers/lib/python3.11/site-packages/duckdb_ext/extensions"
COPYJOB_RUN = "copyjob run"
ENGINE = "copyjob engine (copy_table)"
# Pairings where reading is the slow end, so that a split copy (docs/scale.md, "Large tables") pays.
SPLIT_PAIRINGS = ("pg-parquet",)
SPLIT_PARTS = 2


@dataclass(frozen=True)
class Way:
    name: str
    group: str  # reference | project | peer | pandas
    python: str | None = None  # "module:function" run by child.py
    command: Callable[[Settings, str], list[str]] | None = None
    reference: bool = False
    count_in: Callable[[Settings], str] | None = None
    variant: str = ""  # the job it runs: `job_name(pairing, variant)`

    @property
    def needs_peers(self) -> bool:
        return self.group in ("peer", "pandas") or (
            self.python is not None and self.group == "reference"
        )

    def argv(self, settings: Settings, param: str) -> list[str]:
        if self.python is not None:
            interpreter = str(PEERS_PYTHON) if self.needs_peers else sys.executable
            return [
                interpreter,
                str(BENCH_DIR / "child.py"),
                self.python,
                settings.to_json(),
                param,
            ]
        assert self.command is not None
        return self.command(settings, param)


def job_name(pairing: str, variant: str = "") -> str:
    return "bench_" + pairing.replace("-", "_") + (f"_{variant}" if variant else "")


def environment(settings: Settings, job: str = "") -> dict[str, str]:
    """What every way's process sees: the servers and folders of this benchmark, in UTC, and
    the jobs folder holding just `job`."""
    return {
        **os.environ,
        "TZ": "UTC",
        "PGTZ": "UTC",
        "COPYJOB_JOBS_DIR": str(settings.jobs_dir / job),
        "DAGSTER_HOME": str(settings.dagster_home),
        "SLING_HOME_DIR": str(Path(settings.workdir) / "sling"),
        "SLING_DISABLE_TELEMETRY": "true",
        "DLT_TELEMETRY_DISABLED": "1",
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "SRC_PG": settings.pg_dsn(settings.pg_source_db) + "?sslmode=disable",
        "DST_PG": settings.pg_dsn(settings.pg_destination_db) + "?sslmode=disable",
        "DST_MARIADB": f"mysql://{settings.my_user}@{settings.my_host}:{settings.my_port}/"
        f"{settings.my_db}",
        "SRC_SQLITE": f"sqlite://{settings.sqlite_path}",
    }


def _shell(pipeline: str) -> list[str]:
    return ["bash", "-o", "pipefail", "-c", pipeline]


def _psql_pipe(settings: Settings, _: str) -> list[str]:
    read = f"COPY (SELECT * FROM {SOURCE_TABLE}) TO STDOUT (FORMAT binary)"
    write = f"COPY {DESTINATION_TABLE} FROM STDIN (FORMAT binary)"
    source, destination = (
        settings.pg_dsn(settings.pg_source_db),
        settings.pg_dsn(settings.pg_destination_db),
    )
    return _shell(
        f"psql -X -q -v ON_ERROR_STOP=1 {shlex.quote(source)} -c {shlex.quote(read)}"
        f" | psql -X -q -v ON_ERROR_STOP=1 {shlex.quote(destination)} -c {shlex.quote(write)}"
    )


def _load_data_pipe(settings: Settings, _: str) -> list[str]:
    read = f"COPY ({PG_FOR_MYSQL}) TO STDOUT (FORMAT text)"
    load = f"LOAD DATA LOCAL INFILE '/dev/stdin' INTO TABLE {DESTINATION_TABLE}"
    mariadb = (
        f"mariadb --local-infile=1 -h {settings.my_host} -P {settings.my_port}"
        f" -u {settings.my_user} {settings.my_db}"
    )
    return _shell(
        f"psql -X -q -v ON_ERROR_STOP=1 {shlex.quote(settings.pg_dsn(settings.pg_source_db))}"
        f" -c {shlex.quote(read)} | {mariadb} -e {shlex.quote(load)}"
    )


_SLING_TARGETS = {
    "pg-pg": ("SRC_PG", f"public.{SOURCE_TABLE}", "DST_PG", f"public.{DESTINATION_TABLE}"),
    "pg-mariadb": ("SRC_PG", f"public.{SOURCE_TABLE}", "DST_MARIADB", "{db}." + DESTINATION_TABLE),
    "pg-parquet": ("SRC_PG", f"public.{SOURCE_TABLE}", "", ""),
    "sqlite-parquet": ("SRC_SQLITE", SOURCE_TABLE, "", ""),
}


def _sling(pairing: str) -> Callable[[Settings, str], list[str]]:
    def argv(settings: Settings, _: str) -> list[str]:
        source, stream, target, obj = _SLING_TARGETS[pairing]
        command = [
            *_sling_environment(settings),
            "run",
            "--src-conn",
            source,
            "--src-stream",
            stream,
        ]
        if target:
            command += ["--tgt-conn", target, "--tgt-object", obj.format(db=settings.my_db)]
        else:
            command += [
                "--tgt-object",
                f"file://{settings.lake}/sling/{DESTINATION_TABLE}.parquet",
                "--tgt-options",
                '{"format": "parquet"}',
            ]
        return [*command, "--mode", "full-refresh"]

    return argv


def _sling_environment(settings: Settings) -> list[str]:
    """Sling writes Parquet through the DuckDB CLI, which it downloads, then INSTALLs json and
    httpfs: both fail offline. DUCKDB_PATH names the CLI from the duckdb-cli package, and a HOME
    of its own whose ~/.duckdb/extensions is the folder of the duckdb-ext-* packages."""
    home = Path(settings.workdir) / "sling_home"
    link = home / ".duckdb" / "extensions"
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(DUCKDB_EXTENSIONS)
    return ["env", f"HOME={home}", f"DUCKDB_PATH={PEERS_PYTHON.with_name('duckdb')}", str(SLING)]


def copyjob_run(settings: Settings, job: str) -> list[str]:
    return [str(Path(sys.executable).with_name("copyjob")), "run", job]


def _dlt_dataset(pairing: str) -> Callable[[Settings], str] | None:
    if pairing == "pg-pg":
        return lambda s: f"{s.prefix}_dlt.{DESTINATION_TABLE}"
    if pairing == "pg-mariadb":
        return lambda s: f"{s.prefix}_dlt.{DESTINATION_TABLE}"
    return lambda s: f"/{DESTINATION_TABLE}/"


def ways_for(pairing: str) -> list[Way]:
    """The ways of one pairing, its reference first."""
    key = pairing.replace("-", "_")
    references = {
        "pg-pg": Way("psql COPY binary | psql COPY FROM STDIN", "reference", command=_psql_pipe),
        "pg-mariadb": Way(
            "psql COPY text | mariadb LOAD DATA LOCAL INFILE", "reference", command=_load_data_pipe
        ),
        "pg-parquet": Way(
            "DuckDB COPY … TO parquet", "reference", python="copiers.copy_duckdb:pg_parquet"
        ),
        "sqlite-parquet": Way(
            "DuckDB COPY … TO parquet", "reference", python="copiers.copy_duckdb:sqlite_parquet"
        ),
        "pg-sqlite": Way(
            "DuckDB INSERT INTO sqlite … SELECT",
            "reference",
            python="copiers.copy_duckdb:pg_sqlite",
        ),
    }
    reference = references[pairing]
    found = [Way(reference.name, "reference", reference.python, reference.command, True)]
    if pairing == "pg-pg":
        found.append(
            Way("asyncpg: binary COPY bytes streamed", "peer", "copiers.copy_asyncpg:pg_pg")
        )
    if pairing == "pg-mariadb":
        found.append(
            Way(
                "asyncpg: COPY text → FIFO → LOAD DATA (PyMySQL)",
                "peer",
                "copiers.copy_asyncpg:pg_mariadb",
            )
        )
    if pairing in ("pg-pg", "pg-mariadb"):
        found.append(
            Way(
                f"DuckDB {'postgres' if pairing == 'pg-pg' else 'mysql'} scanner",
                "peer",
                f"copiers.copy_duckdb:{key}",
            )
        )
    if pairing == "pg-pg":
        found.append(Way("Arrow: ADBC read → ADBC ingest", "peer", "copiers.copy_arrow:pg_pg"))
    if pairing.endswith("parquet"):
        found.append(Way("Arrow: connectorx → ParquetWriter", "peer", f"copiers.copy_arrow:{key}"))
    if pairing in WITHOUT_PEERS:
        found.append(Way(ENGINE, "project", "copiers.copy_engine:copy"))
        found.append(Way(COPYJOB_RUN, "project", command=copyjob_run))
        return found
    found += [
        Way("Sling 1.4.11 (full-refresh)", "peer", command=_sling(pairing), count_in=None),
        Way(
            "dlt 1.31 (sql_table, pyarrow)",
            "peer",
            f"copiers.copy_dlt:{key}",
            count_in=_dlt_dataset(pairing),
        ),
        Way(
            "pandas read_sql + " + ("to_parquet" if pairing.endswith("parquet") else "to_sql"),
            "pandas",
            f"copiers.copy_pandas:{key}",
        ),
        Way(ENGINE, "project", "copiers.copy_engine:copy"),
    ]
    if pairing in SPLIT_PAIRINGS:
        found.append(
            Way(
                f"copyjob engine, split: {{parts: {SPLIT_PARTS}}}",
                "project",
                "copiers.copy_engine:copy",
                variant="split",
            )
        )
    found.append(Way(COPYJOB_RUN, "project", command=copyjob_run))
    return found
