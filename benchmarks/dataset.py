"""The data set: a 10-column `orders` table built with SQL `generate_series`, the same rows in
a SQLite file, and the empty destinations each way loads into.

Every value is a function of the row number, so two builds hold the same rows. The source has
no primary key (an index on `id` serves incremental reads): a key on the destination costs
about 1.8x by itself, and copyjob gives the destination the source's key, so every way loads
into the same keyless table definition.
"""

import re
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import content as checksum
import psycopg
import pymysql
from psycopg import sql
from settings import DESTINATION_TABLE, PARALLEL_TABLES, SOURCE_TABLE, Settings

DATASET_VERSION = "cjbench-orders-v2"

# name, PostgreSQL, MariaDB, SQLite
COLUMNS = [
    ("id", "bigint NOT NULL", "BIGINT NOT NULL", "BIGINT NOT NULL"),
    ("customer_id", "integer NOT NULL", "INT NOT NULL", "INTEGER NOT NULL"),
    ("amount", "numeric(12,2) NOT NULL", "DECIMAL(12,2) NOT NULL", "NUMERIC(12,2) NOT NULL"),
    ("status", "text NOT NULL", "VARCHAR(16) NOT NULL", "TEXT NOT NULL"),
    ("note", "text", "TEXT", "TEXT"),
    ("created_at", "timestamp NOT NULL", "DATETIME(6) NOT NULL", "DATETIME NOT NULL"),
    ("updated_at", "timestamptz NOT NULL", "DATETIME(6) NOT NULL", "DATETIME NOT NULL"),
    ("paid", "boolean NOT NULL", "BOOLEAN NOT NULL", "BOOLEAN NOT NULL"),
    ("order_date", "date NOT NULL", "DATE NOT NULL", "DATE NOT NULL"),
    ("score", "double precision NOT NULL", "DOUBLE NOT NULL", "DOUBLE NOT NULL"),
]
COLUMN_NAMES = [c[0] for c in COLUMNS]

_GENERATE = """
INSERT INTO orders
SELECT i,
       (i * 7919) %% 100003,
       ((i * 104729) %% 10000000) / 100.0,
       (ARRAY['new', 'paid', 'shipped', 'delivered', 'returned'])[1 + i %% 5],
       CASE WHEN i %% 4 = 0 THEN NULL
            ELSE 'note ' || md5(i::text) || ' ' || repeat('x', (i %% 40)::int) END,
       timestamp '2020-01-01' + i * interval '13 seconds' + (i %% 1000) * interval '1 microsecond',
       timestamptz '2020-01-01 00:00:00+00' + i * interval '17 seconds',
       i %% 3 = 0,
       date '2020-01-01' + (i %% 2500)::int,
       (i %% 100000) / 7.0::double precision
FROM generate_series(1::bigint, %(rows)s::bigint) AS i
"""


def pg_connect(settings: Settings, database: str, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(settings.pg_dsn(database), autocommit=autocommit)


def my_connect(settings: Settings, database: str | None = None) -> pymysql.Connection:
    return pymysql.connect(
        host=settings.my_host,
        port=settings.my_port,
        user=settings.my_user,
        database=database,
        autocommit=True,
    )


def pg_table_ddl(table: str) -> sql.Composed:
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(pg)) for name, pg, _, _ in COLUMNS
    )
    return sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(table), columns)


def my_table_ddl(table: str) -> str:
    columns = ", ".join(f"`{name}` {my}" for name, _, my, _ in COLUMNS)
    return f"CREATE TABLE `{table}` ({columns})"


