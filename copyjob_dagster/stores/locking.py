"""Locks that keep two copies of the same destination table from overlapping.

Every lock here is released by the operating system or the database server when the process
that holds it dies, so a killed copy never leaves a table locked.

A lock file's `flock` lasts as long as the process (SQLite and Parquet destinations). A
server's lock (PostgreSQL's advisory lock, MySQL's GET_LOCK) lasts as long as the session that
holds it, which the server may end while the copy runs (an idle timeout, pg_terminate_backend or
KILL, a proxy's cut-off): then another run can take the table. So the transaction that writes
proves the lock still held by the session that took it (`held_by` names it for the context the
lock was taken in), and takes a second lock of its own till it commits, so that writes of two
runs never interleave: a run that lost its lock writes nothing.
"""

import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from copyjob_dagster.errors import DestinationError

POLL_SECONDS = 0.2
# The server sessions holding the copy locks taken in this context (thread), by lock name.
_HOLDERS: ContextVar[Mapping[str, int]] = ContextVar("copyjob_lock_holders", default={})  # noqa: B039


def lock_key(*parts: str | None) -> bytes:
    """A stable digest naming one destination table, for server-side lock names."""
    return hashlib.sha256("\x00".join(p or "" for p in parts).encode()).digest()


def wait_for(acquire: Callable[[], bool], timeout_seconds: float, what: str) -> None:
    """Call `acquire` until it succeeds; after `timeout_seconds`, refuse with a clear error."""
    deadline = time.monotonic() + timeout_seconds
    while not acquire():
        if time.monotonic() >= deadline:
            raise DestinationError(
                f"{what} is being copied by another run; this run waited "
                f"{timeout_seconds:g} s, changed nothing, and can be started again"
            )
        time.sleep(POLL_SECONDS)


@contextmanager
def file_lock(path: Path, timeout_seconds: float, what: str) -> Iterator[None]:
    """An exclusive `flock` on `path` (created if missing) for as long as the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)

    def acquire() -> bool:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    try:
        wait_for(acquire, timeout_seconds, what)
        yield
    finally:
        os.close(descriptor)


@contextmanager
def holding(name: str, session: int) -> Iterator[None]:
    """Record, for the block's context, that server `session` holds the lock `name`."""
    before = _HOLDERS.get()
    _HOLDERS.set({**before, name: session})
    try:
        yield
    finally:
        # Not `reset(token)`: a generator (a Dagster asset) may resume in another context.
        _HOLDERS.set(before)


def held_by(name: str) -> int | None:
    """The server session that holds the lock `name` for this context; None if not taken here."""
    return _HOLDERS.get().get(name)


def lost(what: str) -> DestinationError:
    return DestinationError(
        f"{what}: this run's copy lock ended before it wrote (the server closed the session "
        f"that held it: an idle timeout, pg_terminate_backend or KILL, a proxy's cut-off), so "
        f"another run may be copying the table; this run wrote nothing and can be started again"
    )
