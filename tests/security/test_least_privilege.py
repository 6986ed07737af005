"""Sources are only read: in read-only transactions, by a role that may do nothing else.

PostgreSQL: a role with SELECT on one table copies it in full and then incrementally, with
every statement it sends logged by the suite's own server (`log_statement = all` for that role
alone); the log must show the reads, in READ ONLY transactions, and no statement that writes.
Every SQL family: a write inside a source's snapshot transaction is refused by the database.
"""

import re
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from copyjob_dagster.config import CopyJob, StoreConfig
from copyjob_dagster.engine import copy_table
from copyjob_dagster.stores import open_source

from .conftest import MySQLUser, PgRole, url_password
from .private_pg import PrivatePostgres

WRITES = re.compile(
    # COPY (SELECT ...) TO STDOUT reads; any other COPY writes.
    r"\b(INSERT|UPDATE|DELETE|MERGE|CREATE|DROP|ALTER|TRUNCATE|GRANT|REVOKE|LOCK|VACUUM|"
    r"COPY(?! \(SELECT .*\) TO STDOUT)|"
    r"ANALYZE|CLUSTER|REINDEX|COMMENT|REFRESH|CALL|DO|NEXTVAL|SETVAL|PG_ADVISORY_\w+|"
    r"FOR (NO KEY )?UPDATE|FOR (KEY )?SHARE)\b",
    re.IGNORECASE,
)


def test_a_select_only_postgres_role_copies_and_writes_nothing(
    private_postgres: PrivatePostgres, pg_role: PgRole, password: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    schema, reader = f"readonly_{tag}", f"reader_{tag}"
    admin = sa.create_engine(private_postgres.admin_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE SCHEMA {schema};"
            f"CREATE TABLE {schema}.events (id int PRIMARY KEY, body text, updated_at int);"
            f"INSERT INTO {schema}.events SELECT g, 'row ' || g, g FROM generate_series(1, 50) g"
        )
    pg_role(
        reader,
        password,
        f"GRANT USAGE ON SCHEMA {schema} TO {reader}",
        f"GRANT SELECT ON {schema}.events TO {reader}",
        f"ALTER ROLE {reader} SET log_statement = 'all'",
    )
    job = CopyJob.model_validate(
        {
            "name": "readonly",
            "mode": "incremental",
            "source": {
                "url": private_postgres.url(reader, password),
                "schema": schema,
            },
            "destination": {"url": f"sqlite:///{tmp_path / 'copy.sqlite'}"},
            "batch_rows": 20,
            "tables": [{"name": "events", "incremental_column": "updated_at"}],
        }
    )
    log_start = private_postgres.log_size()
    first = copy_table(job, job.tables[0])
    with admin.begin() as conn:
        conn.exec_driver_sql(f"INSERT INTO {schema}.events VALUES (51, 'late', 51)")
    second = copy_table(job, job.tables[0], first.watermark)
    admin.dispose()
    assert (first.rows_written, second.rows_read) == (50, 1)

    entries = re.split(r"\n(?=\d{4}-\d\d-\d\d )", private_postgres.log(log_start))
    statements = [
        entry.split("statement: ", 1)[1]
        for entry in entries
        if f"user={reader} " in entry and "statement: " in entry
    ]
    assert any("FROM" in s and "events" in s for s in statements), statements
    assert any(re.search(r"BEGIN.*READ ONLY", s) for s in statements), statements
    writes = [s for s in statements if WRITES.search(s)]
    assert not writes, writes


def _snapshot_write_error(url: str, schema: str | None, table: str) -> str:
    store = open_source(StoreConfig.model_validate({"url": url, "schema": schema}))
    target = sa.table(table, sa.column("id"), schema=schema)
    try:
        with store.engine.connect() as conn:
            store.begin_snapshot(conn)
            with pytest.raises(sa.exc.DBAPIError) as refused:
                conn.execute(sa.insert(target).values(id=2))
            conn.rollback()
        return str(refused.value.orig)
    finally:
        store.close()


def test_postgres_snapshot_refuses_writes(pg_server: str, pg_schema: str) -> None:
    engine = sa.create_engine(pg_server)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {pg_schema}.t (id int)")
    engine.dispose()
    assert "read-only transaction" in _snapshot_write_error(pg_server, pg_schema, "t")


def test_mysql_snapshot_refuses_writes_and_a_select_only_user_copies(
    mysql_url: str, mysql_user: MySQLUser, password: str, tmp_path: Path
) -> None:
    engine = sa.create_engine(mysql_url)
    database = engine.url.database
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id int PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    engine.dispose()
    assert "READ ONLY transaction" in _snapshot_write_error(mysql_url, None, "t")

    user = mysql_user(
        f"cj_ro_{uuid.uuid4().hex[:8]}", password, f"GRANT SELECT ON {database}.t TO {{user}}"
    )
    url = f"mysql+pymysql://{user}:{url_password(password)}@127.0.0.1:3306/{database}"
    job = CopyJob.model_validate(
        {
            "name": "readonly",
            "source": {"url": url},
            "destination": {"url": str(tmp_path / "lake")},
            "tables": [{"name": "t"}],
        }
    )
    assert copy_table(job, job.tables[0]).rows_written == 1


def test_sqlite_snapshot_refuses_writes(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'source.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id int)")
    engine.dispose()
    message = _snapshot_write_error(f"sqlite:///{tmp_path / 'source.sqlite'}", None, "t")
    assert "readonly" in message
