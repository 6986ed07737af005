"""Which driver errors are transient: the same work may succeed if it is simply tried again.

A transient error (a refused or dropped connection, a deadlock, a busy database, a server that
is starting or shutting down) is retried by a job's retry policy. Anything else (a wrong
password, a missing database, table or column, a constraint) is the user's to fix, and retrying
it would only delay the message.
"""

import adbc_driver_manager
import psycopg
import pymysql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# SQLSTATE classes and codes: connection exception, transaction rollback (serialization failure,
# deadlock), insufficient resources, lock not available, and the server shutting down, crashing
# or starting up (57P01-57P03; 57014, a cancelled query, is not among them).
_POSTGRES_TRANSIENT = ("08", "40", "53", "55P03", "57P")
# libpq reports a failed connection without SQLSTATE; when the server itself answered FATAL,
# these messages are the ones that mean "not now" rather than "not you".
_POSTGRES_TRANSIENT_FATAL = (
    "too many clients",
    "too many connections",
    "starting up",
    "shutting down",
    "in recovery mode",
    "terminating connection",  # 57P01 and kin, as ADBC words them: the session was ended
)
# MySQL/MariaDB error numbers: too many connections, server shutdown, lock wait timeout,
# deadlock, cannot connect, server gone away, connection lost.
_MYSQL_TRANSIENT = {1040, 1053, 1205, 1213, 2002, 2003, 2006, 2013, 2055}
# SQLite primary result codes: SQLITE_BUSY and SQLITE_LOCKED.
_SQLITE_TRANSIENT = {5, 6}


def is_transient(exc: BaseException) -> bool:
    """Whether `exc`, raised by SQLAlchemy or a driver, may not happen again on a retry."""
    if isinstance(exc, PoolTimeoutError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    original = getattr(exc, "orig", None) or exc
    if isinstance(original, psycopg.Error):
        return _postgres_transient(original.sqlstate, original, psycopg.OperationalError)
    if isinstance(original, adbc_driver_manager.Error):  # ADBC's PostgreSQL driver (stores/pgadbc)
        return _postgres_transient(
            original.sqlstate, original, adbc_driver_manager.OperationalError
        )
    if isinstance(original, OSError) and str(original).startswith("[libpq]"):
        # ADBC's PostgreSQL driver reports a COPY stream broken mid-way as an OSError in libpq's
        # words ("[libpq] PQgetCopyData() failed: server closed the connection unexpectedly").
        return _postgres_transient(None, original, OSError)
    if isinstance(original, pymysql.err.MySQLError):
        errno = original.args[0] if original.args else None
        return errno in _MYSQL_TRANSIENT
    sqlite_code = getattr(original, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int):
        return sqlite_code & 0xFF in _SQLITE_TRANSIENT
    return isinstance(original, ConnectionError | TimeoutError)


def _postgres_transient(
    sqlstate: str | None, error: Exception, operational: type[Exception]
) -> bool:
    if sqlstate:
        return sqlstate.startswith(_POSTGRES_TRANSIENT)
    if not isinstance(error, operational):
        return False
    message = str(error)
    if "FATAL:" not in message:
        return True  # refused, unreachable, timed out, or closed by the server mid-way
    return any(reason in message for reason in _POSTGRES_TRANSIENT_FATAL)
