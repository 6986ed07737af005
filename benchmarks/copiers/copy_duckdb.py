"""DuckDB's scanners, with the extensions that the duckdb-ext-* packages ship (DuckDB 1.4.4):
`INSTALL` downloads and fails here, so the extension directory points into the package."""

from pathlib import Path

import duckdb
import duckdb_ext
from settings import DESTINATION_TABLE, SOURCE_TABLE, Settings

EXTENSIONS = str(Path(next(iter(duckdb_ext.__path__))) / "extensions")


def _connect(settings: Settings) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(
        config={"extension_directory": EXTENSIONS, "autoinstall_known_extensions": False}
    )
    for extension in ("postgres", "sqlite", "mysql"):
        con.execute(f"LOAD {extension}")
    return con


def _attach_pg(con: duckdb.DuckDBPyConnection, settings: Settings, database: str, alias: str):
    dsn = (
        f"host={settings.pg_host} port={settings.pg_port} user={settings.pg_user} dbname={database}"
    )
    con.execute(f"ATTACH '{dsn}' AS {alias} (TYPE postgres)")


def pg_pg(settings: Settings, _: str) -> None:
    con = _connect(settings)
    _attach_pg(con, settings, settings.pg_source_db, "src")
    _attach_pg(con, settings, settings.pg_destination_db, "dst")
    con.execute(
        f"INSERT INTO dst.public.{DESTINATION_TABLE} SELECT * FROM src.public.{SOURCE_TABLE}"
    )


def pg_mariadb(settings: Settings, _: str) -> None:
    con = _connect(settings)
    _attach_pg(con, settings, settings.pg_source_db, "src")
    con.execute(
        f"ATTACH 'host={settings.my_host} port={settings.my_port} user={settings.my_user} "
        f"database={settings.my_db}' AS dst (TYPE mysql)"
    )
    con.execute(
        f"INSERT INTO dst.{DESTINATION_TABLE} SELECT id, customer_id, amount, status, note,"
        f" created_at, timezone('UTC', updated_at), paid, order_date, score"
        f" FROM src.public.{SOURCE_TABLE}"
    )


def pg_parquet(settings: Settings, _: str) -> None:
    con = _connect(settings)
    _attach_pg(con, settings, settings.pg_source_db, "src")
    con.execute(
        f"COPY (SELECT * FROM src.public.{SOURCE_TABLE}) TO '{settings.parquet_path}'"
        " (FORMAT parquet)"
    )


def pg_sqlite(settings: Settings, _: str) -> None:
    """Into the table copyjob created in the SQLite file (dataset.reset_destinations)."""
    con = _connect(settings)
    _attach_pg(con, settings, settings.pg_source_db, "src")
    con.execute(f"ATTACH '{settings.sqlite_destination}' AS dst (TYPE sqlite)")
    con.execute(f"INSERT INTO dst.{DESTINATION_TABLE} SELECT * FROM src.public.{SOURCE_TABLE}")


def sqlite_parquet(settings: Settings, _: str) -> None:
    con = _connect(settings)
    con.execute(f"ATTACH '{settings.sqlite_path}' AS src (TYPE sqlite, READ_ONLY)")
    con.execute(
        f"COPY (SELECT * FROM src.{SOURCE_TABLE}) TO '{settings.parquet_path}' (FORMAT parquet)"
    )