def prepare(settings: Settings, rebuild: bool = False) -> None:
    """Create the databases and the source tables, unless they already hold this data set."""
    with pg_connect(settings, "postgres") as conn:
        existing = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
        for database in (settings.pg_source_db, settings.pg_destination_db):
            if database not in existing:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    with my_connect(settings) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{settings.my_db}`")
    with pg_connect(settings, settings.pg_source_db) as conn:
        rebuild = rebuild or _pg_marker(conn) != _marker(settings)
        if rebuild:
            _build_pg_source(conn, settings)
    if rebuild or not settings.sqlite_path.exists():  # the same rows, from the same version
        _build_sqlite(settings)
    Path(settings.workdir, "lake").mkdir(parents=True, exist_ok=True)


def _marker(settings: Settings) -> str:
    return f"{DATASET_VERSION} rows={settings.rows}"


def _pg_marker(conn: psycopg.Connection) -> str | None:
    row = conn.execute(
        "SELECT obj_description(to_regclass('public.orders'), 'pg_class')"
    ).fetchone()
    return row[0] if row else None


def slices(settings: Settings) -> dict[str, tuple[int, int]]:
    """The smaller source tables, as ranges of `id`: one tenth and one hundredth (memory over
    three sizes), one row, and the parts of the parallel job."""
    tables = {
        "orders_small": (1, settings.small_rows),
        "orders_tiny": (1, settings.tiny_rows),
        "orders_one": (1, 1),
    }
    for k in range(PARALLEL_TABLES):
        low = k * settings.part_rows + 1
        tables[f"orders_p{k + 1}"] = (low, low + settings.part_rows - 1)
    return tables


def _build_pg_source(conn: psycopg.Connection, settings: Settings) -> None:
    for table in [SOURCE_TABLE, *slices(settings)]:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
    conn.execute(pg_table_ddl(SOURCE_TABLE))
    conn.execute(_GENERATE, {"rows": settings.rows})
    conn.execute("CREATE INDEX ON orders (id)")
    for table, (low, high) in slices(settings).items():
        conn.execute(pg_table_ddl(table))
        conn.execute(
            sql.SQL("INSERT INTO {} SELECT * FROM orders WHERE id BETWEEN %s AND %s").format(
                sql.Identifier(table)
            ),
            (low, high),
        )
        conn.execute(sql.SQL("CREATE INDEX ON {} (id)").format(sql.Identifier(table)))
    conn.execute("VACUUM ANALYZE")
    conn.execute(sql.SQL("COMMENT ON TABLE orders IS {}").format(sql.Literal(_marker(settings))))


def _build_sqlite(settings: Settings) -> None:
    """The same rows, read back from PostgreSQL: timestamps as text with microseconds (UTC for
    the aware column), booleans as 0/1, decimals through SQLite's NUMERIC affinity."""
    path = settings.sqlite_path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    select = (
        "SELECT id, customer_id, amount::text, status, note,"
        " to_char(created_at, 'YYYY-MM-DD HH24:MI:SS.US'),"
        " to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'),"
        " paid::int, order_date::text, score FROM orders WHERE id <= %s ORDER BY id"
    )
    tables = {
        SOURCE_TABLE: settings.rows,
        "orders_small": settings.small_rows,
        "orders_tiny": settings.tiny_rows,
        "orders_one": 1,
    }
    columns = ", ".join(f'"{name}" {lite}' for name, _, _, lite in COLUMNS)
    placeholders = ", ".join("?" * len(COLUMNS))
    lite = sqlite3.connect(partial)
    try:
        with pg_connect(settings, settings.pg_source_db, autocommit=False) as conn:
            for table, rows in tables.items():
                lite.execute(f'CREATE TABLE "{table}" ({columns})')
                with conn.cursor(name=f"read_{table}") as cur:
                    cur.execute(select, (rows,))
                    while batch := cur.fetchmany(50_000):
                        lite.executemany(f'INSERT INTO "{table}" VALUES ({placeholders})', batch)
                lite.commit()
    finally:
        lite.close()
    partial.rename(path)


TEMPLATE_TABLE = "cjbench_ddl_orders"


def keep_ddl(settings: Settings, pairing: str) -> bool:
    """Keep the definition of the destination table copyjob just created (an empty copy of it,
    TEMPLATE_TABLE), so that every way then loads into that same definition. False for the
    Parquet pairings, which have no table."""
    if pairing == "pg-pg":
        with pg_connect(settings, settings.pg_destination_db) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {TEMPLATE_TABLE}")
            conn.execute(f"CREATE TABLE {TEMPLATE_TABLE} (LIKE {DESTINATION_TABLE} INCLUDING ALL)")
        return True
    if pairing == "pg-mariadb":
        with my_connect(settings, settings.my_db) as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS `{TEMPLATE_TABLE}`")
            cur.execute(f"CREATE TABLE `{TEMPLATE_TABLE}` LIKE `{DESTINATION_TABLE}`")
        return True
    if pairing == "pg-sqlite":
        with closing(sqlite3.connect(settings.sqlite_destination)) as lite:
            (ddl,) = lite.execute(
                "SELECT sql FROM sqlite_schema WHERE name = ?", (DESTINATION_TABLE,)
            ).fetchone()
        _sqlite_template(settings).write_text(ddl)
        return True
    return False


def _sqlite_template(settings: Settings) -> Path:
    """Where keep_ddl keeps the SQLite table's CREATE TABLE (a file has no second schema)."""
    return Path(settings.workdir) / f"{TEMPLATE_TABLE}.sql"


def destination_ddl(settings: Settings, pairing: str) -> str:
    """The destination table's definition as the server prints it (for the report)."""
    if pairing == "pg-pg":
        with pg_connect(settings, settings.pg_destination_db) as conn:
            found = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
                (TEMPLATE_TABLE,),
            ).fetchall()
        return ", ".join(f"{name} {kind}" for name, kind in found)
    if pairing == "pg-mariadb":
        with my_connect(settings, settings.my_db) as conn, conn.cursor() as cur:
            cur.execute(f"SHOW CREATE TABLE `{TEMPLATE_TABLE}`")
            text = cur.fetchone()[1]
        body = text[text.index("(") + 1 : text.rindex(")")]
        return ", ".join(" ".join(line.split()[:2]) for line in body.strip().splitlines())
    if pairing == "pg-sqlite":
        text = _sqlite_template(settings).read_text()
        body = text[text.index("(") + 1 : text.rindex(")")]
        parts = re.split(r",\s*\n", body.strip())
        return ", ".join(part.strip().removesuffix(" NOT NULL") for part in parts)
    return ""


def reset_destinations(settings: Settings, pairing: str, create: str = "source") -> None:
    """No leftovers of any way, and an empty destination table, no key: of copyjob's own
    definition (`create="copyjob"`, kept by `keep_ddl`), of the source's (`"source"`), or none
    (`"none"`: copyjob then creates it)."""
    if pairing == "pg-pg":
        with pg_connect(settings, settings.pg_destination_db) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(f"{settings.prefix}_dlt")
                )
            )
            conn.execute(
                sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(DESTINATION_TABLE))
            )
            if create == "copyjob":
                conn.execute(
                    f"CREATE TABLE {DESTINATION_TABLE} (LIKE {TEMPLATE_TABLE} INCLUDING ALL)"
                )
            elif create == "source":
                conn.execute(pg_table_ddl(DESTINATION_TABLE))
    elif pairing == "pg-mariadb":
        with my_connect(settings, settings.my_db) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{settings.my_db}_dlt`")
            cur.execute(f"DROP TABLE IF EXISTS `{DESTINATION_TABLE}`")
            if create == "copyjob":
                cur.execute(f"CREATE TABLE `{DESTINATION_TABLE}` LIKE `{TEMPLATE_TABLE}`")
            elif create == "source":
                cur.execute(my_table_ddl(DESTINATION_TABLE))
    elif pairing == "pg-sqlite":
        path = settings.sqlite_destination
        for leftover in (path, path.with_name(path.name + "-journal")):
            leftover.unlink(missing_ok=True)
        if create != "none":
            columns = ", ".join(f'"{name}" {lite}' for name, _, _, lite in COLUMNS)
            ddl = (
                _sqlite_template(settings).read_text()
                if create == "copyjob"
                else f'CREATE TABLE "{DESTINATION_TABLE}" ({columns})'
            )
            with closing(sqlite3.connect(path)) as lite:
                lite.execute(ddl)
                lite.commit()
    else:
        shutil.rmtree(settings.lake, ignore_errors=True)
        settings.lake.mkdir(parents=True)
    shutil.rmtree(Path(settings.workdir) / "dlt_pipelines", ignore_errors=True)


