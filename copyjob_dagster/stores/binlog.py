"""MariaDB's change stream: the row-based binary log, read from a recorded position.

No slot: the position (binlog file and offset) lives in the asset's metadata only, and the
server keeps the binlog for its own reasons (`binlog_expire_logs_seconds`, `expire_logs_days`).
A position whose file the server has already purged is an error that names the fix (a new
snapshot), never a silent gap.

A position is one integer, `file number << 32 | offset`: the offset of an event's end in a file
fits 32 bits (the binlog's own header field is 32 bits), and the number is the file name's
suffix (`binlog.000042` is 42), so positions of different files compare in log order. The text
form, as recorded, is the file name and the offset: `binlog.000042:1234`.

Why the first copy and the changes fit together (`snapshot`): MariaDB's group commit has engines
and the binary log commit in one order (the storage engine API's `commit_ordered` step), and
`START TRANSACTION WITH CONSISTENT SNAPSHOT`, at REPEATABLE READ, takes the InnoDB read view and
a binlog position at one point of that order, reported in the session's status variables
`binlog_snapshot_file` and `binlog_snapshot_position` (MariaDB's knowledge base: "Enhancements
for START TRANSACTION WITH CONSISTENT SNAPSHOT"; mysqldump --single-transaction --master-data
relies on it to do without FLUSH TABLES WITH READ LOCK). So the snapshot sees exactly the
transactions written to the binlog before that position, and none after it: the copy plus the
changes from that position hold every row once. (MySQL has no such variables; its source is
refused, see `problems`.) The tests check the visible half: a transaction committed after the
snapshot began is neither in the snapshot nor before its position, and the position does not
move with it.

Reading (`events`): a non-blocking binlog dump (`mysql-replication`) from the position, stopped
at the first event that ends past `upto`, the binlog's end when the run started. MariaDB
writes a transaction to the binlog whole at its commit, so `upto` falls between transactions.
"""

import random
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pymysql
import sqlalchemy as sa
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import NotImplementedEvent
from sqlalchemy.engine import Connection

from copyjob_dagster.errors import SourceError

if TYPE_CHECKING:
    from copyjob_dagster.stores.mysql import MySQLStore

OFFSET_BITS = 32
# MariaDB types the binlog carries as their stored bytes (a UUID in its own byte order).
_RAW_TYPES = frozenset({"uuid", "inet4", "inet6"})

_REQUIRED = (
    ("log_bin", "ON", "the binary log is off: start the server with log_bin (log-bin=...)"),
    (
        "binlog_format",
        "ROW",
        "binlog_format is {value!r}: set binlog_format = ROW (SET GLOBAL binlog_format = "
        "'ROW', and in the server's configuration)",
    ),
    (
        "binlog_row_image",
        "FULL",
        "binlog_row_image is {value!r}: set binlog_row_image = FULL, so that every change "
        "carries the whole row",
    ),
    (
        "binlog_row_metadata",
        "FULL",
        "binlog_row_metadata is {value!r}: set binlog_row_metadata = FULL (MariaDB 10.5+), "
        "so that each change names its columns",
    ),
    (
        "log_bin_compress",
        "OFF",
        "log_bin_compress is {value!r}: set log_bin_compress = OFF (SET GLOBAL, and in the "
        "server's configuration): mysql-replication cannot read compressed events",
    ),
)
# MariaDB's compressed events (log_bin_compress): QUERY_COMPRESSED_EVENT to
# DELETE_ROWS_COMPRESSED_EVENT. mysql-replication knows none of them: skipped, they would
# lose their rows (and a TRUNCATE) without a word.
_COMPRESSED = range(165, 172)


def position_value(file: str, offset: int) -> int:
    """`binlog.000042`, 1234 as one comparable integer."""
    return (int(file.rsplit(".", 1)[1]) << OFFSET_BITS) | offset


def file_number(position: int) -> int:
    return position >> OFFSET_BITS


def position_text(position: int, base: str) -> str:
    """The position as recorded: `binlog.000042:1234` (`base`: the files' name, `binlog`)."""
    return f"{base}.{file_number(position):06d}:{position & ((1 << OFFSET_BITS) - 1)}"


def parse_position(text: str) -> int:
    """A recorded `binlog.000042:1234`; ValueError for anything else."""
    match = re.fullmatch(r"(.+\.\d+):(\d+)", text.strip())
    if match is None:
        raise ValueError(f"not a binlog position: {text!r}")
    return position_value(match.group(1), int(match.group(2)))


