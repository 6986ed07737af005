"""Connections and statements have time limits, and their failures name the store.

A closed port and a wrong password fail at once (well before the store's `connect_timeout`:
nothing waits for it); a port that accepts and never answers fails once `connect_timeout` has
passed (plus a margin); a statement longer than `statement_timeout` is cancelled by the server.
No message holds the password.
"""

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from copyjob_dagster.config import StoreConfig
from copyjob_dagster.errors import SourceError
from copyjob_dagster.stores import open_source

from .conftest import MySQLUser, PgRole, url_password
from .private_pg import PrivatePostgres

CONNECT_TIMEOUT = 2
BOUND_SECONDS = CONNECT_TIMEOUT + 3
# A refusal answered by the server: opening the store, one connection attempt, the error's
# translation. Half the connect timeout: a failure that waited for it would take 2 s.
AT_ONCE_SECONDS = CONNECT_TIMEOUT / 2
DRIVERS = {"postgres": "postgresql+psycopg", "mysql": "mysql+pymysql"}


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _fails_in_time(url: str, marker: str, at_once: bool = True) -> str:
    """The store's error; at once, or (`at_once` False) after the connect timeout and within
    a margin of it."""
    source = open_source(StoreConfig(url=url, connect_timeout=CONNECT_TIMEOUT))
    started = time.monotonic()
    with pytest.raises(SourceError) as refused:
        source.describe("anything")
    elapsed = time.monotonic() - started
    source.close()
    message = str(refused.value)
    if at_once:
        assert elapsed < AT_ONCE_SECONDS, f"{elapsed:.2f} s: {message}"
    else:
        assert CONNECT_TIMEOUT * 0.9 <= elapsed < BOUND_SECONDS, f"{elapsed:.1f} s: {message}"
    assert message.startswith(f"source {sa.engine.make_url(url).render_as_string()}:")
    assert marker not in message
    return message


@pytest.mark.parametrize("family", DRIVERS)
def test_a_silent_port_times_out(family: str, silent_port: int, password: str, marker: str) -> None:
    url = f"{DRIVERS[family]}://someone:{url_password(password)}@127.0.0.1:{silent_port}/db"
    message = _fails_in_time(url, marker, at_once=False)
    assert "timeout" in message or "timed out" in message


@pytest.mark.parametrize("family", DRIVERS)
def test_a_closed_port_fails_at_once(family: str, password: str, marker: str) -> None:
    url = f"{DRIVERS[family]}://someone:{url_password(password)}@127.0.0.1:{_closed_port()}/db"
    assert "refused" in _fails_in_time(url, marker)


def test_a_wrong_password_fails_at_once_on_postgres(
    private_postgres: PrivatePostgres, pg_role: PgRole, password: str, marker: str
) -> None:
    role = pg_role("timeout_user", password)
    url = private_postgres.url(role, password + "-wrong")
    assert "password authentication failed" in _fails_in_time(url, marker)


def test_a_wrong_password_fails_at_once_on_mariadb(
    mysql_server: str, mysql_user: MySQLUser, password: str, marker: str
) -> None:
    user = mysql_user("cj_timeout_user", password)
    url = f"mysql+pymysql://{user}:{url_password(password + '-wrong')}@127.0.0.1:3306/test"
    assert "Access denied" in _fails_in_time(url, marker)


@pytest.mark.parametrize(
    ("server", "sleep"),
    [("pg_server", "SELECT pg_sleep(5)"), ("mysql_server", "SELECT COUNT(*) FROM "
     "information_schema.COLUMNS a, information_schema.COLUMNS b, information_schema.COLUMNS c")],
    ids=["postgres", "mariadb"],
)  # fmt: skip
def test_a_statement_longer_than_its_timeout_is_cancelled(
    server: str, sleep: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(server)
    source = open_source(StoreConfig(url=url, connect_timeout=CONNECT_TIMEOUT, statement_timeout=1))
    started = time.monotonic()
    with (
        pytest.raises(SourceError, match="statement timeout|max_statement_time"),
        source.translated_errors("sleeping"),
        source.engine.connect() as conn,
    ):
        conn.exec_driver_sql(sleep).all()
    source.close()
    assert time.monotonic() - started < 4


def test_a_mariadb_statement_may_outlast_the_connect_timeout(mysql_server: str) -> None:
    """The socket timeout that bounds the handshake is lifted once logged in."""
    source = open_source(StoreConfig(url=mysql_server, connect_timeout=CONNECT_TIMEOUT))
    with source.engine.connect() as conn:
        assert conn.exec_driver_sql(f"SELECT SLEEP({CONNECT_TIMEOUT + 1})").scalar() == 0
    source.close()