def content(settings: Settings, pairing: str, target: str | None = None) -> tuple[int, str]:
    """(rows, checksum) of the destination a way wrote: a table (schema.table), or Parquet
    files (those whose path holds `target`, when given). See content.py."""
    if pairing == "pg-pg":
        schema, _, table = (target or f"public.{DESTINATION_TABLE}").rpartition(".")
        with pg_connect(settings, settings.pg_destination_db) as conn:
            return checksum.pg(conn, schema, table)
    if pairing == "pg-mariadb":
        database, _, table = (target or f"{settings.my_db}.{DESTINATION_TABLE}").rpartition(".")
        with my_connect(settings, database) as conn:
            return checksum.mariadb(conn, database, table)
    if pairing == "pg-sqlite":
        return checksum.sqlite(settings.sqlite_destination, target or DESTINATION_TABLE)
    files = sorted(settings.lake.rglob("*.parquet"))
    if target:
        files = [f for f in files if target in f.as_posix()]
    return checksum.parquet(files)


def source_content(settings: Settings, table: str = SOURCE_TABLE) -> tuple[int, str]:
    """(rows, checksum) of a source table in PostgreSQL (the SQLite file holds the same rows)."""
    with pg_connect(settings, settings.pg_source_db) as conn:
        return checksum.pg(conn, "public", table)


def count_rows(settings: Settings, pairing: str, target: str | None = None) -> int:
    """Rows in the destination a way wrote (with their checksum: `content`)."""
    return content(settings, pairing, target)[0]


def drop_all(settings: Settings) -> None:
    """Drop the benchmark's databases (the smoke test cleans up after itself)."""
    with pg_connect(settings, "postgres") as conn:
        for database in (settings.pg_source_db, settings.pg_destination_db):
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
    with my_connect(settings) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{settings.my_db}`")
        cur.execute(f"DROP DATABASE IF EXISTS `{settings.my_db}_dlt`")