@dataclass(frozen=True)
class BinlogState:
    """Where a recorded position stands against the server's binlog (a slot's stand-in)."""

    confirmed: int
    retained_bytes: int  # binlog written after the position: how far behind it is
    text: str  # the position as a run records it (`binlog.000042:1234`)


class BinlogChangeStream:
    """One table's changes in a MariaDB server's binlog."""

    def __init__(self, store: "MySQLStore", table: str, name: str) -> None:
        self.store, self.table, self.name = store, table, name
        self._where = f"source {store.display_url}, table {table!r}"

    @property
    def database(self) -> str:
        return self.store._schema or self.store.engine.url.database or ""

    # -- set-up ---------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """What the server or the account lacks for reading the binlog, each with its fix."""
        found = []
        with (
            self.store.translated_errors("checking change capture"),
            self.store.engine.connect() as c,
        ):
            names = [name for name, _, _ in _REQUIRED]
            values = dict(
                c.execute(
                    sa.text(
                        "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema."
                        "GLOBAL_VARIABLES WHERE VARIABLE_NAME IN :names"
                    ).bindparams(sa.bindparam("names", expanding=True)),
                    {"names": [n.upper() for n in names]},
                ).all()
            )
            snapshot = c.execute(sa.text("SHOW STATUS LIKE 'binlog_snapshot_file'")).first()
            user = c.exec_driver_sql("SELECT CURRENT_USER()").scalar_one()
            granted = set(
                c.execute(
                    sa.text(
                        "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES "
                        "WHERE GRANTEE = :grantee"
                    ),
                    {"grantee": _grantee(user)},
                ).scalars()
            )
            found += self._undecodable_columns(c)
        if snapshot is None:
            return [
                "the server does not report binlog_snapshot_file (MariaDB does; MySQL does "
                "not), so a first copy cannot be tied to a binlog position: mode: cdc reads "
                "MariaDB's binlog only"
            ]
        for name, wanted, problem in _REQUIRED:
            value = values.get(name.upper())
            if value is None and name == "binlog_row_metadata":
                value = "(unknown: MariaDB before 10.5)"
            if value != wanted:
                found.append(problem.format(value=value))
        for privilege, also in (
            ("REPLICATION SLAVE", ()),
            ("REPLICATION CLIENT", ("BINLOG MONITOR",)),
        ):
            if privilege not in granted and not granted.intersection(also):
                found.append(
                    f"account {user} lacks the {privilege} privilege: GRANT REPLICATION SLAVE, "
                    f"REPLICATION CLIENT ON *.* TO {user}"
                )
        return found

    def _undecodable_columns(self, c: Connection) -> list[str]:
        """Columns the binlog carries in a form neither decoder turns into the snapshot's
        values: MariaDB's UUID and INET types as their stored bytes, ucs2 text."""
        rows = c.execute(
            sa.text(
                "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_SET_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = :database AND TABLE_NAME = :table"
            ),
            {"database": self.database, "table": self.table},
        ).all()
        return [
            f"column {name!r} is {kind.lower() if kind.lower() in _RAW_TYPES else 'ucs2 text'}, "
            "which the binlog carries in a form copyjob does not decode: copy the table with "
            "mode: incremental"
            for name, kind, charset in rows
            if kind.lower() in _RAW_TYPES or (charset or "").lower() == "ucs2"
        ]

    def check(self) -> None:
        problems = self.problems()
        if problems:
            raise SourceError(f"{self._where}: mode: cdc: " + "; ".join(problems))

    # -- positions ------------------------------------------------------------------------

    def logs(self) -> list[tuple[str, int]]:
        """The binlog files the server still has, oldest first, with their sizes."""
        with self.store.translated_errors("listing binary logs"), self.store.engine.connect() as c:
            return [(row[0], int(row[1])) for row in c.exec_driver_sql("SHOW BINARY LOGS")]

    def base(self, logs: list[tuple[str, int]] | None = None) -> str:
        """The binlog files' name without the number (`binlog` of `binlog.000042`), from
        `logs` (a listing the caller made) or a new listing."""
        return (logs or self.logs())[-1][0].rsplit(".", 1)[0]

    def current(self) -> int:
        """The position a run reads up to: the binlog's end now."""
        with (
            self.store.translated_errors("reading the binlog position"),
            self.store.engine.connect() as c,
        ):
            row = c.exec_driver_sql("SHOW MASTER STATUS").first()
        if row is None:
            raise SourceError(f"{self._where}: the binary log is off (SHOW MASTER STATUS is empty)")
        return position_value(row[0], int(row[1]))

    def state(
        self, position: int | None, logs: list[tuple[str, int]] | None = None
    ) -> BinlogState | None:
        """How far behind `position` is, in `logs` (a listing the caller made) or a new
        listing; None without a position. Raises when its file is purged."""
        if position is None:
            return None
        logs = self.logs() if logs is None else logs
        self.require_retained(position, logs)
        behind = 0
        for name, size in logs:
            number = position_value(name, 0) >> OFFSET_BITS
            if number > file_number(position):
                behind += size
            elif number == file_number(position):
                behind += max(0, size - (position & ((1 << OFFSET_BITS) - 1)))
        return BinlogState(position, behind, position_text(position, self.base(logs)))

    def require_retained(self, position: int, logs: list[tuple[str, int]] | None = None) -> None:
        logs = self.logs() if logs is None else logs
        numbers = [position_value(name, 0) >> OFFSET_BITS for name, _ in logs]
        if not numbers or file_number(position) < numbers[0]:
            kept = f"{logs[0][0]}" if logs else "none"
            raise SourceError(
                f"{self._where}: the recorded binlog position is in file number "
                f"{file_number(position)}, which the server has purged (its oldest binlog is "
                f"{kept}; see binlog_expire_logs_seconds / expire_logs_days): the changes since "
                f"are gone. Take a new full snapshot: run the table with --full-refresh (and "
                f"keep the binlog longer than the time between runs)"
            )

    def advance(self, position: int) -> None:
        """Nothing to move: no slot holds the binlog back (the server's expiry removes it)."""

    def drop(self) -> bool:
        """Nothing to drop (no slot); False."""
        return False

    # -- the snapshot ---------------------------------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[tuple[Callable[[Connection], None], Callable[[], int]]]:
        """A reader start that opens the consistent snapshot, and the binlog position it
        stands at (to ask once the reader is open; see the module's docstring)."""
        seen: dict[str, int] = {}

        def begin(conn: Connection) -> None:
            self.store.begin_snapshot(conn)
            rows = dict(conn.execute(sa.text("SHOW STATUS LIKE 'binlog_snapshot_%'")).all())
            seen["point"] = position_value(
                rows["Binlog_snapshot_file"], int(rows["Binlog_snapshot_position"])
            )

        yield begin, lambda: seen["point"]

    # -- the changes ----------------------------------------------------------------------

    def events(
        self, position: int, upto: int, logs: list[tuple[str, int]] | None = None
    ) -> Iterator[tuple[Any, int]]:
        """The binlog's events after `position` that end at or before `upto`, each with the
        position of its end; the table's row events only (others' are filtered out unread).
        `logs`: a listing of the binlog files made since `upto` was read (else one is made)."""
        if upto <= position:
            return
        logs = self.logs() if logs is None else logs
        self.require_retained(position, logs)
        url = self.store.engine.url
        settings = {
            "host": url.host or "localhost",
            "port": url.port or 3306,
            "user": url.username or "",
            "password": url.password or "",
            "connect_timeout": self.store.timeouts.connect,
            "read_timeout": self.store.timeouts.statement or 3600,
            "charset": "utf8mb4",
        }
        if "unix_socket" in url.query:
            settings["unix_socket"] = url.query["unix_socket"]
        base = self.base(logs)
        stream = BinLogStreamReader(
            connection_settings=settings,
            server_id=random.randint(1 << 24, (1 << 31) - 1),  # no other replica's
            resume_stream=True,
            blocking=False,
            log_file=f"{base}.{file_number(position):06d}",
            log_pos=position & ((1 << OFFSET_BITS) - 1),
            only_tables=[self.table],
            only_schemas=[self.database],
            enable_logging=False,
            filter_non_implemented_events=False,  # to see compressed events, and refuse them
        )
        try:
            for event in stream:
                at = position_value(stream.log_file, stream.log_pos)
                if at > upto:
                    break
                if isinstance(event, NotImplementedEvent):
                    if event.event_type in _COMPRESSED:
                        raise SourceError(
                            f"{self._where}: the binlog holds compressed events "
                            f"(log_bin_compress = ON when they were written), which "
                            f"mysql-replication cannot read; nothing was applied: take a new "
                            f"snapshot (--full-refresh) with log_bin_compress = OFF"
                        )
                    continue
                yield event, at
        except pymysql.err.Error as exc:
            raise SourceError(
                f"{self._where}: reading the binlog failed: {self.store._scrub(exc)}",
                transient=True,
            ) from None
        finally:
            stream.close()


def _grantee(user: str) -> str:
    """`copy@%` as information_schema.USER_PRIVILEGES spells it: `'copy'@'%'`."""
    name, _, host = user.rpartition("@")
    return f"'{name}'@'{host}'"
