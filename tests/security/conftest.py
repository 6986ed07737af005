"""Fixtures of the security suite: a PostgreSQL server of its own, login roles, a secret marker.

Every password these tests use holds the session's marker, a random token that must never show
up anywhere a user or an operator can read.
"""

import os
import urllib.parse
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from psycopg import sql

from . import private_pg
from .private_pg import PrivatePostgres


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    """The suite's own PostgreSQL server (see private_pg); skip without one, fail under CI."""
    try:
        server = private_pg.start()
    except private_pg.Unavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot start a PostgreSQL server of the suite's own: {exc}")
        pytest.skip(f"cannot start a PostgreSQL server of the suite's own: {exc}")
    try:
        yield server
    finally:
        private_pg.stop(server)


@pytest.fixture(scope="session")
def marker() -> str:
    return f"CANARY{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="session")
def password(marker: str) -> str:
    """A password holding the marker, and characters that URLs must escape."""
    return f"p@ss:/{marker}%?&#"


def url_password(password: str) -> str:
    """The password as it is written in a URL built without `${VAR}` (a job's `${VAR}` holds it
    raw)."""
    return urllib.parse.quote(password, safe="")


PgRole = Callable[..., str]


@pytest.fixture(scope="module")
def pg_role(private_postgres: PrivatePostgres) -> Iterator[PgRole]:
    """Make a login role of the private server: `pg_role(name, password, *grants)`; every
    grant is SQL run as the superuser after the role exists. Dropped after the module."""
    engine = sa.create_engine(private_postgres.admin_url)
    made: list[str] = []

    def make(name: str, password: str, *grants: str) -> str:
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            raw.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(password)
                )
            )
            made.append(name)
            for grant in grants:
                conn.exec_driver_sql(grant)
        return name

    yield make
    with engine.begin() as conn:
        for name in made:
            conn.exec_driver_sql(f'DROP OWNED BY "{name}"')
            conn.exec_driver_sql(f'DROP ROLE "{name}"')
    engine.dispose()


MySQLUser = Callable[..., str]


@pytest.fixture(scope="module")
def mysql_user(mysql_server: str) -> Iterator[MySQLUser]:
    """Make a MariaDB user `mysql_user(name, password, *grants)` at 127.0.0.1 (a grant names
    it `{user}`); dropped after the module."""
    engine = sa.create_engine(mysql_server)
    made: list[str] = []

    def make(name: str, password: str, *grants: str) -> str:
        with engine.begin() as conn:
            conn.execute(
                sa.text("CREATE USER :name@'127.0.0.1' IDENTIFIED BY :password"),
                {"name": name, "password": password},
            )
            made.append(name)
            for grant in grants:
                conn.exec_driver_sql(grant.format(user=f"'{name}'@'127.0.0.1'"))
        return name

    yield make
    with engine.begin() as conn:
        for name in made:
            conn.execute(sa.text("DROP USER :name@'127.0.0.1'"), {"name": name})
    engine.dispose()
